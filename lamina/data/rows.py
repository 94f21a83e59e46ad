"""A `Datasets`' items: a list, or the rows of a DataFrame made on access."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["Rows", "as_items"]


class Rows(Sequence):
    """The rows of a DataFrame as a sequence, made on access (a list of row Series would take ~1 kB per row)."""

    def __init__(self, df: Any):
        self.df = df

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int) -> Any:
        return self.df.iloc[i]

    def __iter__(self):
        return (row for _, row in self.df.iterrows())


def as_items(items: Any) -> Sequence:
    """``items`` as a sequence: [] for None, a DataFrame's rows (`Rows`), else a list."""
    if items is None:
        return []
    if hasattr(items, "iterrows"):  # a DataFrame: one item per row
        return Rows(items)
    return list(items)
