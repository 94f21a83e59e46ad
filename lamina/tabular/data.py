"""`TabularDataLoaders`: a DataFrame (or CSV) → processed once → tensors → batches by index slicing.

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

import pandas as pd

from ..data.csvfiles import read_csv
from ..data.loaders import DataLoaders, TensorDataLoader
from ..data.splitters import RandomSplitter
from ..losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from ..registry import register
from .preprocess import TabularPandas, TabularProcessor, _as_names
from .procs import TabularProc
from .tables import show_frame

__all__ = ["TabularDataLoaders", "show_tabular_batch", "tabular_inference_dls"]

_IGNORED = ("num_workers", "pin_memory", "persistent_workers")  # fastai loader options with no meaning here
_LOSSES = {"category": CrossEntropyLossFlat, "regression": MSELossFlat, "multicategory": BCEWithLogitsLossFlat}


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

    Batches are ``(cats, conts, y)``; ``n_inp`` is 2. ``vocab`` holds the target classes, ``loss_func`` is
    `CrossEntropyLossFlat` (classification), `MSELossFlat` (regression) or `BCEWithLogitsLossFlat`
    (several 0/1 label columns).
    """

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
        ys = _as_names(y_names, "y_names")
        if not ys:
            raise ValueError("`y_names` is required: name the target column, e.g. y_names='salary'")
        _check_loader_kwargs(kwargs)
        cats = _as_names(cat_names, "cat_names")
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
                   loss_func=_LOSSES[kind]() if kind is not None else None, n_inp=2, inference=inference,
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
