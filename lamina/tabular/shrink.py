"""Smaller column types for a DataFrame: `df_shrink_dtypes` says which, `df_shrink` applies them.

Integers take the smallest integer type that holds their range (unsigned too with ``int2uint``), floats
``float32`` when their range fits it (as fastai: float64 precision is given up), and text columns become
pandas categories (``obj2cat``). Booleans, categories and dates are left as they are.

Example:
    >>> df = df_shrink(df)                       # e.g. int64 → int8, float64 → float32, text → category
    >>> df_shrink_dtypes(df, skip=['id'])        # {column: new dtype}, for the columns that would change
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["df_shrink_dtypes", "df_shrink"]

_SIGNED = (np.int8, np.int16, np.int32, np.int64)
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)
_FLOATS = (np.float32, np.float64)


def _smallest(column: pd.Series, candidates: tuple) -> np.dtype | None:
    """The first of ``candidates`` whose range holds the column's values (None for an empty or all-NaN column)."""
    low, high = column.min(), column.max()
    if pd.isna(low) or pd.isna(high):
        return None
    for kind in candidates:
        info = np.iinfo(kind) if np.issubdtype(kind, np.integer) else np.finfo(kind)
        if info.min <= low and high <= info.max:
            return np.dtype(kind)
    return None


def _is_text(dtype: Any) -> bool:
    # numpy object columns, and pandas' string dtype (text's default from pandas 3)
    return dtype == object or isinstance(dtype, pd.StringDtype)


def df_shrink_dtypes(df: pd.DataFrame, skip: Iterable[Any] = (), obj2cat: bool = True,
                     int2uint: bool = False) -> dict:
    """The smaller dtype for each column of ``df`` that can take one: ``{column: dtype}``.

    Args:
        df: the table (not changed).
        skip: columns to leave as they are.
        obj2cat: text columns become ``'category'``.
        int2uint: integer columns with no negative value become unsigned.

    Raises:
        TypeError: when ``df`` is not a DataFrame.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame; received {type(df).__name__}")
    skip, new = set(skip), {}
    for name, dtype in df.dtypes.items():
        if name in skip:
            continue
        if _is_text(dtype):
            if obj2cat:
                new[name] = "category"
            continue
        if not isinstance(dtype, np.dtype) or dtype.kind not in "iuf":  # nullable, bool, dates, categories
            continue
        if dtype.kind == "f":
            candidates = _FLOATS
        elif dtype.kind == "u" or (int2uint and df[name].min() >= 0):
            candidates = _UNSIGNED
        else:
            candidates = _SIGNED
        smaller = _smallest(df[name], candidates)
        if smaller is not None and smaller.itemsize < dtype.itemsize:
            new[name] = smaller
    return new


def df_shrink(df: pd.DataFrame, skip: Iterable[Any] = (), obj2cat: bool = True, int2uint: bool = False) -> pd.DataFrame:
    """A copy of ``df`` with the smaller dtypes of `df_shrink_dtypes` (same arguments)."""
    return df.astype(df_shrink_dtypes(df, skip, obj2cat=obj2cat, int2uint=int2uint))
