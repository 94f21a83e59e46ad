"""Datasets whose items are rows of tensors, batched by slicing tensors stacked once.

A ``TensorDataset``, a tensor or numpy array (each row an item), or a list of equal-shaped ``(x, y)`` pairs
of tensors, numpy arrays or numbers needs no per-item indexing and collation: `stacked_rows` stacks it once
into one tensor per item member, and `stacked_batches` slices those tensors. The batches are those torch's
``DataLoader`` would collate, in the same order for the same generator (it draws its workers' base seed from
the generator before the shuffle, and so do we), so `DataLoader` takes this path whenever it can and results
do not change. Anything else (items with transforms, strings, ragged shapes, a custom ``collate_fn``) keeps
the per-item path.

Example:
    >>> rows = stacked_rows(TensorDataset(x, y))      # (x, y): no copy
    >>> rows = stacked_rows([(x[i], y[i]) for i in range(len(x))])  # stacked once
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["STACK_MAX_ITEMS", "single_member_items", "stacked_batches", "stacked_rows"]

# Lists longer than this keep the per-item path: stacking them would hold a second copy of a large dataset.
STACK_MAX_ITEMS = 10_000_000


def _as_tensor(value: Any) -> torch.Tensor | None:
    """One item member as torch's default collate would see it, or None for what it does not simply stack."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
        return torch.as_tensor(value)
    if isinstance(value, bool):
        return torch.tensor(value)
    if isinstance(value, numbers.Integral):
        return torch.tensor(int(value), dtype=torch.int64)
    if isinstance(value, numbers.Real):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def _stack_items(items: list | tuple) -> tuple[torch.Tensor, ...] | None:
    """Stack a list of equal-shaped tuples (or single values) member by member; None when they differ."""
    if not items or len(items) > STACK_MAX_ITEMS:
        return None
    first = items[0]
    width = len(first) if isinstance(first, (tuple, list)) else None
    columns: list[list[torch.Tensor]] = [[] for _ in range(width or 1)]
    for item in items:
        members = item if width is not None else (item,)
        if width is not None and (not isinstance(item, (tuple, list)) or len(item) != width):
            return None
        for column, member in zip(columns, members):
            tensor = _as_tensor(member)
            if tensor is None or (column and (tensor.shape != column[0].shape or tensor.dtype != column[0].dtype)):
                return None
            column.append(tensor)
    return tuple(torch.stack(column) for column in columns)


def stacked_rows(dataset: Any) -> tuple[torch.Tensor, ...] | None:
    """The dataset as one tensor per item member (rows = items), or None when its items are not rows of tensors.

    A ``TensorDataset`` gives its own tensors (no copy); a tensor gives itself and a numeric numpy array its
    tensor (a batch is then one tensor, as torch collates it); a list or tuple of items is stacked once.
    """
    if type(dataset) is torch.utils.data.TensorDataset:  # a subclass may change __getitem__
        return tuple(dataset.tensors)
    if isinstance(dataset, torch.Tensor) and dataset.dim() > 0:
        return (dataset,)
    if isinstance(dataset, np.ndarray) and dataset.ndim > 0 and dataset.dtype.kind in "biuf":
        return (torch.as_tensor(dataset),)
    if isinstance(dataset, (list, tuple)):
        return _stack_items(dataset)
    return None


def single_member_items(dataset: Any) -> bool:
    """Whether the dataset's items are single values (a tensor's rows, numbers), which torch collates to one
    tensor, rather than tuples or lists (a ``TensorDataset``'s items are tuples, of one tensor or more)."""
    if type(dataset) is torch.utils.data.TensorDataset:
        return False
    if isinstance(dataset, (torch.Tensor, np.ndarray)):
        return True
    return len(dataset) > 0 and not isinstance(dataset[0], (list, tuple))


def stacked_batches(rows: tuple[torch.Tensor, ...], bs: int, shuffle: bool, drop_last: bool,
                    gen: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches of ``rows`` (a tuple per batch) in torch ``DataLoader``'s order for the generator ``gen``."""
    n = len(rows[0])
    torch.empty((), dtype=torch.int64).random_(generator=gen)  # torch's loader draws its base seed first
    order = torch.randperm(n, generator=gen) if shuffle else None
    stop = n - n % bs if drop_last else n
    for start in range(0, stop, bs):
        if order is None:
            batch = tuple(t[start:start + bs] for t in rows)
        else:
            idx = order[start:start + bs]
            batch = tuple(t[idx] for t in rows)
        yield batch
