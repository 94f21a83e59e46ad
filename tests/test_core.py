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
