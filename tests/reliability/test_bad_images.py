"""Image data that used to go wrong silently: deep (16/32-bit) files, one class, empty folders, worker errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lamina.data.block import CategoryBlock, DataBlock, MultiCategoryBlock, RegressionBlock
from lamina.data.files import get_image_files
from lamina.data.splitters import parent_label
from lamina.vision.core import PILImage, PILImageBW, PILMask
from lamina.vision.data import ImageBlock, ImageDataLoaders, SegmentationDataLoaders
from lamina.vision.transforms import Resize

# a 16-bit ramp over the whole range: 0 ... 65535 in 64 steps
RAMP16 = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)


def save_16bit(path, array: np.ndarray) -> None:
    """A 16-bit greyscale PNG (Pillow writes mode 'I;16' for a uint16 array)."""
    Image.fromarray(array.astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"


def big_endian_16bit_tiff(path, array: np.ndarray) -> None:
    Image.frombytes("I;16B", array.shape[::-1], array.astype(">u2").tobytes()).save(path)
    assert Image.open(path).mode == "I;16B"


# --- deep greyscale files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, write, expected", [
    ("ramp.png", lambda p: save_16bit(p, RAMP16), np.rint(RAMP16 / 257)),
    ("ramp.tif", lambda p: big_endian_16bit_tiff(p, RAMP16), np.rint(RAMP16 / 257)),
    # 32-bit integers: stretched so that the image's maximum (63000) becomes 255
    ("wide.tif", lambda p: Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(p),
     np.rint(np.arange(64).reshape(8, 8) * 1000 * 255 / 63000)),
    # floats in [0, 1], as float arrays are read
    ("unit.tif", lambda p: Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(p),
     np.rint(np.linspace(0, 1, 64).reshape(8, 8) * 255)),
])
def test_deep_greyscale_files_are_scaled_not_clipped(tmp_path, name, write, expected):
    path = tmp_path / name
    write(path)
    for cls in (PILImage, PILImageBW):
        img = cls.create(path)
        pixels = np.asarray(img).astype(int)
        pixels = pixels[..., 0] if pixels.ndim == 3 else pixels
        assert img.mode == cls.mode_default
        assert np.abs(pixels - expected).max() <= 1, f"{cls.__name__} of {name}"
        assert (pixels == 255).mean() < 0.05  # Pillow's own conversion made ~all of them 255


def test_32bit_image_within_8_bits_is_kept(tmp_path):
    values = np.arange(64, dtype=np.int32).reshape(8, 8) * 4  # 0 ... 252
    Image.fromarray(values).save(tmp_path / "small.tif")
    assert np.array_equal(np.asarray(PILImage.create(tmp_path / "small.tif"))[..., 0], values)


def test_16bit_pil_images_and_uint16_arrays_are_scaled_like_files():
    expected = np.rint(RAMP16 / 257)
    for source in (Image.fromarray(RAMP16), RAMP16, torch.from_numpy(RAMP16.astype(np.int32)).to(torch.uint16)):
        pixels = np.asarray(PILImage.create(source))[..., 0].astype(int)
        assert np.abs(pixels - expected).max() <= 1, type(source).__name__


def test_16bit_pngs_through_an_image_dataloaders_batch(tmp_path):
    # mid-grey in 16 bits (32896 = 128 * 257) must reach the model as 128/255, not as white
    for label in ("dark", "light"):
        (tmp_path / label).mkdir()
        for i in range(3):
            save_16bit(tmp_path / label / f"{i}.png", np.full((12, 12), 32896 if label == "dark" else 65535))
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.0, item_tfms=Resize(8), bs=6, num_workers=0,
                                       shuffle=False)
    xb, yb = dls.one_batch()
    assert xb.shape == (6, 3, 8, 8)
    means = {dls.vocab[int(y)]: float(x.mean()) for x, y in zip(xb, yb)}
    assert means["dark"] == pytest.approx(128 / 255, abs=1e-3)
    assert means["light"] == pytest.approx(1.0)


def test_16bit_masks_keep_their_codes_in_a_segmentation_batch(tmp_path):
    codes = np.arange(64).reshape(8, 8) % 4
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(4):
        save_16bit(tmp_path / "images" / f"{i}.png", RAMP16)
        save_16bit(tmp_path / "labels" / f"{i}.png", codes)
    assert np.array_equal(np.asarray(PILMask.create(tmp_path / "labels" / "0.png")), codes)
    dls = SegmentationDataLoaders.from_label_func(
        tmp_path, get_image_files(tmp_path / "images"), label_func=lambda o: tmp_path / "labels" / o.name,
        codes=["a", "b", "c", "d"], valid_pct=0.0, bs=4, num_workers=0)
    xb, yb = dls.one_batch()
    assert torch.equal(yb.cpu().long(), torch.from_numpy(codes).long().expand(4, 8, 8))
    assert float(xb[0, 0].max()) == pytest.approx(1.0) and float(xb.mean()) < 0.6  # the image is a ramp


def test_a_mask_code_beyond_8_bits_is_refused_with_the_file_name(tmp_path):
    save_16bit(tmp_path / "mask.png", np.array([[0, 1], [2, 300]]))
    with pytest.raises(ValueError, match=r"The mask .*mask\.png holds the code 300, but masks are read as 8-bit "
                                         r"images with codes 0 to 255: renumber the classes"):
        PILMask.create(tmp_path / "mask.png")
    with pytest.raises(ValueError, match=r"The mask given as an array holds the code 300"):
        PILMask.create(np.array([[0, 300]]))
    with pytest.raises(ValueError, match=r"The mask given as an array holds non-integer values \(e\.g\. 0\.5\)"):
        PILMask.create(np.array([[0.0, 0.5]]))  # a mask resized with smooth interpolation: no longer codes


# --- a single class -------------------------------------------------------------------------------------


def two_folders(path, classes=("cat",), n=4):
    for label in classes:
        (path / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(path / label / f"{label}_{i}.png")
    return get_image_files(path)


def always_cat(name: str) -> str:
    return "cat"


@pytest.mark.parametrize("build, source", [
    (lambda p, files: ImageDataLoaders.from_folder(p, valid_pct=0.25, seed=0), "parent_label"),
    (lambda p, files: ImageDataLoaders.from_name_func(p, files, label_func=always_cat, valid_pct=0.25, seed=0),
     "always_cat"),
    (lambda p, files: ImageDataLoaders.from_df(pd.DataFrame({"name": [f.name for f in files], "label": "cat"}),
                                               p, folder="cat", label_col="label"), "ColReader('label')"),
    (lambda p, files: DataBlock((ImageBlock, CategoryBlock(vocab=["cat", "dog"])), get_items=get_image_files,
                                get_y=parent_label).dataloaders(p), "parent_label"),
])
def test_one_class_fails_at_build_naming_the_label_source(tmp_path, build, source):
    files = two_folders(tmp_path)
    with pytest.raises(ValueError, match=rf"Every one of the \d+ training items has the label 'cat' \(from "
                                         rf"{re.escape(source)}.*\): a classifier needs at least two classes\. "
                                         r"Check the label function, folders"):
        build(tmp_path, files)


def test_one_value_is_fine_for_regression_and_multi_label(tmp_path):
    files = two_folders(tmp_path)
    for labels, block in (([1.0] * len(files), RegressionBlock), ([["cat"]] * len(files), MultiCategoryBlock)):
        dls = ImageDataLoaders.from_lists(tmp_path, files, labels, y_block=block, valid_pct=0.25, seed=0,
                                          num_workers=0)
        assert len(dls.train_ds) == 3


def test_two_classes_still_build(tmp_path):
    two_folders(tmp_path, classes=("cat", "dog"))
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.25, seed=0, num_workers=0)
    assert dls.vocab == ["cat", "dog"]


# --- empty folders --------------------------------------------------------------------------------------


@pytest.fixture
def no_images(tmp_path):
    """A folder of 10 .txt and 2 .csv files, no image."""
    (tmp_path / "notes").mkdir()
    for i in range(10):
        (tmp_path / "notes" / f"{i}.txt").write_text("x")
    for i in range(2):
        (tmp_path / f"{i}.csv").write_text("a,b")
    return tmp_path


EMPTY = r"found 0 images in {} \(looked for \.jpg, \.jpeg, \.png, .* more; found 12 other files: 10 \.txt, 2 \.csv\)"


def test_an_empty_folder_fails_at_build_saying_what_it_holds(no_images):
    where = EMPTY.format(no_images)
    with pytest.raises(FileNotFoundError, match=rf"get_items=get_image_files\): {where}"):
        ImageDataLoaders.from_folder(no_images, valid_pct=0.2)
    with pytest.raises(FileNotFoundError, match=rf"get_items=get_image_files\): {where}"):
        DataBlock((ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label).dataloaders(no_images)
    with pytest.raises(FileNotFoundError, match=rf"`fnames` is empty.*get_image_files\(path\) {where}"):
        ImageDataLoaders.from_name_func(no_images, get_image_files(no_images), label_func=always_cat)


def test_missing_train_and_valid_folders_are_named(no_images):
    with pytest.raises(FileNotFoundError, match=rf"found 0 images in {no_images / 'train'} \(no such folder\), "
                                                rf"{no_images / 'valid'} \(no such folder\) .*{no_images} holds 12 "
                                                r"files: 10 \.txt, 2 \.csv"):
        ImageDataLoaders.from_folder(no_images)


def test_an_empty_fnames_beside_a_folder_of_images_says_so(tmp_path):
    two_folders(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"`fnames` is empty.*`path` \({tmp_path}\) holds 4 images: check how "
                                                r"`fnames` was built"):
        ImageDataLoaders.from_name_func(tmp_path, [f for f in get_image_files(tmp_path) if "dog" in f.name],
                                        label_func=always_cat)


def test_an_empty_list_of_items_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"No items to build the datasets from: the source \[\] gives none"):
        DataBlock((ImageBlock, CategoryBlock), get_y=parent_label).dataloaders([])


# --- a corrupt image read by worker processes -----------------------------------------------------------

WORKERS_SCRIPT = textwrap.dedent("""
    import gc
    import sys
    from pathlib import Path

    from lamina.vision.data import ImageDataLoaders
    from lamina.vision.transforms import Resize


    def collect(x):
        gc.collect()  # the collector runs in a worker (it runs whenever it likes)
        return x


    if __name__ == "__main__":
        gc.disable()  # what a collection would free stays until it runs, as between two of its runs
        dls = ImageDataLoaders.from_folder(Path(sys.argv[1]), bs=2, num_workers=2, item_tfms=[Resize(8), collect],
                                           shuffle=False)
        try:
            for _ in dls.train:
                pass
        except OSError as e:  # as a notebook shows the error and goes on
            print(f"error: {e}", file=sys.stderr)
        for _ in dls.valid:  # new workers start
            pass
""")


def test_a_corrupt_image_with_workers_prints_the_error_alone(tmp_path):
    for split in ("train", "valid"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / split / label / f"{i}.jpg")
    (tmp_path / "train" / "cat" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    script = tmp_path / "load.py"
    script.write_text(WORKERS_SCRIPT)
    env = {**os.environ, "LAMINA_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Could not read the image" in done.stderr and f"{tmp_path / 'train' / 'cat' / '1.jpg'}" in done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr[-3000:]
    assert "can only test a child process" not in done.stderr
