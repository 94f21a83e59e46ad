"""Bounding boxes: `TensorBBox`, `BBoxBlock`, `BBoxLblBlock`, and `bb_pad`, which batches images whose box
counts differ.

A box is ``(left, top, right, bottom)`` in the pixels of its image. It moves with the image as its four corners
do (`lamina.vision.points`): through the item transforms it stays in pixels and is clipped to the image;
`PointScaler` scales it to [-1, 1]; the batch transforms move its corners and keep the smallest axis-aligned box
around them, clipped to [-1, 1], and a box left empty becomes zeros with the label 0 (``'#na#'``). `bb_pad` drops
empty boxes and pads every item to the batch's largest count with zero boxes labelled 0.

Example:
    >>> coco = DataBlock(blocks=(ImageBlock, BBoxBlock, BBoxLblBlock), get_items=get_image_files,
    ...                  get_y=[lambda o: img2bbox[o.name][0], lambda o: img2bbox[o.name][1]], n_inp=1,
    ...                  item_tfms=Resize(128))
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.block import TransformBlock
from ..data.errors import ReadableKeyError
from ..data.transforms import TypeTransform
from ..data.transforms.vocab import CategoryMap
from .points import PointScaler, TensorPoint

__all__ = ["TensorBBox", "BBoxSetup", "BBoxLabeler", "BBoxBlock", "BBoxLblBlock", "bb_pad", "clip_remove_empty",
           "show_boxes", "get_annotations"]


class TensorBBox(TensorPoint):
    """Boxes in the pixels of their image, one ``(left, top, right, bottom)`` row per box (shape ``(n, 4)``)."""

    n_cols = 4


class BBoxSetup(TypeTransform):
    """The type step of `BBoxBlock`: what ``get_y`` returns (a list of 4-number boxes) → a `TensorBBox`."""

    kind = "bbox"

    def __call__(self, o: Any) -> TensorBBox:
        return o if isinstance(o, TensorBBox) else TensorBBox.create(o)

    def show(self, x: Any, ctx: Any = None, **kwargs: Any) -> Any:
        return show_boxes(x, ctx=ctx, **kwargs)


class BBoxLabeler(TypeTransform):
    """The type step of `BBoxLblBlock`: one label per box → their codes (int64), ``'#na#'`` (the padding) at 0.

    Args:
        vocab: the classes (default: the union of the training labels, sorted).
        add_na: put ``'#na#'`` first (keep it: `bb_pad` pads with code 0).

    Raises:
        KeyError: (when called) for a label that is not in the vocabulary.
    """

    kind = "bbox_label"

    def __init__(self, vocab: Sequence | None = None, add_na: bool = True):
        self.add_na = add_na
        self.vocab = None if vocab is None else CategoryMap(list(vocab), sort=False, add_na=add_na)

    def setup(self, labels: Sequence) -> None:
        if self.vocab is None:
            union = sorted({label for labels_ in labels for label in labels_}, key=str)
            self.vocab = CategoryMap(union, sort=False, add_na=self.add_na)

    @property
    def c(self) -> int | None:
        return None if self.vocab is None else len(self.vocab)

    def __call__(self, labels: Any) -> Tensor:
        if isinstance(labels, Tensor):
            return labels.long()
        codes = []
        for label in labels:
            code = self.vocab.o2i.get(label)
            if code is None:
                raise ReadableKeyError(f"Box label {label!r} was not included in the training dataset (classes: "
                                       f"{list(self.vocab)[:20]}); pass the classes with BBoxLblBlock(vocab=...)")
            codes.append(code)
        return torch.tensor(codes, dtype=torch.long)

    def decode(self, codes: Any) -> list:
        """One label per box, in the boxes' order (an emptied or padding box keeps its place as '#na#')."""
        return [self.vocab[int(c)] for c in torch.as_tensor(codes).flatten()]


class BBoxBlock(TransformBlock):
    """Box targets: ``get_y`` returns a list of ``[left, top, right, bottom]`` pixel boxes per image. Batches
    are padded by `bb_pad`, so images may have different numbers of boxes. No loss is implied: pass yours."""

    def __init__(self) -> None:
        super().__init__(type_tfms=BBoxSetup(), item_tfms=PointScaler(), dls_kwargs={"before_batch": bb_pad},
                         kind="bbox")


class BBoxLblBlock(TransformBlock):
    """The labels of the boxes of a `BBoxBlock`, one per box (give it after the `BBoxBlock`, ``n_inp=1``).

    Args:
        vocab: the classes (default: from the training labels).
        add_na: ``'#na#'`` at code 0, the label of padding boxes.
    """

    def __init__(self, vocab: Sequence | None = None, add_na: bool = True):
        super().__init__(type_tfms=BBoxLabeler(vocab=vocab, add_na=add_na), kind="bbox_label")


def clip_remove_empty(bbox: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """Scaled boxes clipped to [-1, 1], without the ones left empty (no width or height), and their labels."""
    bbox = bbox.as_subclass(Tensor).reshape(-1, 4).clamp(-1, 1)
    keep = (bbox[:, 2] > bbox[:, 0]) & (bbox[:, 3] > bbox[:, 1])
    return bbox[keep], label.reshape(-1)[keep]


def bb_pad(samples: Sequence[tuple], pad_idx: int = 0) -> list[tuple]:
    """Samples ``(image, boxes, labels, ...)`` with their empty boxes removed and padded with zero boxes labelled
    ``pad_idx`` to the largest count among them, so that they can be stacked (a ``before_batch`` function)."""
    if samples and len(samples[0]) < 3:
        raise ValueError(f"bb_pad needs samples (image, boxes, labels); these have {len(samples[0])} members. Put a "
                         "BBoxLblBlock after the BBoxBlock in the DataBlock's blocks (and n_inp=1)")
    cleaned = [(s[0], *clip_remove_empty(s[1], s[2]), *s[3:]) for s in samples]
    most = max((len(s[2]) for s in cleaned), default=0)

    def pad(s: tuple) -> tuple:
        missing = most - len(s[2])
        boxes = torch.cat((s[1], s[1].new_zeros(missing, 4)))
        labels = torch.cat((s[2], s[2].new_full((missing,), pad_idx)))
        return (s[0], boxes, labels, *s[3:])
    return [pad(s) for s in cleaned]


def show_boxes(boxes: Any, ctx: Any = None, labels: Sequence | None = None, hw: tuple[int, int] | None = None,
               color: str = "yellow", **kwargs: Any) -> Any:
    """Draw boxes (pixel coordinates, or scaled ones with ``hw``) on the axis ``ctx``, with their labels;
    zero boxes (padding) are skipped."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .points import unscale_points
    if ctx is None:
        _, ctx = plt.subplots()
    t = torch.as_tensor(boxes).detach().cpu().float().as_subclass(Tensor).reshape(-1, 4)
    keep = t.abs().sum(1) > 0
    if hw is not None:
        t = unscale_points(t, hw)
    for n, (x0, y0, x1, y1) in enumerate(t.tolist()):
        if not keep[n]:
            continue
        ctx.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=2, **kwargs))
        if labels is not None and n < len(labels):
            ctx.text(x0, y0, str(labels[n]), color="white", fontsize=8, backgroundcolor=color, va="top")
    return ctx


def get_annotations(fname: str | os.PathLike, prefix: str | None = None) -> tuple[list, list]:
    """The images and boxes of a COCO-style JSON file: ``(file names, [(boxes, labels), ...])``, one entry per
    image that has boxes, boxes as ``[left, top, right, bottom]`` (COCO stores left, top, width, height).

    Args:
        fname: the JSON file (``images``, ``annotations`` with ``bbox`` and ``category_id``, ``categories``).
        prefix: put before each file name (e.g. the images' folder).

    Raises:
        ValueError: naming the file when a section or field is missing.
    """
    with open(fname, encoding="utf-8") as f:
        data = json.load(f)
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        files = {im["id"]: im["file_name"] for im in data["images"]}
        boxes: dict = {}
        for k, a in enumerate(data["annotations"]):
            if a["image_id"] not in files or a["category_id"] not in names:
                raise ValueError(f"annotation {k} names image_id {a['image_id']!r} / category_id "
                                 f"{a['category_id']!r}, which 'images' / 'categories' do not list")
            left, top, width, height = a["bbox"]
            entry = boxes.setdefault(a["image_id"], ([], []))
            entry[0].append([left, top, left + width, top + height])
            entry[1].append(names[a["category_id"]])
    except (KeyError, TypeError, ValueError) as e:
        what = f"the field {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{fname} is not a COCO annotation file: {what} is missing or malformed. It needs 'images' "
                         "(id, file_name), 'annotations' (image_id, bbox, category_id) and 'categories' (id, name)") from e
    ids = list(boxes)
    return [(prefix or "") + files[i] for i in ids], [boxes[i] for i in ids]
