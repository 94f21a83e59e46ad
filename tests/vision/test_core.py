"""Image types: creation from every source, properties, JPEG draft decoding, readers and their errors."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.vision.core import (ImageReader, MaskReader, PILImage, PILImageBW, PILMask, cifar_stats, image2tensor,
                                imagenet_stats, jsonable, load_image, mnist_stats)
from lamina.vision.transforms import Resize


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(12, 20, 3), dtype=np.uint8)


def test_stats():
    assert imagenet_stats == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert cifar_stats == ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
    assert mnist_stats == ([0.131], [0.308])


def test_create_from_every_source(tmp_path, rgb):
    fn = tmp_path / "a.png"
    Image.fromarray(rgb).save(fn)
    sources = [fn, str(fn), fn.read_bytes(), Image.open(fn), PILImage.create(fn), rgb,
               torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for source in sources:
        img = PILImage.create(source)
        assert type(img) is PILImage and img.mode == "RGB" and img.size == (20, 12)
        assert np.array_equal(np.asarray(img), rgb), type(source)


def test_create_grayscale_and_masks(rgb):
    bw = PILImageBW.create(rgb)
    assert type(bw) is PILImageBW and bw.mode == "L"
    codes = torch.tensor([[0, 1], [2, 3]])
    mask = PILMask.create(codes)  # class indices are kept as they are, not scaled
    assert type(mask) is PILMask and np.asarray(mask).tolist() == [[0, 1], [2, 3]]
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    assert np.asarray(PILMask.create(palette)).tolist() == [[0, 1], [2, 3]]  # indices, not grey levels
    with pytest.raises(TypeError, match="PILImage.create takes a path, str, bytes"):
        PILImage.create(3.5)


def test_properties_thumb_and_pickle(rgb):
    img = PILImage.create(rgb)
    assert img.shape == (12, 20) and img.n_px == 240 and img.aspect == pytest.approx(20 / 12)
    thumb = img.to_thumb(6)
    assert type(thumb) is PILImage and max(thumb.size) == 6
    assert type(img.resize((4, 4))) is Image.Image  # Pillow returns plain images; transforms re-wrap them
    back = pickle.loads(pickle.dumps(img))
    assert type(back) is PILImage and np.array_equal(np.asarray(back), rgb)
    assert repr(img) == "PILImage mode=RGB size=20x12"


def test_show_draws_on_an_axis(rgb):
    import matplotlib.pyplot as plt
    ax = PILImage.create(rgb).show(title="hi")
    assert ax.get_title() == "hi" and len(ax.images) == 1
    mask_ax = PILMask.create(np.zeros((4, 4), dtype=np.uint8)).show(ctx=ax)
    assert mask_ax is ax and len(ax.images) == 2
    plt.close("all")


def test_missing_corrupt_and_truncated_files_are_named(tmp_path, rgb):
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        PILImage.create(tmp_path / "nothere.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not an image")
    with pytest.raises(OSError, match=r"Could not read the image .*corrupt\.jpg.*verify_images"):
        PILImage.create(corrupt)
    buf = io.BytesIO()
    Image.fromarray(np.repeat(np.repeat(rgb, 8, 0), 8, 1)).save(buf, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(OSError, match="truncated.jpg"):
        PILImage.create(truncated)


def test_jpeg_draft_decodes_at_reduced_size(tmp_path):
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((256, 320, 3), 120, dtype=np.uint8)).save(big)
    assert load_image(big, "RGB").size == (320, 256)
    small = load_image(big, "RGB", draft=(32, 32))
    assert small.size == (40, 32)  # 1/8 scale: the smallest that is still >= 32 in both dimensions
    assert load_image(big, "RGB", draft=(100, 100)).size == (160, 128)
    png = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(png)
    assert load_image(png, "RGB", draft=(8, 8)).size == (64, 64)  # only JPEGs have a draft mode
    assert ImageReader(PILImage, draft=(32, 32))(big).size == (40, 32)


def test_image2tensor_shapes(rgb):
    assert image2tensor(PILImage.create(rgb)).shape == (3, 12, 20)
    assert image2tensor(PILImageBW.create(rgb)).shape == (1, 12, 20)
    mask = image2tensor(PILMask.create(np.ones((5, 6), dtype=np.uint8)))
    assert mask.shape == (5, 6) and mask.dtype == torch.uint8


def test_readers(tmp_path):
    reader = ImageReader(PILImageBW)
    assert reader.accepts("x.jpg") and reader.accepts(b"..") and reader.accepts(np.zeros(2))
    assert not reader.accepts({"row": 1})
    fn = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1], [1, 4]], dtype=np.uint8)).save(fn)
    masks = MaskReader(codes=np.array(["a", "b", "c"]))
    assert masks.vocab == ["a", "b", "c"] and masks.c == 3 and type(masks.vocab[0]) is str
    with pytest.raises(ValueError, match=r"The mask .*m\.png contains the value 4, but there are only 3 codes"):
        masks(fn)
    assert np.asarray(MaskReader(codes=list("abcde"))(fn)).max() == 4
    with pytest.raises(FileNotFoundError, match="The mask file .*gone_P.png' does not exist"):
        masks.check(tmp_path / "gone_P.png")


def test_mask_reader_allows_only_the_void_value_beyond_the_codes(tmp_path):
    void = tmp_path / "void.png"
    Image.fromarray(np.array([[0, 255], [2, 1]], dtype=np.uint8)).save(void)
    with pytest.raises(ValueError, match=r"contains the value 255, .*ignore_index"):
        MaskReader(codes="abc")(void)
    reader = MaskReader(codes="abc", ignore_index=255)
    assert np.asarray(reader(void)).tolist() == [[0, 255], [2, 1]]
    assert reader.loss_config == {"name": "CrossEntropyLossFlat", "kwargs": {"axis": 1, "ignore_index": 255}}
    Image.fromarray(np.array([[3, 255]], dtype=np.uint8)).save(void)
    with pytest.raises(ValueError, match=r"contains the value 3, .*besides the void value 255"):
        reader(void)


def test_jsonable():
    assert jsonable((np.float32(0.5), torch.tensor([1, 2]), np.array([3]), [np.int64(4)])) == [0.5, [1, 2], [3], [4]]
    assert jsonable(Resize(8)) == Resize(8).to_config() and jsonable("x") == "x"
