"""Keypoints: a point follows a marked pixel through every geometric item and batch transform, scaling to [-1, 1]
and back, and the book's head-pose (BIWI) section on tiny images made here."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.vision.all import *  # noqa: F403  (the book's star import)
from lamina.vision.points import scale_points, unscale_points

from ..fresh import fresh_json

H, W = 30, 40


def _marked(x=7, y=11):
    """An image with a bright 3x3 mark centred on column x, row y (brightest there: a single pixel can fade below
    its mirror image when shrunk), and the point at that pixel's centre."""
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 128
    pixels[y, x] = 255
    return PILImage.create(pixels), TensorPoint.create([[x + 0.5, y + 0.5]])


def _brightness(img):
    """HxW brightness of a Pillow image or a CxHxW tensor."""
    return img.float().sum(0).numpy() if isinstance(img, torch.Tensor) else np.asarray(img).sum(-1).astype(float)


def _follows(img, px, py):
    """Whether the brightest pixel of ``img`` is within a pixel of the point (px, py): reflection padding can
    mirror the mark, so the test is that the pixels around the point hold the image's maximum."""
    a = _brightness(img)
    col, row = int(px), int(py)  # the pixel the point falls in (pixel edges at integers)
    around = a[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
    return around.size > 0 and around.max() >= 0.9 * a.max() > 0


ITEM_TFMS = [Resize(24), Resize((20, 32), method='squish'), Resize(24, method='pad', pad_mode='zeros'),
             Resize(24, method='pad'), RandomResizedCrop(24, min_scale=0.5), RandomCrop(20), CropPad(50),
             CropPad(16, pad_mode='reflection'), RatioResize(20), FlipItem(p=1.), DihedralItem(p=1.)]


@pytest.mark.parametrize("tfm", ITEM_TFMS, ids=lambda t: repr(t)[:40])
def test_point_follows_the_marked_pixel_through_item_transforms(tfm):
    random.seed(0)
    checked = 0
    for trial in range(6):
        img, point = _marked(x=5 + 5 * trial, y=4 + 4 * trial)
        for split in (0, 1):
            out, moved = tfm((img, point), split_idx=split)
            assert isinstance(moved, TensorPoint) and moved.shape == (1, 2)
            (px, py), (w, h) = moved[0].tolist(), out.size
            if not (1 <= px <= w - 1 and 1 <= py <= h - 1):
                continue  # cropped out: no pixel left to follow
            assert _follows(out, px, py), (tfm, split, (px, py))
            checked += 1
    assert checked >= 4


def _batch(bs=8, seed=0):
    """Images with a bright 3x3 spot (brightest at its centre) and the scaled points at the spots' centres."""
    rng = np.random.default_rng(seed)
    x, pts = torch.zeros(bs, 3, H, W), []
    for i in range(bs):
        px, py = int(rng.integers(8, W - 8)), int(rng.integers(8, H - 8))
        x[i, :, py - 1:py + 2, px - 1:px + 2] = 0.5
        x[i, :, py, px] = 1.0
        pts.append([px + 0.5, py + 0.5])
    return x, scale_points(torch.tensor(pts)[:, None, :], (H, W))


def _batch_tfms(align_corners):
    geo = {'p': 1., 'align_corners': align_corners}
    return [Flip(**geo), Dihedral(**geo), Rotate(max_deg=40, **geo), Zoom(max_zoom=1.5, **geo),
            Warp(magnitude=0.3, **geo), RandomResizedCropGPU((24, 32), min_scale=0.5, align_corners=align_corners),
            AffineCoordTfm(size=(20, 50), align_corners=align_corners),
            aug_transforms(size=(24, 32), align_corners=align_corners)[0]]


@pytest.mark.parametrize("align_corners", [True, False])
def test_point_follows_the_marked_pixel_through_batch_transforms(align_corners):
    torch.manual_seed(0)
    for tfm in _batch_tfms(align_corners):
        for split in (0, 1):
            x, points = _batch()
            out, moved = tfm((x, points), ("image", "point"), split)
            hw = tuple(out.shape[-2:])
            pixels = unscale_points(moved, hw)
            checked = 0
            for i in range(len(x)):
                px, py = pixels[i, 0].tolist()
                if 1 <= px <= hw[1] - 1 and 1 <= py <= hw[0] - 1:
                    assert _follows(out[i], px, py), (tfm, split, i, (px, py))
                    checked += 1
            assert checked >= 4, tfm


def test_scaling_to_minus_one_one_and_back():
    hw = (30, 40)
    pixels = torch.tensor([[0., 0.], [40., 30.], [20., 15.]])
    scaled = scale_points(pixels, hw)
    assert scaled.tolist() == [[-1., -1.], [1., 1.], [0., 0.]]  # image edges at ±1, as fastai
    assert torch.allclose(unscale_points(scaled, hw), pixels)
    img, point = _marked(x=9, y=3)
    _, out = PointScaler()((image2tensor(img), point))
    assert type(out) is torch.Tensor and torch.allclose(out, torch.tensor([[9.5 * 2 / 40 - 1, 3.5 * 2 / 30 - 1]]))
    _, swapped = PointScaler(y_first=True)((image2tensor(img), TensorPoint.create([[3.5, 9.5]])))
    assert torch.allclose(swapped, out)
    with pytest.raises(ValueError, match="ImageBlock"):
        PointScaler()((point,))
    with pytest.raises(ValueError, match="pairs"):
        TensorPoint.create([1., 2., 3.])


@pytest.fixture
def biwi(tmp_path):
    """Two folders of frames with a bright square (the 'head') and its centre in a text file, as BIWI's pose files."""
    rng = np.random.default_rng(0)
    for folder in ('01', '13'):
        (tmp_path / folder).mkdir()
        for i in range(8):
            pixels = np.full((24, 32, 3), 30, np.uint8)
            x, y = int(rng.integers(6, 26)), int(rng.integers(6, 18))
            pixels[y - 2:y + 3, x - 2:x + 3] = 230
            Image.fromarray(pixels).save(tmp_path / folder / f'frame_{i:05d}_rgb.png')
            (tmp_path / folder / f'frame_{i:05d}_pose.txt').write_text(f"{x + 0.5} {y + 0.5}")
    return tmp_path


@pytest.mark.slow
def test_head_pose_chapter6(biwi, tmp_path):
    path = biwi
    def img2pose(x): return Path(f'{str(x)[:-7]}pose.txt')  # noqa: E704
    def get_ctr(f):
        c1, c2 = np.loadtxt(img2pose(f))
        return tensor([c1, c2])
    biwi_block = DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_items=get_image_files,
        get_y=get_ctr,
        splitter=FuncSplitter(lambda o: o.parent.name == '13'),
        batch_tfms=aug_transforms(size=(12, 16)),  # the book: size=(240,320), on 480x640 frames
    )
    dls = biwi_block.dataloaders(path, bs=4, num_workers=0)
    dls.show_batch(max_n=4, figsize=(8, 6))
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 12, 16) and yb.shape == (4, 1, 2)
    assert dls.c == 2 and isinstance(dls.loss_func, MSELossFlat)
    vb = dls.valid.one_batch()[1]  # validation: only resized to half, so the points are the files' centres / 2
    first = np.loadtxt(img2pose(dls.valid_ds.items[dls.valid_ds.idxs[0]]))
    assert torch.allclose(unscale_points(vb[0, 0], (12, 16)), torch.tensor(first / 2, dtype=torch.float32), atol=0.5)

    learn = vision_learner(dls, resnet18, y_range=(-1, 1), pretrained=False)
    assert isinstance(learn.model[-1][-1], SigmoidRange)
    learn.fine_tune(1, 1e-2)
    learn.show_results(ds_idx=1, nrows=2, figsize=(6, 8))
    with pytest.raises(ValueError, match="'point'"):
        ClassificationInterpretation.from_learner(learn)
    frame = path/'13'/'frame_00000_rgb.png'
    pixels, scaled, _ = learn.predict(frame)
    assert isinstance(pixels, TensorPoint) and pixels.shape == (1, 2)
    assert torch.allclose(pixels, unscale_points(scaled.reshape(1, 2), (12, 16)))
    assert -1 <= float(scaled.min()) <= float(scaled.max()) <= 1

    learn.export(tmp_path/'points.pkl')
    code = ("import json\nfrom lamina.vision.all import *\n"
            f"learn = load_learner(r'{tmp_path/'points.pkl'}')\n"
            f"pixels, scaled, _ = learn.predict(r'{frame}')\n"
            "print(json.dumps([pixels.tolist(), scaled.tolist(), type(learn.loss_func).__name__]))")
    pixels_again, scaled_again, loss_name = fresh_json(code)
    assert np.allclose(scaled_again, scaled.tolist(), atol=1e-5) and np.allclose(pixels_again, pixels.tolist())
    assert loss_name == "MSELossFlat"
