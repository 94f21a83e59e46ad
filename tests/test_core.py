"""Devices, seeding, moving batches."""

import random

import numpy as np
import pytest
import torch

from lamina.core import default_device, set_seed, to_device


def test_default_device_override(monkeypatch):
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("LAMINA_DEVICE", "warp-drive")
    with pytest.raises(ValueError, match="LAMINA_DEVICE must name a torch device"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("LAMINA_DEVICE", "cuda:1")
        with pytest.raises(ValueError, match="sees no CUDA device"):
            default_device()


def test_default_device_auto_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("LAMINA_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_set_seed_repeats_all_generators():
    set_seed(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_to_device_nested():
    batch = {"x": (torch.ones(2), [torch.zeros(1)]), "n": 3}
    moved = to_device(batch, "cpu")
    assert moved["n"] == 3 and isinstance(moved["x"], tuple) and isinstance(moved["x"][1], list)
    assert moved["x"][0].device.type == "cpu"


def test_tensor_as_fastai_writes_it():
    from lamina.torch_core import tensor
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]
    assert tensor([1.5, 2.5]).dtype == torch.float32
    stacked = tensor([np.array([1., 2.]), torch.tensor([3., 4.])])
    assert stacked.shape == (2, 2) and stacked.tolist() == [[1., 2.], [3., 4.]]
    t = torch.ones(2)
    assert tensor(t) is t and tensor(np.arange(3)).tolist() == [0, 1, 2]
