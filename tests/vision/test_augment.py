"""Geometric batch augmentation on the device: train/valid behaviour, exact geometry, image/mask agreement,
fusion into one grid_sample, configs."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lamina.data.loaders import TensorDataLoader, apply_batch_tfms
from lamina.vision.augment import (BATCH_TFMS, AffineCoordTfm, Brightness, Contrast, Dihedral, Flip, Hue,
                                   IntToFloatTensor, LightingTfm, Normalize, RandomErasing, RandomResizedCropGPU,
                                   Rotate, Saturation, Warp, Zoom, aug_transforms, batch_tfm_from_config,
                                   setup_aug_tfms)

TRAIN, VALID = 0, 1
IMG = ("image",)
IMG_MASK = ("image", "mask", "category")


def run(tfms, batch, kinds, split_idx=TRAIN):
    return apply_batch_tfms(tuple(batch), list(tfms), kinds, split_idx)


def blocks(bs=4, size=16, n_codes=5, seed=0):
    """Piecewise-constant 4x4-pixel blocks; each channel encodes the block's code differently."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, n_codes, (bs, size // 4, size // 4), generator=gen)
    mask = codes.repeat_interleave(4, 1).repeat_interleave(4, 2)
    levels = torch.stack([mask, (mask * 2 + 1) % n_codes, (mask * 3 + 2) % n_codes], dim=1).float()
    return levels / (n_codes - 1), mask


def mask_from_image(image, n_codes=5):
    return (image[:, 0] * (n_codes - 1)).round().long()


def ramp(bs, height, width):
    """Channel 0 holds each pixel's normalised x, channel 1 its y (align_corners=True convention)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([xs, ys])[None].repeat(bs, 1, 1, 1)


# ------------------------------------------------------------------------------------------------------------
# aug_transforms: shape of the result, train/valid, identity


def test_aug_transforms_fuses_into_one_geometry_and_one_lighting():
    tfms = aug_transforms(size=12, min_scale=0.5, flip_vert=True, xtra_tfms=[Hue(), RandomErasing()])
    assert [type(t) for t in tfms] == [AffineCoordTfm, LightingTfm, RandomErasing]
    geometry, lighting = tfms[0], tfms[1]
    assert geometry.order == 30 and geometry.split_idx is None and geometry.size == (12, 12)
    assert [type(p) for p in geometry.tfms] == [Dihedral, Warp, Rotate, Zoom, RandomResizedCropGPU]
    assert lighting.order == 40 and lighting.split_idx == 0
    assert [type(p) for p in lighting.tfms] == [Brightness, Contrast, Hue]
    rotate = geometry.tfms[2]
    assert rotate.max_deg == 10 and rotate.p == 0.75 and rotate.size is None  # size goes to the crop
    doubled = aug_transforms(mult=2.0)[0].tfms
    assert doubled[1].magnitude == pytest.approx(0.4) and doubled[2].max_deg == 20
    assert [type(t) for t in aug_transforms(do_flip=False, max_rotate=0, max_warp=0, max_zoom=1, max_lighting=0)] == []


def test_validation_is_identity_except_resizing():
    image, mask = blocks()
    label = torch.arange(4)
    tfms = aug_transforms(max_lighting=0.9, p_lighting=1.0, p_affine=1.0)
    out = run(tfms, (image, mask, label), IMG_MASK, VALID)
    assert out[0] is image and out[1] is mask and out[2] is label
    resized = run(aug_transforms(size=(8, 12)), (image, mask, label), IMG_MASK, VALID)
    expected = F.interpolate(image, size=(8, 12), mode="bilinear", align_corners=True)
    torch.testing.assert_close(resized[0], expected)
    assert resized[1].shape == (4, 8, 12)


def test_p_zero_is_exact_identity():
    image, mask = blocks()
    tfms = aug_transforms(p_affine=0.0, p_lighting=0.0, do_flip=False)
    out = run(tfms, (image, mask), ("image", "mask"))
    assert torch.equal(out[0], image) and torch.equal(out[1], mask)
    assert torch.equal(run([Flip(p=0.0), RandomErasing(p=0.0)], (image,), IMG)[0], image)


def test_output_shapes_with_size():
    image, mask = blocks(size=16)
    for split_idx in (TRAIN, VALID):
        for tfms in (aug_transforms(size=(12, 20)), aug_transforms(size=10, min_scale=0.5)):
            out = run(tfms, (image, mask, torch.arange(4)), IMG_MASK, split_idx)
            height, width = tfms[0].size
            assert out[0].shape == (4, 3, height, width) and out[0].dtype == torch.float32
            assert out[1].shape == (4, height, width) and out[1].dtype == torch.int64
    resize_only = aug_transforms(size=8, do_flip=False, max_rotate=0, max_warp=0, max_zoom=1, max_lighting=0)
    assert run(resize_only, (image,), IMG)[0].shape == (4, 3, 8, 8)


# ------------------------------------------------------------------------------------------------------------
# Exact geometry


def test_flip_matches_torch_flip():
    image, mask = blocks()
    image = image + torch.rand_like(image) * 0.1  # not piecewise-constant: interpolation errors would show
    out = Flip(p=1.0)((image, mask), ("image", "mask"), TRAIN)
    torch.testing.assert_close(out[0], image.flip(-1))
    assert torch.equal(out[1], mask.flip(-1))
    some = Flip(p=1.0, draw=[1, 0, 1, 0])((image,), IMG, TRAIN)[0]
    torch.testing.assert_close(some[1::2], image[1::2])
    torch.testing.assert_close(some[0::2], image[0::2].flip(-1))


def test_rotate_90_matches_rot90_nearest():
    image, mask = torch.rand(3, 2, 9, 9), torch.randint(0, 4, (3, 9, 9))
    out = Rotate(p=1.0, draw=90, mode="nearest")((image, mask), ("image", "mask"), TRAIN)
    # a positive angle turns the picture counter-clockwise on screen, as rot90 with k=1 over (height, width)
    assert torch.equal(out[0], torch.rot90(image, k=1, dims=(2, 3)))
    assert torch.equal(out[1], torch.rot90(mask, k=1, dims=(1, 2)))
    back = Rotate(p=1.0, draw=-90, mode="nearest")((image,), IMG, TRAIN)[0]
    assert torch.equal(back, torch.rot90(image, k=-1, dims=(2, 3)))


def test_dihedral_gives_the_eight_symmetries():
    x = torch.rand(8, 1, 6, 6)
    out = Dihedral(p=1.0, draw=list(range(8)), mode="nearest")((x,), IMG, TRAIN)[0]
    expected = [x[0], x[1].flip(-1), x[2].flip(-2), x[3].flip(-1, -2), x[4].transpose(-1, -2)]
    for k, want in enumerate(expected):
        assert torch.equal(out[k], want), k
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_rotation_is_true_on_non_square_images():
    """Neighbouring output pixels sample input points one pixel apart, whatever the aspect ratio."""
    height, width = 16, 32
    coords = ramp(1, height, width)
    pixels = torch.stack([(coords[:, 0] + 1) / 2 * (width - 1), (coords[:, 1] + 1) / 2 * (height - 1)], dim=1)
    out = Rotate(p=1.0, draw=30, pad_mode="border")((pixels,), IMG, TRAIN)[0]
    centre = out[0, :, 6:10, 12:20]
    step_x = (centre[:, :, 1:] - centre[:, :, :-1]).norm(dim=0)
    step_y = (centre[:, 1:] - centre[:, :-1]).norm(dim=0)
    torch.testing.assert_close(step_x, torch.ones_like(step_x), atol=1e-4, rtol=0)
    torch.testing.assert_close(step_y, torch.ones_like(step_y), atol=1e-4, rtol=0)


def test_zoom_and_warp_magnitudes_are_bounded():
    torch.manual_seed(0)
    coords = ramp(64, 17, 17)
    zoomed = Zoom(min_zoom=1.25, max_zoom=2.0, p=1.0)((coords,), IMG, TRAIN)[0]
    span = zoomed[:, 0, :, -1] - zoomed[:, 0, :, 0]  # width of the sampled window, per image and row
    assert span.min() >= 2 / 2.0 - 1e-5 and span.max() <= 2 / 1.25 + 1e-5
    assert zoomed.abs().max() <= 1 + 1e-5  # zooming in stays inside the image
    warped = Warp(magnitude=0.2, p=1.0, pad_mode="border")((coords,), IMG, TRAIN)[0]  # border: clamped coords
    moved = (warped - coords).abs()
    assert 0.05 < moved.max() <= 0.4 + 1e-5  # each coordinate moves by at most 2 * magnitude
    fixed = Warp(p=1.0, draw_x=0.1, draw_y=0.0, pad_mode="border")((coords[:1],), IMG, TRAIN)[0]
    assert fixed[0, 1, 0, 0].item() == pytest.approx(-1.0, abs=1e-5)  # left edge top corner samples y=-1.1
    assert fixed[0, 1, 0, -1].item() == pytest.approx(-0.9, abs=1e-5)  # right edge top corner samples y=-0.9


# ------------------------------------------------------------------------------------------------------------
# Images and masks agree under the fused transform


def strong_augs(mode, **kwargs):
    return aug_transforms(max_rotate=40, min_zoom=0.7, max_zoom=1.5, max_warp=0.3, p_affine=1.0, max_lighting=0,
                          mode=mode, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"flip_vert": True, "pad_mode": "zeros"},
                                    {"size": 12, "min_scale": 0.5, "pad_mode": "border"}])
def test_image_and_mask_agree_nearest(kwargs):
    torch.manual_seed(1)
    image, mask = blocks(bs=8)
    out = run(strong_augs("nearest", **kwargs), (image, mask, torch.arange(8)), IMG_MASK)
    assert not torch.equal(out[1], mask)  # it moved
    assert torch.equal(mask_from_image(out[0]), out[1])


def test_image_and_mask_agree_bilinear_away_from_edges():
    torch.manual_seed(2)
    image, mask = blocks(bs=8)
    out = run(strong_augs("bilinear"), (image, mask, torch.arange(8)), IMG_MASK)
    scaled = out[0] * 4
    pure = ((scaled - scaled.round()).abs() < 1e-4).all(dim=1)  # all channels exactly on a level: no blending
    assert pure.float().mean() > 0.3
    assert torch.equal(mask_from_image(out[0])[pure], out[1][pure])


# ------------------------------------------------------------------------------------------------------------
# One interpolation


@pytest.fixture
def grid_sample_calls(monkeypatch):
    calls = []
    real = torch.nn.functional.grid_sample

    def counting(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "grid_sample", counting)
    return calls


def test_aug_transforms_calls_grid_sample_once_per_batch(grid_sample_calls):
    image, mask = blocks()
    tfms = aug_transforms(size=12, min_scale=0.75, flip_vert=True, p_affine=1.0)
    run(tfms, (image, torch.arange(4)), ("image", "category"))
    assert grid_sample_calls == ["bilinear"]
    grid_sample_calls.clear()
    run(tfms, (image, mask, torch.arange(4)), IMG_MASK)
    assert grid_sample_calls == ["bilinear", "nearest"]  # one per spatial member, masks nearest
    grid_sample_calls.clear()
    run(setup_aug_tfms([Rotate(p=1.0), Flip(p=1.0), Zoom(p=1.0)]), (image,), IMG)
    assert grid_sample_calls == ["bilinear"]


def test_user_lists_of_geometric_transforms_interpolate_once(grid_sample_calls, tmp_path):
    """``batch_tfms=[Rotate(...), Flip(...)]`` through DataBlock, a factory or Datasets: one grid_sample."""
    from lamina.data.block import Categorize, CategoryBlock, DataBlock, Datasets
    from lamina.data.splitters import RandomSplitter, using_attr
    from lamina.vision.core import PILImage
    from lamina.vision.data import ImageBlock, ImageDataLoaders
    from lamina.vision.synth import make_image_folder
    from lamina.vision.transforms import Resize, ToTensor

    files = make_image_folder(tmp_path, n_per_class=4, size=(20, 24), classes=("Persian", "pug"))
    is_cat = using_attr(lambda name: name[0].isupper(), "name")
    user = [Rotate(max_deg=40, p=1.), Flip(p=1.), Brightness(p=1.), Contrast(p=1.)]
    common = dict(bs=4, num_workers=0)
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=is_cat, item_tfms=Resize(16), batch_tfms=user)
    dsets = Datasets(files, [[PILImage.create], [is_cat, Categorize]], splits=RandomSplitter(seed=0)(files))
    for dls in (dblock.dataloaders(files, **common),
                ImageDataLoaders.from_path_func(tmp_path, files, is_cat, item_tfms=Resize(16), batch_tfms=user,
                                                **common),
                dsets.dataloaders(after_item=[Resize(16), ToTensor], after_batch=[IntToFloatTensor, *user], **common)):
        assert [type(t) for t in dls.train.after_batch] == [IntToFloatTensor, AffineCoordTfm, LightingTfm]
        assert [type(t) for t in dls.train.after_batch[1].tfms] == [Rotate, Flip]
        grid_sample_calls.clear()
        dls.train.one_batch()
        assert grid_sample_calls == ["bilinear"]


def test_setup_aug_tfms_keeps_others_and_rejects_conflicting_sizes():
    erase = RandomErasing()
    tfms = setup_aug_tfms([Flip(), erase, Brightness(), Rotate(size=8), Contrast()])
    assert [type(t) for t in tfms] == [AffineCoordTfm, LightingTfm, RandomErasing] and tfms[2] is erase
    assert tfms[0].size == (8, 8)
    with pytest.raises(ValueError, match="different output sizes"):
        setup_aug_tfms([Flip(size=8), Rotate(size=10)])


# ------------------------------------------------------------------------------------------------------------
# RandomResizedCropGPU


def test_random_resized_crop_gpu_valid_is_a_centre_crop():
    coords = ramp(2, 17, 25)  # 16 x 24 pixel steps: the centre square spans 2/3 of the width
    out = RandomResizedCropGPU(9)((coords,), IMG, VALID)[0]
    assert out.shape == (2, 2, 9, 9)
    torch.testing.assert_close(out[:, 0, 0, [0, -1]], torch.tensor([[-2 / 3, 2 / 3]] * 2))
    torch.testing.assert_close(out[:, 1, [0, -1], 0], torch.tensor([[-1.0, 1.0]] * 2))
    smaller = RandomResizedCropGPU(9, valid_scale=0.5)((coords,), IMG, VALID)[0]
    torch.testing.assert_close(smaller[:, 0, 0, [0, -1]], torch.tensor([[-1 / 3, 1 / 3]] * 2))


def test_random_resized_crop_gpu_train_window():
    torch.manual_seed(0)
    coords = ramp(64, 17, 25)
    out = RandomResizedCropGPU(9, min_scale=0.25, ratio=(1, 1))((coords,), IMG, TRAIN)[0]
    width = (out[:, 0, 0, -1] - out[:, 0, 0, 0]) / 2 * 24  # in input pixel steps
    height = (out[:, 1, -1, 0] - out[:, 1, 0, 0]) / 2 * 16
    torch.testing.assert_close(width, height)  # ratio (1, 1): square crops
    area = width * height / (24 * 16)
    assert area.min() >= 0.25 - 1e-4 and area.max() <= 1 + 1e-4 and area.std() > 0.05
    assert out.abs().max() <= 1 + 1e-5  # inside the image


# ------------------------------------------------------------------------------------------------------------
# Randomness, dtypes, configs, errors, loaders


def test_per_image_draws_deterministic_given_seed():
    x = torch.rand(1, 3, 12, 12).repeat(6, 1, 1, 1)
    tfms = aug_transforms(p_affine=1.0, p_lighting=1.0)
    torch.manual_seed(5)
    first = run(tfms, (x,), IMG)[0]
    torch.manual_seed(5)
    assert torch.equal(run(tfms, (x,), IMG)[0], first)
    assert not torch.allclose(first[0], first[1])  # each image draws its own parameters
    batchwise = run(aug_transforms(p_affine=1.0, p_lighting=1.0, batch=True), (x,), IMG)[0]
    assert all(torch.equal(batchwise[0], b) for b in batchwise[1:])


def test_bfloat16_images_and_autocast():
    x = torch.rand(2, 3, 12, 12)
    tfms = aug_transforms(size=8, p_affine=1.0, p_lighting=1.0)
    torch.manual_seed(3)
    reference = run(tfms, (x,), IMG)[0]
    torch.manual_seed(3)
    half = run(tfms, (x.to(torch.bfloat16),), IMG)[0]
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), reference, atol=0.02, rtol=0.02)
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = run(tfms, (x,), IMG)[0]
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, reference)


def test_config_round_trip():
    tfms = [IntToFloatTensor(div_mask=255), Normalize.from_stats([0.1, 0.2, 0.3], [0.4, 0.5, 0.6]),
            *aug_transforms(size=(12, 16), min_scale=0.5, flip_vert=True, xtra_tfms=[Saturation(), Hue(max_hue=0.2)]),
            RandomErasing(p=0.3, max_count=2)]
    for tfm in tfms:
        config = json.loads(json.dumps(tfm.to_config()))
        rebuilt = batch_tfm_from_config(config)
        assert type(rebuilt) is type(tfm) and rebuilt.to_config() == config
    rebuilt = batch_tfm_from_config(tfms[1].to_config())
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(rebuilt((x,), IMG)[0], tfms[1]((x,), IMG)[0])
    assert set(BATCH_TFMS) >= {"Normalize", "Flip", "Rotate", "Zoom", "Warp", "RandomResizedCropGPU", "Hue"}
    with pytest.raises(ValueError, match="unknown batch transform 'Sharpen'"):
        batch_tfm_from_config({"name": "Sharpen", "kwargs": {}})


def test_argument_errors():
    with pytest.raises(ValueError, match=r"`p` is a probability .* p=1.5"):
        Flip(p=1.5)
    with pytest.raises(ValueError, match="`pad_mode` must be one of"):
        Rotate(pad_mode="wrap")
    with pytest.raises(ValueError, match="`size` must be a positive int"):
        aug_transforms(size=(8, 8, 8))
    with pytest.raises(ValueError, match="pass size="):
        aug_transforms(min_scale=0.5)
    with pytest.raises(ValueError, match=r"`max_lighting` must be in \[0, 1\)"):
        Brightness(max_lighting=1.0)
    with pytest.raises(ValueError, match=r"one value per image \(4\)"):
        Rotate(p=1.0, draw=[1.0, 2.0])((torch.rand(4, 3, 8, 8),), IMG, TRAIN)


def test_in_a_tensor_data_loader():
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    masks = torch.randint(0, 3, (8, 16, 16), dtype=torch.uint8)
    after_batch = [Normalize.from_stats([0.5] * 3, [0.25] * 3), *aug_transforms(size=8), IntToFloatTensor()]
    for split_idx in (TRAIN, VALID):
        dl = TensorDataLoader((images, masks), bs=4, device="cpu", after_batch=after_batch,
                              kinds=("image", "mask"), split_idx=split_idx)
        xb, yb = dl.one_batch()
        assert xb.shape == (4, 3, 8, 8) and yb.shape == (4, 8, 8) and yb.dtype == torch.int64
        shown = dl.decode((xb, yb))[0]
        assert shown.min() >= 0 and shown.max() <= 1
    valid_shown = dl.decode((xb, yb))[0]
    expected = F.interpolate(images[:4].float() / 255, size=(8, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(valid_shown, expected, atol=1e-5, rtol=1e-5)
    assert math.isclose(after_batch[0].mean.flatten()[0].item(), 0.5)
