"""Reading the CSV file of a ``from_csv`` factory, with errors that name the file.

pandas reports an empty file as ``EmptyDataError: No columns to parse from file``, without saying which
file; a file with a header line and no rows reads as an empty DataFrame, which fails later with a message
about splits or batches. `read_csv` names the file in both cases.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["read_csv"]


def read_csv(path: str | os.PathLike, arg: str = "csv", **kwargs: Any) -> Any:
    """``pd.read_csv(path, **kwargs)``, refusing a file without rows.

    Example:
        >>> df = read_csv(path/'adult.csv', skipinitialspace=True)

    Args:
        path: the CSV file.
        arg: the name of the factory's argument that gave ``path``, for the error message.
        **kwargs: `pandas.read_csv` arguments.

    Returns:
        the DataFrame, with at least one row.

    Raises:
        pandas.errors.EmptyDataError: (a ValueError) naming the file, when it is empty or has a header but no rows.
    """
    import pandas as pd  # here, so that importing lamina.vision stays fast
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)  # or an open file
    fix = f"`{arg}` must be a CSV file with a header line and one row per example; check that it was written in full"
    try:
        df = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as e:
        raise pd.errors.EmptyDataError(f"The CSV file {name} is empty (no header, no rows): {fix}") from e
    if len(df) == 0:
        raise pd.errors.EmptyDataError(f"The CSV file {name} has a header ({list(df.columns)[:10]}) but no rows: {fix}")
    return df
