"""The early, named failures of a `Datasets`: checks that turn a confusing error later (a model that learns
nothing, a ``torch.stack`` shape error, a grid sample of mismatched sizes) into one that names the items now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import getter_name
from .transforms import step_hook

__all__ = ["check_classes", "check_mask_sizes", "check_batchable"]


def check_classes(dsets: Any) -> None:
    """Raise a ValueError when a single-label classification target has one class in the training items
    (the model would learn to answer it with probability 1 and a loss of 0, and learn nothing)."""
    for j in range(dsets.n_inp, len(dsets.kinds)):
        step = dsets.type_steps[j]
        if dsets.kinds[j] != "category" or step is None or not dsets.splits[0] or step not in dsets._eager[j]:
            continue
        first = int(dsets._values[dsets.splits[0][0]][j])
        if any(int(dsets._values[i][j]) != first for i in dsets.splits[0]):  # stops at the second class
            continue
        decode = step_hook(step, "decode")
        label = decode(first) if decode is not None else "?"
        getters = dsets._eager[j][:dsets._eager[j].index(step)]
        source = " then ".join(getter_name(g) for g in getters) if getters else "the items themselves"
        vocab = list(step_hook(step, "vocab") or [])
        listed = f"; the vocab lists {vocab[:20]}, but the training items use one" if len(vocab) > 1 else ""
        raise ValueError(f"Every one of the {len(dsets.splits[0])} training items has the label {str(label)!r} "
                         f"(from {source}{listed}): a classifier needs at least two classes. Check the label "
                         f"function, folders or label column (they give {str(label)!r} for every item) and that "
                         "the data holds items of each class")


def check_mask_sizes(dsets: Any, sample: Sequence, i: int) -> None:
    """Raise a ValueError naming both files when the mask of item ``i`` does not have its image's size."""
    if "mask" not in dsets.kinds or "image" not in dsets.kinds:
        return
    j_img, j_mask = dsets.kinds.index("image"), dsets.kinds.index("mask")
    if j_mask >= len(sample):
        return
    img, mask = sample[j_img], sample[j_mask]
    if hasattr(img, "size") and hasattr(mask, "size") and not callable(img.size) and img.size != mask.size:
        raise ValueError(f"The mask {dsets.source_name(i, j_mask)} is {mask.size[0]}x{mask.size[1]} "
                         f"(width x height) but its image {dsets.source_name(i, j_img)} is "
                         f"{img.size[0]}x{img.size[1]}: a mask must have the size of its image. Check the label "
                         "function, or fix the files")


# Members whose length differs by item, padded to one length by a ``before_batch`` function (`bb_pad`).
RAGGED_KINDS = ("bbox", "bbox_label")


def check_batchable(dsets: Any, ks: Sequence[int], samples: Sequence[tuple]) -> None:
    """Raise a ValueError naming two items whose members differ in shape (they could not be stacked)."""
    for j in range(len(samples[0]) if samples else 0):
        if j < len(dsets.kinds) and dsets.kinds[j] in RAGGED_KINDS:
            continue
        shapes = [tuple(s[j].shape) if isinstance(s[j], torch.Tensor) else None for s in samples]
        first = shapes[0]
        odd = next((n for n, sh in enumerate(shapes) if sh != first and sh is not None), None)
        if first is None or odd is None:
            continue
        a, b = dsets.idxs[ks[0]], dsets.idxs[ks[odd]]
        kind = dsets.kinds[j] if j < len(dsets.kinds) else "member"
        fix = ("add an item transform that gives every image the same size, e.g. item_tfms=Resize(224) "
               "(or RandomResizedCrop(224))") if kind in ("image", "mask") else "make every item the same shape"
        raise ValueError(f"Cannot batch the '{kind}' of these items: {dsets.source_name(a, j)} gives shape {first} "
                         f"but {dsets.source_name(b, j)} gives shape {shapes[odd]}. Items in a batch must have "
                         f"the same shape: {fix}")
