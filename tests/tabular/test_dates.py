"""Date features as fastai names them: `add_datepart` (chapter 9) and `add_elapsed_times` (Rossmann)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lamina.tabular.dates import add_datepart, add_elapsed_times, make_date

PARTS = ["Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end", "Is_month_start",
         "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start"]


def test_add_datepart_as_chapter_9_calls_it():
    df = pd.DataFrame({"saledate": ["2019-12-31", "2020-03-01", None], "price": [1.0, 2.0, 3.0]})
    out = add_datepart(df, "saledate")
    assert out is df  # in place, and returned, as the book uses both
    assert list(df.columns) == ["price", *[f"sale{p}" for p in PARTS], "saleElapsed"]
    first = df.iloc[0]
    assert (first.saleYear, first.saleMonth, first.saleWeek, first.saleDay) == (2019, 12, 1, 31)  # ISO week 1
    assert first.saleDayofweek == 1 and first.saleDayofyear == 365  # a Tuesday
    assert bool(first.saleIs_month_end) and bool(first.saleIs_year_end) and not bool(first.saleIs_month_start)
    assert bool(df.saleIs_month_start.iloc[1]) and df.saleDayofweek.iloc[1] == 6  # a Sunday
    assert df.saleElapsed.iloc[0] == 1577750400.0 and np.isnan(df.saleElapsed.iloc[2])
    assert np.isnan(df.saleYear.iloc[2]) and not df.saleIs_year_end.iloc[2]


def test_add_datepart_options_and_prefix_rule():
    df = pd.DataFrame({"Date": pd.to_datetime(["2021-06-15 13:45:30"])})
    add_datepart(df, "Date", time=True, drop=False)
    assert {"Date", "Year", "Hour", "Minute", "Second", "Elapsed"} <= set(df.columns)
    assert (df.Hour.iloc[0], df.Minute.iloc[0], df.Second.iloc[0]) == (13, 45, 30)
    other = add_datepart(pd.DataFrame({"when": ["2021-01-01"]}), "when", prefix="w_")
    assert "w_Year" in other.columns and "when" not in other.columns
    zoned = pd.DataFrame({"t": pd.to_datetime(["1970-01-01 01:00"]).tz_localize("Europe/Paris")})
    assert add_datepart(zoned, "t").tElapsed.iloc[0] == 0.0  # seconds since the epoch, in UTC


def test_make_date_errors_name_the_column():
    with pytest.raises(KeyError, match="'nope'"):
        make_date(pd.DataFrame({"a": [1]}), "nope")
    with pytest.raises(ValueError, match="column 'a' does not hold dates"):
        make_date(pd.DataFrame({"a": ["2020-01-01", "not a date"]}), "a")


def test_add_elapsed_times_per_group():
    dates = pd.date_range("2020-01-01", periods=10, freq="D").strftime("%Y-%m-%d")
    promo = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    df = pd.DataFrame({"Store": [1] * 10 + [2] * 10, "Date": list(dates) * 2, "Promo": promo + [0] * 10})
    df = df.sample(frac=1, random_state=0)  # any row order: results follow the rows
    out = add_elapsed_times(df, ["Promo"], "Date", "Store")
    assert list(out.columns) == ["Store", "Date", "Promo", "AfterPromo", "BeforePromo", "Promo_bw", "Promo_fw"]
    assert out.index.equals(df.index) and out.Promo.dtype == bool and df.Promo.dtype != bool  # input untouched
    store1 = out[out.Store == 1].sort_values("Date")
    assert store1.AfterPromo.tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert store1.BeforePromo.tolist() == [-1, 0, -6, -5, -4, -3, -2, -1, 0, 0]
    assert store1.Promo_bw.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # this row and the 6 before it
    assert store1.Promo_fw.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # this row and the 6 after it
    store2 = out[out.Store == 2]
    assert (store2.AfterPromo == 0).all() and (store2.Promo_bw == 0).all()  # no event in this store
    assert out.AfterPromo.dtype == np.int64 and out.Promo_bw.dtype == np.float64


def test_add_elapsed_times_names_missing_columns():
    with pytest.raises(KeyError, match=r"\['Holiday'\]"):
        add_elapsed_times(pd.DataFrame({"Store": [1], "Date": ["2020-01-01"]}), "Holiday", "Date", "Store")
