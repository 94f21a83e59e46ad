"""Category vocabularies shared by every application (image labels, table columns, users and items)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...foundation import L

__all__ = ["CategoryMap", "NA"]

NA = "#na#"


class CategoryMap:
    """An ordered vocabulary: value ↔ integer code.

    Args:
        values: the (training) values; NaN/None are ignored.
        sort: sort the unique values (else keep first-seen order; a pandas categorical keeps its own order).
        add_na: put ``'#na#'`` first, at code 0, for missing and unseen values.

    Example:
        >>> vocab = CategoryMap(["dog", "cat", "dog"]); list(vocab), vocab.encode(["cat", "dog"])
        (['cat', 'dog'], array([0, 1]))
    """

    def __init__(self, values: Iterable[Any], sort: bool = True, add_na: bool = False):
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        if isinstance(series.dtype, pd.CategoricalDtype):
            uniques = list(series.cat.categories)
        else:
            uniques = list(pd.unique(series.dropna()))
            if sort:
                try:
                    uniques = sorted(uniques)
                except TypeError:  # mixed types: order by their text
                    uniques = sorted(uniques, key=str)
        self.add_na = add_na
        self.items: list = ([NA] if add_na else []) + [_plain(u) for u in uniques if not (add_na and u == NA)]
        self.o2i = {v: i for i, v in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        """The value at code ``i``; a slice, or a list/array/tensor of codes or a mask, gives an `L` of values."""
        if isinstance(i, (int, np.integer)):
            return self.items[i]
        return L(self.items)[i]

    def __iter__(self):
        return iter(self.items)

    def __contains__(self, value: Any) -> bool:
        return _plain(value) in self.o2i

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (CategoryMap, list, tuple)) else NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(map(repr, self.items[:10]))
        return f"CategoryMap([{head}{', ...' if len(self) > 10 else ''}], {len(self)} items)"

    def encode(self, values: Sequence[Any] | pd.Series | np.ndarray) -> np.ndarray:
        """Codes of ``values`` (int64). Missing/unseen values get 0 (``#na#``) with ``add_na``, else -1."""
        if not isinstance(values, (pd.Series, np.ndarray)) and len(values) <= 16:
            # a handful of values (one row to predict): dict lookups beat building pandas objects (~0.1 ms)
            return np.array([self.o2i.get(_plain(v), 0 if self.add_na else -1) if not _is_missing(v)
                             else (0 if self.add_na else -1) for v in values], dtype=np.int64)
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        if getattr(self, "_index", None) is None:  # built once: the vocabulary never changes
            self._index = pd.Index(self.items[1:] if self.add_na else self.items, dtype=object)
        codes = self._index.get_indexer(series.astype(object)).astype(np.int64)  # -1 for missing and unseen
        return codes + 1 if self.add_na else codes

    def unknown(self, values: Sequence[Any]) -> list:
        """The distinct non-missing values not in the vocabulary (for error messages)."""
        unknown: dict = {}  # ordered, without repeats
        for v in values:
            if not _is_missing(v) and _plain(v) not in self.o2i:
                unknown.setdefault(v, None)
        return list(unknown)

    def decode(self, codes: Iterable[int]) -> list:
        """Values of ``codes``."""
        return [self.items[int(c)] for c in codes]

    def to_list(self) -> list:
        """JSON-friendly list of the vocabulary."""
        return [v.item() if isinstance(v, np.generic) else v for v in self.items]


def _plain(v: Any) -> Any:
    """numpy scalars become Python ones, so ``True`` and ``np.True_`` are the same key."""
    return v.item() if isinstance(v, np.generic) else v


def _is_missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
