"""Item and batch transforms: the base classes, their hooks, one ``to_config`` convention and the export tables.

* An **item transform** runs on one sample (a tuple: image, mask, label ...) in the DataLoader workers:
  ``tfm(sample, split_idx=...)``. `ItemTransform` is the base class.
* A **batch transform** runs on a whole batch on the device, seeing what each member is:
  ``tfm(batch, kinds, split_idx)``. `BatchTransform` is the base class.

Both have ``order`` (they run in ascending order) and ``split_idx`` (None: both splits, 0: training only,
1: validation only), and describe themselves the same way for exports: ``to_config()`` is
``{"name": class name, "kwargs": constructor arguments}``, the arguments being the attributes named in
``_config_keys`` (made JSON-safe by `jsonable`). A class registered with `register_tfm` (in `ITEM_TFMS` or
`BATCH_TFMS`) is rebuilt by `item_tfm_from_config` / `batch_tfm_from_config` in a process where the training
script does not exist.

Example:
    >>> @register_tfm
    ... class Invert(BatchTransform):
    ...     _config_keys = ("maximum",)
    ...     def __init__(self, maximum: float = 1.0):
    ...         self.maximum = maximum
    ...     def encodes(self, batch, kinds, split_idx):
    ...         return tuple(self.maximum - x if kind == "image" else x for x, kind in zip(batch, kinds))
    >>> batch_tfm_from_config(Invert(255.0).to_config())
    Invert(maximum=255.0)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from .steps import declares

__all__ = ["ItemTfm", "BatchTfm", "TransformBase", "ItemTransform", "BatchTransform", "members_of", "replace_members",
           "jsonable", "tfm_hook",
           "ITEM_TFMS", "BATCH_TFMS", "register_tfm", "item_tfm_from_config", "batch_tfm_from_config"]

T = TypeVar("T", bound=type)


class ItemTfm(Protocol):
    """What `Datasets` reads from an item transform (hooks other than the call are optional, read by `tfm_hook`).

    Attributes:
        order: transforms run in ascending order (default 0). An object *with* ``order`` receives the whole
            sample tuple and the split; a plain function (no ``order``) is applied to each member.
        split_idx: None runs on both splits, 0 only while training, 1 only on validation.
        is_random: ``is_random(split_idx) -> bool``: whether two calls can differ (a sample cache keeps the
            samples only when every transform answers False; one without this hook counts as random).
        draft_size: ``draft_size() -> (h, w)``, on a sizing transform: the smallest decoded image that loses
            nothing (lets the first transform make JPEGs decode at a reduced size).
        to_config: ``to_config() -> {"name", "kwargs"}``, for exports (see `register_tfm`).
    """

    order: int
    split_idx: int | None

    def __call__(self, sample: Any, split_idx: int | None = None) -> Any: ...


class BatchTfm(Protocol):
    """What the loaders read from a batch transform (hooks other than the call are optional, read by `tfm_hook`).

    Attributes:
        order: transforms run in ascending order (default 0).
        split_idx: None runs on both splits, 0 only while training, 1 only on validation (the base class's
            ``__call__`` applies it; a plain callable decides itself).
        fuse_group: neighbours (after sorting) with the same key are replaced by ``type(first).fuse(run)``
            (see `fuse_tfms`); None fuses with nothing.
        decodes: ``decodes(batch, kinds) -> batch``: undo the transform for showing (none: left as is).
        to_config: ``to_config() -> {"name", "kwargs"}``, for exports (see `register_tfm`).
    """

    order: int

    def __call__(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple: ...


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a value for an export description: tensors, arrays and tuples become lists, numpy
    scalars Python numbers, transforms their ``to_config()``."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist() if isinstance(value, np.ndarray) else value.detach().cpu().tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if declares(value, "to_config") and not isinstance(value, type):
        return value.to_config()
    return value


class TransformBase:
    """What item and batch transforms share: ``order``, ``split_idx`` and the ``to_config`` convention.

    Attributes:
        order: transforms run in ascending order.
        split_idx: None runs on both splits, 0 only while training, 1 only on validation.
        fuse_group: see `BatchTfm` (None: fuses with nothing).
        _config_keys: the constructor arguments `to_config` saves; each is an attribute of the same name.
    """

    order: int = 0
    split_idx: int | None = None
    fuse_group: str | None = None
    _config_keys: tuple[str, ...] = ()

    def _config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-safe: the ``_config_keys`` attributes (override for anything else)."""
        return {key: jsonable(getattr(self, key)) for key in self._config_keys}

    @property
    def name(self) -> str:
        """The class name and its settings, as fastai shows a transform: ``Resize -- {'size': (96, 96), ...}``."""
        return f"{type(self).__name__} -- {self._config()}"

    def to_config(self) -> dict[str, Any]:
        """``{"name": class name, "kwargs": constructor arguments}`` (rebuilt by the ``*_from_config`` functions)."""
        return {"name": type(self).__name__, "kwargs": self._config()}

    def __repr__(self) -> str:
        values = {k: getattr(self, k) for k in self._config_keys} if self._config_keys else self._config()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def tfm_hook(tfm: Any, name: str) -> Any:
    """The hook ``name`` (``order``, ``split_idx``, ``fuse_group``) of an item or batch transform: its own, else
    `TransformBase`'s default (what a plain function gets)."""
    return getattr(tfm, name) if declares(tfm, name) else getattr(TransformBase, name)


@functools.lru_cache(maxsize=256)
def _whole_sample_form(encodes: Any) -> bool:
    """Whether ``encodes`` is fastai's one-argument form (``encodes(self, x)``: the whole sample, no split)."""
    try:
        params = list(inspect.signature(encodes).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 1 and not any(p.kind == p.VAR_POSITIONAL for p in params)


class ItemTransform(TransformBase):
    """Base class of item transforms: call it on a sample tuple, or on one image: ``tfm(img, split_idx=1)``.

    Subclasses implement ``encodes(sample, split_idx) -> sample`` and list their constructor arguments in
    ``_config_keys``. fastai's form, ``encodes(self, x)`` with the whole sample (``img, mask = x``) and no split,
    works too: it is called with the sample as it is (on the splits ``split_idx`` allows).

    Attributes:
        random_on_train: draws random numbers on the training split (validation never does); `is_random`
            reads it, so that deterministic pipelines can be cached.
    """

    random_on_train: bool = False

    def is_random(self, split_idx: int | None) -> bool:
        """Whether the output can differ between two calls on split ``split_idx`` (a sample cache needs False)."""
        applies = self.split_idx is None or split_idx is None or self.split_idx == split_idx
        return applies and split_idx != 1 and self.random_on_train

    def __call__(self, sample: Any, split_idx: int | None = None) -> Any:
        applies = self.split_idx is None or split_idx is None or self.split_idx == split_idx
        if _whole_sample_form(type(self).encodes):
            return self.encodes(sample) if applies else sample
        single = not isinstance(sample, tuple)
        items = (sample,) if single else sample
        if applies:
            items = self.encodes(items, split_idx)
        if single:
            return items[0]
        # a sample of a tuple subclass (fastai's `fastuple`, e.g. a `SiameseImage` that shows itself) stays one
        return items if type(items) is type(sample) or hasattr(sample, "_fields") else type(sample)(items)

    def encodes(self, sample: tuple, split_idx: int | None) -> tuple:
        return sample


class BatchTransform(TransformBase):
    """Base class of batch transforms, run on the device after the transfer.

    A batch transform sees the batch tuple and the ``kinds`` of its members (``'image'``, ``'mask'``,
    ``'category'``, ...), so that it can treat each member by what it is: an augmentation moves the image and
    its mask together, `Normalize` touches images only. Subclasses override `encodes` (and `decodes` if
    showing a batch must undo them) and list their constructor arguments in ``_config_keys``.
    """

    def __call__(self, batch: tuple, kinds: Sequence[str], split_idx: int = 0) -> tuple:
        if self.split_idx is not None and self.split_idx != split_idx:
            return batch
        return self.encodes(batch, kinds, split_idx)

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        return batch

    def decodes(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        return batch


def members_of(batch: tuple, kinds: Sequence[str], kind: str) -> list[int]:
    """The positions of the members of ``batch`` whose kind is ``kind`` (e.g. every ``'image'``)."""
    return [i for i, member_kind in enumerate(kinds[:len(batch)]) if member_kind == kind]


def replace_members(batch: tuple, updates: Mapping[int, Any]) -> tuple:
    """``batch`` with the members at the positions of ``updates`` replaced by their new values."""
    return tuple(updates.get(i, member) for i, member in enumerate(batch))


# The transforms an export may name, by class name. Filled by `register_tfm` where each class is defined
# (lamina.vision.transforms, lamina.vision.lighting, lamina.vision.augment, lamina.data.normalize).
ITEM_TFMS: dict[str, type[ItemTransform]] = {}
BATCH_TFMS: dict[str, Callable[..., BatchTransform]] = {}


def register_tfm(cls: T) -> T:
    """Class decorator: make an item or batch transform rebuildable from its ``to_config()`` under its class name.

    Raises:
        TypeError: for a class that is neither an `ItemTransform` nor a `BatchTransform`.
        ValueError: when another class already has that name.
    """
    if not isinstance(cls, type) or not issubclass(cls, (ItemTransform, BatchTransform)):
        raise TypeError(f"register_tfm takes an ItemTransform or BatchTransform subclass; received {cls!r}")
    table = ITEM_TFMS if issubclass(cls, ItemTransform) else BATCH_TFMS
    old = table.get(cls.__name__)
    # the same definition again (a module reloaded in a notebook) is fine; a clash is not
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"A transform named {cls.__name__!r} is already registered ({old.__module__}); rename one")
    table[cls.__name__] = cls
    return cls


def _checked_name(cfg: Any) -> str:
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError("`cfg` must be a dict like {'name': 'Resize', 'kwargs': {...}} as returned by "
                         f"`tfm.to_config()`; received: cfg={cfg!r}")
    return cfg["name"]


def item_tfm_from_config(cfg: Mapping[str, Any]) -> ItemTransform:
    """Rebuild an item transform from its ``to_config()``.

    Raises:
        ValueError: for a malformed ``cfg`` or a name that is not in `ITEM_TFMS` (register yours with
            `register_tfm`, or ``ITEM_TFMS['MyTfm'] = MyTfm``).
    """
    name = _checked_name(cfg)
    if name not in ITEM_TFMS:
        raise ValueError(f"Unknown item transform {name!r}: known ones are {sorted(ITEM_TFMS)}. Register a custom "
                         f"one with @register_tfm (or ITEM_TFMS[{name!r}] = YourTransform)")
    return ITEM_TFMS[name](**dict(cfg.get("kwargs") or {}))


def batch_tfm_from_config(cfg: Mapping[str, Any]) -> BatchTransform:
    """Rebuild a batch transform from the dict its ``to_config()`` returned (fused ones: pieces under "tfms").

    Raises:
        ValueError: for a malformed ``cfg`` or a name that is not in `BATCH_TFMS` (register yours with
            `register_tfm`, or ``BATCH_TFMS['MyTfm'] = MyTfm``).
    """
    name = _checked_name(cfg)
    if name not in BATCH_TFMS:
        raise ValueError(f"unknown batch transform {name!r}; known: {', '.join(sorted(BATCH_TFMS))}. "
                         f"Register a custom one with @register_tfm (or `BATCH_TFMS[{name!r}] = YourTransform`).")
    kwargs = dict(cfg.get("kwargs") or {})
    if "tfms" in kwargs:
        kwargs["tfms"] = [batch_tfm_from_config(piece) for piece in kwargs["tfms"]]
    return BATCH_TFMS[name](**kwargs)
