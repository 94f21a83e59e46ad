"""TabularDataLoaders: split, tensor batches, test_dl and its robustness, show_batch, the inference builder."""

import json
import warnings

import numpy as np
import pytest
import torch

from lamina.data.loaders import TensorDataLoader
from lamina.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from lamina.data.splitters import RandomSplitter
from lamina.tabular.data import TabularDataLoaders, tabular_inference_dls
from lamina.tabular.preprocess import TabularPandas
from lamina.tabular.procs import Categorify, FillMissing, Normalize

CATS = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONTS = ["age", "fnlwgt", "education-num"]
PROCS = [Categorify, FillMissing, Normalize]


def _dls(df, **kwargs):
    kwargs = {"cat_names": CATS, "cont_names": CONTS, "y_names": "salary", "procs": PROCS, "device": "cpu", **kwargs}
    return TabularDataLoaders.from_df(df, **kwargs)


def test_random_split_sizes_seed_and_valid_idx(adult_df):
    a, b = _dls(adult_df, seed=3), _dls(adult_df, seed=3)
    assert torch.equal(a.valid.tensors[1], b.valid.tensors[1]) and a.valid.n == 120 and a.train.n == 480
    gen = torch.Generator().manual_seed(3)  # the same draw as a seeded torch.randperm (fastai's RandomSplitter)
    valid_rows = torch.randperm(600, generator=gen)[:120].tolist()
    assert valid_rows == RandomSplitter(0.2, seed=3)(range(600))[1]
    expected = [int(v == ">=50k") for v in adult_df["salary"].iloc[valid_rows]]
    assert a.valid.tensors[2].tolist() == expected
    assert not torch.equal(a.valid.tensors[1], _dls(adult_df, seed=4).valid.tensors[1])
    by_idx = _dls(adult_df, valid_idx=list(range(50)))
    assert by_idx.valid.n == 50 and by_idx.train.n == 550
    assert by_idx.valid.tensors[2].tolist() == [int(v == ">=50k") for v in adult_df["salary"].iloc[:50]]
    with pytest.raises(ValueError, match=r"`valid_pct` must be in \[0, 1\)"):
        _dls(adult_df, valid_pct=1.5)
    with pytest.raises(ValueError, match="valid_idx"):
        _dls(adult_df, valid_idx=[700])


def test_batches_are_tensor_slices_with_kinds_and_targets(adult_df):
    dls = _dls(adult_df, bs=32, seed=0)
    assert isinstance(dls.train, TensorDataLoader) and isinstance(dls.valid, TensorDataLoader)
    cats, conts, ys = dls.one_batch()
    assert cats.shape == (32, len(dls.cat_names)) and cats.dtype == torch.int64
    assert conts.shape == (32, 3) and conts.dtype == torch.float32 and ys.shape == (32,) and ys.dtype == torch.int64
    assert dls.train.kinds == ("tab_cat", "tab_cont", "category") and dls.n_inp == 2
    assert dls.vocab == ["<50k", ">=50k"] and dls.n_out == 2 and dls.c == 2
    assert isinstance(dls.loss_func, CrossEntropyLossFlat)
    assert len(dls.train) == 480 // 32 and dls.train.drop_last and not dls.valid.drop_last
    first = [b[0] for b in dls.train]
    second = [b[0] for b in dls.train]
    assert not torch.equal(first[0], second[0])  # a new permutation every epoch
    assert torch.equal(torch.cat([b[2] for b in dls.valid]), dls.valid.tensors[2])  # validation in order


def test_cont_names_default_and_regression_targets(adult_df):
    df = adult_df[["workclass", "age", "hours-per-week", "fnlwgt"]]
    dls = TabularDataLoaders.from_df(df, cat_names="workclass", y_names="hours-per-week", procs=PROCS, device="cpu")
    assert dls.cont_names == ["age", "fnlwgt"] and dls.n_out == 1 and isinstance(dls.loss_func, MSELossFlat)
    assert dls.one_batch()[2].shape == (64, 1) and dls.one_batch()[2].dtype == torch.float32
    assert dls.train.kinds[2] == "regression" and dls.vocab is None
    multi = TabularDataLoaders.from_df(adult_df.assign(a=1, b=0), cat_names=CATS, cont_names=CONTS, y_names=["a", "b"],
                                       y_block="multicategory", procs=PROCS, device="cpu")
    assert isinstance(multi.loss_func, BCEWithLogitsLossFlat) and multi.n_out == 2 and multi.vocab == ["a", "b"]
    with pytest.raises(ValueError, match="`y_names` is required"):
        TabularDataLoaders.from_df(df, cat_names="workclass", procs=PROCS)


def test_from_csv_strips_leading_spaces(adult_df, tmp_path):
    adult_df.to_csv(tmp_path / "adult.csv", index=False)
    dls = TabularDataLoaders.from_csv(tmp_path / "adult.csv", path=tmp_path, y_names="salary", cat_names=CATS,
                                      cont_names=CONTS, procs=PROCS, device="cpu")
    assert "Private" in list(dls.classes["workclass"]) and dls.path == tmp_path
    assert dls.cat_names == CATS + ["education-num_na"]


def test_test_dl_processes_raw_rows_with_labels_or_without(adult_df):
    dls = _dls(adult_df, seed=0)
    dl = dls.test_dl(adult_df.iloc[:70])
    assert len(dl.dataset) == 70 and len(dl.tensors) == 3 and not dl.shuffle  # labels present: kept
    assert dl.tensors[2].tolist() == [int(v == ">=50k") for v in adult_df["salary"].iloc[:70]]
    unlabelled = dls.test_dl(adult_df.iloc[:5].drop(columns="salary"))
    assert len(unlabelled.tensors) == 2 and unlabelled.kinds == ("tab_cat", "tab_cont")
    assert len(dls.test_dl(adult_df.iloc[:5], with_labels=False).tensors) == 2
    one = dls.test_dl(adult_df.iloc[3])  # a single row (a Series) and a dict give the same tensors
    for a, b, c in zip(one.tensors, dls.test_dl(adult_df.iloc[3].to_dict()).tensors, dl.tensors):
        assert torch.equal(a, b) and torch.equal(a[0], c[3])


def test_test_dl_robustness(adult_df):
    dls = _dls(adult_df, seed=0)
    rows = adult_df.iloc[:4].copy()
    rows["age"] = [np.nan, 30, np.nan, 40]  # no gaps in training: filled with the training median, said once
    rows["workclass"] = [" Never-seen", " Private", None, " Private"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cats, conts, _ = dls.test_dl(rows).tensors
    assert len(caught) == 2 and "'age' (2 rows)" in str(caught[0].message) and caught[0].filename == __file__
    assert "'workclass' (1 row: [' Never-seen'])" in str(caught[1].message) and caught[1].filename == __file__
    fill = next(p for p in dls.procs if isinstance(p, FillMissing)).fallback["age"]
    norm = next(p for p in dls.procs if isinstance(p, Normalize))
    assert conts[0, 0].item() == pytest.approx((fill - norm.means["age"]) / norm.stds["age"], abs=1e-5)
    assert cats[:, 0].tolist()[0] == 0 and cats[:, 0].tolist()[2] == 0 and cats[1, 0] > 0  # unseen/missing -> #na#
    with pytest.raises(ValueError, match="no column 'fnlwgt'.*continuous input"):
        dls.test_dl(adult_df.iloc[:3].drop(columns="fnlwgt"))
    with pytest.raises(ValueError, match="no column 'race'.*categorical input"):
        dls.test_dl(adult_df.iloc[:3].drop(columns="race"))
    with pytest.raises(ValueError, match="'age' is continuous but holds the non-numeric value 'forty'.*pd.to_numeric"):
        dls.test_dl(adult_df.iloc[:3].assign(age=["forty", "41", "42"]))
    with pytest.raises(ValueError, match=r"Target column 'salary' has labels the model does not know: \['maybe'\]"):
        dls.test_dl(adult_df.iloc[:3].assign(salary=["maybe", "<50k", "<50k"]))
    with pytest.raises(ValueError, match="no column 'salary'.*a target"):
        dls.test_dl(adult_df.iloc[:3].drop(columns="salary"), with_labels=True)
    assert len(dls.test_dl(adult_df.iloc[:3].assign(salary="maybe"), with_labels=False).tensors) == 2


def _printed_table(out):
    """The rows of a table printed by DataFrame.to_string (header first, the index in the first column)."""
    lines = out.strip().splitlines()
    return lines[0].split(), [line.split() for line in lines[1:]]


def test_show_batch_prints_decoded_rows_and_returns_none(adult_df, capsys):
    dls = _dls(adult_df, seed=0)
    assert dls.show_batch(max_n=4) is None  # shown, not returned (as fastai's show functions)
    header, rows = _printed_table(capsys.readouterr().out)
    assert header == dls.cat_names + CONTS + ["salary"] and len(rows) == 4
    assert all(r[-1] in ("<50k", ">=50k") for r in rows)
    ages = [float(r[1 + len(dls.cat_names)]) for r in rows]  # (the categories here hold no spaces)
    assert all(abs(a - round(a)) < 1e-3 for a in ages)  # unnormalised back to whole years
    dls.show_batch()
    assert len(_printed_table(capsys.readouterr().out)[1]) == 9  # fastai's default max_n


def test_fastai_loader_arguments(adult_df):
    dls = _dls(adult_df, seed=0, bs=100, num_workers=0, pin_memory=True, persistent_workers=False)
    assert dls.train.drop_last and len(dls.train) == 4  # 480 rows: the last partial batch is dropped
    keep = _dls(adult_df, seed=0, bs=100, drop_last=False)
    assert not keep.train.drop_last and len(keep.train) == 5 and keep.train.shuffle
    ordered = _dls(adult_df, seed=0, bs=100, shuffle_train=False)  # fastai's older name for `shuffle`
    assert not ordered.train.shuffle and not ordered.train.drop_last
    assert torch.equal(next(iter(ordered.train))[0], ordered.train.tensors[0][:100])
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bogus', 'nworkers'\]"):
        _dls(adult_df, bogus=1, nworkers=2)
    to = TabularPandas(adult_df, PROCS, CATS, CONTS, "salary", splits=(list(range(500)), list(range(500, 600))))
    from_to = to.dataloaders(bs=50, drop_last=False, num_workers=0, shuffle_train=True, device="cpu")
    assert len(from_to.train) == 10 and from_to.train.shuffle and not from_to.train.drop_last
    with pytest.raises(TypeError, match=r"\['workers'\]"):
        to.dataloaders(workers=2)


def test_inference_builder_rebuilds_the_pipeline_from_json(adult_df):
    dls = _dls(adult_df, seed=0)
    described = json.loads(json.dumps(dls.inference))
    assert described["builder"] == "tabular_inference_dls"
    rebuilt = tabular_inference_dls(**described["kwargs"])
    assert rebuilt.vocab == dls.vocab and rebuilt.n_out == 2 and rebuilt.n_inp == 2
    assert rebuilt.cat_names == dls.cat_names
    assert isinstance(rebuilt.loss_func, CrossEntropyLossFlat) and rebuilt.train.n == 0
    for a, b in zip(dls.test_dl(adult_df.iloc[:20]).tensors, rebuilt.test_dl(adult_df.iloc[:20]).tensors):
        assert torch.equal(a, b)


def test_shown_numbers_are_rounded_for_reading():
    import pandas as pd

    from lamina.tabular.tables import rounded_for_display
    frame = pd.DataFrame({"fnlwgt": [158206.000591, 77516.0000002], "ratio": [0.1234567891, float("nan")],
                          "gap": [2.0, float("nan")], "job": ["a", "b"]})
    shown = rounded_for_display(frame)
    assert shown["fnlwgt"].tolist() == [158206, 77516] and str(shown["fnlwgt"].dtype) == "Int64"
    assert shown["ratio"].iloc[0] == 0.123457 and np.isnan(shown["ratio"].iloc[1])
    assert shown["gap"].iloc[0] == 2 and shown["gap"].isna().iloc[1] and shown["job"].tolist() == ["a", "b"]
    assert frame["fnlwgt"].iloc[0] == 158206.000591  # the frame itself is untouched
    assert "158206.000591" not in shown.to_string() and "158206" in shown.to_string()
