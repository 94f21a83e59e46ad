"""One data loader: batches from a dataset, moved to the device, then batch transforms on the device.

Two loaders share one small interface (``__iter__``, ``__len__``, ``bs``, ``device``, ``dataset``,
``split_idx``, ``one_batch()``, ``new()``):

* `DataLoader` wraps a ``torch.utils.data.DataLoader`` (item transforms run in worker processes); a dataset
  whose items are rows of tensors (a ``TensorDataset`` ...) is stacked once and sliced instead
  (`lamina.data.stacked`),
* `TensorDataLoader` slices tensors built once (tabular, collab, synthetic data): no per-row Python.

`lamina.data.loaders.DataLoaders` pairs a training and a validation loader.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from ..book_tools import defaults
from ..core import as_members, default_device, seed_worker, to_cpu, to_device
from ..foundation import L
from .stacked import single_member_items, stacked_batches, stacked_rows
from .transforms import apply_batch_tfms, undo_batch_tfms

__all__ = ["DataLoader", "TensorDataLoader", "BeforeBatchCollate", "GATHER_BATCHES", "default_num_workers",
           "from_torch_loader", "split_loader_kwargs"]


def default_num_workers() -> int:
    """Worker processes for loading: one per CPU in ``defaults.cpus`` (the usable CPUs; set it to 0 to load in
    the main process, as in fastai), at most 8, and none on a one-CPU machine."""
    cpus = defaults.cpus
    return 0 if cpus <= 1 else min(cpus, 8)


_LOADER_KWARGS = {"pin_memory", "persistent_workers", "seed"}


def split_loader_kwargs(kwargs: dict, dl_type: Any) -> tuple[dict, dict]:
    """``kwargs`` for both loaders and for the validation loader only (``val_`` prefix), checked.

    Raises:
        TypeError: naming unknown arguments, or a ``dl_type`` other than `DataLoader`.
    """
    if dl_type is not None and dl_type is not DataLoader:
        raise TypeError(f"lamina has one loader class, lamina.data.loaders.DataLoader; received: dl_type={dl_type!r}. "
                        "Leave dl_type out (custom batching goes in item or batch transforms)")
    common = {k: v for k, v in kwargs.items() if not k.startswith("val_")}
    valid_only = {k[4:]: v for k, v in kwargs.items() if k.startswith("val_")}
    unknown = sorted(set(common) - _LOADER_KWARGS) + sorted(
        f"val_{k}" for k in set(valid_only) - _LOADER_KWARGS - {"num_workers", "drop_last"})
    if unknown:
        raise TypeError(f"Unknown DataLoader arguments {unknown}; known: bs, val_bs, shuffle, val_shuffle, n, "
                        "num_workers, device, drop_last, dl_kwargs, pin_memory, persistent_workers, seed, timeout "
                        "(and val_-prefixed versions)")
    return common, valid_only


class BeforeBatchCollate:
    """A loader's ``collate_fn``: ``before_batch`` on the list of samples, then torch's default stacking
    (a class, not a closure, so that worker processes can receive it)."""

    def __init__(self, before_batch: Callable):
        self.before_batch = before_batch

    def __call__(self, samples: list) -> Any:
        return default_collate(self.before_batch(samples))


class _LoaderBase:
    """What both loaders share: the device, the batch transforms, epochs seen (for exact resume).

    Attributes:
        dls: the `DataLoaders` this loader belongs to (set by it), or None.
        show, show_results: how the application draws a batch and predictions (``show(dls, batch, max_n=...)``),
            set by application DataLoaders; None for plain tensors.
    """

    dls: Any = None
    show: Callable[..., Any] | None = None
    show_results: Callable[..., Any] | None = None

    def __init__(self, bs: int, shuffle: bool, drop_last: bool, device: torch.device | str | None,
                 after_batch: Sequence[Callable] | None, kinds: Sequence[str] | None, split_idx: int,
                 seed: int | None):
        if not isinstance(bs, int) or bs < 1:
            raise ValueError(f"`bs` must be a positive integer; received: bs={bs!r}")
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last
        self.device = torch.device(device) if device is not None else default_device()
        self.after_batch = list(after_batch or [])
        self.kinds = tuple(kinds or ())
        self.split_idx = split_idx
        # one seed per loader, drawn from torch's generator so `set_seed` makes runs repeat; the
        # shuffle of epoch e uses seed + e, so resuming at an epoch reproduces its order exactly
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed
        self.epochs_seen = 0

    def _epoch_generator(self) -> torch.Generator:
        gen = torch.Generator()
        gen.manual_seed(self.seed + 7919 * self.epochs_seen)
        self.epochs_seen += 1
        return gen

    def _finish(self, batch: Any, on_device: bool = False) -> tuple:
        if not on_device:
            batch = to_device(batch, self.device)
        batch = tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)
        if not self.after_batch:
            return batch
        return apply_batch_tfms(batch, self.after_batch, self.kinds, self.split_idx)

    def to(self, device: torch.device | str) -> "_LoaderBase":
        """Move future batches (and device-resident tensors) to ``device``."""
        self.device = torch.device(device)
        return self

    def one_batch(self) -> Any:
        """The first batch, without worker processes and without advancing the epoch count."""
        saved = self.epochs_seen
        loader = self.new(num_workers=0) if isinstance(self, DataLoader) else self
        try:
            return next(iter(loader))
        finally:
            self.epochs_seen = saved

    def show_batch(self, b: tuple | None = None, max_n: int = 9, **kwargs: Any) -> Any:
        """Show a batch of this loader (default: its first) the way the application shows its data.

        Returns:
            What the application's show function returns: the figure for images (shown once in a notebook),
            None for tables (displayed or printed).

        Raises:
            NotImplementedError: when the data has no way of showing itself (plain tensors).
        """
        if self.show is None or self.dls is None:
            raise NotImplementedError("This data has no show_batch: it was built from plain tensors. "
                                      "Build it with an application factory (ImageDataLoaders, ...)")
        return self.show(self.dls, self.one_batch() if b is None else b, max_n=max_n, **kwargs)

    def decode(self, batch: Any) -> tuple:
        """The batch with the batch transforms that can be undone undone (e.g. normalisation), for showing."""
        return undo_batch_tfms(tuple(as_members(batch)), self.after_batch, self.kinds)

    def decode_batch(self, batch: Any, max_n: int = 9, full: bool = True) -> L:
        """The first ``max_n`` samples of a batch, each decoded as far as its dataset can (`decode`, then the
        dataset's ``decode``: class indices back to labels), on the CPU."""
        batch = to_cpu(self.decode(batch))
        n = min(max_n, len(batch[0])) if batch else 0
        samples = [tuple(member[i] for member in batch) for i in range(n)]
        decode = getattr(self.dataset, "decode", None) if full else None
        return L(decode(s) if decode is not None else s for s in samples)

    @property
    def n(self) -> int:
        return len(self.dataset)


def _stop_workers(batches: Any) -> None:
    """Stop the worker processes of a torch loader iterator that ended early (an error in an item, a ``break``).

    torch stops them when the iterator is garbage-collected, but an error re-raised from a worker keeps the
    iterator in a reference cycle (the exception's traceback holds its frames) until the next full collection.
    Until then its workers stay alive, and every process forked meanwhile (the next loader's workers) inherits
    a copy; when such a process collects that copy, torch's clean-up runs there and prints "Exception ignored
    ... AssertionError: can only test a child process" after the real error. Stopping the workers here, in the
    process that started them, leaves nothing for a later clean-up to do. torch has no public way to close the
    iterator; ``_shutdown_workers`` is what its own ``__del__`` calls, and does nothing when called twice.
    """
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _check_indexable(dataset: Any) -> None:
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(f"`dataset` must have a length and be indexable (a list, a Datasets, a torch Dataset); "
                        f"received: dataset of type {type(dataset).__name__}. Wrap an iterable in list(...) first")


class DataLoader(_LoaderBase):
    """Batches from a map-style dataset through a torch DataLoader, then device and batch transforms.

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``): a `Datasets`, a list of ``(x, y)`` tuples,
            a ``range``, an `L` ...
        bs: batch size (``batch_size`` is torch's and fastai's other name for it).
        shuffle: draw a new order every epoch.
        drop_last: drop the last incomplete batch.
        num_workers: worker processes for item loading (0 = in this process).
        device: where batches go (default `default_device()`).
        after_batch: batch transforms run on the device.
        collate_fn: how items become a batch (torch's default collate when None).
        kinds: what each batch member is, e.g. ``('image', 'category')``.
        split_idx: 0 for training, 1 for validation (decides which transforms run).
        pin_memory: pinned host memory before the copy (default: when the device is CUDA).
        persistent_workers: keep the workers between epochs.
        seed: the base seed of the shuffles (drawn from torch's generator when None).

    Example:
        >>> dl = DataLoader(list(zip(x_train, y_train)), batch_size=256, shuffle=True)
        >>> xb, yb = first(dl)

    Raises:
        TypeError: for a dataset that cannot be indexed, or ``bs`` and ``batch_size`` that disagree.
    """

    def __init__(self, dataset: Dataset, bs: int | None = None, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 0, device: torch.device | str | None = None,
                 after_batch: Sequence[Callable] | None = None, collate_fn: Callable | None = None,
                 kinds: Sequence[str] | None = None, split_idx: int = 0, pin_memory: bool | None = None,
                 persistent_workers: bool = False, seed: int | None = None, batch_size: int | None = None):
        _check_indexable(dataset)
        if batch_size is not None and bs not in (None, batch_size):
            raise TypeError(f"`bs` and `batch_size` name the same thing; received bs={bs!r}, "
                            f"batch_size={batch_size!r}. Pass one of them")
        bs = next((b for b in (bs, batch_size) if b is not None), 64)
        super().__init__(bs, shuffle, drop_last, device, after_batch, kinds, split_idx, seed)
        self.dataset, self.num_workers, self.collate_fn = dataset, num_workers, collate_fn
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self._torch_dl = None
        self._rows: tuple | None = None  # the dataset stacked (`lamina.data.stacked`), built on first use
        self._rows_checked = False

    def stacked(self) -> tuple[torch.Tensor, ...] | None:
        """The dataset as stacked tensors when its items are rows of tensors and torch's collate applies:
        batches are then slices of them (the same batches, in the same order, without per-item Python)."""
        if not self._rows_checked:
            self._rows = stacked_rows(self.dataset) if self.collate_fn is None else None
            self._rows_checked = True
        return self._rows

    def _make_torch_dl(self, gen: torch.Generator) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.bs, shuffle=self.shuffle, drop_last=self.drop_last,
            num_workers=self.num_workers, collate_fn=self.collate_fn, pin_memory=self.pin_memory,
            worker_init_fn=seed_worker if self.num_workers else None, generator=gen,
            persistent_workers=self.persistent_workers,
            prefetch_factor=4 if self.num_workers else None)

    def __iter__(self):
        gen = self._epoch_generator()
        rows = self.stacked()
        if rows is not None:
            single = single_member_items(self.dataset)
            for batch in stacked_batches(rows, self.bs, self.shuffle, self.drop_last, gen):
                yield _yielded(self._finish(batch), single)
            return
        if self._torch_dl is None or not self.persistent_workers:
            self._torch_dl = self._make_torch_dl(gen)
        else:  # persistent workers keep their loader; only the order's generator changes
            self._torch_dl.generator = gen
            if self.shuffle:
                self._torch_dl.sampler.generator = gen
        batches, pid = iter(self._torch_dl), os.getpid()
        try:
            for batch in batches:
                yield _yielded(self._finish(batch), not isinstance(batch, (list, tuple)))
        finally:
            if not self.persistent_workers and os.getpid() == pid:  # a forked copy does not own the workers
                _stop_workers(batches)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def new(self, dataset: Dataset | None = None, **kwargs: Any) -> "DataLoader":
        """A copy with another dataset and/or other arguments (``bs``, ``shuffle``, ``num_workers`` ...)."""
        args = dict(dataset=self.dataset if dataset is None else dataset, bs=self.bs, shuffle=self.shuffle,
                    drop_last=self.drop_last, num_workers=self.num_workers, device=self.device,
                    after_batch=list(self.after_batch), collate_fn=self.collate_fn, kinds=self.kinds,
                    split_idx=self.split_idx, pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers, seed=self.seed)
        args.update(kwargs)
        new = DataLoader(**args)
        if new.dataset is self.dataset and new.collate_fn is self.collate_fn:  # stacked once, not again
            new._rows, new._rows_checked = self._rows, self._rows_checked
        new.epochs_seen = self.epochs_seen
        new.show, new.show_results, new.dls = self.show, self.show_results, self.dls
        return new


def _yielded(finished: tuple, single: bool) -> Any:
    """What a loader yields: a tuple of the batch's members, or the single tensor that items which are not tuples
    collate to (``DataLoader(range(15), bs=5)`` yields tensors, as torch's and fastai's loaders do). The learner
    takes a single tensor as a batch of one member."""
    return finished[0] if single and len(finished) == 1 else finished


# How many batches of shuffled rows a `TensorDataLoader` gathers at once.
GATHER_BATCHES = 64


class TensorDataLoader(_LoaderBase):
    """Batches as index slices of tensors built once (no per-row Python, no pandas in the loop).

    Args:
        tensors: tensors with the same first dimension; each batch is ``tuple(t[idx] for t in tensors)``.
        bs, shuffle, drop_last, device, after_batch, kinds, split_idx, seed: as in `DataLoader`.
        resident: keep the tensors on ``device`` (one copy up front, then gathers on the device).
    """

    def __init__(self, tensors: Sequence[torch.Tensor], bs: int = 64, shuffle: bool = False,
                 drop_last: bool = False, device: torch.device | str | None = None,
                 after_batch: Sequence[Callable] | None = None, kinds: Sequence[str] | None = None,
                 split_idx: int = 0, seed: int | None = None, resident: bool = True, **ignored: Any):
        super().__init__(bs, shuffle, drop_last, device, after_batch, kinds, split_idx, seed)
        tensors = tuple(tensors)
        sizes = {len(t) for t in tensors}
        if len(sizes) > 1:
            raise ValueError(f"All tensors must have the same length; received lengths {[len(t) for t in tensors]}")
        self.resident = resident
        self.tensors = tuple(t.to(self.device) for t in tensors) if resident else tensors
        self.dataset = torch.utils.data.TensorDataset(*self.tensors)

    def __iter__(self):
        gen = self._epoch_generator()
        n = len(self.dataset)
        order = torch.randperm(n, generator=gen) if self.shuffle else None
        stop = n - n % self.bs if self.drop_last else n
        if order is not None:
            order = order.to(self.tensors[0].device)
        # Shuffled rows are gathered a block of batches at a time, then each batch is a slice of the block:
        # one gather per tensor per block instead of one per batch, with memory bounded by the block.
        block = self.bs * GATHER_BATCHES
        for first in range(0, stop, block):
            last = min(first + block, stop)
            if order is None:
                rows = tuple(t[first:last] for t in self.tensors)
            else:
                idx = order[first:last]
                rows = tuple(t[idx] for t in self.tensors)
            for start in range(0, last - first, self.bs):
                yield self._finish(tuple(r[start:start + self.bs] for r in rows), on_device=self.resident)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def to(self, device: torch.device | str) -> "TensorDataLoader":
        super().to(device)
        if self.resident:
            self.tensors = tuple(t.to(self.device) for t in self.tensors)
            self.dataset = torch.utils.data.TensorDataset(*self.tensors)
        return self

    def new(self, dataset: Any = None, **kwargs: Any) -> "TensorDataLoader":
        """A copy, optionally over other tensors (a TensorDataset or a tuple of tensors)."""
        if dataset is None:
            tensors = self.tensors
        else:
            tensors = dataset.tensors if hasattr(dataset, "tensors") else tuple(dataset)
        args = dict(bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last, device=self.device,
                    after_batch=list(self.after_batch), kinds=self.kinds, split_idx=self.split_idx,
                    seed=self.seed, resident=self.resident)
        args.update({k: v for k, v in kwargs.items() if k in args})
        new = TensorDataLoader(tensors, **args)
        new.epochs_seen = self.epochs_seen
        new.show, new.show_results, new.dls = self.show, self.show_results, self.dls
        return new


def from_torch_loader(dl: torch.utils.data.DataLoader, split_idx: int = 0) -> DataLoader:
    """A lamina `DataLoader` doing what a plain ``torch.utils.data.DataLoader`` does: its dataset, batch size,
    shuffle, ``drop_last``, workers and ``collate_fn``; the shuffle is seeded by lamina (`set_seed`, resume).

    Raises:
        TypeError: for a loader lamina cannot reproduce (an iterable dataset, a custom sampler or batch
            sampler, ``batch_size=None``), saying what to pass instead.
    """
    sampler = dl.sampler
    plain = isinstance(sampler, torch.utils.data.SequentialSampler) or (
        type(sampler) is torch.utils.data.RandomSampler and not sampler.replacement
        and sampler._num_samples is None)
    if (dl.batch_size is None or not plain or type(dl.batch_sampler) is not torch.utils.data.BatchSampler
            or isinstance(dl.dataset, torch.utils.data.IterableDataset)):
        raise TypeError(f"DataLoaders takes a torch DataLoader over a map-style dataset with batch_size and "
                        f"shuffle=True/False; received one with sampler={type(sampler).__name__}, "
                        f"batch_size={dl.batch_size}. Build the lamina loader yourself: "
                        "lamina.data.dataloader.DataLoader(dataset, bs=..., shuffle=...)")
    collate_fn = None if dl.collate_fn is torch.utils.data.default_collate else dl.collate_fn
    return DataLoader(dl.dataset, bs=dl.batch_size, shuffle=isinstance(sampler, torch.utils.data.RandomSampler),
                      drop_last=dl.drop_last, num_workers=dl.num_workers, collate_fn=collate_fn,
                      split_idx=split_idx, pin_memory=dl.pin_memory,
                      persistent_workers=dl.persistent_workers)
