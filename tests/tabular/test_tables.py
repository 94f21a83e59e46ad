"""Reading rows: one row or many give the same table; continuous values must be numbers."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.data.splitters import RandomSplitter
from lamina.data.transforms import CategoryMap
from lamina.losses import CrossEntropyLossFlat
from lamina.tabular.data import TabularDataLoaders
from lamina.tabular.procs import Categorify, Normalize
from lamina.tabular.tables import float_values, read_table, target_kind, vocab_codes, warn_stripped


def test_float_values_accepts_numbers_and_missing_markers_only():
    obj = np.array([1, 2.5, None, np.nan, pd.NA, True], dtype=object)
    assert np.allclose(float_values(obj, "x"), [1, 2.5, np.nan, np.nan, np.nan, 1], equal_nan=True)
    assert float_values(np.array([3, 4]), "x").dtype == np.float64
    with pytest.raises(ValueError, match="'x' is continuous but holds the non-numeric value 'n/a'"):
        float_values(np.array([1, "n/a"], dtype=object), "x")
    with pytest.raises(ValueError, match="non-numeric value"):
        float_values(np.array([1, object()], dtype=object), "x")


def test_float_values_names_the_bad_value_and_accepts_numeric_text():
    ages = np.array(["19", "25", None, "forty", "33", "fifty"], dtype=object)
    with pytest.raises(ValueError, match=r"'age' is continuous but holds the non-numeric value 'forty' "
                                         r"\(2 such rows\)"):
        float_values(ages, "age")
    numeric_text = float_values(np.array(["19", " 25", "3.5", None, "1e3"], dtype=object), "age")
    assert np.allclose(numeric_text, [19, 25, 3.5, np.nan, 1000], equal_nan=True)
    mixed = float_values(np.array(["19", 7, pd.NA, 2.5], dtype=object), "age")  # pd.NA takes the slow path
    assert np.allclose(mixed, [19, 7, np.nan, 2.5], equal_nan=True)
    frame = pd.DataFrame({"age": pd.Series(["19", "forty", "33"], dtype="str")})
    with pytest.raises(ValueError, match="non-numeric value 'forty'"):
        read_table(frame, [], ["age"], [], None)
    assert read_table(frame.iloc[[0, 2]], [], ["age"], [], None)[0]["age"].tolist() == [19.0, 33.0]


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
    assert target_kind(None, df, ["flag"])[0] == "category"  # booleans are labels, as in fastai
    assert target_kind(None, df.astype({"flag": "boolean"}), ["flag"])[0] == "category"
    assert target_kind(None, df, []) == (None, None)


def test_bool_target_is_classification_end_to_end():
    df = pd.DataFrame({"x": np.arange(40.0), "big": np.arange(40) >= 20})
    dls = TabularDataLoaders.from_df(df, cont_names=["x"], y_names="big", procs=[Normalize], bs=8,
                                     device="cpu", seed=0)
    assert dls.vocab == [False, True] and dls.n_out == 2 and isinstance(dls.loss_func, CrossEntropyLossFlat)
    assert dls.train.kinds[2] == "category" and dls.one_batch()[2].dtype == torch.int64
    assert dls.valid.tensors[2].tolist() == [int(v) for v in df["big"].iloc[RandomSplitter(seed=0)(range(40))[1]]]


def test_one_row_and_many_rows_get_the_same_codes():
    vocab = CategoryMap(pd.Series(["a", "b", 3, True]), add_na=True)
    values = np.array(["a", "b", 3, np.int64(3), np.nan, None, "zz", " b", 1, True, 2.0] * 3, dtype=object)
    many = vocab_codes(vocab, values)  # more than a handful: CategoryMap.encode
    assert many.tolist() == [vocab_codes(vocab, values[i:i + 1])[0] for i in range(len(values))]
    assert many[:11].tolist() == [vocab.o2i["a"], vocab.o2i["b"], vocab.o2i[3], vocab.o2i[3], 0, 0, 0,
                                  vocab.o2i["b"], vocab.o2i[True], vocab.o2i[True], 0]


def test_values_matched_after_stripping_spaces_are_reported_once_per_column():
    vocab = CategoryMap(["<50k", ">=50k"])
    stripped = []
    codes = vocab_codes(vocab, np.array([" >=50k", "<50k", " <50k ", "maybe", 3, " >=50k"], dtype=object), stripped)
    assert codes.tolist() == [1, 0, 0, -1, -1, 1] and stripped == [" >=50k", " <50k "]
    warned = {"done"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_stripped({"salary": stripped, "done": ["x "], "clean": []}, warned)
        warn_stripped({"salary": [" <50k"]}, warned)  # said once per column
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller outside lamina
    assert "column(s) 'salary': [' >=50k', ' <50k ']" in str(caught[0].message) and "done" not in str(caught[0].message)
    assert warned == {"done", "salary"}


def test_target_labels_with_stray_spaces_are_encoded_and_reported(adult_df):
    dls = TabularDataLoaders.from_df(adult_df, cat_names=["race"], cont_names=["age"], y_names="salary",
                                     procs=[Categorify, Normalize], device="cpu", seed=0)
    rows = adult_df.iloc[:3].assign(salary=[" <50k", ">=50k ", "<50k"])
    with pytest.warns(UserWarning, match=r"'salary': \[' <50k', '>=50k '\]"):
        ys = dls.test_dl(rows).tensors[2]
    assert ys.tolist() == [0, 1, 0]
