"""The everyday helpers of `lamina.torch_core`, and every star-import surface offering the book's everyday names."""

from __future__ import annotations

import importlib
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from lamina.foundation import L
from lamina.torch_core import (Inf, TensorBase, TensorCategory, first, load_pickle, noop, one_hot, save_pickle,
                               sequential, subplots, tensor, to_np)

# The list of everyday names: each must be in every surface's __all__ and importable from it.
EVERYDAY = ["tensor", "L", "first", "array", "Image", "to_np", "to_cpu", "to_device", "math", "subplots",
            "sequential", "one_hot", "save_pickle", "load_pickle", "Inf", "noop", "partial", "Tensor", "Embedding",
            "sigmoid_range", "get_c", "image2tensor", "PILImageBW", "TensorImage", "TensorCategory", "TensorMask",
            "TensorPoint", "show_image", "show_images", "get_emb_sz"]
SURFACES = ["lamina.basics", "lamina.vision.all", "lamina.tabular.all", "lamina.collab", "lamina.text.all"]


@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_has_the_everyday_names(surface):
    module = importlib.import_module(surface)
    missing = [name for name in EVERYDAY if name not in module.__all__ or not hasattr(module, name)]
    assert not missing, f"{surface} lacks {missing}"
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"
    assert module.Image is Image and module.array is np.array and module.Tensor is torch.Tensor
    assert module.tensor is tensor and module.first is first


def test_book_chapter_4_code_runs_after_the_star_import(tmp_path):
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "3.png")
    scope = {"folder": str(tmp_path)}
    exec("from lamina.vision.all import *\n"
         "t = tensor(Image.open(Path(folder)/'3.png'))\n"
         "stacked = torch.stack([t, t]).float()/255\n"
         "mean = stacked.mean(0)\n"
         "dist = ((stacked - mean)**2).mean((-1,-2)).sqrt()\n"
         "acts = sigmoid_range(tensor([0., 100.]), 0, 5.5)\n"
         "n = to_np(tensor([1, 2])).sum()\n", scope)
    assert scope["t"].shape == (8, 8) and scope["t"].dtype == torch.uint8
    assert torch.allclose(scope["dist"], torch.zeros(2))
    assert scope["acts"][0] == pytest.approx(2.75) and scope["acts"][1] == pytest.approx(5.5)
    assert scope["n"] == 3 and isinstance(scope["n"], np.integer)


def test_tensor_takes_what_the_book_gives_it():
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]
    assert tensor([[1.5, 2.0]]).dtype == torch.float32
    assert tensor(np.zeros((2, 3))).dtype == torch.float32  # float64 becomes float32
    assert tensor(pd.Series([1, 2])).tolist() == [1, 2]
    assert tensor(Image.new("RGB", (5, 4))).shape == (4, 5, 3)
    assert tensor([torch.ones(2), torch.zeros(2)]).shape == (2, 2)
    x = torch.arange(3)
    assert tensor(x) is x
    with pytest.raises(TypeError, match="tensor\\(\\) takes numbers"):
        tensor({"a": 1})


def test_small_helpers():
    assert one_hot([1, 3], 5).tolist() == [0, 1, 0, 1, 0] and one_hot(2, 3).dtype == torch.uint8
    with pytest.raises(IndexError, match="outside 0..4"):
        one_hot([7], 5)
    assert first([]) is None and first(iter([4, 5])) == 4 and first(range(10), lambda x: x > 6) == 7
    assert first([1, 2, 3], lambda x: x < 2, negate=True) == 2
    assert noop(3) == 3 and noop() is None and Inf > 1e300
    assert to_np({"a": [torch.ones(2)]})["a"][0].tolist() == [1.0, 1.0]
    model = sequential(nn.Linear(3, 2), lambda x: x * 0)
    assert isinstance(model, nn.Sequential) and model(torch.ones(1, 3)).abs().sum() == 0


def test_subplots_always_gives_an_array_of_axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axs = subplots()
    assert axs.shape == (1,) and fig.get_size_inches().tolist() == [3, 3]
    fig2, axs2 = subplots(2, 3, imsize=2)
    assert axs2.shape == (2, 3) and fig2.get_size_inches().tolist() == [6, 4]
    plt.close("all")


def test_pickles_round_trip_plain_data(tmp_path):
    fn = tmp_path / "vocab.pkl"
    data = {"vocab": ["a", "b"], "ids": np.arange(3), "n": 2.5, "set": {1, 2}, "items": L(1, 2), "path": tmp_path}
    save_pickle(fn, data)
    back = load_pickle(fn)
    assert back["vocab"] == ["a", "b"] and back["ids"].tolist() == [0, 1, 2] and back["set"] == {1, 2}
    assert isinstance(back["items"], L) and back["path"] == tmp_path


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_load_pickle_refuses_anything_that_could_run_code(tmp_path):
    fn = tmp_path / "evil.pkl"
    fn.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl.*posix\.getcwd.*only loads plain data"):
        load_pickle(fn)
    fn.write_bytes(pickle.dumps(torch.ones(2)))
    with pytest.raises(pickle.UnpicklingError, match="torch.load"):
        load_pickle(fn)


def test_typed_tensors_keep_their_type_through_operations():
    from lamina.vision.tensors import TensorImage, TensorMask, TensorPoint
    img = TensorImage(torch.rand(3, 8, 8))
    assert isinstance(img * 2, TensorImage) and isinstance(img, torch.Tensor) and isinstance(img, TensorBase)
    assert isinstance(TensorCategory([1, 2]).long(), TensorCategory)
    assert type(pickle.loads(pickle.dumps(TensorMask(torch.zeros(4, 4))))) is TensorMask
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ax = img.show(title="x")
    assert ax.get_title() == "x" and len(ax.images) == 1
    ax = TensorPoint(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).show()
    assert len(ax.collections) == 1
    plt.close("all")
