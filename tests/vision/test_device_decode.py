"""Decoding JPEGs where the batches go (`lamina.vision.device_decode`), checked on the CPU against the usual path.

The device path runs here with the CPU as the device (torchvision's ``decode_jpeg`` on CPU tensors); on a CUDA
machine the same code decodes with nvJPEG (`benchmarks/gpu_check.py` measures it).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.core import set_seed
from lamina.data.datasets import Datasets
from lamina.vision.all import (FlipItem, ImageDataLoaders, RandomResizedCrop, Resize, SegmentationDataLoaders,
                               load_learner, resnet18, vision_learner)
from lamina.vision.device_decode import (DecodeImages, DeviceDecodeDatasets, EncodedImages, decode_on_device,
                                         resample_window)


def _smooth(h: int, w: int, k: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([128 + 100 * np.sin(xs / 7 + k), 128 + 100 * np.cos(ys / 9 + k),
                     np.full((h, w), 40 + 15 * k)], -1).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """Ten JPEGs of assorted sizes (one grayscale), and one PNG, named so that an upper-case first letter is a cat."""
    files = []
    for k in range(10):
        h, w = 40 + 3 * k, 70 - 2 * k
        fn = tmp_path / f"{'Cat' if k % 2 else 'dog'}_{k}.jpg"
        image = Image.fromarray(_smooth(h, w, k))
        (image.convert("L") if k == 4 else image).save(fn, quality=95)
        files.append(fn)
    Image.fromarray(_smooth(50, 60, 3)).save(tmp_path / "Cat_png.png")
    files.append(tmp_path / "Cat_png.png")
    return tmp_path, files


def _dls(folder, **kwargs):
    path, files = folder
    args = dict(valid_pct=0.5, seed=1, label_func=lambda n: n[0].isupper(), item_tfms=Resize(32), bs=4,
                num_workers=0, device="cpu")
    return ImageDataLoaders.from_name_func(path, files, **{**args, **kwargs})


def test_device_decoding_gives_the_cpu_images_within_resampling_tolerance(folder):
    cpu, dev = _dls(folder), _dls(folder, decode="device")
    assert isinstance(dev.valid.dataset, DeviceDecodeDatasets) and isinstance(dev.valid.after_batch[0], DecodeImages)
    n = 0
    for (xa, ya), (xb, yb) in zip(cpu.valid, dev.valid):
        assert xb.shape == xa.shape and xb.dtype == xa.dtype == torch.float32
        assert torch.equal(ya, yb)
        assert (xa - xb).abs().mean() < 3 / 255  # two JPEG decoders and two resamplers, same windows
        n += len(xb)
    assert n == len(cpu.valid.dataset)


def test_training_windows_are_the_cpu_paths_random_windows(folder):
    set_seed(5)  # the loaders' shuffle seeds and the windows' random draws, the same for both
    xa, ya = next(iter(_dls(folder).train))
    set_seed(5)
    xb, yb = next(iter(_dls(folder, decode="device").train))
    assert torch.equal(ya, yb) and (xa - xb).abs().mean() < 3 / 255


def test_workers_read_bytes_and_the_batch_member_is_decoded_in_the_loader(folder):
    dev = _dls(folder, decode="device", num_workers=2)
    raw = dev.train.dataset[0][0]
    assert raw.data is not None and raw.data.dtype == torch.uint8 and raw.decoded is None
    batches = list(dev.train)
    assert all(b[0].dtype == torch.float32 and b[0].shape[1:] == (3, 32, 32) for b in batches)


def test_png_and_in_memory_images_are_decoded_on_the_cpu_and_join_the_batch(folder):
    path, files = folder
    dev = _dls(folder, decode="device")
    kinds = set()
    for dl in dev.loaders:
        for k, i in enumerate(dl.dataset.idxs):
            item = dl.dataset[k][0]
            if dl.dataset.items[i].suffix == ".png":
                assert item.data is None and item.decoded.shape == (3, 32, 32)
            else:  # the grayscale JPEG too: decode_jpeg makes it RGB, as the CPU path does
                assert item.data is not None and item.decoded is None
            kinds.add(item.data is None)
        encoded = dl.collate_fn([dl.dataset[k] for k in range(len(dl.dataset))])
        assert isinstance(encoded[0], EncodedImages)
    assert kinds == {True, False}
    xb, = next(iter(dev.test_dl([Image.open(files[0]), files[-1], files[1]])))
    assert xb.shape == (3, 3, 32, 32)


def test_a_corrupt_jpeg_is_named(folder):
    path, files = folder
    bad = path / "Cat_broken.jpg"
    bad.write_bytes(files[0].read_bytes()[:200] + b"\x00" * 50)
    dls = ImageDataLoaders.from_name_func(path, [bad, *files], valid_pct=0.5, seed=1, item_tfms=Resize(32), bs=64,
                                          label_func=lambda n: n[0].isupper(), num_workers=0, decode="device")
    with pytest.raises(OSError, match="Cat_broken.jpg"):
        for dl in dls.loaders:
            list(dl)


def test_data_the_device_path_does_not_take_are_refused_with_the_fix(folder, tmp_path):
    with pytest.raises(ValueError, match="item_tfms.*decode='cpu'"):
        _dls(folder, item_tfms=[Resize(32), FlipItem()], decode="device")
    with pytest.raises(ValueError, match="decode"):
        _dls(folder, decode="gpu")
    path, files = folder
    masks = tmp_path / "masks"
    masks.mkdir()
    for f in files:
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / f"{f.stem}.png")
    with pytest.raises(ValueError, match="masks"):
        SegmentationDataLoaders.from_label_func(path, files, lambda f: masks / f"{f.stem}.png", codes=["a", "b"],
                                                item_tfms=Resize(32), bs=4, num_workers=0, decode="device")


def test_auto_decodes_on_the_cpu_without_cuda_and_random_resized_crop_is_taken(folder):
    assert type(_dls(folder, decode="auto").train.dataset) is Datasets
    dls = _dls(folder, item_tfms=RandomResizedCrop(24, min_scale=0.5), decode="device")
    xb, _ = dls.train.one_batch()
    assert xb.shape[1:] == (3, 24, 24)
    assert decode_on_device(dls) is dls and sum(isinstance(t, DecodeImages) for t in dls.train.after_batch) == 1


def test_resample_window_crops_pads_and_resizes():
    image = torch.arange(3 * 6 * 8, dtype=torch.uint8).reshape(3, 6, 8)
    assert torch.equal(resample_window(image, (0, 0, 8, 6), (6, 8)), image)
    assert torch.equal(resample_window(image, (2, 1, 6, 5), (4, 4)), image[:, 1:5, 2:6])
    padded = resample_window(image, (-2, 0, 6, 6), (6, 8), pad_mode="zeros")
    assert torch.equal(padded[:, :, :2], torch.zeros(3, 6, 2, dtype=torch.uint8))
    assert resample_window(image, (0, 0, 8, 6), (3, 4)).shape == (3, 3, 4)


def test_a_device_decoding_learner_predicts_and_its_export_loads_in_a_plain_process(folder, tmp_path):
    path, files = folder
    dls = _dls(folder, decode="device")
    learn = vision_learner(dls, resnet18, pretrained=False, path=tmp_path)
    learn.fit(1, 1e-3)
    label, _, probs = learn.predict(files[0])
    assert label in ("True", "False") and probs.shape == (2,)
    label_img, _, probs_img = learn.predict(Image.open(files[0]))
    assert torch.allclose(probs, probs_img, atol=0.05)
    learn.export(tmp_path / "m.pkl")
    code = ("import sys; from lamina.vision.all import load_learner; "
            "l = load_learner(sys.argv[1]); print(l.predict(sys.argv[2])[0])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pkl"), str(files[0])], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == label
    assert not any(isinstance(t, DecodeImages) for t in load_learner(tmp_path / "m.pkl").dls.valid.after_batch)
