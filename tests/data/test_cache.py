"""The sample cache: samples that are the same every epoch are loaded once, within a byte budget."""

import pickle

import pytest
import torch

import lamina.data.datasets as datasets_module
from lamina.data.cache import SampleCache, cache_budget, samples_are_fixed
from lamina.data.datasets import Datasets
from lamina.vision.data import ImageDataLoaders
from lamina.vision.synth import make_image_folder
from lamina.vision.transforms import FlipItem, RandomResizedCrop, Resize, ToTensor


class CountingLoader:
    """A loading step (``lazy``) that counts its calls: a stand-in for decoding a file."""

    lazy = True

    def __init__(self):
        self.calls = 0

    def __call__(self, i):
        self.calls += 1
        return torch.full((2,), float(i))


def make(item_tfms, n=6):
    loader = CountingLoader()
    dsets = Datasets(list(range(n)), [[loader], [lambda i: i % 2]], splits=([0, 1, 2, 3], [4, 5]),
                     item_tfms=item_tfms)
    return dsets, loader


def test_fixed_samples_are_loaded_once_per_item():
    dsets, loader = make([ToTensor()])
    train = dsets.train
    first = [train[k] for k in range(4)]
    again = [train[k] for k in range(4)]
    assert loader.calls == 4
    assert all(a is b for a, b in zip(first, again))
    valid = dsets.valid
    [valid[k] for k in range(2)], [valid[k] for k in range(2)]
    assert loader.calls == 6  # each view has its own cache, keyed by item


def test_random_training_transforms_are_never_cached_but_validation_is():
    dsets, loader = make([Resize(4), FlipItem()])
    train, valid = dsets.train, dsets.valid
    for _ in range(2):
        [train[k] for k in range(4)]
    assert loader.calls == 8
    for _ in range(2):
        [valid[k] for k in range(2)]
    assert loader.calls == 10


def test_plain_functions_and_random_transforms_make_a_pipeline_uncacheable():
    assert not samples_are_fixed([lambda x: x], 1)
    assert not samples_are_fixed([RandomResizedCrop(8)], 0)
    assert samples_are_fixed([RandomResizedCrop(8), FlipItem()], 1)
    assert samples_are_fixed([Resize(8, method="squish"), ToTensor()], 0)
    assert not samples_are_fixed([Resize(8, method="pad")], 0)
    dsets, loader = make([lambda x: x])
    [dsets.valid[0] for _ in range(3)]
    assert loader.calls == 3


def test_new_item_transforms_drop_the_cached_samples():
    dsets, loader = make([ToTensor()])
    valid = dsets.valid
    valid[0], valid[0]
    valid.item_tfms = [ToTensor(), Resize(1, method="squish")]  # another configuration
    valid[0], valid[0]
    assert loader.calls == 2


def test_no_cache_in_worker_processes(monkeypatch):
    monkeypatch.setattr(datasets_module, "get_worker_info", lambda: object())
    dsets, loader = make([ToTensor()])
    [dsets.valid[0] for _ in range(3)]
    assert loader.calls == 3


def test_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("LAMINA_SAMPLE_CACHE_MB", "0")
    assert cache_budget() == 0
    dsets, loader = make([ToTensor()])
    [dsets.valid[0] for _ in range(3)]
    assert loader.calls == 3
    monkeypatch.setenv("LAMINA_SAMPLE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="LAMINA_SAMPLE_CACHE_MB must be a number"):
        cache_budget()
    monkeypatch.setenv("LAMINA_SAMPLE_CACHE_MB", "1.5")
    assert cache_budget() == int(1.5 * 2 ** 20)


def test_the_budget_caps_what_is_kept():
    cache = SampleCache(budget=100)
    cache.put(0, "k", (torch.zeros(10),))  # 40 bytes
    cache.put(1, "k", (torch.zeros(10),))
    cache.put(2, "k", (torch.zeros(10),))  # over the budget: not kept
    assert len(cache) == 2 and cache.nbytes == 80
    assert cache.get(2, "k") is None and cache.get(0, "k") is not None
    assert cache.get(0, "other") is None and len(cache) == 0


def test_pickled_datasets_carry_no_cache():
    dsets, _ = make([ToTensor()])
    valid = dsets.valid
    valid[0]
    assert len(valid._sample_cache) == 1
    assert pickle.loads(pickle.dumps(valid))._sample_cache is None


def test_image_loaders_give_the_same_batches_from_the_cache(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=6, size=20)
    dls = ImageDataLoaders.from_name_func(tmp_path, files, label_func=lambda n: n[0].isupper(), valid_pct=0.25,
                                          seed=0, item_tfms=Resize(16), bs=3, num_workers=0)
    first = [b[0].clone() for b in dls.valid]
    assert len(dls.valid.dataset._sample_cache) == len(dls.valid.dataset)
    assert all(torch.equal(a, b[0]) for a, b in zip(first, dls.valid))
