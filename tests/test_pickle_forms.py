"""`save_pickle` / `load_pickle` of DataFrames, Series and `TabularPandas` (the book's chapter 9), through plain forms
that load without unpickling any pandas or lamina class."""

from __future__ import annotations

import decimal
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.pickle_forms import FORM_KEY
from lamina.torch_core import load_pickle, save_pickle


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "n": [1, 2, 3], "x": [1.5, np.nan, 3.0], "s": ["a", None, "c"], "flag": [True, False, True],
        "cat": pd.Categorical(["u", "v", "u"], categories=["v", "u"], ordered=True),
        "when": pd.to_datetime(["2020-01-01", "2021-02-03", None]), "i": pd.array([1, None, 3], dtype="Int64"),
        "txt": pd.array(["p", None, "r"], dtype="string")}, index=pd.Index([10, 20, 30], name="row"))


def _globals(path) -> set[str]:
    """The modules of the classes and functions the pickle asks for."""
    found: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(module)
            return super().find_class(module, name)

    with open(path, "rb") as f:
        Recorder(f).load()
    return found


def test_dataframes_and_series_round_trip_as_plain_data(tmp_path):
    df = _frame()
    save_pickle(tmp_path / "df.pkl", df)
    pd.testing.assert_frame_equal(load_pickle(tmp_path / "df.pkl"), df)
    assert _globals(tmp_path / "df.pkl") <= {"numpy._core.multiarray", "numpy"}  # only numpy's arrays
    with open(tmp_path / "df.pkl", "rb") as f:
        assert pickle.load(f)[FORM_KEY] == "DataFrame"
    save_pickle(tmp_path / "both.pkl", {"xs": df.iloc[:2], "y": [df["cat"], df["n"]]})
    back = load_pickle(tmp_path / "both.pkl")
    pd.testing.assert_frame_equal(back["xs"], df.iloc[:2])
    pd.testing.assert_series_equal(back["y"][0], df["cat"])
    pd.testing.assert_series_equal(back["y"][1], df["n"])


def test_what_has_no_plain_form_is_refused_before_the_file_changes(tmp_path):
    path = tmp_path / "df.pkl"
    save_pickle(path, [1, 2])
    with pytest.raises(TypeError, match=r"column 'd'.*Decimal"):
        save_pickle(path, pd.DataFrame({"d": [decimal.Decimal(1)]}))
    with pytest.raises(TypeError, match="reset_index"):
        save_pickle(path, pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, 2), (3, 4)])))
    assert load_pickle(path) == [1, 2] and [p.name for p in tmp_path.iterdir()] == ["df.pkl"]
    with open(path, "wb") as f:
        pickle.dump({FORM_KEY: "Unheard", "data": {}}, f)
    with pytest.raises(ValueError, match="'Unheard' that this process cannot rebuild"):
        load_pickle(path)


def test_a_tabular_pandas_round_trips_and_keeps_its_fitted_procs(tmp_path):
    from lamina.tabular.all import Categorify, FillMissing, Normalize, TabularPandas
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"job": rng.choice(["a", "b", None], 60), "age": rng.normal(40, 9, 60),
                       "y": rng.choice(["lo", "hi"], 60)})
    to = TabularPandas(df, [Categorify, FillMissing, Normalize], cat_names="job", cont_names="age", y_names="y",
                       splits=(list(range(45)), list(range(45, 60))))
    save_pickle(tmp_path / "to.pkl", to)
    back = load_pickle(tmp_path / "to.pkl")
    assert isinstance(back, TabularPandas) and back.n_train == 45 and list(back.classes["job"]) == \
        list(to.classes["job"])
    pd.testing.assert_frame_equal(back.valid.xs, to.valid.xs)
    a, b = to.dataloaders(bs=15).valid.one_batch(), back.dataloaders(bs=15).valid.one_batch()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    new_rows = df.tail(4)
    fresh, again = to.new(new_rows).process(), back.new(new_rows).process()
    pd.testing.assert_frame_equal(fresh.items, again.items)  # the fitted procs came back


def test_names_containers_and_refusals(tmp_path):
    from collections import OrderedDict

    from lamina.foundation import L
    days = pd.to_datetime(["2020-01-01", "2020-01-02"])
    df = pd.DataFrame([[1, 2], [3, 4]], columns=days, index=pd.Index(["a", "b"], name="key"))
    df.columns.name = "day"
    first = df.iloc[:, 0].rename("first")
    save_pickle(tmp_path / "f.pkl", L([df, OrderedDict(x=first)]))
    back = load_pickle(tmp_path / "f.pkl")
    assert isinstance(back, L) and isinstance(back[1], OrderedDict)
    pd.testing.assert_frame_equal(back[0], df)
    pd.testing.assert_series_equal(back[1]["x"], first)
    with pytest.raises(TypeError, match="load_pickle reads it back"):  # a Series named by a Timestamp
        save_pickle(tmp_path / "f.pkl", df.T.iloc[0])
    with pytest.raises(TypeError, match=r"tz_convert\(None\)"):
        save_pickle(tmp_path / "f.pkl", pd.DataFrame({"t": pd.to_datetime(["2020-01-01"]).tz_localize("UTC")}))
    save_pickle(tmp_path / "f.pkl", pd.DataFrame({"n": [1]}))
    with open(tmp_path / "f.pkl", "rb") as f:
        form = pickle.load(f)
    form["data"]["columns"][0] = {"kind": "extension", "values": np.array([1], dtype=object), "dtype": "int64[pyarrow]"}
    with open(tmp_path / "f.pkl", "wb") as f:
        pickle.dump(form, f)
    with pytest.raises(ValueError, match="names the dtype 'int64\\[pyarrow\\]'"):  # only pandas' plain dtypes
        load_pickle(tmp_path / "f.pkl")


def test_save_pickle_writes_through_a_link_and_keeps_the_mode(tmp_path):
    target, link = tmp_path / "real.pkl", tmp_path / "link.pkl"
    save_pickle(target, [1])
    target.chmod(0o600)
    link.symlink_to(target)
    save_pickle(link, [2])
    assert link.is_symlink() and load_pickle(target) == [2] and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pkl", "real.pkl"]


def test_a_tabular_pandas_with_a_proc_of_its_own_is_refused_when_saving(tmp_path):
    from lamina.tabular.all import Categorify, TabularPandas

    class MyCategorify(Categorify):
        pass

    df = pd.DataFrame({"job": ["a", "b", "a", "b"], "y": [0.0, 1.0, 2.0, 3.0]})
    to = TabularPandas(df, [MyCategorify], cat_names="job", y_names="y")
    with pytest.raises(TypeError, match="load_pickle rebuilds it"):
        save_pickle(tmp_path / "to.pkl", to)
    assert not (tmp_path / "to.pkl").exists()
