"""Tabular processors ("procs"): fitted once on the training rows, then applied to any rows.

A proc works on a *table*: a dict ``column name → 1-d array`` (numpy, or a pandas ``Categorical`` for
category-typed columns), with continuous columns already converted to float64. The same code therefore
processes 32,000 training rows and the single row of a prediction, without building a DataFrame.

Procs run in a fixed order whatever the order of the list they come in: `FillMissing` (fills continuous
gaps and adds ``<col>_na`` flag columns, which must then be categorified) → `Categorify` → `Normalize`.
Every proc is described by JSON (`to_config` / `proc_from_config`), so an exported learner carries them.

`Normalize` is the same class as the vision batch transform of that name (``lamina.data.normalize``), so
either star import may come last; it is a proc by its methods (``setup``, ``encode``, ``decode``, ``order``,
``to_config``, ``from_config``), not a `TabularProc` subclass.

Example:
    >>> procs = [Categorify(), FillMissing(), Normalize()]
    >>> to = TabularPandas(df, procs, cat_names=['workclass'], cont_names=['age'], y_names='salary')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data.normalize import Normalize
from ..data.transforms import CategoryMap
from .tables import user_stacklevel, vocab_codes, warn_stripped

__all__ = ["TabularProc", "FillStrategy", "FillMissing", "Categorify", "Normalize", "ColumnNames", "PROCS",
           "proc_from_config"]

Table = dict  # column name -> 1-d array of values, one per row


@dataclass
class ColumnNames:
    """The input columns by role; `FillMissing` appends its ``<col>_na`` flags to ``cats`` when fitted."""

    cats: list[str] = field(default_factory=list)
    conts: list[str] = field(default_factory=list)


class TabularProc:
    """Base class: `setup` learns from the training rows, `encode` transforms rows in place.

    Subclasses set ``order`` (lower runs first), implement `setup`, `encode`, `decode` and `_state`, and
    register themselves in `PROCS` so exports can rebuild them.
    """

    order: int = 0

    def setup(self, train: Table, names: ColumnNames) -> None:
        """Learn the proc's statistics from the training rows (may add columns to ``names``)."""

    def encode(self, table: Table, names: ColumnNames) -> None:
        """Transform ``table`` in place."""

    def decode(self, table: Table, names: ColumnNames) -> None:
        """Undo `encode` in place where it can be undone (for showing)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe description: ``{"name": <class name>, **state}``."""
        return {"name": type(self).__name__, **self._state()}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TabularProc":
        """Rebuild a fitted proc from `to_config()`'s dict (procs without state need no override)."""
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FillStrategy:
    """How `FillMissing` picks a column's fill value from its training values (``fill`` is the constant)."""

    @staticmethod
    def median(values: np.ndarray, fill: Any = None) -> float:
        """The median of the non-missing training values (``fill`` is unused)."""
        return float(np.nanmedian(values))

    @staticmethod
    def constant(values: np.ndarray, fill: Any = 0) -> float:
        """``fill`` itself, whatever the values (`FillMissing` passes ``fill_vals[col]``, default 0)."""
        return float(fill)

    @staticmethod
    def mode(values: np.ndarray, fill: Any = None) -> float:
        """The most frequent non-missing training value, the smallest on ties (``fill`` is unused)."""
        return float(pd.Series(values).mode(dropna=True).iloc[0])


_STRATEGIES: dict[str, Callable] = {"median": FillStrategy.median, "constant": FillStrategy.constant,
                                    "mode": FillStrategy.mode}


class FillMissing(TabularProc):
    """Fill missing continuous values; flag them in a ``<col>_na`` categorical column.

    Columns with missing values in the training rows get their strategy's value (the training median by
    default) and, with ``add_col``, a boolean ``<col>_na`` column appended to the categorical columns.
    A column that had no gaps in training but has some in new rows is filled with the same strategy's value
    from the training rows, and a warning names it (fastai raises there).

    Args:
        fill_strategy: `FillStrategy.median`, `.constant` or `.mode` (or its name).
        add_col: add the ``<col>_na`` flag columns.
        fill_vals: the constants of `FillStrategy.constant`, per column (default 0).
    """

    order = 0

    def __init__(self, fill_strategy: Callable | str = FillStrategy.median, add_col: bool = True,
                 fill_vals: dict[str, float] | None = None):
        name = fill_strategy if isinstance(fill_strategy, str) else getattr(fill_strategy, "__name__", "")
        if name not in _STRATEGIES:
            raise ValueError(f"`fill_strategy` must be FillStrategy.median, .constant or .mode (or their names); "
                             f"received: fill_strategy={fill_strategy!r}")
        self.strategy, self.add_col = name, add_col
        self.fill_vals = dict(fill_vals or {})
        self.na_dict: dict[str, float] = {}   # columns with gaps in training -> fill value
        self.fallback: dict[str, float] = {}  # every continuous column -> fill value for unexpected gaps

    def setup(self, train: Table, names: ColumnNames) -> None:
        strategy = _STRATEGIES[self.strategy]
        self.na_dict, self.fallback = {}, {}
        for col in names.conts:
            values = train[col]
            if len(values) and np.isnan(values).all() and self.strategy != "constant":
                raise ValueError(f"Continuous column {col!r} has no values in the training rows, so FillMissing "
                                 "cannot compute its fill value; drop the column or fill it before")
            fill = strategy(values, self.fill_vals.get(col, 0))
            self.fallback[col] = fill
            if np.isnan(values).any():
                self.na_dict[col] = fill
        if self.add_col:
            names.cats.extend(f"{col}_na" for col in self.na_dict if f"{col}_na" not in names.cats)

    def encode(self, table: Table, names: ColumnNames) -> None:
        surprises = {}
        for col in names.conts:
            values = table[col]
            missing = np.isnan(values)
            if col in self.na_dict:
                if self.add_col:
                    table[f"{col}_na"] = missing
                table[col] = np.where(missing, self.na_dict[col], values)
            elif missing.any() and col in self.fallback:
                surprises[col] = int(missing.sum())
                table[col] = np.where(missing, self.fallback[col], values)
        if surprises:
            listed = ", ".join(f"{c!r} ({n} rows)" for c, n in surprises.items())
            warnings.warn(f"Continuous column(s) {listed} have missing values but had none in the training rows: "
                          f"filled with the training {self.strategy}. Without a `<col>_na` flag the model cannot "
                          "tell these rows apart; to flag them, fill or flag the column before training.",
                          stacklevel=user_stacklevel())

    def _state(self) -> dict[str, Any]:
        return {"fill_strategy": self.strategy, "add_col": self.add_col, "fill_vals": self.fill_vals,
                "na_dict": self.na_dict, "fallback": self.fallback}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "FillMissing":
        proc = cls(cfg["fill_strategy"], cfg["add_col"], cfg.get("fill_vals"))
        proc.na_dict, proc.fallback = dict(cfg["na_dict"]), dict(cfg["fallback"])
        return proc

    def __repr__(self) -> str:
        return f"FillMissing(fill_strategy={self.strategy}, add_col={self.add_col}, na_dict={self.na_dict})"


class Categorify(TabularProc):
    """Replace each categorical column by integer codes of a vocabulary fitted on the training rows.

    The vocabulary is ``['#na#', *sorted training values]`` (a pandas category column keeps its own
    order); missing and unseen values get code 0 (``#na#``). ``categorify['col']`` or ``classes['col']``
    is a column's vocabulary. A text value known only without its surrounding spaces gets that value's
    code, with a warning naming the column and the values (once per column).

    Attributes:
        unseen: per column, the values of the rows last encoded that the vocabulary lacks (each became
            ``#na#``), one entry per row; `TabularProcessor.process` warns with them for new rows.
    """

    order = 1

    def __init__(self) -> None:
        self.classes: dict[str, CategoryMap] = {}
        self.unseen: dict[str, list] = {}
        self._decode_arrays: dict[str, np.ndarray] = {}
        self._warned: set[str] = set()  # columns already warned about values matched after stripping spaces

    def __getitem__(self, col: str) -> CategoryMap:
        return self.classes[col]

    def setup(self, train: Table, names: ColumnNames) -> None:
        self.classes = {col: CategoryMap(pd.Series(train[col]), add_na=True) for col in names.cats}
        self._decode_arrays = {}

    def encode(self, table: Table, names: ColumnNames) -> None:
        stripped: dict[str, list] = {}
        self.unseen = {}
        for col in names.cats:
            table[col] = vocab_codes(self.classes[col], table[col], stripped.setdefault(col, []),
                                     self.unseen.setdefault(col, []))
        warn_stripped(stripped, self._warned)

    def decode(self, table: Table, names: ColumnNames) -> None:
        for col in names.cats:
            if col not in self._decode_arrays:
                items = self.classes[col].items
                self._decode_arrays[col] = np.empty(len(items), dtype=object)
                self._decode_arrays[col][:] = items
            table[col] = self._decode_arrays[col][np.asarray(table[col], dtype=np.int64)]

    def _state(self) -> dict[str, Any]:
        return {"classes": {col: vocab.to_list() for col, vocab in self.classes.items()}}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Categorify":
        proc = cls()
        proc.classes = {col: CategoryMap(items[1:], sort=False, add_na=True) for col, items in cfg["classes"].items()}
        return proc

    def __repr__(self) -> str:
        return f"Categorify({', '.join(f'{c}: {len(v)}' for c, v in self.classes.items())})"


# The procs an export can rebuild; register your own subclass here to export it.
PROCS: dict[str, type] = {"FillMissing": FillMissing, "Categorify": Categorify, "Normalize": Normalize}


def proc_from_config(cfg: dict[str, Any]) -> TabularProc:
    """Rebuild a fitted proc from its `to_config()` dict.

    Raises:
        ValueError: when the proc's name is not registered in `PROCS`.
    """
    name = cfg.get("name") if isinstance(cfg, dict) else None
    if name not in PROCS:
        raise ValueError(f"unknown tabular proc {name!r}; known procs: {', '.join(sorted(PROCS))}. Register a "
                         f"custom one with `PROCS[{name!r}] = YourProc` (it needs a `from_config` classmethod)")
    return PROCS[name].from_config(cfg)
