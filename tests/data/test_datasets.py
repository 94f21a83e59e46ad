"""lamina.data.datasets: `Datasets` on plain Python and tensor data: the eager and lazy phases, the hooks its
steps declare, the checks it runs, its views, and the DataLoaders it builds."""

from __future__ import annotations

import pickle

import matplotlib.pyplot as plt
import pytest
import torch

from lamina.data.datasets import Datasets, default_num_workers
from lamina.data.loaders import DLS_TYPES, DataLoaders, register_dls_type
from lamina.data.transforms import Categorize, ItemTransform, RegressionSetup, TypeTransform


def features(i: int) -> torch.Tensor:
    return torch.tensor([float(i), float(i % 3)])


def label(i: int) -> str:
    return "odd" if i % 2 else "even"


class Loader(TypeTransform):
    """A loading step: runs lazily (in the workers), checks each value early, accepts ints as they are."""

    lazy = True
    kind = "numbers"

    def __init__(self):
        self.calls = 0
        self.checked = []

    def __call__(self, i: int) -> torch.Tensor:
        self.calls += 1
        return features(i)

    def check(self, i: int) -> None:
        self.checked.append(i)
        if i == 13:
            raise FileNotFoundError("item 13 is missing")

    def accepts(self, item) -> bool:
        return isinstance(item, int)


def make(n: int = 8, **kwargs) -> Datasets:
    return Datasets(list(range(n)), [[Loader()], [label, Categorize()]], splits=(list(range(n - 2)), [n - 2, n - 1]),
                    **kwargs)


def test_steps_before_the_loader_run_at_build_and_the_rest_on_access():
    dsets = make()
    loader = dsets.lazy_steps[0][0]
    assert loader.calls == 0 and sorted(loader.checked) == list(range(8))  # checked, not loaded
    assert dsets.kinds == ("numbers", "category") and list(dsets.vocab) == ["even", "odd"] and dsets.c == 2
    x, y = dsets.valid[1]
    assert torch.equal(x, features(7)) and y.item() == 1 and loader.calls == 1
    assert len(dsets.train) == 6 and len(dsets.valid) == 2 and len(dsets) == 8


def test_a_check_failure_names_the_item_at_build():
    with pytest.raises(FileNotFoundError, match=r"step `check` of the 'numbers' pipeline failed on item 13 "
                                                r"\(validation set\): FileNotFoundError: item 13 is missing"):
        Datasets(list(range(14)), [[Loader()], [label, Categorize()]], splits=(list(range(12)), [12, 13]))


def test_vocabulary_comes_from_the_training_items_only():
    dsets = Datasets(["b", "a", "a", "b", "c"], [[str.upper], [Categorize()]], splits=([0, 1, 2], [3]))
    assert list(dsets.vocab) == ["a", "b"]  # item 4 ("c") is in no split: never encoded
    assert dsets.decode(dsets.valid[0]) == ("B", "b")  # decode turns codes back into labels
    with pytest.raises(KeyError, match=r"item 'c' \(validation set\): KeyError: Label 'c' was not included"):
        Datasets(["b", "a", "c"], [[str.upper], [Categorize()]], splits=([0, 1], [2]))


def test_test_set_skips_getters_for_what_the_loader_accepts():
    dsets = make()
    test = dsets.test_set([3, 5])
    assert [x.tolist() for (x,) in (test[0], test[1])] == [[3.0, 0.0], [5.0, 2.0]]
    labelled = dsets.test_set([2, 3], with_labels=True)
    assert [labelled[k][1].item() for k in range(2)] == [0, 1]  # through the getters: label then Categorize
    dsets.test_labels_error = "no labels here"
    with pytest.raises(ValueError, match="no labels here"):
        dsets.test_set([1], with_labels=True)


def test_dataloaders_carry_vocab_n_out_loss_config_and_split_behaviour():
    class TrainOnlyNegate(ItemTransform):
        split_idx = 0

        def encodes(self, sample, split_idx):
            return (-sample[0], *sample[1:])

    dls = make(item_tfms=[TrainOnlyNegate()]).dataloaders(bs=2, shuffle=False, num_workers=0, val_bs=1)
    assert type(dls) is DataLoaders and dls.vocab == ["even", "odd"] and dls.n_out == 2 and dls.n_inp == 1
    assert dls.loss_config == {"name": "CrossEntropyLossFlat", "kwargs": {}} and dls.loss_func is None
    xb, yb = dls.train.one_batch()
    assert xb[:, 0].tolist() == [-0.0, -1.0] and yb.tolist() == [0, 1]
    assert dls.valid.one_batch()[0][:, 0].tolist() == [6.0] and dls.valid.bs == 1
    with pytest.raises(ValueError, match=r"`n` must be between 1 and the number of training items \(6\)"):
        make().dataloaders(n=7, num_workers=0)
    with pytest.raises(TypeError, match=r"Unknown DataLoader arguments \['val_colour'\]"):
        make().dataloaders(val_colour=1)
    assert make().dataloaders(n=3, num_workers=0).train.dataset.idxs == [0, 1, 2]


def test_the_inputs_kind_picks_the_registered_dataloaders_class(monkeypatch):
    class NumberDataLoaders(DataLoaders):
        pass

    monkeypatch.setitem(DLS_TYPES, "numbers", NumberDataLoaders)  # restored after the test
    del DLS_TYPES["numbers"]
    assert register_dls_type("numbers")(NumberDataLoaders) is NumberDataLoaders
    assert type(make().dataloaders(num_workers=0)) is NumberDataLoaders
    assert make().dataloaders(num_workers=0, dls_type=DataLoaders).__class__ is DataLoaders  # the argument wins
    with pytest.raises(ValueError, match="NumberDataLoaders is already the DataLoaders class of 'numbers'"):
        register_dls_type("numbers")(type("Other", (DataLoaders,), {}))


def test_a_given_loss_overrides_the_implied_one():
    dsets = Datasets(list(range(6)), [[features], [lambda i: float(i), RegressionSetup()]],
                     splits=([0, 1, 2, 3], [4, 5]))
    assert dsets.loss_config == {"name": "MSELossFlat", "kwargs": {}}
    dls = dsets.dataloaders(num_workers=0, loss_func={"name": "L1LossFlat", "kwargs": {}})
    assert dls.loss_config == {"name": "L1LossFlat", "kwargs": {}}
    plain = Datasets(list(range(6)), [[features], [lambda i: float(i)]], splits=([0, 1, 2, 3], [4, 5]))
    assert plain.loss_config is None and plain.kinds == ("raw", "raw")


def test_a_single_training_class_fails_when_the_loaders_are_built():
    dsets = Datasets(list(range(6)), [[features], [lambda i: "same", Categorize()]], splits=([0, 1, 2, 3], [4, 5]))
    with pytest.raises(ValueError, match=r"Every one of the 4 training items has the label 'same' \(from <lambda>"):
        dsets.dataloaders(num_workers=0)


def test_after_item_replaces_the_item_transforms_and_classes_are_instantiated():
    class Double(ItemTransform):
        def encodes(self, sample, split_idx):
            return (sample[0] * 2, *sample[1:])

    dls = make().dataloaders(num_workers=0, shuffle=False, after_item=[Double])
    assert dls.train.one_batch()[0][1].tolist() == [2.0, 2.0]


def test_pickled_views_keep_their_split_and_load():
    view = pickle.loads(pickle.dumps(make().valid))
    assert view.split_idx == 1 and torch.equal(view[0][0], features(6))
    with pytest.raises(RuntimeError, match="call test_set in the main process"):
        view.test_set(["not an int"])


def test_show_draws_with_the_step_or_as_a_title():
    drawn = []

    class Drawn(Categorize):
        def show(self, x, ctx=None, **kwargs):
            drawn.append(x)
            return ctx

    dsets = Datasets(list(range(6)), [[features], [label, Drawn()]], splits=([0, 1, 2, 3], [4, 5]))
    dsets.show(dsets.train[1])
    assert drawn == ["odd"]
    titled = Datasets(list(range(6)), [[label], [label, Categorize()]], splits=([0, 1, 2, 3], [4, 5]))
    ax = titled.show(titled.train[1])
    assert ax.get_title() == "odd\nodd"  # a plain value becomes the title, under any title already there
    plt.close("all")


def test_repr_and_workers():
    assert repr(make()) == "Datasets(6 training, 2 validation items; kinds=('numbers', 'category'))"
    assert 0 <= default_num_workers() <= 8
