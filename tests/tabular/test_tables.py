"""Reading rows: one row or many give the same table; continuous values must be numbers."""

import numpy as np
import pandas as pd
import pytest

from lamina.tabular.tables import float_values, read_table, target_kind


def test_float_values_accepts_numbers_and_missing_markers_only():
    obj = np.array([1, 2.5, None, np.nan, pd.NA, True], dtype=object)
    assert np.allclose(float_values(obj, "x"), [1, 2.5, np.nan, np.nan, np.nan, 1], equal_nan=True)
    assert float_values(np.array([3, 4]), "x").dtype == np.float64
    with pytest.raises(ValueError, match="'x' is continuous but holds the non-numeric value 'n/a'"):
        float_values(np.array([1, "n/a"], dtype=object), "x")
    with pytest.raises(ValueError, match="non-numeric value"):
        float_values(np.array([1, object()], dtype=object), "x")


def test_one_row_and_frame_read_the_same_values():
    df = pd.DataFrame({"c": pd.Series(["a", None], dtype="str"), "x": pd.array([1, None], dtype="Int64"),
                       "b": [True, False], "y": ["p", "q"]})
    table, labelled = read_table(df, ["c"], ["x", "b"], ["y"], with_labels=None)
    assert labelled and table["x"].tolist()[0] == 1.0 and np.isnan(table["x"][1]) and table["b"].tolist() == [1.0, 0.0]
    row, labelled = read_table(df.iloc[1], ["c"], ["x", "b"], ["y"], with_labels=None)
    assert labelled and np.isnan(row["x"][0]) and pd.isna(row["c"][0]) and row["y"].tolist() == ["q"]
    rows, _ = read_table([df.iloc[0], df.iloc[1].to_dict()], ["c"], ["x"], ["y"], with_labels=False)
    assert sorted(rows) == ["c", "x"] and rows["c"].tolist()[0] == "a"
    with pytest.raises(TypeError, match="a DataFrame, a list of rows, or one row"):
        read_table("age=3", ["c"], [], [], None)


def test_target_kind_inference():
    df = pd.DataFrame({"t": ["a", "b"], "n": [1.0, 2.0], "flag": [True, False]})
    assert target_kind(None, df, ["t"])[0] == "category" and target_kind(None, df, ["n"])[0] == "regression"
    assert target_kind(None, df, ["flag"])[0] == "regression"  # booleans are numbers to pandas, as in fastai
    assert target_kind(None, df, []) == (None, None)
