"""Datasets whose items are rows of tensors: batched by slicing tensors stacked once, with exactly the
batches (values, order, dtypes) of the per-item path through torch's DataLoader."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lamina.core import set_seed
from lamina.data.dataloader import DataLoader
from lamina.data.loaders import DataLoaders
from lamina.data.stacked import stacked_rows


class PerItem(torch.utils.data.Dataset):
    """The same items behind a dataset class lamina does not recognise: the per-item path."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _batches(loader, epochs=2):
    return [b for _ in range(epochs) for b in loader]


def _same(a, b):
    return len(a) == len(b) and all(len(x) == len(y) and all(u.dtype == v.dtype and torch.equal(u, v)
                                                              for u, v in zip(x, y)) for x, y in zip(a, b))


torch.manual_seed(0)
X, Y = torch.randn(37, 3), torch.randint(0, 4, (37,))
DATASETS = {
    "TensorDataset": TensorDataset(X, Y),
    "tensor pairs": [(X[i], Y[i]) for i in range(37)],
    "numpy pairs": [(X[i].numpy(), int(Y[i])) for i in range(37)],
    "numpy array": X.numpy(),
    "numbers": [(float(i), i % 3, bool(i % 2)) for i in range(37)],
}


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("shuffle,drop_last", [(True, True), (True, False), (False, False)])
def test_stacked_batches_are_the_per_item_batches(name, shuffle, drop_last):
    ds = DATASETS[name]
    fast = DataLoader(ds, bs=8, shuffle=shuffle, drop_last=drop_last, device="cpu", seed=3)
    slow = DataLoader(PerItem(ds), bs=8, shuffle=shuffle, drop_last=drop_last, device="cpu", seed=3)
    assert fast.stacked() is not None and slow.stacked() is None
    assert len(fast) == len(slow) == (4 if drop_last else 5)
    assert _same(_batches(fast), _batches(slow))


def test_a_tensor_dataset_is_not_copied_and_other_items_keep_the_per_item_path():
    assert all(a is b for a, b in zip(stacked_rows(TensorDataset(X, Y)), (X, Y)))
    assert stacked_rows([(X[0], Y[0]), (X[1, :2], Y[1])]) is None  # ragged
    assert stacked_rows([("a", 1), ("b", 2)]) is None  # not numbers
    assert stacked_rows([]) is None
    assert DataLoader(TensorDataset(X, Y), collate_fn=lambda items: items).stacked() is None


def test_resuming_at_an_epoch_gives_that_epochs_order():
    first = DataLoader(TensorDataset(X, Y), bs=8, shuffle=True, seed=11, device="cpu")
    epochs = [list(first) for _ in range(3)]
    resumed = DataLoader(TensorDataset(X, Y), bs=8, shuffle=True, seed=11, device="cpu")
    resumed.epochs_seen = 2
    assert _same(list(resumed), epochs[2]) and not _same(epochs[1], epochs[2])


def _fit(dls):
    set_seed(0)
    from lamina.learner import Learner
    learn = Learner(dls, nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)),
                    loss_func=nn.CrossEntropyLoss())
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, lr=0.01)
    return [p.detach().clone() for p in learn.model.parameters()]


def test_a_fit_on_the_stacked_path_is_the_fit_on_the_per_item_path():
    def dls(wrap):
        set_seed(5)
        return DataLoaders.from_dsets(wrap(TensorDataset(X[:30], Y[:30])), wrap(TensorDataset(X[30:], Y[30:])),
                                      bs=8, device="cpu")
    assert dls(lambda d: d).train.stacked() is not None
    assert all(torch.equal(a, b) for a, b in zip(_fit(dls(lambda d: d)), _fit(dls(PerItem))))


def test_dataloaders_take_plain_torch_loaders():
    train = torch.utils.data.DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True, drop_last=True)
    valid = torch.utils.data.DataLoader(TensorDataset(X, Y), batch_size=16)
    dls = DataLoaders(train, valid, device="cpu")
    assert isinstance(dls.train, DataLoader) and (dls.train.bs, dls.train.shuffle, dls.train.drop_last) == (8, True, True)
    assert (dls.valid.bs, dls.valid.shuffle, dls.valid.split_idx) == (16, False, 1)
    assert len(list(dls.train)) == 4 and len(_fit(dls)) == 4
    sampled = torch.utils.data.DataLoader(TensorDataset(X, Y), sampler=torch.utils.data.RandomSampler(X, True))
    with pytest.raises(TypeError, match="sampler=RandomSampler.*lamina.data.dataloader.DataLoader"):
        DataLoaders(sampled, valid)
