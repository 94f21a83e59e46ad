"""Splitters and labellers: fastai's semantics, seeded splits that leave the global RNG alone, clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from lamina.data.splitters import (AttrGetter, ColReader, ColSplitter, EndSplitter, FileSplitter, FuncSplitter,
                                   GrandparentSplitter, IndexSplitter, ItemGetter, MaskSplitter, RandomSplitter,
                                   RandomSubsetSplitter, RegexLabeller, TrainTestSplitter, parent_label, range_of,
                                   using_attr)


@pytest.mark.parametrize("n,seed", [(10, 42), (100, 0), (7390, 42)])
def test_random_splitter_matches_manual_seed_randperm(n, seed):
    torch.manual_seed(seed)
    perm = torch.randperm(n).tolist()
    cut = int(0.2 * n)
    train, valid = RandomSplitter(valid_pct=0.2, seed=seed)(list(range(n)))
    assert valid == perm[:cut] and train == perm[cut:]


def test_random_splitter_leaves_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    RandomSplitter(0.3, seed=1)(range(50))
    assert torch.equal(torch.rand(3), expected)


def test_random_splitter_unseeded_follows_global_seed():
    torch.manual_seed(5)
    a = RandomSplitter(0.25)(range(20))
    torch.manual_seed(5)
    assert RandomSplitter(0.25)(range(20)) == a
    assert len(a[1]) == 5 and sorted(a[0] + a[1]) == list(range(20))


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.2"])
def test_random_splitter_rejects_bad_pct(bad):
    with pytest.raises(ValueError, match="`valid_pct` must be in"):
        RandomSplitter(valid_pct=bad)


def test_random_subset_splitter():
    train, valid = RandomSubsetSplitter(0.5, 0.2, seed=0)(range(10))
    assert len(train) == 5 and len(valid) == 2 and not set(train) & set(valid)
    with pytest.raises(ValueError, match="add up to at most 1"):
        RandomSubsetSplitter(0.9, 0.2)


def test_grandparent_splitter_with_name_lists():
    items = [Path("d/train/cat/1.jpg"), Path("d/valid/dog/2.jpg"), Path("d/test/cat/3.jpg"), Path("d/extra/x/4.jpg")]
    assert GrandparentSplitter()(items) == ([0], [1])
    assert GrandparentSplitter(train_name=["train", "extra"], valid_name="test")(items) == ([0, 3], [2])


def test_index_func_mask_end_splitters():
    items = list("abcde")
    assert IndexSplitter([1, 3])(items) == ([0, 2, 4], [1, 3])
    with pytest.raises(IndexError, match="out of range for 5 items"):
        IndexSplitter([9])(items)
    assert FuncSplitter(lambda o: o in "ae")(items) == ([1, 2, 3], [0, 4])
    assert MaskSplitter([0, 1, 0, 0, 1])(items) == ([0, 2, 3], [1, 4])
    with pytest.raises(ValueError, match="2 entries but there are 5 items"):
        MaskSplitter([True, False])(items)
    assert EndSplitter(0.4)(items) == ([0, 1, 2], [3, 4])
    assert EndSplitter(0.4, valid_last=False)(items) == ([2, 3, 4], [0, 1])


def test_file_splitter(tmp_path):
    listing = tmp_path / "valid.txt"
    listing.write_text("b.jpg\nc.jpg\n")
    items = [tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert FileSplitter(listing)(items) == ([0], [1, 2])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        FileSplitter(tmp_path / "missing.txt")(items)


def test_col_splitter():
    df = pd.DataFrame({"fn": list("abcd"), "is_valid": [False, True, False, True], "fold": [0, 1, 2, 1]})
    assert ColSplitter()(df) == ([0, 2], [1, 3])
    assert ColSplitter("fold", on=2)(df) == ([0, 1, 3], [2])
    assert ColSplitter("fold", on=[0, 2])(df) == ([1, 3], [0, 2])
    with pytest.raises(KeyError, match="column 'nope' is not in the DataFrame"):
        ColSplitter("nope")(df)
    with pytest.raises(TypeError, match="needs the items to be a DataFrame"):
        ColSplitter()(["a"])


def test_parent_label_and_regex_labeller():
    assert parent_label(Path("train") / "cat" / "1.jpg") == "cat"
    fname = os.path.join("images", "great_pyrenees_173.jpg")
    assert RegexLabeller(r"/([^/]+)_\d+.jpg$")(fname) == "great_pyrenees"
    assert RegexLabeller(r"^images/(\w+?)_", match=True)(fname) == "great"
    with pytest.raises(ValueError, match='Failed to find "xyz\\(\\\\d\\)" in'):
        RegexLabeller(r"xyz(\d)")("abc.jpg")
    with pytest.raises(ValueError, match="must contain a group"):
        RegexLabeller(r"\d+")


def _first_upper(name: str) -> bool:
    return name[0].isupper()


def test_using_attr_is_picklable():
    f = pickle.loads(pickle.dumps(using_attr(_first_upper, "name")))
    assert f(Path("x/Persian_1.jpg")) is True and f(Path("x/pug_1.jpg")) is False


def test_col_reader():
    row = pd.Series({"fname": "a.jpg", "labels": "cat dog", "other": ""})
    assert ColReader("fname", pref="imgs/")(row) == "imgs/a.jpg"
    assert ColReader(0, suff=".png")(pd.Series(["a", "b"])) == "a.png"
    assert ColReader(1)(row) == "cat dog"
    assert ColReader("labels", label_delim=" ")(row) == ["cat", "dog"]
    assert ColReader("other", label_delim=" ")(row) == []
    assert ColReader(["fname", "labels"])(row) == ["a.jpg", "cat dog"]
    assert ColReader("fname", pref=Path("imgs"))(row) == f"imgs{os.sep}a.jpg"
    with pytest.raises(KeyError, match="column 'nope' not found"):
        ColReader("nope")(row)


def test_item_and_attr_getters():
    assert ItemGetter(1)(("a", "b")) == "b"
    assert AttrGetter("name")(Path("x/y.jpg")) == "y.jpg"
    assert AttrGetter("nope", default=3)(Path("x")) == 3


def test_range_of_lists_the_positions():
    df = pd.DataFrame({"a": [5, 6, 7]}, index=[10, 20, 30])
    assert range_of(df) == [0, 1, 2] and range_of([]) == [] and range_of("ab") == [0, 1]
    train, valid = RandomSplitter(valid_pct=1 / 3, seed=0)(range_of(df))
    assert sorted(train + valid) == [0, 1, 2] and len(valid) == 1


def test_train_test_splitter_sizes_seed_and_order():
    items = list(range(10))
    train, valid = TrainTestSplitter(test_size=0.25, random_state=0)(items)
    assert len(valid) == 3 and len(train) == 7 and sorted(train + valid) == items  # ceil(2.5) in validation
    assert TrainTestSplitter(test_size=0.25, random_state=0)(items) == (train, valid)
    assert TrainTestSplitter(test_size=2, train_size=0.5, random_state=1)(items)[0].__len__() == 5
    assert TrainTestSplitter(test_size=3, shuffle=False)(items) == (list(range(7)), [7, 8, 9])
    with pytest.raises(ValueError, match="cannot take 10 training and 3 validation items from 10"):
        TrainTestSplitter(test_size=3, train_size=10)(items)
    with pytest.raises(ValueError, match="needs shuffle=True"):
        TrainTestSplitter(stratify=[0] * 10, shuffle=False)


def test_train_test_splitter_stratifies():
    labels = ["a"] * 12 + ["b"] * 6 + ["c"] * 2
    train, valid = TrainTestSplitter(test_size=0.5, random_state=3, stratify=labels)(labels)
    assert sorted(train + valid) == list(range(20))
    assert sorted(labels[i] for i in valid) == ["a"] * 6 + ["b"] * 3 + ["c"]
    with pytest.raises(ValueError, match="one label per item"):
        TrainTestSplitter(stratify=["a"])(labels)


def test_using_attr_is_named_after_the_users_function():
    def is_cat(name):
        return name[0].isupper()

    g = using_attr(is_cat, "name")
    assert g.__name__ == "is_cat (on .name)" and g(Path("x/Cat.jpg"))
