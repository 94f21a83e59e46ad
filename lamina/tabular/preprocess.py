"""Turning a DataFrame into model inputs: column roles, fitted procs, targets, and `TabularPandas`.

`TabularProcessor` is the fitted pipeline (procs + column roles + target encoding). It reads a DataFrame,
a list of rows or a single row, checks it, runs the procs and returns arrays or tensors; it also decodes
tensors back into a readable DataFrame. Everything it knows is JSON (`to_config`), which is how an
exported learner processes raw rows in another process.

`TabularPandas` is fastai's user-facing object around it: the processed frame, the split, ``.train`` /
``.valid``, ``.classes``, ``.show()``, ``.new(df)`` and ``.dataloaders()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.transforms import CategoryMap
from .procs import (Categorify, ColumnNames, FillMissing, FillStrategy, Normalize, TabularProc,
                    proc_from_config)
from .tables import (decode_targets, encode_targets, read_table, show_frame, target_kind, tensors_of,
                     warn_unseen)

__all__ = ["TabularPandas", "TabularProcessor", "cont_cat_split", "Categorify", "FillMissing", "Normalize",
           "FillStrategy", "TabularProc"]


def _as_names(names: str | Sequence[str] | None, arg: str) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"`{arg}` must be a column name or a list of column names; received: {arg}={names!r}")
    return list(names)


def _as_procs(procs: Sequence[TabularProc | type] | None) -> list[TabularProc]:
    out = []
    for proc in procs or []:
        proc = proc() if isinstance(proc, type) else proc
        if not isinstance(proc, (TabularProc, Normalize)):  # Normalize is shared with images: no TabularProc
            raise TypeError(f"`procs` must hold tabular procs such as Categorify, FillMissing or Normalize (classes "
                            f"or instances); received {proc!r}")
        out.append(proc)
    return sorted(out, key=lambda p: p.order)  # FillMissing -> Categorify -> Normalize, whatever the list order


class TabularProcessor:
    """The fitted preprocessing of a table: column roles, procs and the target encoding.

    Args:
        procs: the procs (classes or instances), run in ``order`` (FillMissing → Categorify → Normalize).
        cat_names: categorical input columns (fitting `FillMissing` adds ``<col>_na`` columns).
        cont_names: continuous input columns.
        y_names: target columns.
        y_kind: ``'category'``, ``'regression'``, ``'multicategory'`` or None (no targets).
        y_vocab: the target classes (``'category'``) or the label names (``'multicategory'``).
    """

    def __init__(self, procs: Sequence[TabularProc | type] | None, cat_names: Sequence[str], cont_names: Sequence[str],
                 y_names: Sequence[str] = (), y_kind: str | None = None, y_vocab: CategoryMap | None = None):
        self.procs = _as_procs(procs)
        self.input_cats, self.cont_names = list(cat_names), list(cont_names)
        self.names = ColumnNames(list(cat_names), list(cont_names))
        self.y_names, self.y_kind, self.y_vocab = list(y_names), y_kind, y_vocab
        self._warned: set[str] = set()  # target columns already warned about labels matched after stripping spaces

    @property
    def cat_names(self) -> list[str]:
        """Categorical model inputs, including the ``<col>_na`` flags added by `FillMissing`."""
        return self.names.cats

    @property
    def classes(self) -> dict[str, CategoryMap]:
        """Vocabulary of each categorical column (from `Categorify`)."""
        cat = next((p for p in self.procs if isinstance(p, Categorify)), None)
        return dict(cat.classes) if cat is not None else {}

    def read(self, data: Any, with_labels: bool | None = None) -> tuple[dict, bool]:
        """Check and read the needed columns of ``data`` (DataFrame, rows, or one row) → ``(table, labelled)``."""
        return read_table(data, self.input_cats, self.cont_names, self.y_names, with_labels)

    def setup(self, table: dict, n_train: int) -> dict:
        """Fit the procs on the first ``n_train`` rows of ``table`` (in order), then process every row.

        The target classes come from every labelled row, validation included: a class that falls only in the
        validation split still gets an output (fastai fails there with "Target out of bounds").
        """
        if n_train < 1:
            raise ValueError("The training split is empty: the procs need training rows to learn from. Lower "
                             "`valid_pct` or pass a `valid_idx` that leaves rows for training")
        if self.y_kind == "category" and self.y_vocab is None:
            self.y_vocab = CategoryMap(pd.Series(table[self.y_names[0]]), sort=True)
        if self.y_kind == "category":
            _check_two_classes(self.y_names[0], self.y_vocab)
        for proc in self.procs:
            proc.setup({col: values[:n_train] for col, values in table.items()}, self.names)
            proc.encode(table, self.names)
        if self.cat_names and not any(isinstance(p, Categorify) for p in self.procs):
            raise ValueError(f"Categorical columns {self.cat_names} need Categorify among the `procs` to become "
                             "integer codes; add it: procs=[Categorify, FillMissing, Normalize]")
        return self._finish(table, labelled=bool(self.y_names))

    def process(self, table: dict, labelled: bool) -> dict:
        """Run the fitted procs on new rows ``table`` (in place) and encode its targets if ``labelled``.

        Warns (once per call) naming the categorical columns with values the training rows did not have,
        which become ``#na#`` (the validation rows at `setup` are not reported: rare values fall there often).
        """
        for proc in self.procs:
            proc.encode(table, self.names)
        categorify = next((p for p in self.procs if isinstance(p, Categorify)), None)
        if categorify is not None:
            warn_unseen(categorify.unseen)
        return self._finish(table, labelled)

    def _finish(self, table: dict, labelled: bool) -> dict:
        gaps = [c for c in self.cont_names if np.isnan(table[c]).any()]
        if gaps:
            raise ValueError(f"Continuous column(s) {gaps} have missing values and no proc fills them; add "
                             "FillMissing to `procs` (or fill them before)")
        if labelled:
            table.update(encode_targets(table, self.y_names, self.y_kind, self.y_vocab, self._warned))
        return table

    def tensors(self, table: dict, labelled: bool) -> tuple[torch.Tensor, ...]:
        """``(cats int64 [n, n_cat], conts float32 [n, n_cont])`` plus the targets if ``labelled``."""
        return tensors_of(table, self.cat_names, self.cont_names, self.y_names if labelled else [], self.y_kind)

    def encode(self, data: Any, with_labels: bool | None = None) -> tuple[torch.Tensor, ...]:
        """Raw rows (DataFrame, list of rows, a Series or dict) → tensors, with the fitted procs."""
        table, labelled = self.read(data, with_labels)
        return self.tensors(self.process(table, labelled), labelled)

    def decode_table(self, cats: torch.Tensor, conts: torch.Tensor, ys: torch.Tensor | None = None) -> dict:
        """Tensors back to readable columns: categories by name, continuous values unnormalised."""
        cats, conts = np.asarray(cats.cpu()), np.asarray(conts.detach().cpu(), dtype=np.float64)
        table = {c: cats[:, i] for i, c in enumerate(self.cat_names)}
        table.update({c: conts[:, i] for i, c in enumerate(self.cont_names)})
        for proc in reversed(self.procs):
            proc.decode(table, self.names)
        if ys is not None and self.y_names:
            table.update(decode_targets(ys, self.y_names, self.y_kind, self.y_vocab))
        return table

    def decode(self, cats: torch.Tensor, conts: torch.Tensor, ys: torch.Tensor | None = None,
               index: Any = None) -> pd.DataFrame:
        """Tensors back to a readable DataFrame (see `decode_table`)."""
        return pd.DataFrame(self.decode_table(cats, conts, ys), index=index, copy=False)

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe description of the fitted pipeline."""
        return {"procs": [p.to_config() for p in self.procs], "cat_names": self.input_cats,
                "cont_names": self.cont_names, "y_names": self.y_names, "y_kind": self.y_kind,
                "all_cat_names": self.cat_names,
                "y_vocab": self.y_vocab.to_list() if self.y_vocab is not None else None}

    def json_problem(self) -> str | None:
        """Why `to_config` cannot be written as JSON (a vocabulary value such as a date), naming the column; or None.

        Only text, numbers and booleans survive JSON unchanged, so anything else is reported rather than
        converted (a date read back as text would no longer match the rows it came from).
        """
        vocabs = dict(self.classes)
        if self.y_vocab is not None and self.y_names:
            vocabs.setdefault(self.y_names[0], self.y_vocab)
        for col, vocab in vocabs.items():
            bad = next((v for v in vocab.to_list() if not isinstance(v, (str, int, float, bool))), None)
            if bad is not None:
                return (f"Column {col!r} holds values an export cannot store as JSON, e.g. {bad!r} "
                        f"({type(bad).__name__}); convert the column to text before building the data: "
                        f"df[{col!r}] = df[{col!r}].astype(str)")
        return None

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TabularProcessor":
        """Rebuild a fitted pipeline from `to_config()`'s dict."""
        vocab = cfg.get("y_vocab")
        vocab = CategoryMap(vocab, sort=False) if vocab is not None else None
        processor = cls([proc_from_config(p) for p in cfg["procs"]], cfg["cat_names"], cfg["cont_names"],
                        cfg["y_names"], cfg["y_kind"], vocab)
        processor.names.cats = list(cfg["all_cat_names"])
        return processor


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
        cats, conts, ys = _as_names(cat_names, "cat_names"), _as_names(cont_names, "cont_names"), \
            _as_names(y_names, "y_names")
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
                    path: str = ".", seed: int | None = None, **kwargs: Any) -> Any:
        """`TabularDataLoaders` over these rows (the validation loader is empty without a split).

        ``kwargs`` are the other loader arguments of `TabularDataLoaders.from_tabular` (``drop_last``,
        ``shuffle_train``, and fastai's ``num_workers``/``pin_memory``/``persistent_workers``, ignored).
        """
        from .data import TabularDataLoaders
        return TabularDataLoaders.from_tabular(self, bs=bs, val_bs=val_bs, shuffle=shuffle,
                                               device=device if device is not None else self.device,
                                               path=path, seed=seed, **kwargs)


def _check_two_classes(col: str, vocab: CategoryMap) -> None:
    """Raise when a classification target has a single class: the model would learn to answer it always.

    With one class the softmax has one output, so the loss is 0 from the first batch and every prediction is
    that class with probability 1.0: nothing is learned and nothing says so. (No class at all means every label
    is missing, which the target encoding reports.)
    """
    if len(vocab) == 1:
        raise ValueError(f"Target column {col!r} holds a single class, {list(vocab)[0]!r}: a classifier needs at least "
                         "two classes. Add rows of the other classes, or, for a numeric target, train a regression "
                         "instead: y_block=RegressionBlock()")


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
    skip = set(_as_names(dep_var, "dep_var"))
    conts, cats = [], []
    for col in df.columns:
        if col in skip:
            continue
        dtype = df[col].dtype
        is_cont = pd.api.types.is_float_dtype(dtype) or (
            pd.api.types.is_integer_dtype(dtype) and df[col].nunique() > max_card)
        (conts if is_cont else cats).append(col)
    return conts, cats
