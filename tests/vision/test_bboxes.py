"""Boxes: moved and clipped with the image by item and batch transforms, padded by `bb_pad` so that images with
different numbers of boxes batch, labels with '#na#' for padding; the COCO-tiny recipe on real boxes (optional)."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.vision.all import *  # noqa: F403  (the star import users write)
from lamina.vision.points import scale_points, unscale_points

H, W = 30, 40


def _boxed(box=(6, 8, 16, 20)):
    """An image with a bright rectangle covering the pixels of ``box`` (left, top, right, bottom; edges)."""
    pixels = np.zeros((H, W, 3), np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 255
    return PILImage.create(pixels), TensorBBox.create([box])


def _bright_box(img, level=100):
    """(left, top, right, bottom) of the pixels brighter than ``level`` (pixel edges)."""
    a = img.float().mean(0).numpy() * 255 if isinstance(img, torch.Tensor) else np.asarray(img).mean(-1)
    rows, cols = np.nonzero(a > level)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


AXIS_ALIGNED = [Resize(24), Resize((20, 32), method='squish'), Resize(24, method='pad', pad_mode='zeros'),
                RandomResizedCrop(24, min_scale=0.6), CropPad(50), RatioResize(20), FlipItem(p=1.),
                DihedralItem(p=1.)]


@pytest.mark.parametrize("tfm", AXIS_ALIGNED, ids=lambda t: repr(t)[:40])
def test_box_follows_the_rectangle_through_item_transforms(tfm):
    random.seed(1)
    checked = 0
    for split in (0, 1) * 4:  # several random draws, so that some keep the whole box
        img, box = _boxed()
        out, moved = tfm((img, box), split_idx=split)
        assert isinstance(moved, TensorBBox) and moved.shape == (1, 4)
        w, h = out.size
        left, top, right, bottom = moved[0].tolist()
        assert 0 <= left <= right <= w and 0 <= top <= bottom <= h  # clipped to the image
        if right - left < 3 or bottom - top < 3 or left <= 0 or top <= 0 or right >= w or bottom >= h:
            continue  # cut by the crop: the bright region is cut the same way, checked below for whole boxes
        assert np.allclose(_bright_box(out), (left, top, right, bottom), atol=1), (tfm, split)
        checked += 1
    assert checked >= 1, f"{tfm!r} cut the box in every draw: nothing was checked"


def test_item_crop_clips_boxes_to_the_image():
    img, _ = _boxed()
    boxes = TensorBBox.create([[2, 2, 10, 10], [30, 20, 39, 29]])
    out, moved = CropPad(16)((img, boxes))  # the centre 16x16: x 12..28, y 7..23
    assert moved.tolist() == [[0, 0, 0, 3], [16, 13, 16, 16]]  # clipped: both are now empty (no width)
    scaled = PointScaler()((image2tensor(out), moved))[1]
    kept, labels = clip_remove_empty(scaled, torch.tensor([1, 2]))
    assert kept.shape == (0, 4) and labels.shape == (0,)


def _batch_of_boxes(bs=6):
    x = torch.zeros(bs, 3, H, W)
    boxes = []
    for i in range(bs):
        left, top = 8 + i, 6 + i // 2
        x[i, :, top:top + 10, left:left + 12] = 1.0
        boxes.append([left, top, left + 12, top + 10])
    return x, scale_points(torch.tensor(boxes, dtype=torch.float32)[:, None, :], (H, W))


@pytest.mark.parametrize("tfm", [Flip(p=1.), Dihedral(p=1.), Zoom(max_zoom=1.4, p=1.),
                                 RandomResizedCropGPU((24, 32), min_scale=0.7), AffineCoordTfm(size=(20, 50))],
                         ids=lambda t: type(t).__name__)
def test_box_follows_the_rectangle_through_axis_aligned_batch_transforms(tfm):
    torch.manual_seed(0)
    x, boxes = _batch_of_boxes()
    labels = torch.ones(len(x), 1, dtype=torch.long)
    out, moved, labels_out = tfm((x, boxes, labels), ("image", "bbox", "bbox_label"), 0)
    hw = tuple(out.shape[-2:])
    pixels = unscale_points(moved, hw)
    for i in range(len(x)):
        left, top, right, bottom = pixels[i, 0].tolist()
        if left <= 0.5 or top <= 0.5 or right >= hw[1] - 0.5 or bottom >= hw[0] - 0.5:
            continue  # clipped by the crop or the zoom
        assert np.allclose(_bright_box(out[i], level=128), (left, top, right, bottom), atol=1), (tfm, i)
    assert torch.equal(labels_out, labels)


def test_rotated_box_holds_the_rectangle_and_empty_boxes_lose_their_label():
    torch.manual_seed(0)
    x, boxes = _batch_of_boxes()
    out, moved, _ = Rotate(max_deg=30, p=1., pad_mode='zeros')((x, boxes, torch.ones(6, 1, dtype=torch.long)),
                                                               ("image", "bbox", "bbox_label"), 0)
    pixels = unscale_points(moved, (H, W))
    for i in range(len(x)):
        left, top, right, bottom = _bright_box(out[i], level=200)
        box = pixels[i, 0].tolist()
        assert box[0] - 1 <= left and box[1] - 1 <= top and right <= box[2] + 1 and bottom <= box[3] + 1
    # a zoom into a corner the box is not in leaves it empty: zeros, and its label becomes 0 ('#na#')
    corner = Zoom(min_zoom=4., max_zoom=4., p=1., draw_x=1., draw_y=1.)
    far = scale_points(torch.tensor([[[1., 1., 6., 6.]]]), (H, W))
    _, gone, label = corner((x[:1], far, torch.tensor([[3]])), ("image", "bbox", "bbox_label"), 0)
    assert gone.abs().sum() == 0 and label.tolist() == [[0]]


@pytest.fixture
def boxes_folder(tmp_path):
    """Images with 1 to 3 bright rectangles, and a COCO-style train.json describing them."""
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    images, annotations = [], []
    for i in range(10):
        pixels = np.zeros((32, 32, 3), np.uint8)
        for n in range(1 + i % 3):
            left, top = int(rng.integers(0, 20)), int(rng.integers(0, 20))
            pixels[top:top + 10, left:left + 10, n] = 255
            annotations.append({"image_id": i, "bbox": [left, top, 10, 10], "category_id": n + 1})
        Image.fromarray(pixels).save(tmp_path / "train" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png"})
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}]
    (tmp_path / "train.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                     "categories": categories}))
    return tmp_path


def _coco_dls(source, size, bs):
    images, lbl_bbox = get_annotations(source/'train.json')
    img2bbox = dict(zip(images, lbl_bbox))
    coco = DataBlock(blocks=(ImageBlock, BBoxBlock, BBoxLblBlock),
                     get_items=get_image_files,
                     splitter=RandomSplitter(seed=0),
                     get_y=[lambda o: img2bbox[o.name][0], lambda o: img2bbox[o.name][1]],
                     item_tfms=Resize(size),
                     batch_tfms=aug_transforms(),
                     n_inp=1)
    return coco.dataloaders(source, bs=bs, num_workers=0), img2bbox


def test_coco_recipe_pads_boxes_and_labels(boxes_folder):
    dls, img2bbox = _coco_dls(boxes_folder, 32, bs=4)
    assert dls.n_inp == 1 and list(dls.vocab) == ['#na#', 'blue', 'green', 'red']
    x, boxes, labels = dls.valid.one_batch()
    counts = [len(img2bbox[dls.valid_ds.items[i].name][0]) for i in dls.valid_ds.idxs[:4]]
    assert boxes.shape == (len(x), max(counts), 4) and labels.shape == (len(x), max(counts))
    for i, n in enumerate(counts):  # validation only resizes: every box is kept, then zero padding labelled 0
        assert (labels[i, :n] > 0).all() and (labels[i, n:] == 0).all() and boxes[i, n:].abs().sum() == 0
    first = dls.valid_ds.items[dls.valid_ds.idxs[0]].name
    expected = scale_points(torch.tensor(img2bbox[first][0], dtype=torch.float32), (32, 32))
    assert torch.allclose(boxes[0, :counts[0]], expected, atol=0.07)  # within a pixel of 32
    axes = dls.valid.show_batch(b=(x, boxes, labels), max_n=4).axes
    assert len(axes[0].patches) == counts[0]  # one rectangle per real box, none for the padding
    _, bb, lb = dls.train.one_batch()
    assert bb.shape[:2] == lb.shape and bb.abs().max() <= 1


def test_bad_annotations_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="bad.json"):
        get_annotations(bad)
    with pytest.raises(ValueError, match="4 values per row"):
        TensorBBox.create([1, 2, 3])
    orphan = tmp_path / "orphan.json"
    orphan.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 3, "name": "cat"}],
                                  "annotations": [{"image_id": 2, "bbox": [0, 0, 1, 1], "category_id": 3}]}))
    with pytest.raises(ValueError, match="orphan.json.*annotation 0 names image_id 2"):
        get_annotations(orphan)
    with pytest.raises(ValueError, match="BBoxLblBlock"):
        bb_pad([(torch.zeros(3, 4, 4), TensorBBox.create([[0, 0, 2, 2]]))])


def test_decoded_labels_keep_their_boxes_places():
    labeler = BBoxLabeler()
    labeler.setup([["cat", "dog"]])
    assert labeler.decode(torch.tensor([1, 0, 2])) == ["cat", "#na#", "dog"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LAMINA_COCO_TINY"),
                    reason="needs the COCO-tiny folder (train/, train.json) named by LAMINA_COCO_TINY")
def test_coco_tiny_real_boxes():
    source = Path(os.environ["LAMINA_COCO_TINY"])
    dls, _ = _coco_dls(source, 128, bs=8)
    x, boxes, labels = dls.train.one_batch()
    assert x.shape == (8, 3, 128, 128) and boxes.shape[:2] == labels.shape
    real = labels > 0
    assert real.any() and (boxes[real][:, 2] > boxes[real][:, 0]).all() and (boxes.abs() <= 1).all()
    assert (boxes[~real].abs().sum(-1) == 0).all()
    dls.show_batch(max_n=4)
