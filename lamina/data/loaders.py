"""`DataLoaders`: a training and a validation loader, plus what learners read from the data.

`DataLoaders` carries, explicitly, what a learner reads from the data: ``vocab``, ``n_out`` (alias ``c``),
``loss_func`` (and ``loss_config``, the loss as a config) and ``n_inp``. The single loaders, `DataLoader` and
`TensorDataLoader`, live in `lamina.data.dataloader` and are re-exported here (their older home), as are
`BatchTransform` and `apply_batch_tfms` from `lamina.data.transforms`.

`DLS_TYPES` names the DataLoaders class of each kind of input: the applications fill it
(`register_dls_type`), so that data built in the data layer (a `Datasets` of images) comes back as the
application's DataLoaders (``ImageDataLoaders``: ``show_batch``, export) without this layer importing them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset

from ..foundation import L
from ..registry import register
from .dataloader import GATHER_BATCHES, DataLoader, TensorDataLoader, _LoaderBase, from_torch_loader
from .transforms import BatchTransform, apply_batch_tfms, declares

__all__ = ["DataLoaders", "DLS_TYPES", "register_dls_type", "tensor_inference_dls",
           # re-exported from their homes (lamina.data.dataloader, lamina.data.transforms) for older imports
           "DataLoader", "TensorDataLoader", "GATHER_BATCHES", "BatchTransform", "apply_batch_tfms"]

T = TypeVar("T", bound=type)

# The DataLoaders class for each kind of input (``'image'`` -> ``ImageDataLoaders``), filled by `register_dls_type`
# where the class is defined.
DLS_TYPES: dict[str, type] = {}


def register_dls_type(kind: str) -> Callable[[T], T]:
    """Class decorator: the DataLoaders class that data whose first input is of ``kind`` is built as.

    Raises:
        ValueError: when another class is already registered for ``kind``.
    """
    def add(cls: T) -> T:
        old = DLS_TYPES.get(kind)
        # the same definition again (a module reloaded in a notebook) is fine; a clash is not
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"{old.__qualname__} is already the DataLoaders class of {kind!r} data; "
                             f"{cls.__qualname__} cannot be registered for it too")
        DLS_TYPES[kind] = cls
        return cls
    return add


class DataLoaders:
    """A training and a validation loader, plus what learners read from the data.

    Args:
        *loaders: the training loader, then the validation loader (then any others); a plain
            ``torch.utils.data.DataLoader`` is taken as the lamina `DataLoader` doing the same (`from_torch_loader`).
        path: the folder where learners save models (``path/models``) and exports.
        device: move every loader to this device (default: leave them where they are).
        vocab: the class names (classification) or codes (segmentation), if any; kept as an `L`.
        n_out: the model's number of outputs (``len(vocab)`` when a vocab is given).
        loss_func: the loss that fits the targets (learners use it when none is passed): a loss object, or a
            config ``{"name", "kwargs"}`` that ``build_loss`` turns into one (kept as ``loss_config`` either way).
        n_inp: how many leading members of a batch are inputs (default: all but the last).
        inference: a JSON-serialisable description of how to rebuild the inference pipeline,
            ``{"builder": <a name registered with register("data")>, "kwargs": {...}}``; set by the
            applications and used by ``Learner.export``.

    Attributes:
        build_loss: how a loss config becomes a loss object. None here: the data layer only describes the loss,
            and the learner builds it; application DataLoaders set `lamina.losses.loss_from_config`, so that
            ``dls.loss_func`` is there at once, as fastai users expect.

    Example:
        >>> dls = DataLoaders.from_tensors(x_train, y_train, x_valid, y_valid, bs=32)
        >>> xb, yb = dls.one_batch()
    """

    build_loss: Callable[[dict], Any] | None = None

    def __init__(self, *loaders: _LoaderBase, path: str = ".", device: torch.device | str | None = None,
                 vocab: Sequence | None = None, n_out: int | None = None, loss_func: Callable | dict | None = None,
                 n_inp: int | None = None, inference: dict | None = None):
        if len(loaders) < 2:
            raise ValueError(f"DataLoaders needs a training and a validation loader; received {len(loaders)} loader(s)")
        self.loaders = [from_torch_loader(dl, split_idx=min(i, 1)) if isinstance(dl, torch.utils.data.DataLoader)
                        else dl for i, dl in enumerate(loaders)]
        for dl in self.loaders:
            dl.dls = self  # so a loader can show itself (`dls.train.show_batch()`)
        self.path = Path(path)
        self.vocab = L(list(vocab)) if vocab is not None else None  # an L: `dls.vocab[idxs]` picks several
        self.n_out = n_out if n_out is not None else (len(self.vocab) if self.vocab is not None else None)
        self.n_inp, self.inference = n_inp, inference
        self.loss_func, self._loss_config = None, None
        if isinstance(loss_func, dict):
            self.loss_config = loss_func
        else:
            self.loss_func = loss_func
        if device is not None:
            self.to(device)

    train = property(lambda self: self.loaders[0], doc="The training loader.")
    valid = property(lambda self: self.loaders[1], doc="The validation loader.")
    train_ds = property(lambda self: self.train.dataset, doc="The training dataset.")
    valid_ds = property(lambda self: self.valid.dataset, doc="The validation dataset.")
    c = property(lambda self: self.n_out, doc="fastai's name for `n_out`.")
    bs = property(lambda self: self.train.bs, doc="The training batch size.")

    @property
    def loss_config(self) -> dict | None:
        """The loss that fits the targets, as a config ``{"name", "kwargs"}``: the one given or set, else the
        loss object's ``to_config()`` (None when neither says)."""
        if self._loss_config is not None:
            return self._loss_config
        return self.loss_func.to_config() if declares(self.loss_func, "to_config") else None

    @loss_config.setter
    def loss_config(self, value: dict | None) -> None:
        self._loss_config = value
        if value is not None and self.loss_func is None and self.build_loss is not None:
            self.loss_func = type(self).build_loss(value)

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

    def one_batch(self) -> Any:
        """The first training batch."""
        return self.train.one_batch()

    def decode(self, batch: tuple) -> tuple:
        """The training loader's `decode`: the batch transforms that can be undone, undone."""
        return self.train.decode(batch)

    def decode_batch(self, batch: tuple, max_n: int = 9, full: bool = True) -> Any:
        """The training loader's `decode_batch`: the first ``max_n`` samples, decoded."""
        return self.train.decode_batch(batch, max_n=max_n, full=full)

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
                   shuffle: bool | Sequence[bool] | None = None, device: torch.device | str | None = None,
                   num_workers: int = 0, drop_last: bool | Sequence[bool] | None = None,
                   **kwargs: Any) -> "DataLoaders":
        """Loaders over map-style datasets: by default the first is shuffled and drops its last partial batch.

        ``shuffle`` and ``drop_last``, when given, apply to every loader (``drop_last=True, shuffle=False``
        for a language model's ordered sequences), or one value per dataset as a tuple or list.
        ``kwargs`` named ``vocab``, ``n_out``, ``loss_func``, ``n_inp`` or ``inference`` go to `DataLoaders`;
        the others (``after_batch``, ``collate_fn``, ``kinds``, ``pin_memory`` ...) to every `DataLoader`.
        """
        own = {k: kwargs.pop(k) for k in ("vocab", "n_out", "loss_func", "n_inp", "inference") if k in kwargs}
        shuffles = _per_loader("shuffle", shuffle, len(dsets))
        drops = _per_loader("drop_last", drop_last, len(dsets))
        loaders = [DataLoader(ds, bs=bs if i == 0 else (val_bs or bs), shuffle=shuffles[i], drop_last=drops[i],
                              num_workers=num_workers, device=device, split_idx=min(i, 1), **kwargs)
                   for i, ds in enumerate(dsets)]
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


def _per_loader(name: str, value: bool | Sequence[bool] | None, n: int) -> list[bool]:
    """One ``name`` flag per loader: the default (the first loader only) when None, a single value for all, or
    one value each."""
    if value is None:
        return [i == 0 for i in range(n)]
    if not isinstance(value, (bool, int, str)) and hasattr(value, "__len__") and getattr(value, "ndim", 1) != 0:
        if len(value) != n:
            raise ValueError(f"`{name}` has {len(value)} values for {n} datasets; give one per dataset or a "
                             f"single value for all: {name}={value!r}")
        return [bool(v) for v in value]
    return [bool(value)] * n


@register("data")
def tensor_inference_dls(vocab: Sequence | None = None, n_out: int | None = None, **_: Any) -> DataLoaders:
    """Empty tensor loaders for a loaded learner (its `test_dl` takes tensors)."""
    empty = (torch.zeros(0), torch.zeros(0))
    return DataLoaders(TensorDataLoader(empty, device="cpu"), TensorDataLoader(empty, device="cpu", split_idx=1),
                       vocab=vocab, n_out=n_out, n_inp=1)
