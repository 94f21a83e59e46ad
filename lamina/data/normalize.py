"""`Normalize`: one class that standardises image batches and the continuous columns of a table.

fastai code writes ``Normalize`` both in ``batch_tfms=[..., Normalize.from_stats(*imagenet_stats)]`` and in
``procs=[Categorify, FillMissing, Normalize]``, and a notebook may star-import ``lamina.vision.all`` after
``lamina.tabular.all``. Two classes of the same name would shadow each other there, so there is one, below
the applications, with two roles that share only the name, ``order`` (99: last) and the export registry name:

* **batch transform** on images (``encodes``/``decodes`` of `BatchTransform`): ``(x - mean) / std`` with
  per-channel statistics, given (`from_stats`) or taken from the first batch; exported as
  ``{"name": "Normalize", "kwargs": {"mean", "std", "axes"}}``.
* **tabular proc** (``setup``/``encode``/``decode`` on a table, as `lamina.tabular.procs` describes): each
  continuous column standardised with its training mean and population std; exported as
  ``{"name": "Normalize", "means": {...}, "stds": {...}}``.

`to_config` writes the format of the role the object was fitted for, and `from_config` reads either.

Example:
    >>> batch_tfms = [IntToFloatTensor(), Normalize.from_stats([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    >>> procs = [Categorify, FillMissing, Normalize]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .transforms import BatchTransform, members_of, register_tfm

__all__ = ["Normalize"]


def _stat_shape(stat: Any, axes: tuple[int, ...]) -> Tensor:
    """A statistic as a float32 tensor that broadcasts over ``axes`` (a list of C values -> (1, C, 1, 1))."""
    stat = torch.as_tensor(stat, dtype=torch.float32).detach()
    ndim = len(axes) + 1
    if stat.ndim == ndim:
        return stat
    kept = [d for d in range(ndim) if d not in axes]
    shape = [1] * ndim
    if stat.numel() > 1 and len(kept) == 1:
        shape[kept[0]] = -1
    return stat.reshape(shape)


@register_tfm
class Normalize(BatchTransform):
    """Standardise the images of a batch, or (as a tabular proc) the continuous columns of a table.

    As a batch transform, ``(x - mean) / std`` on the images of a batch (both splits); ``decodes`` undoes it
    for showing. The statistics broadcast to ``(1, C, 1, 1)`` and move to the batch's device (and dtype) the
    first time they meet it. Built without statistics, it computes them from the first batch it sees (the
    mean and standard deviation over ``axes``), so build it with `from_stats` for reproducible exports.

    As a tabular proc (the class or ``Normalize()`` in ``procs``), `setup` learns each continuous column's
    training mean and population std (+1e-7), kept in ``means`` and ``stds``; `encode` standardises rows with
    them and `decode` undoes it.

    Args:
        mean: the per-channel means (a list of C values, or a tensor that broadcasts); images only.
        std: the per-channel standard deviations; images only.
        axes: the axes the image statistics are shared over (and reduced over when computed).

    Example:
        >>> norm = Normalize.from_stats([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        >>> to = TabularPandas(df, [Categorify, FillMissing, Normalize], cont_names=['age'], ...)
    """

    order = 99  # after the lighting transforms (40) on images; after FillMissing (0) and Categorify (1) on tables

    def __init__(self, mean: Sequence[float] | Tensor | None = None, std: Sequence[float] | Tensor | None = None,
                 axes: Sequence[int] = (0, 2, 3)):
        if (mean is None) != (std is None):
            raise ValueError("Normalize needs both `mean` and `std`, or neither (to compute them from a batch); "
                             f"received: mean={mean!r}, std={std!r}")
        self.axes = tuple(axes)
        self.mean = None if mean is None else _stat_shape(mean, self.axes)
        self.std = None if std is None else _stat_shape(std, self.axes)
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self.means: dict[str, float] | None = None  # per continuous column, once fitted on a table
        self.stds: dict[str, float] | None = None

    @classmethod
    def from_stats(cls, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, dim: int = 1, ndim: int = 4,
                   cuda: bool = True) -> "Normalize":
        """`Normalize` with fixed statistics along ``dim`` of ``ndim``-dimensional batches.

        ``cuda`` is accepted for compatibility: the statistics follow each batch's device lazily.
        """
        shape = [1] * ndim
        shape[dim] = -1
        axes = tuple(d for d in range(ndim) if d != dim)
        return cls(torch.as_tensor(mean, dtype=torch.float32).reshape(shape),
                   torch.as_tensor(std, dtype=torch.float32).reshape(shape), axes=axes)

    # --- the batch transform (images) ---------------------------------------------------------------
    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.mean is None:  # no statistics given: take them from this (the first) batch, on its device
            self.mean = x.float().mean(dim=self.axes, keepdim=True)
            self.std = x.float().std(dim=self.axes, keepdim=True) + 1e-7
            self._cache.clear()
        key = (x.device, x.dtype)
        if key not in self._cache:
            for d, (have, want) in enumerate(zip(self.mean.shape, x.shape)):
                if have not in (1, want):
                    raise ValueError(f"Normalize has statistics of shape {tuple(self.mean.shape)} but the images have "
                                     f"shape {tuple(x.shape)} (dimension {d}: {have} vs {want}); pass one mean and "
                                     "std per channel, or Normalize() to compute them from a batch")
            self._cache[key] = (self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype))
        return self._cache[key]

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        out = list(batch)
        for i in members_of(batch, kinds, "image"):
            if not batch[i].is_floating_point():
                raise TypeError(f"Normalize expects float images but received {batch[i].dtype}: put "
                                "IntToFloatTensor() before it in batch_tfms")
            mean, std = self._stats(batch[i])
            out[i] = (batch[i] - mean) / std
        return tuple(out)

    def decodes(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        if self.mean is None:
            return batch
        out = list(batch)
        for i in members_of(batch, kinds, "image"):
            mean, std = self._stats(batch[i])
            out[i] = batch[i] * std + mean
        return tuple(out)

    # --- the tabular proc (a table is a dict column -> 1-d float64 array; ``names.conts`` lists the
    # continuous columns) --------------------------------------------------------------------------
    def setup(self, train: dict, names: Any) -> None:
        """Learn each continuous column's mean and population std from the training rows.

        Raises:
            ValueError: for a `Normalize` built with image statistics (`from_stats`), which a table cannot use.
        """
        if self.mean is not None:
            raise ValueError("This Normalize holds image statistics (from `Normalize.from_stats` or mean=/std=), "
                             "which a table cannot use: in `procs`, pass Normalize (the class) or Normalize(), "
                             "which learn each continuous column's statistics from the training rows")
        self.means = {col: float(np.nanmean(train[col])) for col in names.conts}
        self.stds = {col: float(np.nanstd(train[col])) + 1e-7 for col in names.conts}

    def encode(self, table: dict, names: Any) -> None:
        """Standardise the continuous columns of ``table`` in place."""
        for col in names.conts:
            table[col] = (table[col] - self.means[col]) / self.stds[col]

    def decode(self, table: dict, names: Any) -> None:
        """Undo `encode` in place."""
        for col in names.conts:
            table[col] = np.asarray(table[col], dtype=np.float64) * self.stds[col] + self.means[col]

    # --- export ---------------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """A JSON-safe description, in the format of the role this object was fitted for (see the module)."""
        if self.means is not None:
            return {"name": "Normalize", "means": self.means, "stds": self.stds}
        flat = lambda t: None if t is None else t.detach().cpu().flatten().tolist()  # noqa: E731
        return {"name": "Normalize", "kwargs": {"mean": flat(self.mean), "std": flat(self.std),
                                                "axes": list(self.axes)}}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Normalize":
        """Rebuild from `to_config()`'s dict, in either format (image statistics, or fitted table columns)."""
        if "means" in cfg:
            proc = cls()
            proc.means, proc.stds = dict(cfg["means"]), dict(cfg["stds"])
            return proc
        return cls(**dict(cfg.get("kwargs") or {}))

    def __repr__(self) -> str:
        if self.means is not None:
            return f"Normalize(means={self.means}, stds={self.stds})"
        return f"Normalize(mean={self.mean!r}, std={self.std!r}, axes={self.axes!r})"
