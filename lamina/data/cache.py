"""A memory cache of finished samples, for datasets whose samples are the same every epoch.

Decoding an image and running its item transforms costs the same every epoch when nothing in the pipeline
is random: validation sets always, and training sets whose item transforms draw nothing (no random crop or
flip). `SampleCache` keeps those samples after their first load, up to a byte budget:
``$LAMINA_SAMPLE_CACHE_MB`` (default 1024; 0 turns caching off). It is filled in the main process only, so
it helps loaders without worker processes (``num_workers=0``); worker processes load as before (a cache in
each worker would cost memory per worker and end with the worker).

The cache drops everything when the transforms it was filled under change (another list of item
transforms, another split), so a dataset given new transforms never serves stale samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from .transforms import declares

__all__ = ["SampleCache", "cache_budget", "samples_are_fixed"]


def cache_budget() -> int:
    """The cache's budget in bytes, from ``$LAMINA_SAMPLE_CACHE_MB`` (default 1024 MB).

    Raises:
        ValueError: if the variable is not a non-negative number.
    """
    raw = os.environ.get("LAMINA_SAMPLE_CACHE_MB", "1024").strip()
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if mb < 0:
        raise ValueError(f"LAMINA_SAMPLE_CACHE_MB must be a number of megabytes >= 0 (0 turns the sample cache "
                         f"off); received: {raw!r}")
    return int(mb * 2 ** 20)


def samples_are_fixed(item_tfms: Sequence[Any], split_idx: int | None) -> bool:
    """Whether every item transform gives the same output every time on split ``split_idx``.

    Only transforms that say so (an ``is_random(split_idx)`` method answering False) count as fixed: a plain
    function could draw random numbers, so a pipeline holding one is never cached.
    """
    return all(declares(t, "is_random") and not t.is_random(split_idx) for t in item_tfms)


def _nbytes(sample: Any) -> int:
    if isinstance(sample, torch.Tensor):
        return sample.numel() * sample.element_size()
    if isinstance(sample, (tuple, list)):
        return sum(_nbytes(x) for x in sample)
    if callable(getattr(sample, "getbands", None)):  # a Pillow image
        return sample.size[0] * sample.size[1] * len(sample.getbands())
    return 64  # labels and other small Python values


class SampleCache:
    """Finished samples by item index, under a byte budget, valid for one transform configuration.

    Args:
        budget: bytes the cached samples may take (default: `cache_budget()`).
    """

    def __init__(self, budget: int | None = None):
        self.budget = cache_budget() if budget is None else int(budget)
        self.samples: dict[int, Any] = {}
        self.nbytes, self.key = 0, None

    def get(self, i: int, key: Any) -> Any:
        """The sample of item ``i`` cached under configuration ``key``, else None."""
        if key != self.key:
            self.samples.clear()
            self.nbytes, self.key = 0, key
            return None
        return self.samples.get(i)

    def put(self, i: int, key: Any, sample: Any) -> None:
        """Keep ``sample`` for item ``i`` if it fits in the budget (tensors are kept as they are: read-only use)."""
        if key != self.key:
            self.samples.clear()
            self.nbytes, self.key = 0, key
        size = _nbytes(sample)
        if self.nbytes + size <= self.budget:
            self.samples[i] = sample
            self.nbytes += size

    def __len__(self) -> int:
        return len(self.samples)
