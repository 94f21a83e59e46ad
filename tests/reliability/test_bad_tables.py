"""Bad tables and ratings that used to train or predict silently: each now raises or warns, naming the problem."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import lamina.tabular.all as tabular_all
import lamina.vision.all as vision_all
from lamina.collab import CollabDataLoaders, collab_learner, synth_ratings
from lamina.export import load_learner
from lamina.tabular.all import (Categorify, FillMissing, Normalize, TabularDataLoaders, TabularPandas,
                                tabular_learner)
from lamina.tabular.procs import proc_from_config
from lamina.vision.augment import batch_tfm_from_config
from lamina.vision.data import ImageDataLoaders


def _table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "size": rng.choice(["S", "M"], n),
                         "x": rng.normal(10, 3, n), "y": rng.choice(["yes", "no"], n)})


@pytest.fixture(scope="module")
def tab_learn():
    """A classifier over colour, size and x (untrained: the tests read its processing, not its answers)."""
    df = _table(60)
    dls = TabularDataLoaders.from_df(df, cat_names=["color", "size"], cont_names=["x"], y_names="y",
                                     procs=[Categorify, FillMissing, Normalize], device="cpu", seed=0, bs=16)
    return tabular_learner(dls, layers=[8])


def _caught(fn, *args, **kwargs):
    """``fn``'s result and the warnings it raised (every one, even repeats)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [w for w in caught if issubclass(w.category, UserWarning)]


# ------------------------------------------------------------------------------------------------------------
# A classification target with a single class


SINGLE = r"Target column 'y' holds a single class, 'yes': a classifier needs at least two classes.*RegressionBlock"


def test_single_class_target_is_refused_at_every_entry(tmp_path):
    df = _table().assign(y="yes")
    with pytest.raises(ValueError, match=SINGLE):
        TabularDataLoaders.from_df(df, cat_names=["color"], cont_names=["x"], y_names="y", procs=[Categorify],
                                   device="cpu", seed=0)
    with pytest.raises(ValueError, match=SINGLE):
        TabularPandas(df, [Categorify], cat_names=["color"], cont_names=["x"], y_names="y", splits=([0, 1], [2]))
    df.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(ValueError, match=SINGLE):
        TabularDataLoaders.from_csv(tmp_path / "one.csv", cat_names=["color"], cont_names=["x"], y_names="y",
                                    device="cpu")


def test_single_value_is_fine_for_a_regression_target():
    df = _table().assign(y=1.0)  # a constant number: regression, nothing to refuse
    dls = TabularDataLoaders.from_df(df, cat_names=["color"], cont_names=["x"], y_names="y", procs=[Categorify],
                                     device="cpu", seed=0)
    assert dls.n_out == 1 and dls.processor.y_kind == "regression"


# ------------------------------------------------------------------------------------------------------------
# Ratings outside y_range; a (user, item) pair in both splits


def test_ratings_outside_y_range_warn_once_at_learner_build():
    dls = CollabDataLoaders.from_df(synth_ratings(n=300), bs=32, seed=0, device="cpu")
    ratings = torch.cat([dls.train.tensors[1], dls.valid.tensors[1]])
    outside = int((ratings > 3).sum())
    assert 0 < outside < len(ratings)
    for use_nn in (False, True):
        _, caught = _caught(collab_learner, dls, n_factors=4, use_nn=use_nn, y_range=(0, 3))
        assert len(caught) == 1 and caught[0].filename == __file__, use_nn
        assert f"{outside} of the {len(ratings)} ratings lie outside y_range=(0, 3)" in str(caught[0].message)
    _, caught = _caught(collab_learner, dls, n_factors=4, use_nn=True, config={"y_range": (0, 3)})
    assert len(caught) == 1  # the range given through config is checked too
    assert _caught(collab_learner, dls, n_factors=4, y_range=(0.5, 5.5))[1] == []


def test_pair_in_both_splits_warns_with_the_count():
    ratings = synth_ratings(n=200)
    dls, caught = _caught(CollabDataLoaders.from_df, ratings, bs=32, seed=0, device="cpu")
    assert caught == []  # one rating per pair: nothing to say
    twice = pd.concat([ratings, ratings.assign(rating=ratings["rating"].iloc[::-1].to_numpy())], ignore_index=True)
    dls, caught = _caught(CollabDataLoaders.from_df, twice, bs=32, seed=0, device="cpu")
    train = {tuple(pair) for pair in dls.train.tensors[0].tolist()}
    shared = sum(tuple(pair) in train for pair in dls.valid.tensors[0].tolist())
    assert shared > 0 and len(caught) == 1 and caught[0].filename == __file__
    message = str(caught[0].message)
    assert f"{shared} of the {dls.valid.n} validation rows rate a ('userId', 'movieId') pair" in message
    assert "drop_duplicates" in message


# ------------------------------------------------------------------------------------------------------------
# Categories unseen in training, at predict and test_dl


def test_unseen_category_at_predict_warns_naming_column_and_value(tab_learn):
    (row, _, _), caught = _caught(tab_learn.predict, {"color": "purple", "size": "M", "x": 9.0})
    assert len(caught) == 1 and caught[0].filename == __file__
    assert "'color' (1 row: ['purple'])" in str(caught[0].message) and "'#na#'" in str(caught[0].message)
    assert row["color"].iloc[0] == "#na#"
    assert _caught(tab_learn.predict, {"color": "red", "size": None, "x": 9.0})[1] == []  # known, or missing


def test_unseen_categories_at_test_dl_warn_once_with_five_values(tab_learn):
    colors = ["c1", "c2", "c3", "c4", "c5", "c6", "c1", "red"]
    rows = pd.DataFrame({"color": colors, "size": ["S"] * 7 + ["XL"], "x": np.arange(8.0)})
    dl, caught = _caught(tab_learn.dls.test_dl, rows)
    assert len(caught) == 1 and caught[0].filename == __file__
    message = str(caught[0].message)
    assert "'color' (7 rows: ['c1', 'c2', 'c3', 'c4', 'c5'])" in message and "c6" not in message
    assert "'size' (1 row: ['XL'])" in message
    assert dl.tensors[0][:7, 0].tolist() == [0] * 7  # still encoded as #na#, as before


def test_validation_rows_with_rare_categories_do_not_warn_at_build():
    df = _table(40)
    df.loc[39, "color"] = "only-in-validation"
    _, caught = _caught(TabularDataLoaders.from_df, df, cat_names=["color"], cont_names=["x"], y_names="y",
                        procs=[Categorify], valid_idx=[37, 38, 39], device="cpu")
    assert caught == []


# ------------------------------------------------------------------------------------------------------------
# Empty CSV files


@pytest.mark.parametrize("content", ["", "\n", "color,x,y\n"], ids=["empty", "blank", "header-only"])
def test_empty_csv_names_the_file(tmp_path, content):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    named = re.escape(str(path))
    with pytest.raises(pd.errors.EmptyDataError, match=named + r".*`csv` must be a CSV file with a header"):
        TabularDataLoaders.from_csv(path, y_names="y")
    with pytest.raises(ValueError, match=named):  # EmptyDataError is a ValueError
        CollabDataLoaders.from_csv(path)
    with pytest.raises(pd.errors.EmptyDataError, match=named + r".*`csv_fname`"):
        ImageDataLoaders.from_csv(tmp_path, csv_fname="labels.csv")


def test_empty_dataframe_is_named_before_splitting():
    with pytest.raises(ValueError, match=r"`df` has no rows \(its columns: \['color', 'x', 'y'\]\)"):
        TabularDataLoaders.from_df(pd.DataFrame(columns=["color", "x", "y"]), y_names="y")


# ------------------------------------------------------------------------------------------------------------
# One Normalize for images and tables, whichever star import comes last


TABLE_THEN_IMAGES = """
from lamina.{first}.all import *
from lamina.{last}.all import *
to = TabularPandas(df, procs=[Categorify, FillMissing, Normalize], cat_names=['color'], cont_names=['x'],
                   y_names='y', splits=(list(range(30)), list(range(30, 40))))
to2 = TabularPandas(df, procs=[Categorify, Normalize()], cat_names=['color'], cont_names=['x'], y_names='y',
                    splits=(list(range(30)), list(range(30, 40))))
fixed = Normalize.from_stats(*imagenet_stats)((images,), ('image',))[0]
computed = Normalize()((images,), ('image',))[0]
"""


def test_one_normalize_serves_images_and_tables():
    assert vision_all.Normalize is tabular_all.Normalize
    df, images = _table(40), torch.rand(4, 3, 8, 8)
    for first, last in (("tabular", "vision"), ("vision", "tabular")):
        scope = {"df": df, "images": images}
        exec(TABLE_THEN_IMAGES.format(first=first, last=last), scope)
        for to in (scope["to"], scope["to2"]):
            train_x = to.train.conts["x"].to_numpy()
            assert abs(train_x.mean()) < 1e-6 and abs(train_x.std() - 1) < 1e-4, (first, last)
        mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
        assert torch.allclose(scope["fixed"], (images - mean) / std, atol=1e-6)
        assert scope["computed"].mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_normalize_with_image_stats_is_refused_as_a_proc():
    with pytest.raises(ValueError, match=r"image statistics.*pass Normalize \(the class\) or Normalize\(\)"):
        TabularPandas(_table(), [Normalize.from_stats([0.5] * 3, [0.2] * 3)], cont_names=["x"], y_names="y")


def test_both_config_formats_keep_loading(tmp_path, tab_learn):
    proc = proc_from_config({"name": "Normalize", "means": {"x": 1.0}, "stds": {"x": 2.0}})
    table = {"x": np.array([3.0])}
    proc.encode(table, tab_learn.dls.processor.names)
    assert table["x"].tolist() == [1.0] and proc.to_config() == {"name": "Normalize", "means": {"x": 1.0},
                                                                   "stds": {"x": 2.0}}
    image_cfg = {"name": "Normalize", "kwargs": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "axes": [0, 2, 3]}}
    tfm = batch_tfm_from_config(image_cfg)
    assert tfm.to_config() == image_cfg and tfm((torch.ones(1, 3, 2, 2),), ("image",))[0].eq(2).all()
    tab_learn.export(tmp_path / "tab.pkl")  # a learner with the shared Normalize among its procs
    loaded = load_learner(tmp_path / "tab.pkl")
    row = {"color": "red", "size": "S", "x": 12.0}
    assert torch.allclose(loaded.predict(row)[2], tab_learn.predict(row)[2], atol=1e-6)
