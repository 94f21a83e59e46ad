"""CollabDataLoaders: columns, the seeded split, vocabularies from all rows, tensor batching, new pairs."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.collab.data import CollabDataLoaders, collab_inference_dls
from lamina.collab.synth import synth_ratings
from lamina.losses import MSELossFlat


@pytest.fixture
def ratings():
    return synth_ratings(n_users=30, n_items=20, n=400, seed=1)


def rows_of(x, y, dls):
    users = dls.classes[dls.user_name].decode(x[:, 0].tolist())
    items = dls.classes[dls.item_name].decode(x[:, 1].tolist())
    return list(zip(users, items, y.reshape(-1).tolist()))


def test_defaults_first_three_columns_and_what_learners_read(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=32)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("userId", "movieId", "rating")
    assert dls.n_out == 1 and dls.c == 1 and dls.n_inp == 1 and isinstance(dls.loss_func, MSELossFlat)
    xb, yb = dls.one_batch()
    assert xb.shape == (32, 2) and xb.dtype == torch.long
    assert yb.shape == (32, 1) and yb.dtype == torch.float32
    assert dls.train.kinds == ("collab", "regression") and dls.valid.split_idx == 1
    assert len(dls.train.dataset) == 320 and len(dls.valid.dataset) == 80


def test_seeded_split_is_torch_randperm_and_repeats(ratings):
    a = CollabDataLoaders.from_df(ratings, seed=42)
    b = CollabDataLoaders.from_df(ratings, seed=42)
    c = CollabDataLoaders.from_df(ratings, seed=7)
    torch.testing.assert_close(a.valid.tensors[0], b.valid.tensors[0])
    assert not torch.equal(a.valid.tensors[0], c.valid.tensors[0])
    order = torch.randperm(len(ratings), generator=torch.Generator().manual_seed(42)).numpy()
    expected = ratings.iloc[order[:80]]
    got = rows_of(*a.valid.tensors, a)
    assert got == list(zip(expected.userId, expected.movieId, expected.rating.astype(float)))


def test_vocab_is_built_from_all_rows_so_validation_only_ids_get_their_own_code():
    first_valid = torch.randperm(5, generator=torch.Generator().manual_seed(3))[0].item()
    rows = [("u1", "b", 1.0), ("u2", "a", 2.0), ("u1", "a", 3.0), ("u2", "b", 4.0)]
    rows.insert(first_valid, ("u9", "zz", 5.0))  # the only validation row (valid_pct=0.2 of 5 rows)
    ratings = pd.DataFrame(rows, columns=["user", "film", "stars"]).assign(extra=0)
    dls = CollabDataLoaders.from_df(ratings, valid_pct=0.2, seed=3, bs=2)
    assert list(dls.classes["user"]) == ["#na#", "u1", "u2", "u9"]  # as fastai's: from every row
    assert list(dls.classes["film"]) == ["#na#", "a", "b", "zz"]
    assert dls.valid.tensors[0].tolist() == [[3, 3]] and dls.valid.tensors[1].tolist() == [[5.0]]
    assert 3 not in dls.train.tensors[0].flatten().tolist()


def test_columns_by_name():
    df = synth_ratings(n=200)[["timestamp", "rating", "movieId", "userId"]]
    dls = CollabDataLoaders.from_df(df, user_name="userId", item_name="movieId", rating_name="rating", seed=0)
    assert set(dls.classes) == {"userId", "movieId"}
    xb, yb = dls.valid.one_batch()
    assert yb.min() >= 0.5 and yb.max() <= 5


def test_every_rating_seen_exactly_once_per_epoch(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=48)  # 320 training rows: the last batch has 32
    expected = Counter(rows_of(*dls.train.tensors, dls))
    orders = []
    for _ in range(2):
        seen = [row for xb, yb in dls.train for row in rows_of(xb, yb, dls)]
        assert Counter(seen) == expected
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled each epoch
    valid = [row for xb, yb in dls.valid for row in rows_of(xb, yb, dls)]
    assert valid == rows_of(*dls.valid.tensors, dls)


def test_a_last_training_batch_of_one_row_is_dropped(ratings):
    dls = CollabDataLoaders.from_df(ratings.iloc[:326], valid_pct=0.2, seed=0, bs=20)  # 261 = 13 * 20 + 1
    assert len(dls.train.dataset) == 261 and dls.train.drop_last and len(dls.train) == 13
    kept = CollabDataLoaders.from_df(ratings.iloc[:326], valid_pct=0.2, seed=0, bs=20, drop_last=False)
    assert not kept.train.drop_last and len(kept.train) == 14  # an explicit choice is honoured


def test_bad_inputs_are_named(ratings, tmp_path):
    with pytest.raises(ValueError, match=r"`valid_pct` must be in \[0, 1\); received: valid_pct=1.5"):
        CollabDataLoaders.from_df(ratings, valid_pct=1.5)
    with pytest.raises(ValueError, match="`item_name`='title' is not a column.*movieId"):
        CollabDataLoaders.from_df(ratings, item_name="title")
    with pytest.raises(ValueError, match="needs user, item and rating columns"):
        CollabDataLoaders.from_df(ratings[["userId", "movieId"]])
    missing = ratings.astype({"rating": float}).copy()
    missing.loc[3, "rating"] = np.nan
    with pytest.raises(ValueError, match="column 'rating' of `ratings` has 1 missing value"):
        CollabDataLoaders.from_df(missing)
    with pytest.raises(ValueError, match="rating column 'timestamp' must be numeric"):
        CollabDataLoaders.from_df(ratings.astype({"timestamp": str}), rating_name="timestamp")
    with pytest.raises(FileNotFoundError, match="No ratings file at"):
        CollabDataLoaders.from_csv(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match="`ratings` must be a pandas DataFrame"):
        CollabDataLoaders.from_df(ratings.to_numpy())


def test_from_csv_matches_from_df(ratings, tmp_path):
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    a = CollabDataLoaders.from_csv(tmp_path / "ratings.csv", seed=5, bs=16, path=tmp_path)
    b = CollabDataLoaders.from_df(ratings, seed=5, bs=16)
    assert a.classes == b.classes and a.bs == 16 and a.path == tmp_path
    torch.testing.assert_close(a.train.tensors[0], b.train.tensors[0])


def test_test_dl_takes_frames_tuples_and_dicts(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0)
    pairs = ratings.iloc[:3]
    x_df = next(iter(dls.test_dl(pairs)))[0]
    x_tuples = next(iter(dls.test_dl(list(zip(pairs.userId, pairs.movieId)))))[0]
    x_dicts = next(iter(dls.test_dl(pairs[["userId", "movieId"]].to_dict("records"))))[0]
    assert x_df.tolist() == x_tuples.tolist() == x_dicts.tolist()
    x, y = next(iter(dls.test_dl(pairs, with_labels=True)))
    assert y.reshape(-1).tolist() == pairs.rating.tolist()
    assert rows_of(x, y, dls) == list(zip(pairs.userId, pairs.movieId, pairs.rating.astype(float)))


def test_test_dl_names_unknown_ids_unless_asked(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0)
    with pytest.raises(KeyError, match=r"column 'movieId' were never seen in training: 999.*unknown='bias'"):
        dls.test_dl([(1, 999)])
    assert dls.test_dl([(9999, 101)], unknown="na").tensors[0].tolist()[0][0] == 0
    with pytest.raises(ValueError, match="`unknown` must be one of"):
        dls.test_dl([(1, 101)], unknown="skip")
    with pytest.raises(KeyError, match="need a column 'movieId'"):
        dls.test_dl(pd.DataFrame({"userId": [1]}))
    with pytest.raises(KeyError, match="with_labels=True needs the rating column"):
        dls.test_dl([(1, 101)], with_labels=True)


def test_inference_description_rebuilds_the_vocabularies(ratings):
    dls = CollabDataLoaders.from_df(ratings, seed=0)
    desc = json.loads(json.dumps(dls.inference))
    assert desc["builder"] == "collab_inference_dls"
    fresh = collab_inference_dls(**desc["kwargs"])
    assert fresh.classes == dls.classes and fresh.n_out == 1 and isinstance(fresh.loss_func, MSELossFlat)
    pairs = ratings.iloc[:5]
    assert fresh.test_dl(pairs).tensors[0].tolist() == dls.test_dl(pairs).tensors[0].tolist()


def test_show_batch_decodes_ids(ratings, capsys):
    dls = CollabDataLoaders.from_df(ratings, seed=0)
    assert dls.show_batch(max_n=4) is None  # shown, not returned (as fastai's show functions)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["userId", "movieId", "rating"] and len(lines) == 5
    assert {int(line.split()[0]) for line in lines[1:]} <= set(ratings.userId)
    dls.show_batch()
    assert len(capsys.readouterr().out.strip().splitlines()) == 10  # fastai's default max_n=9


def test_fastai_loader_arguments(ratings, tmp_path):
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=48, num_workers=0, pin_memory=True, persistent_workers=False)
    assert not dls.train.drop_last and len(dls.train) == 7  # 320 rows: the last batch of 32 is kept
    dropped = CollabDataLoaders.from_df(ratings, seed=0, bs=48, drop_last=True)
    assert dropped.train.drop_last and len(dropped.train) == 6
    ordered = CollabDataLoaders.from_df(ratings, seed=0, bs=48, shuffle_train=False)  # fastai's older name
    assert not ordered.train.shuffle
    assert torch.equal(next(iter(ordered.train))[0], ordered.train.tensors[0][:48])
    ratings.to_csv(tmp_path / "r.csv", index=False)
    from_csv = CollabDataLoaders.from_csv(tmp_path / "r.csv", seed=0, num_workers=0, drop_last=True, bs=48)
    assert len(from_csv.train) == 6
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bogus', 'workers'\]"):
        CollabDataLoaders.from_df(ratings, bogus=1, workers=2)
