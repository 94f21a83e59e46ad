"""Each proc: fitted on the training rows only, applied to new rows, described by JSON."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from lamina.tabular.procs import Categorify, ColumnNames, FillMissing, FillStrategy, Normalize, proc_from_config
from lamina.tabular.tables import vocab_codes


def _obj(*values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _fit(proc, train, names):
    proc.setup(train, names)
    return proc


def test_fill_missing_median_flags_and_fits_on_training_rows_only():
    names = ColumnNames([], ["a", "b"])
    train = {"a": np.array([1.0, np.nan, 3.0, 10.0]), "b": np.array([5.0, 6.0, 7.0, 8.0])}
    proc = _fit(FillMissing(), train, names)
    assert proc.na_dict == {"a": 3.0} and names.cats == ["a_na"]  # median of the training values 1, 3, 10
    new = {"a": np.array([np.nan, 100.0]), "b": np.array([1.0, 2.0])}
    proc.encode(new, names)
    assert new["a"].tolist() == [3.0, 100.0] and new["a_na"].tolist() == [True, False]
    assert new["b"].tolist() == [1.0, 2.0]


def test_fill_missing_new_gap_uses_the_training_value_and_warns_once_naming_the_column():
    names = ColumnNames([], ["a", "b"])
    proc = _fit(FillMissing(), {"a": np.array([1.0, 2.0, 9.0]), "b": np.array([1.0, 2.0, 3.0])}, names)
    assert proc.na_dict == {} and names.cats == []
    table = {"a": np.array([np.nan, np.nan, 4.0]), "b": np.array([1.0, 1.0, 1.0])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proc.encode(table, names)
    assert len(caught) == 1 and "'a' (2 rows)" in str(caught[0].message) and "'b'" not in str(caught[0].message)
    assert caught[0].filename == __file__  # the warning points at the code that called lamina
    assert table["a"].tolist() == [2.0, 2.0, 4.0] and "a_na" not in table


def test_fill_strategy_docstrings():
    for strategy in (FillStrategy.median, FillStrategy.constant, FillStrategy.mode):
        assert strategy.__doc__ and len(strategy.__doc__.split()) > 4


def test_fill_strategies_and_no_flag_column():
    train = {"a": np.array([1.0, 1.0, 5.0, np.nan])}
    mode = _fit(FillMissing(FillStrategy.mode), train, ColumnNames([], ["a"]))
    assert mode.na_dict == {"a": 1.0}
    const = _fit(FillMissing(FillStrategy.constant, fill_vals={"a": -1}), train, ColumnNames([], ["a"]))
    assert const.na_dict == {"a": -1.0}
    names = ColumnNames([], ["a"])
    _fit(FillMissing("median", add_col=False), train, names)
    assert names.cats == []
    with pytest.raises(ValueError, match="fill_strategy"):
        FillMissing("mean")
    with pytest.raises(ValueError, match="'a' has no values in the training rows"):
        _fit(FillMissing(), {"a": np.array([np.nan, np.nan])}, ColumnNames([], ["a"]))


def test_categorify_vocab_from_training_rows_unseen_and_missing_map_to_na():
    names = ColumnNames(["c"], [])
    proc = _fit(Categorify(), {"c": _obj("b", "a", "b", None)}, names)
    assert list(proc["c"]) == ["#na#", "a", "b"] and list(proc.classes["c"]) == ["#na#", "a", "b"]
    table = {"c": _obj("a", "b", "zebra", np.nan, None, " b ")}  # stray spaces: the value without them is known
    with pytest.warns(UserWarning, match=r"only after stripping their spaces.* column\(s\) 'c': \[' b '\]"):
        proc.encode(table, names)
    assert table["c"].tolist() == [1, 2, 0, 0, 0, 2] and table["c"].dtype == np.int64
    again = {"c": _obj(" a", "b")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the column was named once already: no second warning
        proc.encode(again, names)
    assert again["c"].tolist() == [1, 2]
    proc.decode(table, names)
    assert table["c"].tolist() == ["a", "b", "#na#", "#na#", "#na#", "b"]


def test_categorify_keeps_pandas_category_order_and_handles_bools_and_numbers():
    cat = pd.Categorical(["low", "high"], categories=["low", "mid", "high"])
    names = ColumnNames(["size", "flag", "n"], [])
    proc = _fit(Categorify(), {"size": cat, "flag": np.array([True, False]), "n": np.array([3, 1])}, names)
    assert list(proc["size"]) == ["#na#", "low", "mid", "high"]
    assert list(proc["flag"]) == ["#na#", False, True] and list(proc["n"]) == ["#na#", 1, 3]
    assert vocab_codes(proc["n"], np.array([1, 3, 7])).tolist() == [1, 2, 0]
    table = {"size": pd.Categorical(["high", "low", None]), "flag": np.array([False, True, True]),
             "n": np.array([3, 3, 2])}
    proc.encode(table, names)
    assert [table[c].tolist() for c in ("size", "flag", "n")] == [[3, 1, 0], [1, 2, 2], [2, 2, 0]]


def test_normalize_uses_training_mean_and_population_std():
    names = ColumnNames([], ["x"])
    proc = _fit(Normalize(), {"x": np.array([1.0, 2.0, 3.0, 4.0])}, names)
    assert proc.means["x"] == pytest.approx(2.5)
    assert proc.stds["x"] == pytest.approx(np.std([1, 2, 3, 4]) + 1e-7)  # ddof=0
    table = {"x": np.array([2.5, 100.0])}
    proc.encode(table, names)
    assert table["x"][0] == pytest.approx(0.0) and table["x"][1] == pytest.approx(97.5 / proc.stds["x"])
    proc.decode(table, names)
    assert table["x"].tolist() == pytest.approx([2.5, 100.0])


def test_procs_round_trip_through_json():
    names = ColumnNames(["c"], ["x"])
    train = {"c": _obj("a", "b", None), "x": np.array([1.0, np.nan, 5.0])}
    procs = [FillMissing(), Categorify(), Normalize()]
    for proc in procs:
        proc.setup(dict(train), names)
        proc.encode(train, names)
    rebuilt = [proc_from_config(json.loads(json.dumps(p.to_config()))) for p in procs]
    fresh = lambda: {"c": _obj("b", "q", None), "x": np.array([np.nan, 2.0, 7.0])}  # noqa: E731
    got, want = fresh(), fresh()
    for a, b in zip(procs, rebuilt):
        a.encode(want, names)
        b.encode(got, names)
    assert sorted(got) == sorted(want) == ["c", "x", "x_na"]
    for col in want:
        np.testing.assert_array_equal(got[col], want[col])
    with pytest.raises(ValueError, match="unknown tabular proc 'Mystery'"):
        proc_from_config({"name": "Mystery"})
