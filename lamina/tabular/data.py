"""`TabularPandas` and `TabularDataLoaders`: a DataFrame (or CSV) → processed once → tensors → batches by slicing.

`TabularPandas` is fastai's object around a fitted `TabularProcessor`: the processed frame, the split,
``.train`` / ``.valid``, ``.classes``, ``.show()``, ``.new(df)`` and ``.dataloaders()``. It lives here, beside
the loaders it builds and that build it.

The processed table becomes three tensors once (int64 category codes, float32 continuous values, the
targets); a batch is an index slice of them (a fresh permutation each training epoch), so the epoch loop
runs no pandas and no per-row Python. The fitted procs stay with the loaders (``dls.processor``):
`test_dl` processes new rows with them, and ``dls.inference`` describes them as JSON for export.

Example:
    >>> dls = TabularDataLoaders.from_csv(path/'adult.csv', path=path, y_names="salary",
    ...     cat_names=['workclass', 'education'], cont_names=['age', 'fnlwgt'],
    ...     procs=[Categorify, FillMissing, Normalize])
    >>> cats, conts, ys = dls.one_batch()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.csvfiles import read_csv
from ..data.loaders import DataLoaders, TensorDataLoader
from ..data.splitters import RandomSplitter
from ..data.transforms import target_loss_config
from ..losses import loss_from_config
from ..registry import register
from .processor import TabularProcessor, as_names
from .procs import TabularProc
from .tables import show_frame, target_kind

__all__ = ["TabularPandas", "TabularDataLoaders", "cont_cat_split", "show_tabular_batch", "tabular_inference_dls"]

_IGNORED = ("num_workers", "pin_memory", "persistent_workers")  # fastai loader options with no meaning here


def _split_order(n: int, splits: Sequence[Sequence[int]] | None) -> tuple[np.ndarray | None, int]:
    """Row positions with the training rows first (None: keep the order), and the number of training rows."""
    if splits is None:
        return None, n
    if len(splits) != 2:
        raise ValueError(f"`splits` must be (train_positions, valid_positions); received {len(splits)} parts")
    train, valid = (np.asarray(s, dtype=np.int64).reshape(-1) for s in splits)
    order = np.concatenate([train, valid])
    if len(order) and (order.min() < 0 or order.max() >= n):
        raise ValueError(f"`splits` holds row positions outside 0..{n - 1}; pass positions (as from "
                         "`df.index.get_indexer`), not index labels")
    if len(np.unique(order)) != len(order):
        raise ValueError("`splits` lists some rows twice (or in both splits); each row must appear once")
    return order, len(train)



class TabularPandas:
    """A DataFrame processed for a tabular model: procs fitted on the training rows, training rows first.

    The procs run once, eagerly, when the object is built; only the named columns are read, so the
    original DataFrame is never copied whole (``inplace`` and ``reduce_memory`` are accepted for fastai
    compatibility and change nothing).

    Args:
        df: the data.
        procs: procs (classes or instances): `FillMissing`, `Categorify`, `Normalize`.
        cat_names, cont_names, y_names: categorical inputs, continuous inputs, targets (name or list).
        y_block: ``'category'``, ``'regression'``, ``'multicategory'`` (several 0/1 columns), a block of the
            same name (``CategoryBlock()``...), or None: classification when a target is non-numeric.
        splits: ``(train_positions, valid_positions)``; None makes every row a training row.
        do_setup: fit the procs now.

    Example:
        >>> to = TabularPandas(df, [Categorify, FillMissing, Normalize], cat_names=['workclass'],
        ...                    cont_names=['age'], y_names='salary', splits=([0, 1, 2], [3]))
        >>> dls = to.dataloaders(bs=64)

    Raises:
        ValueError/KeyError: for missing columns, a column in two roles, or unusable targets.
    """

    def __init__(self, df: pd.DataFrame, procs: Sequence[TabularProc | type] | None = None,
                 cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                 y_names: str | Sequence[str] | None = None, y_block: Any = None,
                 splits: Sequence[Sequence[int]] | None = None, do_setup: bool = True, device: Any = None,
                 inplace: bool = False, reduce_memory: bool = True):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"`df` must be a pandas DataFrame; received {type(df).__name__}")
        cats, conts, ys = as_names(cat_names, "cat_names"), as_names(cont_names, "cont_names"), \
            as_names(y_names, "y_names")
        _check_roles(cats, conts, ys)
        kind, vocab = target_kind(y_block, df, ys)
        self.processor = TabularProcessor(procs, cats, conts, ys, kind, vocab)
        self._order, self.n_train = _split_order(len(df), splits)
        self.device, self._raw, self.items = device, df, None
        if do_setup:
            self.setup()

    def _read(self, with_labels: bool | None) -> tuple[dict, bool, pd.Index]:
        """The needed columns of the raw rows, training rows first (only those columns are copied)."""
        table, labelled = self.processor.read(self._raw, with_labels)
        if self._order is None:
            return table, labelled, self._raw.index
        return {c: v[self._order] for c, v in table.items()}, labelled, self._raw.index[self._order]

    def setup(self) -> "TabularPandas":
        """Fit the procs on the training rows and process every row."""
        table, _, index = self._read(with_labels=bool(self.y_names))
        self._set_items(self.processor.setup(table, self.n_train), index)
        return self

    def process(self) -> "TabularPandas":
        """Process the rows with the already fitted procs (after `new`)."""
        table, labelled, index = self._read(with_labels=None)
        self._set_items(self.processor.process(table, labelled), index)
        return self

    def _set_items(self, table: dict, index: pd.Index) -> None:
        cols = [c for c in self.cat_names + self.cont_names + self.y_names if c in table]
        self.items = pd.DataFrame({c: table[c] for c in cols}, index=index)
        self._raw, self._order = self._raw.iloc[:0], None  # the processed frame replaces the raw rows

    def new(self, df: pd.DataFrame) -> "TabularPandas":
        """Rows to process with these fitted procs (call `.process()` next)."""
        to = object.__new__(TabularPandas)
        to.processor, to.n_train, to.device, to._raw, to.items = self.processor, len(df), self.device, df, None
        to._order = None
        return to

    def _view(self, rows: slice) -> "TabularPandas":
        to = object.__new__(TabularPandas)
        to.processor, to.device, to._raw, to._order = self.processor, self.device, self._raw, None
        to.items = self.items.iloc[rows]
        to.n_train = len(to.items)
        return to

    # --- fastai's accessors --------------------------------------------------------------------------
    train = property(lambda self: self._view(slice(0, self.n_train)), doc="The training rows.")
    valid = property(lambda self: self._view(slice(self.n_train, None)), doc="The validation rows.")
    procs = property(lambda self: self.processor.procs, doc="The fitted procs, in the order they run.")
    cat_names = property(lambda self: self.processor.cat_names, doc="Categorical inputs (with `<col>_na`).")
    cont_names = property(lambda self: self.processor.cont_names, doc="Continuous inputs.")
    y_names = property(lambda self: self.processor.y_names, doc="Target columns.")
    classes = property(lambda self: self.processor.classes, doc="Vocabulary of each categorical column.")
    vocab = property(lambda self: self.processor.y_vocab, doc="The target classes (classification).")
    xs = property(lambda self: self.items[self.cat_names + self.cont_names], doc="Processed inputs.")
    ys = property(lambda self: self.items[self.y_names], doc="Encoded targets.")
    cats = property(lambda self: self.items[self.cat_names], doc="Category codes.")
    conts = property(lambda self: self.items[self.cont_names], doc="Normalised continuous values.")
    y = property(lambda self: self.items[self.y_names[0]], doc="The first target column.")

    def __len__(self) -> int:
        return len(self.items) if self.items is not None else len(self._raw)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The processed rows as ``(cats, conts, targets?)`` tensors."""
        table = {c: self.items[c].to_numpy() for c in self.items.columns}
        return self.processor.tensors(table, labelled=all(c in table for c in self.y_names) and bool(self.y_names))

    def decode(self) -> pd.DataFrame:
        """The processed rows decoded: category names and unnormalised continuous values."""
        cats, conts, *ys = self.tensors()
        return self.processor.decode(cats, conts, ys[0] if ys else None, index=self.items.index)

    def show(self, max_n: int = 10) -> None:
        """Show the first ``max_n`` rows, decoded (displayed in a notebook, else printed)."""
        show_frame(self._view(slice(0, max_n)).decode())

    def dataloaders(self, bs: int = 64, val_bs: int | None = None, shuffle: bool = True, device: Any = None,
                    path: str = ".", seed: int | None = None, **kwargs: Any) -> "TabularDataLoaders":
        """`TabularDataLoaders` over these rows (the validation loader is empty without a split).

        ``kwargs`` are the other loader arguments of `TabularDataLoaders.from_tabular` (``drop_last``,
        ``shuffle_train``, and fastai's ``num_workers``/``pin_memory``/``persistent_workers``, ignored).
        """
        return TabularDataLoaders.from_tabular(self, bs=bs, val_bs=val_bs, shuffle=shuffle,
                                               device=device if device is not None else self.device,
                                               path=path, seed=seed, **kwargs)


def _check_roles(cats: list[str], conts: list[str], ys: list[str]) -> None:
    roles = {"cat_names": cats, "cont_names": conts, "y_names": ys}
    seen: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if name in seen:
                raise ValueError(f"Column {name!r} is in both `{seen[name]}` and `{role}`; give each column one role")
            seen[name] = role



def cont_cat_split(df: pd.DataFrame, max_card: int = 20, dep_var: str | Sequence[str] | None = None
                   ) -> tuple[list[str], list[str]]:
    """Split columns into continuous and categorical: floats, and integers with more than ``max_card``
    distinct values, are continuous; the rest (text, booleans, small integers) categorical.

    Returns:
        ``(cont_names, cat_names)``, leaving out ``dep_var``.
    """
    skip = set(as_names(dep_var, "dep_var"))
    conts, cats = [], []
    for col in df.columns:
        if col in skip:
            continue
        dtype = df[col].dtype
        is_cont = pd.api.types.is_float_dtype(dtype) or (
            pd.api.types.is_integer_dtype(dtype) and df[col].nunique() > max_card)
        (conts if is_cont else cats).append(col)
    return conts, cats


def _check_loader_kwargs(kwargs: dict) -> None:
    """Raise on keyword arguments that are neither loader options nor fastai's ignored worker options."""
    loader = ("drop_last", "shuffle_train", *_IGNORED)
    unknown = sorted(k for k in kwargs if k not in loader)
    if unknown:
        raise TypeError(f"TabularDataLoaders got unexpected keyword argument(s) {unknown}; loader arguments are bs, "
                        f"val_bs, shuffle, device, seed, {', '.join(loader[:2])}, and {list(_IGNORED)} (ignored)")


def _index_split(n: int, valid_idx: Sequence[int]) -> tuple[list[int], list[int]]:
    valid = [int(i) for i in valid_idx]
    bad = [i for i in valid if not 0 <= i < n]
    if bad:
        raise ValueError(f"`valid_idx` must hold row positions in 0..{n - 1}; received out-of-range {bad[:5]}")
    taken = set(valid)
    return [i for i in range(n) if i not in taken], valid


def show_tabular_batch(dls: "TabularDataLoaders", batch: tuple, max_n: int = 9, **kwargs: Any) -> None:
    """Show the first ``max_n`` rows of a batch as a table, decoded: category names, unnormalised values."""
    cats, conts, *ys = batch
    show_frame(dls.processor.decode(cats[:max_n], conts[:max_n], ys[0][:max_n] if ys else None))


class TabularDataLoaders(DataLoaders):
    """Training and validation loaders over a processed table, plus the fitted procs (``processor``).

    Batches are ``(cats, conts, y)``; ``n_inp`` is 2. ``vocab`` holds the target classes, ``loss_func`` is the
    loss the target's kind implies (`lamina.data.transforms.TARGET_LOSSES`): `CrossEntropyLossFlat`
    (classification), `MSELossFlat` (regression) or `BCEWithLogitsLossFlat` (several 0/1 label columns).
    """

    build_loss = staticmethod(loss_from_config)

    def __init__(self, *loaders: TensorDataLoader, processor: TabularProcessor, **kwargs: Any):
        super().__init__(*loaders, **kwargs)
        self.processor = processor

    cat_names = property(lambda self: self.processor.cat_names, doc="Categorical inputs (with `<col>_na`).")
    cont_names = property(lambda self: self.processor.cont_names, doc="Continuous inputs.")
    y_names = property(lambda self: self.processor.y_names, doc="Target columns.")
    classes = property(lambda self: self.processor.classes, doc="Vocabulary of each categorical column.")
    procs = property(lambda self: self.processor.procs, doc="The fitted procs.")

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", procs: Sequence[TabularProc | type] | None = None,
                cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                y_names: str | Sequence[str] | None = None, y_block: Any = None,
                valid_idx: Sequence[int] | None = None, bs: int = 64, val_bs: int | None = None,
                shuffle: bool = True, device: Any = None, seed: int | None = None,
                valid_pct: float = 0.2, **kwargs: Any) -> "TabularDataLoaders":
        """Process ``df`` and build the loaders.

        Args:
            df: the data.
            path: where models and exports are saved.
            procs: `Categorify`, `FillMissing`, `Normalize` (classes or instances; run in that order).
            cat_names: categorical columns.
            cont_names: continuous columns (default: every column not in ``cat_names`` or ``y_names``).
            y_names: the target column(s).
            y_block: the kind of target (see `TabularPandas`); default: classification for text targets.
            valid_idx: row positions of the validation rows; default: a random ``valid_pct`` share.
            bs, val_bs: training and validation batch sizes (``val_bs`` defaults to ``bs``).
            shuffle: shuffle the training rows each epoch.
            device: where the tensors live (default: the best available device).
            seed: seeds the random split and the shuffles (unseeded, as in fastai, by default).
            valid_pct: share of validation rows for the random split.
            **kwargs: the other loader arguments of `from_tabular` (``drop_last``, ``shuffle_train``,
                ``num_workers``...).
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"`df` must be a pandas DataFrame; received {type(df).__name__}")
        if len(df) == 0:
            raise ValueError(f"`df` has no rows (its columns: {list(df.columns)[:10]}): there is nothing to learn from")
        ys = as_names(y_names, "y_names")
        if not ys:
            raise ValueError("`y_names` is required: name the target column, e.g. y_names='salary'")
        _check_loader_kwargs(kwargs)
        cats = as_names(cat_names, "cat_names")
        if cont_names is None:
            cont_names = [c for c in df.columns if c not in cats and c not in ys]
        splits = _index_split(len(df), valid_idx) if valid_idx is not None else \
            RandomSplitter(valid_pct, seed)(range(len(df)))
        to = TabularPandas(df, procs, cats, cont_names, ys, y_block=y_block, splits=splits)
        return cls.from_tabular(to, path=path, bs=bs, val_bs=val_bs, shuffle=shuffle, device=device, seed=seed,
                                **kwargs)

    @classmethod
    def from_csv(cls, csv: str | Path, skipinitialspace: bool = True, **kwargs: Any) -> "TabularDataLoaders":
        """`from_df` on ``pd.read_csv(csv, skipinitialspace=skipinitialspace)``.

        Raises:
            pandas.errors.EmptyDataError: (a ValueError) naming the file, when it is empty or has no rows.
        """
        return cls.from_df(read_csv(csv, skipinitialspace=skipinitialspace), **kwargs)

    @classmethod
    def from_tabular(cls, to: TabularPandas, path: str | Path = ".", bs: int = 64, val_bs: int | None = None,
                     shuffle: bool = True, device: Any = None, seed: int | None = None, drop_last: bool | None = None,
                     shuffle_train: bool | None = None, **kwargs: Any) -> "TabularDataLoaders":
        """Loaders over a processed `TabularPandas` (its training rows, then its validation rows).

        Args:
            to: the processed table.
            path: where models and exports are saved.
            bs, val_bs: training and validation batch sizes (``val_bs`` defaults to ``bs``).
            shuffle: shuffle the training rows each epoch (``shuffle_train`` is fastai's older name for it).
            device: where the tensors live (default: the best available device).
            seed: seeds the shuffles.
            drop_last: drop the last partial training batch (default: when shuffling, as fastai).
            **kwargs: ``num_workers``, ``pin_memory``, ``persistent_workers``: accepted for fastai compatibility
                and ignored (batches are slices of tensors: there are no workers).

        Raises:
            TypeError: naming any other keyword argument.
        """
        _check_loader_kwargs(kwargs)
        shuffle = shuffle if shuffle_train is None else bool(shuffle_train)
        drop_last = shuffle if drop_last is None else bool(drop_last)
        tensors, n_train = to.tensors(), to.n_train
        processor = to.processor
        kinds = ("tab_cat", "tab_cont", processor.y_kind)[:len(tensors)]
        train = TensorDataLoader([t[:n_train] for t in tensors], bs=bs, shuffle=shuffle, drop_last=drop_last,
                                 device=device, kinds=kinds, split_idx=0, seed=seed)
        valid = TensorDataLoader([t[n_train:] for t in tensors], bs=val_bs or bs, device=device, kinds=kinds,
                                 split_idx=1)
        return cls._assemble(train, valid, processor, path, bs, val_bs)

    @classmethod
    def _assemble(cls, train: TensorDataLoader, valid: TensorDataLoader, processor: TabularProcessor,
                  path: str | Path, bs: int, val_bs: int | None) -> "TabularDataLoaders":
        kind = processor.y_kind
        vocab = list(processor.y_vocab) if processor.y_vocab is not None else None
        n_out = len(processor.y_names) if kind == "regression" else (len(vocab) if vocab is not None else None)
        inference = {"builder": "tabular_inference_dls",
                     "kwargs": {"processor": processor.to_config(), "bs": bs, "val_bs": val_bs}}
        train.show = valid.show = show_tabular_batch
        return cls(train, valid, path=str(path), vocab=vocab, n_out=n_out,
                   loss_func=target_loss_config(kind), n_inp=2, inference=inference,
                   processor=processor)

    def test_dl(self, test_items: Any, rm_type_tfms: Any = None, process: bool = True, inplace: bool = False,
                with_labels: bool | None = None, bs: int | None = None, **kwargs: Any) -> TensorDataLoader:
        """A loader over new rows, processed with the fitted procs (validation order, no shuffling).

        Args:
            test_items: a DataFrame, a list of rows, or one row (Series or dict).
            with_labels: include the targets; None includes them when every target column is present.
            bs: batch size (default: the validation loader's).
            rm_type_tfms, process, inplace: accepted for fastai compatibility (rows are always processed,
                and the input frame is never modified).

        Raises:
            ValueError: naming the column, for a missing column, a non-numeric continuous value, or an
                unknown target label.

        Warns:
            UserWarning: naming the columns and values, for categories the training rows did not have
                (encoded as ``#na#``) and for gaps in continuous columns that had none in training.
        """
        tensors = self.processor.encode(test_items, with_labels)
        kinds = ("tab_cat", "tab_cont", self.processor.y_kind)[:len(tensors)]
        return self.valid.new(tensors, shuffle=False, drop_last=False, kinds=kinds, bs=bs or self.valid.bs)


@register("data")
def tabular_inference_dls(processor: dict, bs: int = 64, val_bs: int | None = None, path: str = ".",
                          device: Any = "cpu", **_: Any) -> TabularDataLoaders:
    """Loaders without rows, with the fitted procs from ``processor`` (a `TabularProcessor.to_config()`
    dict): what `load_learner` rebuilds so `predict` and `test_dl` work on raw rows."""
    proc = TabularProcessor.from_config(processor)
    empty = proc.tensors({c: [] for c in proc.cat_names + proc.cont_names + proc.y_names}, labelled=True) \
        if proc.y_names else proc.tensors({c: [] for c in proc.cat_names + proc.cont_names}, labelled=False)
    kinds = ("tab_cat", "tab_cont", proc.y_kind)[:len(empty)]
    train = TensorDataLoader(empty, bs=bs, device=device, kinds=kinds, split_idx=0)
    valid = TensorDataLoader(empty, bs=val_bs or bs, device=device, kinds=kinds, split_idx=1)
    return TabularDataLoaders._assemble(train, valid, proc, path, bs, val_bs)
