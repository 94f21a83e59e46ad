"""`TabularProcessor`: the fitted preprocessing of a table (column roles, procs, target encoding), as JSON too.

It reads a DataFrame, a list of rows or a single row, checks it, runs the procs and returns arrays or tensors;
it also decodes tensors back into a readable DataFrame. Everything it knows is JSON (`to_config`), which is
how an exported learner processes raw rows in another process. `TabularPandas` (in `lamina.tabular.data`,
beside the loaders it builds) is fastai's user-facing object around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.transforms import CategoryMap
from .procs import Categorify, ColumnNames, Normalize, TabularProc, proc_from_config
from .tables import decode_targets, encode_targets, read_table, tensors_of, warn_unseen

__all__ = ["TabularProcessor", "as_names"]


def as_names(names: str | Sequence[str] | None, arg: str) -> list[str]:
    """Column names as a list: None gives ``[]``, one name ``[name]``.

    Raises:
        TypeError: naming the argument ``arg`` when an entry is not a column name.
    """
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
