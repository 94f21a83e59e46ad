"""Data loaders: batches from a dataset, moved to the device, then batch transforms on the device.

Two loaders share one small interface (``__iter__``, ``__len__``, ``bs``, ``device``, ``dataset``,
``split_idx``, ``one_batch()``, ``new()``):

* `DataLoader` wraps a ``torch.utils.data.DataLoader`` (item transforms run in worker processes),
* `TensorDataLoader` slices tensors built once (tabular, collab, synthetic data): no per-row Python.

`DataLoaders` pairs a training and a validation loader and carries, explicitly, what a learner reads
from the data: ``vocab``, ``n_out`` (alias ``c``), ``loss_func`` and ``n_inp``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..core import default_device, seed_worker, to_device
from ..registry import register

__all__ = ["BatchTransform", "DataLoader", "TensorDataLoader", "DataLoaders", "apply_batch_tfms", "tensor_inference_dls"]


class BatchTransform:
    """A transform of whole batches, run on the device after the transfer.

    A batch transform sees the batch tuple and the ``kinds`` of its members (``'image'``, ``'mask'``,
    ``'category'``, ...), so that it can treat each member by what it is: an augmentation moves the
    image and its mask together, `Normalize` touches images only. Subclasses override `encodes`
    (and `decodes` if showing a batch must undo them).

    Attributes:
        order: transforms run in ascending order.
        split_idx: ``None`` runs on both splits, ``0`` only while training, ``1`` only on validation.
    """

    order: int = 0
    split_idx: int | None = None

    def __call__(self, batch: tuple, kinds: Sequence[str], split_idx: int = 0) -> tuple:
        if self.split_idx is not None and self.split_idx != split_idx:
            return batch
        return self.encodes(batch, kinds, split_idx)

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        return batch

    def decodes(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        return batch


def apply_batch_tfms(batch: tuple, tfms: Sequence[Callable], kinds: Sequence[str], split_idx: int) -> tuple:
    """Run ``tfms`` in ``order`` over ``batch``."""
    for tfm in sorted(tfms, key=lambda t: getattr(t, "order", 0)):
        batch = tfm(batch, kinds, split_idx)
    return batch


class _LoaderBase:
    """What both loaders share: the device, the batch transforms, epochs seen (for exact resume)."""

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

    def one_batch(self) -> tuple:
        """The first batch, without worker processes and without advancing the epoch count."""
        saved = self.epochs_seen
        loader = self.new(num_workers=0) if isinstance(self, DataLoader) else self
        try:
            return next(iter(loader))
        finally:
            self.epochs_seen = saved

    def show_batch(self, b: tuple | None = None, max_n: int = 9, **kwargs: Any) -> Any:
        """Show a batch of this loader (default: its first) the way the application shows its data.

        Raises:
            NotImplementedError: when the data has no way of showing itself (plain tensors).
        """
        show = getattr(self, "show", None)
        if show is None or getattr(self, "dls", None) is None:
            raise NotImplementedError("This data has no show_batch: it was built from plain tensors. "
                                      "Build it with an application factory (ImageDataLoaders, ...)")
        return show(self.dls, self.one_batch() if b is None else b, max_n=max_n, **kwargs)

    def decode_batch(self, batch: tuple) -> tuple:
        """Undo the batch transforms that can be undone (e.g. normalisation), for showing."""
        for tfm in sorted(self.after_batch, key=lambda t: getattr(t, "order", 0), reverse=True):
            if hasattr(tfm, "decodes"):
                batch = tfm.decodes(batch, self.kinds)
        return batch

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


class DataLoader(_LoaderBase):
    """Batches from a map-style dataset through a torch DataLoader, then device and batch transforms.

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``).
        bs: batch size.
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
    """

    def __init__(self, dataset: Dataset, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 0, device: torch.device | str | None = None,
                 after_batch: Sequence[Callable] | None = None, collate_fn: Callable | None = None,
                 kinds: Sequence[str] | None = None, split_idx: int = 0, pin_memory: bool | None = None,
                 persistent_workers: bool = False, seed: int | None = None):
        super().__init__(bs, shuffle, drop_last, device, after_batch, kinds, split_idx, seed)
        self.dataset, self.num_workers, self.collate_fn = dataset, num_workers, collate_fn
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self._torch_dl = None

    def _make_torch_dl(self, gen: torch.Generator) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.bs, shuffle=self.shuffle, drop_last=self.drop_last,
            num_workers=self.num_workers, collate_fn=self.collate_fn, pin_memory=self.pin_memory,
            worker_init_fn=seed_worker if self.num_workers else None, generator=gen,
            persistent_workers=self.persistent_workers,
            prefetch_factor=4 if self.num_workers else None)

    def __iter__(self):
        gen = self._epoch_generator()
        if self._torch_dl is None or not self.persistent_workers:
            self._torch_dl = self._make_torch_dl(gen)
        else:  # persistent workers keep their loader; only the order's generator changes
            self._torch_dl.generator = gen
            if self.shuffle:
                self._torch_dl.sampler.generator = gen
        batches, pid = iter(self._torch_dl), os.getpid()
        try:
            for batch in batches:
                yield self._finish(batch)
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
        new.epochs_seen = self.epochs_seen
        new.show = getattr(self, "show", None)
        new.show_results = getattr(self, "show_results", None)
        new.dls = getattr(self, "dls", None)
        return new


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
        new.show = getattr(self, "show", None)
        new.show_results = getattr(self, "show_results", None)
        new.dls = getattr(self, "dls", None)
        return new


class DataLoaders:
    """A training and a validation loader, plus what learners read from the data.

    Args:
        *loaders: the training loader, then the validation loader (then any others).
        path: the folder where learners save models (``path/models``) and exports.
        device: move every loader to this device (default: leave them where they are).
        vocab: the class names (classification) or codes (segmentation), if any.
        n_out: the model's number of outputs (``len(vocab)`` when a vocab is given).
        loss_func: the loss that fits the targets (learners use it when none is passed).
        n_inp: how many leading members of a batch are inputs (default: all but the last).
        inference: a JSON-serialisable description of how to rebuild the inference pipeline,
            ``{"builder": <a name registered with register("data")>, "kwargs": {...}}``; set by the
            applications and used by ``Learner.export``.

    Example:
        >>> dls = DataLoaders.from_tensors(x_train, y_train, x_valid, y_valid, bs=32)
        >>> xb, yb = dls.one_batch()
    """

    def __init__(self, *loaders: _LoaderBase, path: str = ".", device: torch.device | str | None = None,
                 vocab: Sequence | None = None, n_out: int | None = None, loss_func: Callable | None = None,
                 n_inp: int | None = None, inference: dict | None = None):
        if len(loaders) < 2:
            raise ValueError(f"DataLoaders needs a training and a validation loader; received {len(loaders)} loader(s)")
        self.loaders = list(loaders)
        for dl in self.loaders:
            dl.dls = self  # so a loader can show itself (`dls.train.show_batch()`)
        self.path = Path(path)
        self.vocab = list(vocab) if vocab is not None else None
        self.n_out = n_out if n_out is not None else (len(self.vocab) if self.vocab is not None else None)
        self.loss_func, self.n_inp, self.inference = loss_func, n_inp, inference
        if device is not None:
            self.to(device)

    train = property(lambda self: self.loaders[0], doc="The training loader.")
    valid = property(lambda self: self.loaders[1], doc="The validation loader.")
    train_ds = property(lambda self: self.train.dataset, doc="The training dataset.")
    valid_ds = property(lambda self: self.valid.dataset, doc="The validation dataset.")
    c = property(lambda self: self.n_out, doc="fastai's name for `n_out`.")
    bs = property(lambda self: self.train.bs, doc="The training batch size.")

    @property
    def after_batch(self) -> list:
        """The training loader's batch transforms."""
        return self.train.after_batch

    def __getitem__(self, i: int) -> _LoaderBase:
        return self.loaders[i]

    def __len__(self) -> int:
        return len(self.loaders)

    @property
    def device(self) -> torch.device:
        return self.train.device

    @device.setter
    def device(self, device: torch.device | str) -> None:
        self.to(device)

    def to(self, device: torch.device | str) -> "DataLoaders":
        """Send every loader's batches to ``device``."""
        for dl in self.loaders:
            dl.to(device)
        return self

    def cpu(self) -> "DataLoaders":
        return self.to("cpu")

    def cuda(self) -> "DataLoaders":
        return self.to("cuda")

    def one_batch(self) -> tuple:
        """The first training batch."""
        return self.train.one_batch()

    def add_tfms(self, tfms: Sequence[Callable], event: str = "after_batch", loaders: Sequence[int] | None = None) -> None:
        """Add batch transforms to some (default: all) loaders.

        Raises:
            ValueError: for an event other than ``'after_batch'`` (item transforms are fixed when the
                datasets are built).
        """
        if event != "after_batch":
            raise ValueError(f"`event` must be 'after_batch'; received: event={event!r}. Item transforms "
                             "are given to the DataBlock or the factory (item_tfms=...)")
        for i in (loaders if loaders is not None else range(len(self.loaders))):
            self.loaders[i].after_batch.extend(tfms)

    def test_dl(self, items: Any, with_labels: bool = False, **kwargs: Any) -> _LoaderBase:
        """A loader over new items with the validation pipeline (no augmentation).

        ``items`` may be what the validation dataset's ``test_set`` accepts (file names, images, rows),
        or tensors for tensor data.

        Raises:
            TypeError: when the data cannot turn ``items`` into a dataset.
        """
        valid = self.valid
        if hasattr(valid.dataset, "test_set"):
            return valid.new(valid.dataset.test_set(items, with_labels=with_labels), shuffle=False,
                             drop_last=False, **kwargs)
        if isinstance(items, torch.Tensor):
            items = (items,)
        if isinstance(items, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in items):
            return valid.new(tuple(items), shuffle=False, drop_last=False, **kwargs)
        raise TypeError(f"test_dl cannot build a dataset from items of type {type(items).__name__}: this data "
                        "takes a tensor or a tuple of tensors")

    def show_batch(self, b: tuple | None = None, max_n: int = 9, **kwargs: Any) -> Any:
        """Show a training batch the way the application shows its data (see `_LoaderBase.show_batch`)."""
        return self.train.show_batch(b, max_n=max_n, **kwargs)

    def new_empty(self) -> "DataLoaders":
        """A shallow copy (same transforms and vocab)."""
        return copy.copy(self)

    @classmethod
    def from_dsets(cls, *dsets: Dataset, path: str = ".", bs: int = 64, val_bs: int | None = None,
                   shuffle: bool = True, device: torch.device | str | None = None, num_workers: int = 0,
                   **kwargs: Any) -> "DataLoaders":
        """Loaders over map-style datasets: the first is shuffled (and drops its last partial batch).

        ``kwargs`` named ``vocab``, ``n_out``, ``loss_func``, ``n_inp`` or ``inference`` go to `DataLoaders`;
        the others (``after_batch``, ``collate_fn``, ``kinds``, ``pin_memory`` ...) to every `DataLoader`.
        """
        own = {k: kwargs.pop(k) for k in ("vocab", "n_out", "loss_func", "n_inp", "inference") if k in kwargs}
        loaders = [DataLoader(ds, bs=bs if i == 0 else (val_bs or bs), shuffle=shuffle and i == 0,
                              drop_last=shuffle and i == 0, num_workers=num_workers, device=device,
                              split_idx=min(i, 1), **kwargs) for i, ds in enumerate(dsets)]
        return cls(*loaders, path=path, **own)

    @classmethod
    def from_tensors(cls, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor,
                     y_valid: torch.Tensor, bs: int = 64, val_bs: int | None = None, shuffle: bool = True,
                     device: torch.device | str | None = None, path: str = ".", **kwargs: Any) -> "DataLoaders":
        """Loaders that slice tensors (fast; used by tests and examples).

        ``kwargs`` (``vocab``, ``n_out``, ``loss_func``) go to `DataLoaders`.
        """
        train = TensorDataLoader((x_train, y_train), bs=bs, shuffle=shuffle, drop_last=shuffle, device=device)
        valid = TensorDataLoader((x_valid, y_valid), bs=val_bs or bs, device=device, split_idx=1)
        kwargs.setdefault("inference", {"builder": "tensor_inference_dls",
                                        "kwargs": {"vocab": kwargs.get("vocab"), "n_out": kwargs.get("n_out")}})
        return cls(train, valid, path=path, n_inp=1, **kwargs)


@register("data")
def tensor_inference_dls(vocab: Sequence | None = None, n_out: int | None = None, **_: Any) -> DataLoaders:
    """Empty tensor loaders for a loaded learner (its `test_dl` takes tensors)."""
    empty = (torch.zeros(0), torch.zeros(0))
    return DataLoaders(TensorDataLoader(empty, device="cpu"), TensorDataLoader(empty, device="cpu", split_idx=1),
                       vocab=vocab, n_out=n_out, n_inp=1)
