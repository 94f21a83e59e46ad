"""Pixel-value batch transforms: IntToFloatTensor, Normalize, lighting in logit space, RandomErasing."""

import pytest
import torch

from lamina.data.loaders import apply_batch_tfms
from lamina.vision.lighting import (Brightness, Contrast, Hue, IntToFloatTensor, LightingTfm, Normalize,
                                    RandomErasing, Saturation)

TRAIN, VALID = 0, 1
IMG = ("image",)
IMG_MASK = ("image", "mask", "category")


def run(tfms, batch, kinds, split_idx=TRAIN):
    return apply_batch_tfms(tuple(batch), list(tfms), kinds, split_idx)


# ------------------------------------------------------------------------------------------------------------
# IntToFloatTensor and Normalize


def test_int_to_float_tensor_scales_images_and_casts_masks():
    image = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mask = torch.randint(0, 3, (2, 4, 4), dtype=torch.uint8)
    label = torch.tensor([0, 1])
    out = run([IntToFloatTensor()], (image, mask, label), IMG_MASK)
    assert out[0].dtype == torch.float32 and torch.allclose(out[0], image.float() / 255)
    assert out[1].dtype == torch.int64 and torch.equal(out[1], mask.long())
    assert out[2] is label
    out = run([IntToFloatTensor(div_mask=255)], (image, (mask > 0).to(torch.uint8) * 255, label), IMG_MASK, VALID)
    assert torch.equal(out[1], (mask > 0).long())
    floats = torch.rand(2, 3, 4, 4)
    assert run([IntToFloatTensor()], (floats,), IMG)[0] is floats  # already scaled: untouched
    decoded = IntToFloatTensor().decodes((floats * 3 - 1,), IMG)[0]
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_normalize_round_trip_and_lazy_device_stats():
    x = torch.rand(4, 3, 8, 8)
    norm = Normalize.from_stats([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    assert norm.mean.shape == (1, 3, 1, 1)
    out = run([norm], (x, torch.arange(4)), ("image", "category"), VALID)
    assert torch.allclose(out[0][:, 1], (x[:, 1] - 0.5) / 0.25)
    assert torch.allclose(norm.decodes(out, ("image", "category"))[0], x, atol=1e-6)
    half = norm((x.to(torch.bfloat16),), IMG)[0]
    assert half.dtype == torch.bfloat16  # the stats follow the batch's dtype


def test_normalize_without_stats_uses_the_first_batch():
    norm = Normalize()
    x = torch.rand(8, 3, 8, 8) * 4 + 2
    out = norm((x,), IMG)[0]
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    again = norm((x + 1,), IMG)[0]  # the stats are kept, not recomputed
    assert torch.allclose(again, out + 1 / norm.std, atol=1e-5)


def test_normalize_errors():
    with pytest.raises(ValueError, match="both `mean` and `std`"):
        Normalize(mean=[0.5])
    with pytest.raises(ValueError, match="statistics of shape"):
        Normalize.from_stats([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])((torch.rand(2, 1, 4, 4),), IMG)
    with pytest.raises(TypeError, match="IntToFloatTensor"):
        Normalize.from_stats([0.5], [0.2])((torch.zeros(2, 1, 4, 4, dtype=torch.uint8),), IMG)


# ------------------------------------------------------------------------------------------------------------
# Lighting


def test_lighting_is_train_only():
    x = torch.rand(2, 3, 8, 8)
    light = LightingTfm([Brightness(p=1.0), Contrast(p=1.0), Saturation(p=1.0), Hue(p=1.0)])
    assert light((x,), IMG, VALID)[0] is x
    assert not torch.allclose(light((x,), IMG, TRAIN)[0], x)


def test_lighting_pieces_in_logit_space():
    grey = torch.full((2, 3, 4, 4), 0.5)
    bright = Brightness(p=1.0, draw=0.7)((grey,), IMG, TRAIN)[0]
    torch.testing.assert_close(bright, torch.full_like(grey, 0.7))
    x = torch.rand(2, 3, 4, 4) * 0.9 + 0.05
    contrast = Contrast(p=1.0, draw=2.0)((x,), IMG, TRAIN)[0]
    torch.testing.assert_close(contrast, torch.sigmoid(2 * torch.logit(x)))
    flat = Saturation(p=1.0, draw=0.0)((x,), IMG, TRAIN)[0]
    torch.testing.assert_close(flat[:, 0], flat[:, 1])
    turned = Hue(p=1.0, draw=1 / 3)((x,), IMG, TRAIN)[0]  # a third of a turn cycles the channels
    torch.testing.assert_close(turned, x[:, [2, 0, 1]], atol=1e-5, rtol=1e-4)
    mono = torch.rand(2, 1, 4, 4)
    assert torch.equal(LightingTfm([Saturation(p=1.0), Hue(p=1.0)])((mono,), IMG, TRAIN)[0], mono)


def test_fused_lighting_equals_applying_the_pieces_in_turn():
    x = torch.rand(4, 3, 6, 6) * 0.9 + 0.05  # away from 0 and 1, where float32 sigmoid/logit round trips drift
    pieces = [Brightness(p=1.0, draw=[0.3, 0.6, 0.5, 0.55]), Contrast(p=1.0, draw=1.3), Saturation(p=1.0, draw=1.4)]
    in_turn = x
    for piece in pieces:
        in_turn = piece((in_turn,), IMG, TRAIN)[0]
    torch.testing.assert_close(LightingTfm(pieces)((x,), IMG, TRAIN)[0], in_turn, atol=1e-5, rtol=1e-4)


def test_lighting_draw_ranges():
    torch.manual_seed(0)
    grey = torch.full((256, 1, 1, 1), 0.5)
    out = Brightness(max_lighting=0.4, p=1.0)((grey,), IMG, TRAIN)[0]
    assert out.min() >= 0.3 - 1e-6 and out.max() <= 0.7 + 1e-6 and out.std() > 0.05
    half = Brightness(max_lighting=0.4, p=0.5)((grey,), IMG, TRAIN)[0]
    assert 0.3 < (half == 0.5).float().mean() < 0.7  # untouched images come back exact


# ------------------------------------------------------------------------------------------------------------
# RandomErasing


def test_random_erasing():
    torch.manual_seed(0)
    x = torch.zeros(32, 3, 16, 16)
    out = RandomErasing(p=1.0, sl=0.1, sh=0.3)((x,), IMG, TRAIN)[0]
    erased = (out != 0).all(dim=1).float().mean(dim=(1, 2))
    assert erased.min() > 0.05 and erased.max() <= 0.3 + 0.05
    assert RandomErasing(p=1.0)((x,), IMG, VALID)[0] is x
