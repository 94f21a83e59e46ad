"""TabularPandas and TabularProcessor: split, fixed proc order, targets, accessors, errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.data.block import CategoryBlock, RegressionBlock
from lamina.tabular.preprocess import (Categorify, FillMissing, Normalize, TabularPandas, TabularProcessor,
                                       cont_cat_split)

CATS, CONTS = ["workclass", "education"], ["age", "education-num"]


def _small():
    return pd.DataFrame({"c": ["a", "b", "a", "c", "b", "z"], "x": [1.0, np.nan, 3.0, 5.0, 7.0, np.nan],
                         "n": [10, 20, 30, 40, 50, 60], "y": ["no", "yes", "no", "yes", "yes", "no"]})


def test_training_rows_first_and_procs_fitted_on_them_only():
    df = _small()
    to = TabularPandas(df, [Normalize, Categorify, FillMissing], cat_names="c", cont_names=["x", "n"], y_names="y",
                       splits=([4, 0, 2, 1], [3, 5]))
    assert to.n_train == 4 and list(to.items.index) == [4, 0, 2, 1, 3, 5]
    assert [type(p) for p in to.procs] == [FillMissing, Categorify, Normalize]  # fixed order
    assert to.cat_names == ["c", "x_na"] and list(to.classes["c"]) == ["#na#", "a", "b"]  # 'c' is valid-only
    assert to.items["c"].tolist() == [2, 1, 1, 2, 0, 0]  # 'c' (valid) and 'z' (valid) unseen -> #na#
    median = np.median([7.0, 1.0, 3.0])  # training rows only (row 3's 5.0 is a validation value)
    fill = next(p for p in to.procs if isinstance(p, FillMissing))
    assert fill.na_dict == {"x": median}
    norm = next(p for p in to.procs if isinstance(p, Normalize))
    train_x = np.array([7.0, 1.0, 3.0, median])
    assert norm.means["x"] == pytest.approx(train_x.mean()) and norm.stds["x"] == pytest.approx(train_x.std() + 1e-7)
    assert to.items["x_na"].tolist() == [1, 1, 1, 2, 1, 2]  # the flag is categorified too (#na#, False, True)
    assert list(to.vocab) == ["no", "yes"] and to.y.tolist() == [1, 0, 0, 1, 1, 0]


def test_accessors_views_decode_and_show(adult_df, capsys):
    n = len(adult_df)
    to = TabularPandas(adult_df, [Categorify, FillMissing, Normalize], CATS, CONTS, "salary",
                       splits=(list(range(100, n)), list(range(100))))
    assert len(to.train) == n - 100 and len(to.valid) == 100 and len(to) == n
    assert list(to.xs.columns) == to.cat_names + to.cont_names and list(to.ys.columns) == ["salary"]
    assert to.cats.dtypes.map(lambda d: d.kind).eq("i").all() and to.conts.shape == (n, 2)
    assert abs(to.train.conts["age"].mean()) < 1e-6
    decoded = to.decode()
    original = adult_df.loc[decoded.index]
    assert (decoded["age"].round(3) == original["age"]).all()
    assert (decoded["workclass"].fillna("#na#") == original["workclass"].fillna("#na#")).all()
    assert (decoded["salary"] == original["salary"]).all()
    capsys.readouterr()
    assert to.show(max_n=3) is None  # shown, not returned (as fastai)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[-1] == "salary"


def test_new_rows_processed_with_the_fitted_procs():
    df = _small()
    to = TabularPandas(df, [Categorify, FillMissing, Normalize], "c", ["x", "n"], "y", splits=([0, 1, 2], [3]))
    with pytest.warns(UserWarning, match=r"'c' \(1 row: \['q'\]\)"):  # unseen in training: becomes #na#
        new = to.new(pd.DataFrame({"c": ["b", "q"], "x": [np.nan, 3.0], "n": [20, 20], "y": ["yes", "no"]})).process()
    assert new.items["c"].tolist() == [2, 0] and new.items["x_na"].tolist() == [2, 1]
    assert new.items["y"].tolist() == [1, 0]
    assert new.items["x"].tolist() == pytest.approx(to.items["x"].iloc[[1, 2]].tolist())  # fill value and 3.0


def test_tensors_and_processor_round_trip_through_json(adult_df):
    to = TabularPandas(adult_df, [Categorify, FillMissing, Normalize], CATS, CONTS, "salary",
                       splits=(list(range(500)), list(range(500, 600))))
    cats, conts, ys = to.tensors()
    assert (cats.dtype, conts.dtype, ys.dtype) == (torch.int64, torch.float32, torch.int64)
    assert cats.shape == (600, len(to.cat_names)) and conts.shape == (600, 2) and ys.shape == (600,)
    rebuilt = TabularProcessor.from_config(json.loads(json.dumps(to.processor.to_config())))
    rows = adult_df.iloc[:50]
    for a, b in zip(to.processor.encode(rows), rebuilt.encode(rows)):
        assert torch.equal(a, b)


def test_target_kinds():
    df = _small().assign(r=[1.0, 2, 3, 4, 5, 6], r2=[0.5] * 6, l1=[0, 1, 0, 1, 1, 0], l2=[1, 1, 0, 0, 1, 0])
    reg = TabularPandas(df, [Categorify, FillMissing], "c", "n", ["r", "r2"])
    assert reg.processor.y_kind == "regression" and reg.tensors()[2].shape == (6, 2)
    assert reg.tensors()[2].dtype == torch.float32
    multi = TabularPandas(df, [Categorify, FillMissing], "c", "n", ["l1", "l2"], y_block="multicategory")
    assert list(multi.vocab) == ["l1", "l2"] and multi.tensors()[2].tolist()[0] == [0.0, 1.0]
    as_class = TabularPandas(df, [Categorify], "c", "n", "r", y_block=CategoryBlock())
    assert as_class.processor.y_kind == "category" and len(as_class.vocab) == 6
    given = TabularPandas(df, [Categorify], "c", "n", "y", y_block=CategoryBlock(vocab=["yes", "no"], sort=False))
    assert list(given.vocab) == ["yes", "no"] and given.y.tolist()[:2] == [1, 0]
    assert TabularPandas(df, [Categorify], "c", "n", "r", y_block=RegressionBlock).processor.y_kind == "regression"
    with pytest.raises(ValueError, match="Classification takes one target column"):
        TabularPandas(df, [Categorify], "c", "n", ["y", "l1"], y_block="category")
    with pytest.raises(ValueError, match="`y_block` must be"):
        TabularPandas(df, [Categorify], "c", "n", "y", y_block="ordinal")


def test_input_errors_name_the_problem():
    df = _small()
    with pytest.raises(ValueError, match="Column 'c' is in both `cat_names` and `cont_names`"):
        TabularPandas(df, [Categorify], "c", "c", "y")
    with pytest.raises(ValueError, match="no column 'age'"):
        TabularPandas(df, [Categorify], "c", "age", "y")
    with pytest.raises(ValueError, match="need Categorify"):
        TabularPandas(df, [FillMissing], "c", "n", "y")
    with pytest.raises(ValueError, match=r"\['x'\] have missing values and no proc fills them"):
        TabularPandas(df, [Categorify], "c", "x", "y")
    with pytest.raises(ValueError, match="lists some rows twice"):
        TabularPandas(df, [Categorify], "c", "n", "y", splits=([0, 1], [1]))
    with pytest.raises(ValueError, match="outside 0..5"):
        TabularPandas(df, [Categorify], "c", "n", "y", splits=([0, 9], [1]))
    with pytest.raises(ValueError, match="training split is empty"):
        TabularPandas(df, [Categorify], "c", "n", "y", splits=([], [0, 1]))
    bad_y = df.assign(y=["no", None, "yes", "no", "no", "no"])
    with pytest.raises(ValueError, match="Target column 'y' has 1 missing labels"):
        TabularPandas(bad_y, [Categorify], "c", "n", "y")
    with pytest.raises(TypeError, match="tabular procs"):
        TabularPandas(df, [str], "c", "n", "y")


def test_cont_cat_split():
    df = pd.DataFrame({"f": [0.5] * 30, "big": range(30), "small": [1, 2, 3] * 10, "s": ["a"] * 30,
                       "b": [True] * 30, "y": range(30)})
    assert cont_cat_split(df, max_card=20, dep_var="y") == (["f", "big"], ["small", "s", "b"])
    assert cont_cat_split(df, max_card=40, dep_var=["y"]) == (["f"], ["big", "small", "s", "b"])


def test_the_older_module_gives_the_objects_of_their_homes():
    from lamina.tabular import data, preprocess, processor

    assert preprocess.TabularPandas is data.TabularPandas and preprocess.cont_cat_split is data.cont_cat_split
    assert preprocess.TabularProcessor is processor.TabularProcessor
