"""Loaders: tensor batching, epochs, devices, batch transforms, test_dl."""

import pytest
import torch
from torch.utils.data import TensorDataset

from lamina.data import dataloader, transforms
from lamina.data.loaders import BatchTransform, DataLoader, DataLoaders, TensorDataLoader, apply_batch_tfms
from lamina.losses import CrossEntropyLossFlat, loss_from_config


def test_tensor_loader_sees_every_row_once_per_epoch():
    x = torch.arange(100)
    dl = TensorDataLoader((x, x * 2), bs=16, shuffle=True, device="cpu")
    seen = torch.cat([xb for xb, yb in dl])
    assert sorted(seen.tolist()) == list(range(100)) and len(dl) == 7
    again = torch.cat([xb for xb, _ in dl])
    assert not torch.equal(seen, again)  # a new order every epoch
    assert all(torch.equal(yb, xb * 2) for xb, yb in dl)


def test_drop_last_and_lengths():
    dl = TensorDataLoader((torch.arange(10),), bs=4, drop_last=True, device="cpu")
    assert len(dl) == 2 and [len(b[0]) for b in dl] == [4, 4]
    with pytest.raises(ValueError, match="`bs` must be a positive integer"):
        TensorDataLoader((torch.arange(10),), bs=0)
    with pytest.raises(ValueError, match="same length"):
        TensorDataLoader((torch.arange(10), torch.arange(9)))


def test_same_seed_and_epoch_give_same_order():
    a = TensorDataLoader((torch.arange(50),), bs=10, shuffle=True, seed=3, device="cpu")
    b = TensorDataLoader((torch.arange(50),), bs=10, shuffle=True, seed=3, device="cpu")
    assert torch.equal(torch.cat([x for x, in a]), torch.cat([x for x, in b]))


def test_shuffled_batches_over_several_gather_blocks(monkeypatch):
    import lamina.data.loaders as loaders
    monkeypatch.setattr(loaders, "GATHER_BATCHES", 2)  # blocks of 2 batches: 103 rows make 6 blocks
    x = torch.arange(103)
    dl = TensorDataLoader((x, x * 10), bs=9, shuffle=True, seed=5, device="cpu")
    order = torch.randperm(103, generator=torch.Generator().manual_seed(5))  # epoch 0's order
    batches = list(dl)
    assert [len(b[0]) for b in batches] == [9] * 11 + [4]
    assert torch.equal(torch.cat([b[0] for b in batches]), order)  # the same batches as row-by-row gathers
    assert all(torch.equal(yb, xb * 10) for xb, yb in batches)
    dropped = TensorDataLoader((x,), bs=9, shuffle=True, drop_last=True, device="cpu")
    assert [len(b[0]) for b in dropped] == [9] * 11


class AddOne(BatchTransform):
    split_idx = 0

    def encodes(self, batch, kinds, split_idx):
        return tuple(t + 1 if k == "number" else t for t, k in zip(batch, kinds))


def test_batch_transforms_follow_split_and_kinds():
    x = torch.zeros(8)
    train = TensorDataLoader((x, x), bs=8, device="cpu", after_batch=[AddOne()], kinds=("number", "label"))
    valid = train.new(split_idx=1)
    xb, yb = next(iter(train))
    assert xb.sum() == 8 and yb.sum() == 0
    xb, yb = next(iter(valid))
    assert xb.sum() == 0


def test_torch_dataloader_with_workers():
    ds = TensorDataset(torch.arange(40).float(), torch.arange(40))
    dl = DataLoader(ds, bs=8, shuffle=True, num_workers=2, device="cpu")
    got = sorted(torch.cat([y for _, y in dl]).tolist())
    assert got == list(range(40)) and len(dl) == 5
    xb, yb = dl.one_batch()
    assert xb.shape == (8,)


def test_dataloaders_from_tensors_and_test_dl():
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    dls = DataLoaders.from_tensors(x[:16], y[:16], x[16:], y[16:], bs=4, vocab=["a", "b"])
    assert dls.n_out == dls.c == 2 and dls.vocab == ["a", "b"] and dls.bs == 4
    assert dls[0] is dls.train and dls[1] is dls.valid
    tdl = dls.test_dl(torch.randn(5, 3))
    assert [b[0].shape[0] for b in tdl] == [4, 1]
    with pytest.raises(TypeError, match="test_dl cannot build a dataset"):
        dls.test_dl(["a string"])
    with pytest.raises(ValueError, match="training and a validation loader"):
        DataLoaders(dls.train)
    with pytest.raises(NotImplementedError, match="no show_batch"):
        dls.show_batch()
    with pytest.raises(ValueError, match="`event` must be 'after_batch'"):
        dls.add_tfms([AddOne()], "after_item")


def test_dataloaders_take_a_loss_or_its_config_and_build_it_only_when_told_how():
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    config = {"name": "CrossEntropyLossFlat", "kwargs": {"axis": -1}}
    plain = DataLoaders.from_tensors(x, y, x, y, bs=4, loss_func=config)
    assert plain.loss_func is None and plain.loss_config == config  # the data layer only describes the loss

    class Building(DataLoaders):
        build_loss = staticmethod(loss_from_config)

    built = Building(*plain.loaders, loss_func=config)
    assert isinstance(built.loss_func, CrossEntropyLossFlat) and built.loss_config == config
    given = DataLoaders(*plain.loaders, loss_func=CrossEntropyLossFlat(axis=1))
    assert given.loss_config == {"name": "CrossEntropyLossFlat", "kwargs": {"weight": None, "axis": 1,
                                 "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}}
    given.loss_func = None
    assert given.loss_config is None  # a config read from the loss follows it
    later = Building(*plain.loaders)
    later.loss_config = config
    assert isinstance(later.loss_func, CrossEntropyLossFlat)


def test_old_import_locations_still_work():
    assert DataLoader is dataloader.DataLoader and TensorDataLoader is dataloader.TensorDataLoader
    assert BatchTransform is transforms.BatchTransform and apply_batch_tfms is transforms.apply_batch_tfms


# --- fastai's DataLoader call shapes (book chapter 4) ------------------------------------------------------
def test_dataloader_takes_batch_size_and_any_indexable_dataset():
    from lamina.torch_core import first
    coll = range(15)
    dl = DataLoader(coll, batch_size=5, shuffle=True, device="cpu")
    batches = list(dl)
    assert dl.bs == 5 and len(batches) == 3 and sorted(torch.cat(batches).tolist()) == list(range(15))  # tensors
    x, y = torch.randn(10, 4), torch.arange(10)
    dset = list(zip(x, y))  # a list of tuples, as the book builds it
    dl = DataLoader(dset, batch_size=4, device="cpu")
    xb, yb = first(dl)
    assert xb.shape == (4, 4) and yb.tolist() == [0, 1, 2, 3] and torch.equal(xb, x[:4])
    xb2, _ = dl.one_batch()
    assert torch.equal(xb2, xb)
    valid = DataLoader(dset[:6], batch_size=3, device="cpu")
    dls = DataLoaders(dl, valid)
    assert dls.train is dl and dls.valid is valid and len(dls.valid) == 2


def test_dataloader_refuses_what_it_cannot_index_and_a_double_batch_size():
    with pytest.raises(TypeError, match="`dataset` must have a length and be indexable.*list\\(...\\)"):
        DataLoader((i for i in range(3)), batch_size=2)
    with pytest.raises(TypeError, match="`bs` and `batch_size` name the same thing"):
        DataLoader(range(4), bs=2, batch_size=3)
    with pytest.raises(TypeError, match="bs=64, batch_size=32"):  # 64, the default, given on purpose
        DataLoader(range(4), bs=64, batch_size=32)
    assert DataLoader(range(4)).bs == 64 and DataLoader(range(4), batch_size=32).bs == 32


def test_vocab_picks_several_by_a_list_of_indices():
    from lamina.data.transforms import CategoryMap
    dls = DataLoaders.from_tensors(torch.zeros(4, 1), torch.zeros(4), torch.zeros(2, 1), torch.zeros(2),
                                   vocab=["a", "b", "c"], device="cpu")
    assert dls.vocab[[2, 0]] == ["c", "a"] and dls.vocab == ["a", "b", "c"]
    vocab = CategoryMap(["dog", "cat", "emu"])
    assert vocab[[0, 2]] == ["cat", "emu"] and vocab[torch.tensor([1])] == ["dog"] and vocab[1] == "dog"


def test_from_dsets_shuffle_and_drop_last_per_loader():
    train, valid = TensorDataset(torch.arange(20)), TensorDataset(torch.arange(10))
    dls = DataLoaders.from_dsets(train, valid, bs=8, device="cpu")  # default: the training loader alone
    assert (dls.train.shuffle, dls.train.drop_last) == (True, True)
    assert (dls.valid.shuffle, dls.valid.drop_last) == (False, False)
    # chapter 12's ordered sequences: one value for every loader, as fastai
    dls = DataLoaders.from_dsets(train, valid, bs=8, drop_last=True, shuffle=False, device="cpu")
    assert [len(dl) for dl in dls.loaders] == [2, 1]
    assert torch.equal(torch.cat([x for x, in dls.train]), torch.arange(16))
    dls = DataLoaders.from_dsets(train, valid, bs=8, drop_last=(False, True), device="cpu")
    assert [len(dl) for dl in dls.loaders] == [3, 1] and dls.train.shuffle and not dls.valid.shuffle
    with pytest.raises(ValueError, match="`drop_last` has 3 values for 2 datasets"):
        DataLoaders.from_dsets(train, valid, drop_last=(True, True, False))


def test_a_loader_of_single_values_yields_tensors_and_a_learner_takes_them():
    from torch import nn

    from lamina.learner import Learner
    batches = list(DataLoader(range(15), bs=5, shuffle=True, device="cpu"))  # the book's chapter 4
    assert all(isinstance(b, torch.Tensor) for b in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(15))
    assert torch.equal(DataLoader(torch.arange(15), bs=5, device="cpu").one_batch(), torch.arange(5))
    pairs = DataLoader(list(zip(torch.arange(4), torch.arange(4) * 2)), bs=2, device="cpu").one_batch()
    assert isinstance(pairs, tuple) and torch.equal(pairs[1], torch.tensor([0, 2]))
    one = DataLoader(TensorDataset(torch.arange(4)), bs=2, device="cpu").one_batch()
    assert isinstance(one, tuple) and len(one) == 1  # a TensorDataset's items are tuples
    x = torch.randn(12, 3)
    dls = DataLoaders.from_tensors(x, x.sum(1, keepdim=True), x, x.sum(1, keepdim=True), bs=4, device="cpu")
    learn = Learner(dls, nn.Linear(3, 1), loss_func=torch.nn.functional.mse_loss)
    preds, targs = learn.get_preds(dl=DataLoader(x, bs=5, device="cpu"))  # inputs alone: one member a batch
    assert preds.shape == (12, 1) and targs is None
    assert torch.allclose(preds, learn.model(x).detach(), atol=1e-6)


def test_what_reads_a_batch_takes_a_single_tensor_as_one_member():
    from torch import nn

    from lamina.learner import Learner
    x = torch.randn(12, 3)
    dl = DataLoader(x, bs=4, device="cpu")
    samples = dl.decode_batch(dl.one_batch(), max_n=2)
    assert len(samples) == 2 and torch.equal(samples[0][0], x[0])  # a sample is (row,), not a row's numbers
    learn = Learner(DataLoaders(dl, DataLoader(x, bs=4, device="cpu")), nn.Linear(3, 1),
                    loss_func=torch.nn.functional.mse_loss)
    assert "Input shape: 4 x 3" in learn.summary()
