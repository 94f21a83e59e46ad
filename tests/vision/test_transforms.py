"""Item transforms: train/valid behaviour, exact geometry, image/mask agreement, configs, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.vision.core import PILImage, PILImageBW, PILMask
from lamina.vision.synth import PALETTE, mask_from_pixels
from lamina.vision.transforms import (ITEM_TFMS, CropPad, DihedralItem, FlipItem, RandomCrop, RandomResizedCrop,
                                      RatioResize, Resize, ToTensor, item_tfm_from_config)

NEAREST = Image.Resampling.NEAREST
BOTH_NEAREST = (NEAREST, NEAREST)


def seg_pair(h: int = 24, w: int = 32, block: int = 4, n_codes: int = 5, seed: int = 0) -> tuple:
    """An image painted from PALETTE and the mask it implies."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_codes, size=(-(-h // block), -(-w // block)))
    mask = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:h, :w].astype(np.uint8)
    return PILImage.create(PALETTE[mask]), PILMask.create(mask)


def arr(img) -> np.ndarray:
    return np.asarray(img)


# one instance of every registered transform, with nearest resampling so agreement must be exact
EXACT = [Resize(16, resamples=BOTH_NEAREST), Resize((12, 20), method="squish", resamples=BOTH_NEAREST),
         Resize(16, method="pad", pad_mode="zeros", resamples=BOTH_NEAREST),
         Resize((20, 16), method="pad", pad_mode="reflection", resamples=BOTH_NEAREST),
         RandomResizedCrop(16, min_scale=0.3, resamples=BOTH_NEAREST), RandomCrop(12), CropPad(40, pad_mode="border"),
         RatioResize(20, resamples=BOTH_NEAREST), FlipItem(p=1.0), DihedralItem(p=1.0)]


def test_every_registered_transform_is_covered():
    # not geometric: ToTensor, AddMaskCodes, and PointScaler (points follow the geometry in test_points.py)
    assert {type(t).__name__ for t in EXACT} | {"ToTensor", "AddMaskCodes", "PointScaler"} == set(ITEM_TFMS)


@pytest.mark.parametrize("tfm", EXACT, ids=lambda t: repr(t))
@pytest.mark.parametrize("split_idx", [0, 1])
def test_image_and_mask_get_the_same_geometry(tfm, split_idx):
    random.seed(split_idx)
    img, mask = seg_pair()
    label = torch.tensor(3)
    for _ in range(4):
        out_img, out_mask, out_label = tfm((img, mask, label), split_idx=split_idx)
        assert type(out_img) is PILImage and type(out_mask) is PILMask and out_label is label
        assert out_img.size == out_mask.size
        assert np.array_equal(mask_from_pixels(arr(out_img)), arr(out_mask))


@pytest.mark.parametrize("tfm", [Resize(16), RandomResizedCrop(16, min_scale=0.5), Resize(16, method="pad")],
                         ids=repr)
def test_bilinear_images_still_agree_with_nearest_masks(tfm):
    random.seed(0)
    img, mask = seg_pair(48, 64, block=12)
    for split_idx in (0, 1):
        out_img, out_mask = tfm((img, mask), split_idx=split_idx)
        agreement = (mask_from_pixels(arr(out_img)) == arr(out_mask)).mean()
        assert agreement > 0.8, agreement


@pytest.mark.parametrize("tfm", EXACT, ids=repr)
def test_validation_is_deterministic(tfm):
    img, mask = seg_pair()
    outs = [tfm((img, mask), split_idx=1) for _ in range(3)]
    assert all(np.array_equal(arr(o[0]), arr(outs[0][0])) for o in outs)


@pytest.mark.parametrize("tfm", [Resize(16), RandomResizedCrop(16), RandomCrop(12), FlipItem(), DihedralItem()],
                         ids=repr)
def test_training_is_random(tfm):
    random.seed(1)
    img, _ = seg_pair()
    outs = {arr(tfm(img, split_idx=0)).tobytes() for _ in range(12)}
    assert len(outs) > 1


def test_resize_crop_is_centred_on_valid_and_a_shifted_window_on_train():
    img, _ = seg_pair()  # 32 wide, 24 high: the 24x24 window slides horizontally
    a = arr(img)
    tfm = Resize(24, resamples=BOTH_NEAREST)
    assert np.array_equal(arr(tfm(img, split_idx=1)), a[:, 4:28])
    random.seed(0)
    for _ in range(5):
        out = arr(tfm(img, split_idx=0))
        assert any(np.array_equal(out, a[:, left:left + 24]) for left in range(9))
    assert Resize((10, 30))(img).size == (30, 10)  # (height, width)
    assert type(Resize(8)(PILImageBW.create(a))) is PILImageBW


def test_resize_squish_and_pad():
    img, _ = seg_pair()
    a = arr(img)
    assert np.array_equal(arr(Resize((24, 32), method="squish")(img)), a)
    zeros = arr(Resize(32, method="pad", pad_mode="zeros", resamples=BOTH_NEAREST)(img, split_idx=1))
    assert zeros.shape == (32, 32, 3) and not zeros[:4].any() and not zeros[28:].any()
    assert np.array_equal(zeros[4:28], a)
    reflect = arr(Resize(32, method="pad", resamples=BOTH_NEAREST)(img, split_idx=1))
    assert np.array_equal(reflect[0], a[4]) and np.array_equal(reflect[3], a[1]) and np.array_equal(reflect[4:28], a)
    border = arr(Resize(32, method="pad", pad_mode="border", resamples=BOTH_NEAREST)(img, split_idx=1))
    assert np.array_equal(border[0], a[0])


def test_random_resized_crop_validation_squishes_then_centre_crops():
    img, _ = seg_pair()
    out = RandomResizedCrop(16, resamples=BOTH_NEAREST)(img, split_idx=1)
    xtra = 8  # ceil(16 * 0.14 / 8) * 8
    expected = img.resize((16 + xtra, 16 + xtra), NEAREST).crop((4, 4, 20, 20))
    assert np.array_equal(arr(out), arr(expected))


def test_random_resized_crop_falls_back_to_a_centred_crop():
    wide = PILImage.create(np.random.default_rng(0).integers(0, 255, (8, 64, 3), dtype=np.uint8))
    out = RandomResizedCrop(16, min_scale=0.9, ratio=(1, 1), resamples=BOTH_NEAREST)(wide, split_idx=0)
    expected = wide.crop((28, 0, 36, 8)).resize((16, 16), NEAREST)
    assert np.array_equal(arr(out), arr(expected))


def test_random_crop_and_crop_pad():
    img, _ = seg_pair()
    a = arr(img)
    assert np.array_equal(arr(RandomCrop(12)(img, split_idx=1)), a[6:18, 10:22])
    random.seed(0)
    out = arr(RandomCrop(12)(img, split_idx=0))
    assert any(np.array_equal(out, a[t:t + 12, lft:lft + 12]) for t in range(13) for lft in range(21))
    padded = arr(RandomCrop(40)(img, split_idx=1))
    assert np.array_equal(padded[8:32, 4:36], a) and not padded[:8].any()
    for split_idx in (0, 1):
        assert np.array_equal(arr(CropPad(16)(img, split_idx=split_idx)), a[4:20, 8:24])
    reflect = arr(CropPad(40, pad_mode="reflection")(img))
    assert np.array_equal(reflect[8:32, 4:36], a) and np.array_equal(reflect[7, 4:36], a[1])


def test_ratio_resize_flip_dihedral():
    img, _ = seg_pair()
    a = arr(img)
    assert RatioResize(16)(img).size == (16, 12)
    assert np.array_equal(arr(FlipItem(p=1.0)(img, split_idx=0)), a[:, ::-1])
    assert np.array_equal(arr(FlipItem(p=1.0)(img, split_idx=1)), a)  # training only
    assert np.array_equal(arr(FlipItem(p=0.0)(img, split_idx=0)), a)
    variants = [a, a[:, ::-1], a[::-1], np.rot90(a), np.rot90(a, 2), np.rot90(a, 3), a.transpose(1, 0, 2),
                np.rot90(a, 2).transpose(1, 0, 2)]
    random.seed(0)
    for _ in range(6):
        out = arr(DihedralItem()(img, split_idx=0))
        assert any(out.shape == v.shape and np.array_equal(out, v) for v in variants)
    assert np.array_equal(arr(DihedralItem()(img, split_idx=1)), a)


def test_to_tensor():
    img, mask = seg_pair()
    x, m, y = ToTensor()((img, mask, torch.tensor(1)))
    assert x.shape == (3, 24, 32) and x.dtype == torch.uint8
    assert m.shape == (24, 32) and m.dtype == torch.uint8 and torch.equal(m, torch.from_numpy(np.array(mask)))
    assert y.item() == 1
    assert ToTensor()(PILImageBW.create(arr(img))).shape == (1, 24, 32)


@pytest.mark.parametrize("tfm", EXACT + [ToTensor(), RandomResizedCrop(20, val_xtra=0.3, max_scale=0.9)], ids=repr)
def test_configs_round_trip(tfm):
    cfg = json.loads(json.dumps(tfm.to_config()))
    rebuilt = item_tfm_from_config(cfg)
    assert type(rebuilt) is type(tfm) and rebuilt.to_config() == tfm.to_config()
    assert rebuilt.order == tfm.order and rebuilt.split_idx == tfm.split_idx


def test_draft_sizes():
    assert Resize((20, 30)).draft_size() == (20, 30)
    assert RandomResizedCrop(16, min_scale=1.0, ratio=(1, 1)).draft_size() == (16, 16)
    assert RandomResizedCrop(16).draft_size()[0] > 16 * 3  # small crops are scaled up: decode big
    assert RatioResize(50).draft_size() == (50, 50)


def test_errors():
    with pytest.raises(ValueError, match="`method` must be one of"):
        Resize(16, method="stretch")
    with pytest.raises(ValueError, match="`pad_mode` must be one of"):
        Resize(16, pad_mode="mirror")
    with pytest.raises(ValueError, match=r"`size` must be an int or a \(height, width\) pair"):
        Resize((1, 2, 3))
    with pytest.raises(ValueError, match="0 < min_scale <= max_scale <= 1"):
        RandomResizedCrop(16, min_scale=0)
    with pytest.raises(ValueError, match="Unknown item transform 'Blur'"):
        item_tfm_from_config({"name": "Blur", "kwargs": {}})


# real photo sizes whose crop windows land a float hair outside the image (300x225 -> 224: top = -1e-14)
PHOTO_SIZES = [(300, 225), (500, 375), (333, 500), (1725, 1000), (225, 300), (375, 500), (500, 333), (640, 427),
               (259, 194), (224, 168)]
SMALL_SIZES = [(w, h) for w in range(13, 60, 7) for h in range(11, 60, 6)]
TARGETS = [224, 460, (224, 300), 17, (13, 21)]


def _sized_tfms(size) -> list:
    return [*(Resize(size, method=m) for m in ("crop", "pad", "squish")),
            *(Resize(size, method=m, pad_mode="zeros") for m in ("crop", "pad")),
            RandomResizedCrop(size), RandomResizedCrop(size, min_scale=0.9, ratio=(1, 1)), RandomCrop(size),
            CropPad(size), CropPad(size, pad_mode="reflection")]


@pytest.mark.parametrize("split_idx", [0, 1])
def test_every_window_stays_inside_the_image_for_any_size(split_idx):
    random.seed(split_idx)
    cases = [(wh, size) for wh in PHOTO_SIZES for size in (224, 460)]
    cases += [(wh, size) for wh in SMALL_SIZES for size in TARGETS[3:]]
    for (w, h), size in cases:
        img = PILImage.create(np.zeros((h, w, 3), np.uint8))
        mask = PILMask.create(np.zeros((h, w), np.uint8))
        expected = (size, size) if isinstance(size, int) else (size[1], size[0])
        for tfm in _sized_tfms(size):
            for _ in range(2 if split_idx == 0 else 1):
                out_img, out_mask = tfm((img, mask), split_idx=split_idx)
                assert out_img.size == out_mask.size == expected, (w, h, tfm)


def test_resize_of_a_300x225_photo_to_224():
    img = PILImage.create(np.full((225, 300, 3), 7, np.uint8))
    for split_idx in (0, 1):
        assert arr(Resize(224)(img, split_idx=split_idx)).shape == (224, 224, 3)
        assert (arr(Resize(224)(img, split_idx=split_idx)) == 7).all()  # no padding row crept in
