"""Running transforms: sorting by ``order``, applying item and batch transforms, merging lists, fusing neighbours.

`fuse_tfms` is the one fuser: the loaders run it on their batch transforms, `DataBlock.summary` shows its
result, and vision's ``setup_aug_tfms`` (fastai's name) is it after gathering each fuse group together.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from typing import Any

from .base import tfm_hook
from .steps import declares

__all__ = ["sort_tfms", "apply_item_tfms", "apply_batch_tfms", "undo_batch_tfms", "fuse_tfms", "merge_tfms",
           "draft_size"]


def sort_tfms(tfms: Sequence[Any], reverse: bool = False) -> list:
    """``tfms`` in ascending ``order`` (0 for a transform without one); equal orders keep their list order."""
    return sorted(tfms, key=lambda t: tfm_hook(t, "order"), reverse=reverse)


def apply_item_tfms(sample: tuple, tfms: Sequence[Callable], split_idx: int | None) -> tuple:
    """Run item transforms over one sample.

    A transform with an ``order`` attribute (lamina's item transforms) receives the whole tuple and the split;
    a plain function is applied to each member.
    """
    for tfm in tfms:
        if declares(tfm, "order"):
            sample = tfm(sample, split_idx=split_idx)
        else:
            sample = tuple(tfm(x) for x in sample)
    return sample


def apply_batch_tfms(batch: tuple, tfms: Sequence[Callable], kinds: Sequence[str], split_idx: int) -> tuple:
    """Run ``tfms`` in ``order`` over ``batch``."""
    for tfm in sort_tfms(tfms):
        batch = tfm(batch, kinds, split_idx)
    return batch


def undo_batch_tfms(batch: tuple, tfms: Sequence[Callable], kinds: Sequence[str]) -> tuple:
    """Undo the batch transforms that can be undone (their ``decodes``, e.g. normalisation), last first.

    A transform with a ``decode_batch(batch, kinds)`` hook (a mid-level ``Transform``, whose ``decodes`` takes one
    value) is undone through it instead."""
    for tfm in sort_tfms(tfms, reverse=True):
        if declares(tfm, "decode_batch"):
            batch = tfm.decode_batch(batch, kinds)
        elif declares(tfm, "decodes"):
            batch = tfm.decodes(batch, kinds)
    return batch


def fuse_tfms(tfms: Sequence) -> list:
    """Batch transforms sorted by ``order``, each run of neighbours with the same ``fuse_group`` key replaced by
    the first one's classmethod ``fuse(run) -> list`` (runs of one are kept). E.g. geometric transforms of
    `lamina.vision.augment` become one ``AffineCoordTfm``: one interpolation.

    Example:
        >>> fuse_tfms([IntToFloatTensor(), Rotate(p=1.), Flip(p=1.)])   # [IntToFloatTensor, AffineCoordTfm]
    """
    out: list = []
    run: list = []
    for tfm in [*sort_tfms(tfms), None]:
        key = None if tfm is None else tfm_hook(tfm, "fuse_group")
        if run and (key is None or key != run[0].fuse_group):
            out += type(run[0]).fuse(run) if len(run) > 1 else run
            run = []
        if key is not None:
            run.append(tfm)
        elif tfm is not None:
            out.append(tfm)
    return out


def _tfm_key(t: Any) -> Any:
    """Transforms are de-duplicated by class; plain functions only by identity."""
    plain = isinstance(t, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial))
    return id(t) if plain else type(t)


def merge_tfms(defaults: Sequence, user: Any) -> list:
    """Block defaults + the user's transforms, one per class (the user's instance wins), sorted by ``order``.

    ``user`` may be one transform, a list, or None; classes are instantiated.
    """
    user = [] if user is None else (list(user) if isinstance(user, (list, tuple)) else [user])
    user = [t() if isinstance(t, type) else t for t in user]
    user_keys = {_tfm_key(t) for t in user}
    merged, seen = [], set()
    for t in [t for t in defaults if _tfm_key(t) not in user_keys] + user:
        if _tfm_key(t) not in seen:
            seen.add(_tfm_key(t))
            merged.append(t)
    return sort_tfms(merged)


def draft_size(item_tfms: Sequence) -> tuple[int, int] | None:
    """The smallest decoded size (h, w) the item transforms need, if the first one says (its ``draft_size``).

    Only a sizing transform that runs first knows how small the image may be decoded; anything else
    first (a custom transform) means full-size decoding.
    """
    if not item_tfms or not declares(item_tfms[0], "draft_size"):
        return None
    return item_tfms[0].draft_size()
