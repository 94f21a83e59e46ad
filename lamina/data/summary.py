"""`DataBlock.summary`: print how one sample and one batch are built, and stop at the step that fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from ..core import to_device
from .datasets import Datasets
from .errors import step_name
from .transforms import apply_item_tfms, fuse_tfms

__all__ = ["print_summary", "describe_value"]


def describe_value(x: Any) -> str:
    """A short description: tensors by dtype and shape, images by class, mode and size, others by repr."""
    if isinstance(x, torch.Tensor):
        return f"{type(x).__name__} of shape {tuple(x.shape)}, dtype {str(x.dtype).replace('torch.', '')}"
    if hasattr(x, "mode") and hasattr(x, "size") and not callable(x.size):
        return f"{type(x).__name__} mode={x.mode} size={x.size[0]}x{x.size[1]}"
    if isinstance(x, tuple):
        return "(" + ", ".join(describe_value(o) for o in x) + ")"
    text = repr(x)
    return text if len(text) < 120 else text[:120] + "..."


def _run_step(step: Callable, x: Any, what: str) -> Any:
    try:
        return step(x)
    except Exception:
        print(f"      Error! `{step_name(step)}` failed on {describe_value(x)} ({what}); see the exception below")
        raise


def _one_sample(dsets: Datasets, i: int) -> None:
    print("\nBuilding one sample")
    for j, (eager, lazy) in enumerate(zip(dsets._eager, dsets.lazy_steps)):
        steps = list(eager) + list(lazy)
        print(f"  Pipeline ('{dsets.kinds[j]}'): {' -> '.join(step_name(s) for s in steps) or '(none)'}")
        x = dsets.items[i]
        print(f"    starting from\n      {describe_value(x)}")
        for step in steps:
            x = _run_step(step, x, f"member {j}")
            print(f"    applying {step_name(step)} gives\n      {describe_value(x)}")


def _item_tfms(split: Datasets, k: int) -> list:
    print("\nBuilding one batch")
    print(f"Applying item_tfms to the first sample:\n  Pipeline: {' -> '.join(step_name(t) for t in split.item_tfms)}")
    sample = split._load(split.idxs[k])
    print(f"    starting from\n      {describe_value(sample)}")
    for tfm in split.item_tfms:
        try:
            sample = apply_item_tfms(sample, [tfm], split.split_idx)
        except Exception:
            print(f"      Error! item transform `{step_name(tfm)}` failed; see the exception below")
            raise
        print(f"    applying {step_name(tfm)} gives\n      {describe_value(sample)}")
    return [sample]


def _collate(split: Datasets, samples: list) -> tuple:
    print("\nCollating items in a batch")
    try:
        split.check_batchable(list(range(len(samples))), samples)
        return tuple(default_collate(samples))
    except Exception:
        print("Error! It's not possible to collate your items in a batch. Shapes of each member:")
        for j in range(len(samples[0])):
            shapes = [tuple(s[j].shape) if isinstance(s[j], torch.Tensor) else type(s[j]).__name__ for s in samples]
            print(f"  member {j} ('{split.kinds[j]}'): {shapes}")
        raise


def _batch_tfms(batch: tuple, tfms: Sequence, kinds: Sequence[str], device: Any) -> tuple:
    tfms = fuse_tfms(tfms)  # what the loaders run
    names = " -> ".join(step_name(t) for t in tfms) or "(none)"
    print(f"\nApplying batch_tfms to the batch built\n  Pipeline: {names}")
    batch = to_device(batch, device)
    print(f"    starting from\n      {describe_value(batch)}")
    for tfm in tfms:
        try:
            batch = tfm(batch, kinds, 0)
        except Exception:
            print(f"      Error! batch transform `{step_name(tfm)}` failed; see the exception below")
            raise
        print(f"    applying {step_name(tfm)} gives\n      {describe_value(batch)}")
    return batch


def print_summary(dblock: Any, source: Any, bs: int = 4, show_batch: bool = False, **kwargs: Any) -> None:
    """See `DataBlock.summary`."""
    print("Setting-up type transforms pipelines")
    dsets = dblock.datasets(source, verbose=True)
    split = dsets.train if len(dsets.train) else dsets.valid
    if not len(split):
        raise ValueError("Both datasets are empty: check get_items and the splitter")
    _one_sample(dsets, split.idxs[0])
    samples = _item_tfms(split, 0)
    n = min(bs, len(split))
    print(f"\nAdding the next {n - 1} samples")
    samples += [split[k] for k in range(1, n)]
    batch = _collate(split, samples)
    print(f"      {describe_value(batch)}")
    dls = dblock.dataloaders(source, bs=bs, **{**kwargs, "num_workers": 0})
    batch = _batch_tfms(batch, dblock.batch_tfms, dsets.kinds, dls.device)
    if show_batch:
        dls.show_batch(b=batch)
