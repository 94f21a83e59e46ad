"""Date features for tables: `add_datepart` (a date column → year, month, week, ...) and `add_elapsed_times`
(days since and until events, and event counts over a week, per store or other group).

Example (chapter 9 of the fastai book):
    >>> df = add_datepart(df, 'saledate')   # saleYear, saleMonth, ..., saleElapsed; saledate dropped
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["make_date", "add_datepart", "add_elapsed_times"]

DATE_PARTS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end", "Is_month_start",
              "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start")
TIME_PARTS = ("Hour", "Minute", "Second")
# the pandas accessors whose names are not the lower-cased column name (pandas deprecates `dayofweek`)
_ACCESSORS = {"Dayofweek": "day_of_week", "Dayofyear": "day_of_year"}
# add_elapsed_times counts events over this many rows: a week of daily rows
WINDOW_ROWS = 7


def _check_columns(df: Any, names: Iterable[Any]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame; received {type(df).__name__}")
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} are not in the DataFrame; its columns are {list(df.columns)}")


def make_date(df: pd.DataFrame, date_field: str) -> None:
    """Convert ``df[date_field]`` to datetimes in place, unless it holds datetimes already.

    Raises:
        KeyError: naming a missing column. ValueError: naming the column when its values do not parse as dates.
    """
    _check_columns(df, [date_field])
    if pd.api.types.is_datetime64_any_dtype(df[date_field]):
        return
    try:
        df[date_field] = pd.to_datetime(df[date_field])
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"column {date_field!r} does not hold dates pandas can read ({e}); convert it first, e.g. "
                         f"df[{date_field!r}] = pd.to_datetime(df[{date_field!r}], format=...)") from e


def _date_part(field: pd.Series, name: str) -> pd.Series:
    if name == "Week":  # ISO week, in the same dtype as the other parts (float when there are missing dates)
        return field.dt.isocalendar().week.astype(field.dt.day.dtype)
    return getattr(field.dt, _ACCESSORS.get(name, name.lower()))


def _elapsed_seconds(field: pd.Series) -> np.ndarray:
    """Seconds since 1970-01-01 (UTC for zoned dates) as floats, NaN for missing dates, whatever the resolution."""
    naive = field.dt.tz_convert(None) if field.dt.tz is not None else field
    seconds = naive.to_numpy(dtype="datetime64[s]").astype(np.int64)
    return np.where(field.notna().to_numpy(), seconds, np.nan)


def add_datepart(df: pd.DataFrame, field_name: str, prefix: str | None = None, drop: bool = True,
                 time: bool = False) -> pd.DataFrame:
    """Add the parts of the date column ``field_name`` as columns, in place, and return ``df``.

    The columns are ``<prefix>Year``, ``Month``, ``Week`` (ISO), ``Day``, ``Dayofweek`` (Monday 0), ``Dayofyear``,
    ``Is_month_end``, ``Is_month_start``, ``Is_quarter_end``, ``Is_quarter_start``, ``Is_year_end``,
    ``Is_year_start``, with ``time`` also ``Hour``, ``Minute``, ``Second``, and ``Elapsed``: seconds since
    1970-01-01 (NaN for a missing date). The prefix defaults to the column name without a trailing ``date``/
    ``Date`` (``'saledate'`` → ``'sale'``).

    Args:
        df: the table (changed in place).
        field_name: the date column (text is parsed with ``pd.to_datetime``).
        prefix: the new columns' prefix.
        drop: remove ``field_name`` afterwards.
        time: add the hour, minute and second too.

    Raises:
        KeyError: naming a missing column. ValueError: when the column does not parse as dates.
    """
    make_date(df, field_name)
    field = df[field_name]
    prefix = re.sub("[Dd]ate$", "", field_name) if prefix is None else prefix
    for name in DATE_PARTS + (TIME_PARTS if time else ()):
        df[prefix + name] = _date_part(field, name)
    df[prefix + "Elapsed"] = _elapsed_seconds(field)
    if drop:
        del df[field_name]
    return df


def _days_from_event(ordered: pd.DataFrame, event: str, date_field: str, base_field: str) -> pd.Series:
    """Per group, days from the last row (in ``ordered``'s order) where ``event`` is true; 0 before any."""
    last = ordered[date_field].where(ordered[event]).groupby(ordered[base_field]).ffill()
    days = (ordered[date_field] - last) / pd.Timedelta(days=1)
    return np.trunc(days).fillna(0).astype(np.int64)


def _events_in_window(ordered: pd.DataFrame, event: str, base_field: str) -> pd.Series:
    """Per group, how many of this row and the previous ``WINDOW_ROWS - 1`` rows (in ``ordered``'s order) have
    ``event``."""
    counts = ordered[event].astype(float).groupby(ordered[base_field]).rolling(WINDOW_ROWS, min_periods=1).sum()
    return counts.reset_index(level=0, drop=True)


def add_elapsed_times(df: pd.DataFrame, field_names: str | Iterable[str], date_field: str,
                      base_field: str) -> pd.DataFrame:
    """Time since and until each event, and event counts around each row, within each ``base_field`` group.

    For every event column ``f`` (read as booleans), rows ordered by date within each group:

    * ``After<f>``: days since the last row with the event (0 on that row, and before the first event);
    * ``Before<f>``: days until the next row with the event, as a number <= 0 (0 after the last event);
    * ``<f>_bw`` / ``<f>_fw``: rows with the event among this row and the 6 rows before / after it (a week
      of daily rows).

    Example (the Rossmann competition: days since and until promotions and holidays, per store):
        >>> df = add_elapsed_times(df, ['Promo', 'StateHoliday'], date_field='Date', base_field='Store')

    Returns:
        a copy of ``df`` (event columns as booleans, ``date_field`` as datetimes) with those columns added, in
        the order above; rows keep their order and index. ``df`` itself is not changed.

    Raises:
        KeyError: naming missing columns. ValueError: when ``date_field`` does not parse as dates.
    """
    fields = [field_names] if isinstance(field_names, str) else list(field_names)
    _check_columns(df, [*fields, date_field, base_field])
    out = df.copy()
    out[fields] = out[fields].astype(bool)
    make_date(out, date_field)
    work = out[[*fields, date_field, base_field]].reset_index(drop=True)
    forward = work.sort_values([base_field, date_field], kind="stable")
    backward = work.sort_values([base_field, date_field], ascending=[True, False], kind="stable")
    added = {**{f"After{f}": _days_from_event(forward, f, date_field, base_field) for f in fields},
             **{f"Before{f}": _days_from_event(backward, f, date_field, base_field) for f in fields},
             **{f"{f}_bw": _events_in_window(forward, f, base_field) for f in fields},
             **{f"{f}_fw": _events_in_window(backward, f, base_field) for f in fields}}
    for name, values in added.items():
        out[name] = values.sort_index().to_numpy()  # back in the rows' original order
    return out
