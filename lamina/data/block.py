"""The data block API: say what the inputs and targets are, how to get and split them; get DataLoaders.

A block describes one member of each sample: how to turn what a getter returns into that member
(``type_tfms``: read an image, encode a label), the item and batch transforms it needs, the loss it
implies, and its ``kind`` (``'image'``, ``'category'`` ...) that batch transforms read. The loss a target
implies is its kind's, from `TARGET_LOSSES` (the one table that says it). The type transforms themselves
(`Categorize` ...) live in `lamina.data.transforms` and are re-exported here. `DataBlock`
combines blocks with ``get_items``, ``get_x``/``get_y`` and a splitter, and builds `Datasets`
and DataLoaders from a source (a folder, a DataFrame, a list).

Example:
    >>> dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
    ...                    get_y=parent_label, splitter=RandomSplitter(seed=42), item_tfms=Resize(224))
    >>> dls = dblock.dataloaders(path, bs=64)
    >>> dblock.summary(path)          # every step of one sample and one batch, and where it fails
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .datasets import Datasets
from .errors import getter_name, step_name
from .files import describe_empty_listing
from .loaders import DataLoaders
from .splitters import ItemGetter, RandomSplitter
from .transforms import (TARGET_LOSSES, Category, Categorize, EncodedMultiCategorize, MultiCategorize, OneHotEncode,
                         RegressionSetup, declares, draft_size, fuse_tfms, merge_tfms, step_hook,
                         target_loss_config)

__all__ = ["TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "DataBlock", "get_c",
           "TARGET_LOSSES", "target_loss_config",
           # re-exported from their home, lamina.data.transforms (and lamina.data.datasets), for older imports
           "Category", "Categorize", "MultiCategorize", "EncodedMultiCategorize", "OneHotEncode", "RegressionSetup",
           "Datasets", "merge_tfms", "fuse_tfms", "draft_size"]


def get_c(dls: Any) -> int | None:
    """The number of model outputs the data implies: ``dls.n_out`` (``dls.c``), else the size of ``dls.vocab``."""
    n_out = getattr(dls, "n_out", None)
    vocab = getattr(dls, "vocab", None)
    return n_out if n_out is not None else (len(vocab) if vocab is not None else None)  # a list for several targets


def _short(o: Any) -> str:
    """A short description of a source for an error: its repr, cut at 80 characters."""
    if hasattr(o, "columns") and hasattr(o, "iterrows"):
        return f"(a DataFrame with columns {list(o.columns)[:10]})"
    text = repr(o)
    return text if len(text) <= 80 else f"{text[:77]}..."


class TransformBlock:
    """One member of a sample: its type transforms, item and batch transforms, kind and loss.

    Args:
        type_tfms: steps after the getter (a reader, an encoder).
        item_tfms: item transforms this member needs (e.g. `ToTensor` for images).
        batch_tfms: batch transforms it needs (e.g. `IntToFloatTensor`).
        dl_type: accepted for fastai compatibility (lamina has one loader class).
        dls_kwargs: default keyword arguments for ``dataloaders``.
        kind: what the member is (default: the last type transform's ``kind``, else ``'raw'``).
        loss_func: the loss this member implies as a target, as a config ``{"name", "kwargs"}``
            (`lamina.losses.loss_from_config` builds it), or a loss object; default: its kind's, from
            `TARGET_LOSSES` (with the type transform's ``loss_kwargs``, e.g. a mask's ``ignore_index``).
        dls_type: the DataLoaders class that shows and exports this kind of data.
    """

    def __init__(self, type_tfms: Any = None, item_tfms: Any = None, batch_tfms: Any = None, dl_type: Any = None,
                 dls_kwargs: dict | None = None, *, kind: str | None = None, loss_func: Any = None,
                 dls_type: type | None = None):
        self.type_tfms = _as_list(type_tfms)
        self.item_tfms, self.batch_tfms = _as_list(item_tfms), _as_list(batch_tfms)
        self.dl_type, self.dls_kwargs = dl_type, dict(dls_kwargs or {})
        self._loss_func, self.dls_type = loss_func, dls_type
        self._kind = kind

    def _typed(self) -> Any:
        """The last type transform that names a kind (None if none does)."""
        return next((t for t in reversed(self.type_tfms) if step_hook(t, "kind") is not None), None)

    @property
    def kind(self) -> str:
        if self._kind is not None:
            return self._kind
        typed = self._typed()
        return "raw" if typed is None else step_hook(typed, "kind")

    @property
    def loss_func(self) -> Any:
        """The loss this member implies as a target: the one given, else its kind's (see the constructor)."""
        if self._loss_func is not None:
            return self._loss_func
        typed = self._typed()
        return target_loss_config(self.kind, **({} if typed is None else step_hook(typed, "loss_kwargs")))

    @loss_func.setter
    def loss_func(self, value: Any) -> None:
        self._loss_func = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, type_tfms={[step_name(t) for t in self.type_tfms]})"


def _as_list(o: Any) -> list:
    if o is None:
        return []
    return list(o) if isinstance(o, (list, tuple)) else [o]


class CategoryBlock(TransformBlock):
    """A single-label classification target (loss: ``CrossEntropyLossFlat()``)."""

    def __init__(self, vocab: Sequence | None = None, sort: bool = True, add_na: bool = False):
        super().__init__(type_tfms=Categorize(vocab=vocab, sort=sort, add_na=add_na))


class MultiCategoryBlock(TransformBlock):
    """A multi-label target: a list of labels per item (loss: ``BCEWithLogitsLossFlat()``)."""

    def __init__(self, encoded: bool = False, vocab: Sequence | None = None, add_na: bool = False):
        super().__init__(type_tfms=MultiCategorize(vocab=vocab, add_na=add_na, encoded=encoded))


class RegressionBlock(TransformBlock):
    """A float target (one number or a vector); ``n_out`` outputs (loss: ``MSELossFlat()``)."""

    def __init__(self, n_out: int | None = None):
        super().__init__(type_tfms=RegressionSetup(c=n_out))


def _identity(o: Any) -> Any:
    return o


class DataBlock:
    """A recipe for DataLoaders: blocks, how to get items, inputs and targets, how to split, which transforms.

    ``get_items``, ``splitter``, ``get_x`` and ``get_y`` may also be methods of a subclass.

    Args:
        blocks: one block per member (classes are instantiated); default two `TransformBlock`.
        dl_type: accepted for fastai compatibility.
        getters: one getter per block (instead of ``get_x``/``get_y``).
        n_inp: how many blocks are inputs (default: all but the last).
        item_tfms: item transforms (added to the blocks' own, one per class, sorted by ``order``).
        batch_tfms: batch transforms (same merging).
        get_items: ``source → items`` (default: the source is the items).
        splitter: ``items → (train_idxs, valid_idxs)`` (default ``RandomSplitter()``).
        get_y: the target getter(s): one function, or a list with one per target.
        get_x: the input getter(s): one function, or a list with one per input.

    Raises:
        ValueError: when ``get_x``/``get_y`` do not give one function per input/target.
    """

    get_items: Callable | None = None
    splitter: Callable | None = None
    get_x: Callable | Sequence | None = None
    get_y: Callable | Sequence | None = None

    def __init__(self, blocks: Sequence | None = None, dl_type: Any = None, getters: Sequence | None = None,
                 n_inp: int | None = None, item_tfms: Any = None, batch_tfms: Any = None, *,
                 get_items: Callable | None = None, splitter: Callable | None = None,
                 get_y: Callable | Sequence | None = None, get_x: Callable | Sequence | None = None):
        blocks = [TransformBlock, TransformBlock] if blocks is None else _as_list(blocks)
        self.blocks = [b if isinstance(b, TransformBlock) else b() for b in blocks]
        self.n_inp = n_inp if n_inp is not None else max(1, len(self.blocks) - 1)
        self.dl_type = dl_type
        for name, value in (("get_items", get_items), ("splitter", splitter), ("get_x", get_x), ("get_y", get_y)):
            if value is not None:
                setattr(self, name, value)
        self.getters = list(getters) if getters is not None else self._getters()
        if len(self.getters) != len(self.blocks):
            raise ValueError(f"`getters` needs one function per block ({len(self.blocks)}); "
                             f"received {len(self.getters)}")
        self.item_tfms = merge_tfms([t for b in self.blocks for t in b.item_tfms], item_tfms)
        self.batch_tfms = merge_tfms([t for b in self.blocks for t in b.batch_tfms], batch_tfms)

    def _getters(self) -> list:
        n_targets = len(self.blocks) - self.n_inp
        inputs = self._side(self.get_x, self.n_inp, "get_x", "inputs")
        return inputs + self._side(self.get_y, n_targets, "get_y", "targets")

    @staticmethod
    def _side(fns: Any, n: int, name: str, what: str) -> list:
        if fns is None:
            return [_identity] * n
        fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
        if len(fns) != n:
            raise ValueError(f"`{name}` must give one function per {what[:-1]} ({n} {what}); received {len(fns)}. "
                             "To chain several functions for one member, wrap them in one function")
        return fns

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.kind for b in self.blocks)

    def _pipelines(self) -> list[list]:
        """Per block: the getter, then copies of its type transforms (so set-ups never leak between calls)."""
        draft = None if {"mask", "point", "bbox"} & set(self.kinds) else draft_size(self.item_tfms)
        pipelines = []
        for getter, block in zip(self.getters, self.blocks):
            # steps that learn (setup) or are told the draft size are copied: set-ups never leak between calls
            steps = [copy.deepcopy(t) if step_hook(t, "setup") is not None or declares(t, "draft") else t
                     for t in block.type_tfms]
            for step in steps:
                if declares(step, "draft"):
                    step.draft = draft  # decode JPEGs at reduced size when the target is smaller
            pipelines.append(([] if getter is _identity else [getter]) + steps)
        return pipelines

    def _items(self, source: Any) -> Any:
        return self.get_items(source) if self.get_items is not None else source

    def datasets(self, source: Any, verbose: bool = False) -> Datasets:
        """The training and validation `Datasets` of ``source``.

        Raises:
            FileNotFoundError: when ``source`` is a folder in which ``get_items`` finds nothing, saying what it
                looked for and what the folder holds. ValueError: when another source gives no items.
        """
        items = self._items(source)
        if hasattr(items, "__len__") and len(items) == 0:
            raise self._no_items_error(source)
        if verbose:
            print(f"Collecting items from {source}\nFound {len(items)} items")
        splits = (self.splitter or RandomSplitter())(items)
        if verbose:
            print(f"{len(splits)} datasets of sizes {','.join(str(len(s)) for s in splits)}")
        return Datasets(items, self._pipelines(), n_inp=self.n_inp, splits=splits, item_tfms=self.item_tfms,
                        kinds=self.kinds)

    def _no_items_error(self, source: Any) -> Exception:
        """The error for a source without items (an empty folder fails here, not later at the first batch)."""
        getter = "" if self.get_items is None else f" (get_items={getter_name(self.get_items)})"
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return FileNotFoundError(f"No items to build the datasets from{getter}: "
                                     f"{describe_empty_listing(source, self.get_items)}. Check the folder and the "
                                     "names of its sub-folders (did the download or copy finish?)")
        return ValueError(f"No items to build the datasets from{getter}: the source {_short(source)} gives none. "
                          "Pass a source with items (files, rows)")

    def _loss(self) -> Any:
        targets = self.blocks[self.n_inp:]
        return targets[0].loss_func if targets else None

    def dataloaders(self, source: Any, path: str = ".", verbose: bool = False, dls_type: type | None = None,
                    **kwargs: Any) -> DataLoaders:
        """DataLoaders over ``source`` (``bs=64``, ``val_bs``, ``shuffle``, ``num_workers``, ``device`` ... as in
        `Datasets.dataloaders`).

        The DataLoaders class is ``dls_type``, else the first block's that names one (images: ImageDataLoaders),
        else `DataLoaders`. The loss the target block implies is set as ``dls.loss_config`` (a config dict:
        building a loss belongs to the training layer, which does it when the Learner gets no ``loss_func``);
        application DataLoaders also build it as ``dls.loss_func``. Batch transforms that can be fused are
        (`fuse_tfms`: e.g. ``[Rotate(), Flip()]`` interpolate once). A DataLoaders class with a ``from_datasets``
        classmethod (text) builds its loaders itself from the `Datasets` and the options.
        """
        dsets = self.datasets(source, verbose=verbose)
        dls_type = dls_type or next((b.dls_type for b in self.blocks if b.dls_type is not None), DataLoaders)
        loss = self._loss()
        options = {k: v for b in self.blocks for k, v in b.dls_kwargs.items()}
        options.update(kwargs)
        if hasattr(dls_type, "from_datasets"):  # loaders that batch whole splits (text streams) build themselves
            return dls_type.from_datasets(dsets, path=path, after_batch=self.batch_tfms, loss_func=loss, **options)
        return dsets.dataloaders(path=path, after_batch=self.batch_tfms, dls_type=dls_type, loss_func=loss, **options)

    def new(self, item_tfms: Any = None, batch_tfms: Any = None) -> "DataBlock":
        """A copy with other item and/or batch transforms (merged with the blocks' defaults again)."""
        new = copy.copy(self)
        if item_tfms is not None:
            new.item_tfms = merge_tfms([t for b in self.blocks for t in b.item_tfms], item_tfms)
        if batch_tfms is not None:
            new.batch_tfms = merge_tfms([t for b in self.blocks for t in b.batch_tfms], batch_tfms)
        return new

    @classmethod
    def from_columns(cls, blocks: Sequence | None = None, getters: Sequence | None = None,
                     get_items: Callable | None = None, **kwargs: Any) -> "DataBlock":
        """A DataBlock whose source is a tuple of columns (e.g. ``(fnames, labels)``), one per block."""
        n = 2 if blocks is None else len(_as_list(blocks))
        getters = getters if getters is not None else [ItemGetter(i) for i in range(n)]
        items = ZipColumns(get_items)
        return cls(blocks=blocks, getters=getters, get_items=items, **kwargs)

    def summary(self, source: Any, bs: int = 4, show_batch: bool = False, **kwargs: Any) -> None:
        """Print how one sample and one batch are built, step by step; name the step that fails.

        Args:
            source: what ``dataloaders`` would receive.
            bs: the size of the batch to build.
            show_batch: also show that batch.
            **kwargs: passed to ``dataloaders`` (``num_workers`` is forced to 0).
        """
        from .summary import print_summary
        print_summary(self, source, bs=bs, show_batch=show_batch, **kwargs)

    def __repr__(self) -> str:
        return f"DataBlock(blocks={self.blocks}, n_inp={self.n_inp})"


class ZipColumns:
    """``get_items`` for `DataBlock.from_columns`: columns → a list of rows (after an optional getter)."""

    def __init__(self, get_items: Callable | None = None):
        self.get_items = get_items

    def __call__(self, source: Any) -> list:
        columns = self.get_items(source) if self.get_items is not None else source
        return list(zip(*columns))

