"""DataBlock, blocks, Categorize and Datasets on plain Python/tensor data (no images)."""

from __future__ import annotations

import pickle
import types

import pytest
import torch

from lamina.data.block import (Category, CategoryBlock, Categorize, DataBlock, Datasets, EncodedMultiCategorize,
                               MultiCategorize, MultiCategoryBlock, OneHotEncode, RegressionBlock, RegressionSetup,
                               TransformBlock, draft_size, fuse_tfms, get_c, merge_tfms)
from lamina.data.datasets import default_num_workers
from lamina.data.loaders import DataLoaders
from lamina.data.splitters import IndexSplitter, RandomSplitter


def features(i: int) -> torch.Tensor:
    return torch.tensor([float(i), float(i % 3)])


def label(i: int) -> str:
    return "odd" if i % 2 else "even"


def tensor_block(**kwargs) -> DataBlock:
    return DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=features, get_y=label,
                     splitter=IndexSplitter([0, 1, 2]), **kwargs)


# --- encoders ------------------------------------------------------------------------------------------


def test_categorize_vocab_encode_decode():
    cat = Categorize()
    cat.setup(["dog", "cat", "dog"])
    assert list(cat.vocab) == ["cat", "dog"] and cat.c == 2
    assert cat("dog").item() == 1 and cat("dog").dtype == torch.int64
    assert cat.decode(torch.tensor(0)) == "cat"
    with pytest.raises(KeyError, match="Label 'bird' was not included in the training dataset"):
        cat("bird")


def test_categorize_bools_and_given_vocab():
    cat = Categorize()
    cat.setup([True, False, True])
    assert list(cat.vocab) == [False, True]
    assert cat(True).item() == 1
    given = Categorize(vocab=["b", "a"], sort=False)
    given.setup(["a"])
    assert list(given.vocab) == ["b", "a"]
    with_na = Categorize(add_na=True)
    with_na.setup(["x"])
    assert list(with_na.vocab) == ["#na#", "x"]


def test_multicategorize():
    mc = MultiCategorize()
    mc.setup([["b", "a"], ["c"], []])
    assert list(mc.vocab) == ["a", "b", "c"] and mc.c == 3
    assert mc(["c", "a"]).tolist() == [1.0, 0.0, 1.0]
    assert mc.decode(torch.tensor([1.0, 0.0, 1.0])) == ["a", "c"]
    with pytest.raises(KeyError, match="Label 'z' was not included"):
        mc(["z"])
    encoded = MultiCategorize(vocab=["x", "y"], encoded=True)
    assert encoded([0, 1]).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="needs the class names"):
        MultiCategorize(encoded=True)


def test_fastai_encoder_names():
    cat = Categorize()
    cat.setup([True, False])
    decoded = cat.decode(torch.tensor(1))
    assert isinstance(decoded, Category) and decoded == "True"
    one_hot = OneHotEncode()
    one_hot.setup([torch.tensor([0, 2]), torch.tensor([1])])
    assert one_hot.c == 3 and one_hot(torch.tensor([0, 2])).tolist() == [1.0, 0.0, 1.0]
    assert one_hot(torch.tensor([0.0, 1.0, 0.0])).tolist() == [0.0, 1.0, 0.0]  # already one-hot: unchanged
    encoded = EncodedMultiCategorize(vocab=["x", "y"])
    assert encoded.encoded and encoded([1, 0]).tolist() == [1.0, 0.0]


def test_get_c_and_loss_configs_from_the_types():
    dls = types.SimpleNamespace(n_out=None, vocab=["a", "b", "c"])
    assert get_c(dls) == 3 and get_c(types.SimpleNamespace(n_out=5, vocab=None)) == 5
    assert get_c(types.SimpleNamespace(n_out=None, vocab=None)) is None
    assert MultiCategorize().loss_config["name"] == "BCEWithLogitsLossFlat"
    assert RegressionSetup().loss_config["name"] == "MSELossFlat"
    dsets = Datasets(list(range(6)), [[features], [lambda i: float(i), RegressionSetup()]], splits=([0, 1, 2, 3], [4]))
    dls = dsets.dataloaders(bs=2, num_workers=0)
    assert type(dls) is DataLoaders and dls.loss_config == {"name": "MSELossFlat", "kwargs": {}} and dls.n_out == 1


class _Fusable:
    """A transform that fuses with its neighbours of the same group (what vision's affine pieces do)."""

    fuse_group = "g"

    def __init__(self, tag, order=30):
        self.tag, self.order = tag, order

    @classmethod
    def fuse(cls, tfms):
        return [_Fusable("+".join(t.tag for t in tfms), tfms[0].order)]


class _OtherFusable(_Fusable):
    pass


def test_fuse_tfms_fuses_runs_of_neighbours_after_sorting():
    class Plain:
        def __init__(self, order):
            self.order = order

    early, late = Plain(10), Plain(99)
    out = fuse_tfms([late, _Fusable("a"), early, _Fusable("b"), _Fusable("c", order=40)])
    assert [getattr(t, "tag", t) for t in out] == [early, "a+b+c", late]  # sorted, then the run fused
    lone = _Fusable("x")
    assert fuse_tfms([lone, Plain(30)])[0] is lone  # a run of one is kept as it is
    split = fuse_tfms([_Fusable("a"), Plain(30), _Fusable("b")])
    assert [getattr(t, "tag", None) for t in split] == ["a", None, "b"]  # not neighbours: not fused
    dls = tensor_block(batch_tfms=[_Fusable("a"), _OtherFusable("b")]).dataloaders(list(range(11)), bs=4, num_workers=0)
    assert [t.tag for t in dls.train.after_batch] == ["a+b"] and [t.tag for t in dls.valid.after_batch] == ["a+b"]


def test_regression_setup_infers_outputs():
    reg = RegressionSetup()
    reg.setup([[1.0, 2.0], [3.0, 4.0]])
    assert reg.c == 2 and reg([1, 2]).dtype == torch.float32
    assert RegressionSetup(c=5).c == 5


# --- DataBlock -----------------------------------------------------------------------------------------


def test_datablock_dataloaders_on_tensors():
    dls = tensor_block().dataloaders(list(range(11)), bs=4, num_workers=0)
    assert type(dls) is DataLoaders
    assert dls.vocab == ["even", "odd"] and dls.n_out == 2 and dls.n_inp == 1
    assert dls.train.kinds == ("raw", "category")
    assert len(dls.train_ds) == 8 and len(dls.valid_ds) == 3
    assert dls.train.drop_last and not dls.valid.drop_last and len(dls.train) == 2
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 2) and yb.dtype == torch.int64
    assert [int(y) for y in yb] == [int(x[0]) % 2 for x in xb]
    # a plain DataLoaders gets no loss object (building losses belongs to the training layer), but its config
    assert dls.loss_func is None and dls.loss_config == {"name": "CrossEntropyLossFlat", "kwargs": {}}


def test_datablock_val_kwargs_and_unknown_kwargs():
    dls = tensor_block().dataloaders(list(range(11)), bs=4, val_bs=2, num_workers=0, val_drop_last=True)
    assert dls.valid.bs == 2 and dls.valid.drop_last and len(dls.valid) == 1
    with pytest.raises(TypeError, match=r"Unknown DataLoader arguments \['bogus'\]"):
        tensor_block().dataloaders(list(range(11)), bogus=1)


def test_datablock_defaults_and_getter_checks():
    dblock = DataBlock()
    assert dblock.n_inp == 1 and len(dblock.blocks) == 2
    with pytest.raises(ValueError, match="`get_x` must give one function per input"):
        DataBlock(blocks=(TransformBlock, TransformBlock, CategoryBlock), get_x=features)
    with pytest.raises(ValueError, match="`get_y` must give one function per target"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=[label, label])
    with pytest.raises(TypeError):
        DataBlock(blocks=(TransformBlock, CategoryBlock), bogus=1)
    two = DataBlock(blocks=(TransformBlock, TransformBlock, CategoryBlock), get_x=[features, features], get_y=label,
                    splitter=IndexSplitter([0]))
    dsets = two.datasets(list(range(4)))
    assert dsets.n_inp == 2 and len(dsets.train[0]) == 3


class SubclassBlock(DataBlock):
    def get_items(self, source):
        return list(range(source))

    def get_x(self, o):
        return features(o)

    def get_y(self, o):
        return label(o)


def test_datablock_methods_of_a_subclass():
    dblock = SubclassBlock(blocks=(TransformBlock, CategoryBlock), splitter=IndexSplitter([0]))
    dsets = dblock.datasets(5)
    assert len(dsets.train) == 4 and dsets.vocab == ["even", "odd"]


def test_seeded_split_is_reproducible():
    db = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=features, get_y=label, splitter=RandomSplitter(0.3, 7))
    a, b = db.datasets(list(range(20))), db.datasets(list(range(20)))
    assert a.splits == b.splits == RandomSplitter(0.3, 7)(list(range(20)))


def test_regression_and_multicategory_blocks():
    reg = DataBlock(blocks=(TransformBlock, RegressionBlock), get_x=features, get_y=lambda i: [i * 0.5, 1.0],
                    splitter=IndexSplitter([0]))
    dls = reg.dataloaders(list(range(5)), bs=2, num_workers=0)
    assert dls.n_out == 2 and dls.train.kinds[1] == "regression"
    assert dls.one_batch()[1].dtype == torch.float32
    multi = DataBlock(blocks=(TransformBlock, MultiCategoryBlock), get_x=features,
                      get_y=lambda i: ["a", "b"] if i % 2 else ["b"], splitter=IndexSplitter([0]))
    dsets = multi.datasets(list(range(4)))
    assert dsets.vocab == ["a", "b"] and dsets.train[0][1].tolist() == [1.0, 1.0]


def test_merge_tfms_dedups_by_class_user_wins_sorted():
    class A:
        order = 5

        def __init__(self, tag):
            self.tag = tag

    class B:
        order = 1

    def plain(x):
        return x

    merged = merge_tfms([A("default"), B(), plain], [A("user")])
    assert [type(t).__name__ for t in merged] == ["function", "B", "A"]
    assert merged[2].tag == "user"
    assert [type(t) for t in merge_tfms([], [B])] == [B]  # classes are instantiated


def test_draft_size_only_when_first_transform_knows():
    class Sizer:
        order = 1

        def draft_size(self):
            return (8, 8)

    class Custom:
        order = 0

    assert draft_size([Sizer()]) == (8, 8)
    assert draft_size([Custom(), Sizer()]) is None
    assert draft_size([]) is None


def test_from_columns():
    dblock = DataBlock.from_columns(blocks=(TransformBlock, CategoryBlock), splitter=IndexSplitter([0]))
    dsets = dblock.datasets(([torch.zeros(2), torch.ones(2), torch.ones(2)], ["x", "y", "x"]))
    assert dsets.vocab == ["x", "y"] and dsets.train[0][1].item() == 1 and dsets.valid[0][0].sum() == 0


# --- Datasets -----------------------------------------------------------------------------------------


def test_datasets_fastai_style_tfms_and_test_set():
    dsets = Datasets(list(range(6)), [[features], [label, Categorize()]], splits=([0, 1, 2, 3], [4, 5]))
    assert len(dsets.train) == 4 and len(dsets.valid) == 2 and dsets.kinds == ("raw", "category")
    x, y = dsets.valid[1]
    assert x.tolist() == [5.0, 2.0] and dsets.decode((x, y))[1] == "odd"
    test = dsets.test_set([7, 8])
    assert len(test) == 2 and len(test[0]) == 1 and test.split_idx == 1
    labelled = dsets.test_set([7], with_labels=True)
    assert labelled[0][1].item() == 1


def test_label_function_that_raises_names_the_item():
    def bad_label(i):
        if i == 3:
            raise ValueError("no label for this one")
        return "a"

    with pytest.raises(ValueError, match=r"step `bad_label` of the 'category' pipeline failed on item 3 "
                                         r"\(training set\): ValueError: no label for this one"):
        Datasets(list(range(5)), [[features], [bad_label, Categorize()]], splits=([0, 1, 2, 3], [4]))


def test_unseen_validation_label_is_named():
    with pytest.raises(KeyError, match=r"failed on item 1 \(validation set\): KeyError: Label 'odd' was not included"):
        Datasets(list(range(5)), [[features], [label, Categorize()]], splits=([0, 2], [4, 1]))


def test_batch_of_mismatched_shapes_names_items():
    def ragged(i):
        return torch.zeros(2 if i < 3 else 3)

    dls = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=ragged, get_y=label,
                    splitter=IndexSplitter([])).dataloaders(list(range(5)), bs=5, shuffle=False, num_workers=0)
    with pytest.raises(ValueError, match=r"Cannot batch the 'raw' of these items: 0 gives shape \(2,\) but 3 gives "
                                         r"shape \(3,\)"):
        dls.one_batch()


def test_pickled_datasets_drop_getters_but_still_load():
    dsets = Datasets(list(range(4)), [[lambda i: torch.tensor([i])], [lambda i: "a" if i < 2 else "b", Categorize()]],
                     splits=([0, 1, 2], [3]))
    copy = pickle.loads(pickle.dumps(dsets.valid))  # lambdas are not pickled: workers get the results only
    x, y = copy[0]
    assert x.tolist() == [3] and y.item() == 1


def test_summary_prints_steps_and_names_failure(capsys):
    tensor_block().summary(list(range(11)), bs=3)
    out = capsys.readouterr().out
    for expected in ("Found 11 items", "2 datasets of sizes 8,3", "applying label gives", "applying Categorize gives",
                     "Collating items in a batch", "Applying batch_tfms"):
        assert expected in out

    def ragged(i):
        return torch.zeros(1 + i % 2)

    bad = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=ragged, get_y=label, splitter=IndexSplitter([0]))
    with pytest.raises(ValueError, match="Cannot batch"):
        bad.summary(list(range(6)), bs=4)
    out = capsys.readouterr().out
    assert "Error! It's not possible to collate your items in a batch" in out
    assert "member 0 ('raw'): [(2,), (1,), (2,), (1,)]" in out


def test_default_num_workers_is_bounded():
    assert 0 <= default_num_workers() <= 8
