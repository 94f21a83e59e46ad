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
    fn.write_bytes(pickle.dumps(torch.ones(2)))  # a tensor pickled by torch itself: its rebuild function is refused
    with pytest.raises(pickle.UnpicklingError, match="torch._utils._rebuild_tensor"):
        load_pickle(fn)


def test_tensors_are_saved_in_their_plain_form(tmp_path):
    """The course's save_pickle('tta_res.pkl', tta_res): a list of (predictions, None) tuples."""
    fn = tmp_path / "tta_res.pkl"
    preds = torch.randn(4, 3, requires_grad=True) * 2
    tta_res = [(preds, None), (torch.arange(4), torch.tensor([True, False])), torch.randn(2).bfloat16()]
    save_pickle(fn, tta_res)
    back = load_pickle(fn)
    assert torch.equal(back[0][0], preds.detach()) and back[0][1] is None and not back[0][0].requires_grad
    assert torch.equal(back[1][0], torch.arange(4)) and back[1][1].dtype == torch.bool
    assert back[2].dtype == torch.bfloat16 and torch.equal(back[2], tta_res[2])
    assert b"_rebuild_tensor" not in fn.read_bytes()  # plain data: numpy arrays, no torch class
    with pytest.raises(TypeError, match="dtype torch.uint16"):
        save_pickle(tmp_path / "odd.pkl", torch.zeros(2, dtype=torch.uint16))


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


def test_pca_projects_on_the_directions_of_largest_variance():
    import lamina.basics  # noqa: F401  (the star surfaces make pca a tensor method)

    gen = torch.Generator().manual_seed(0)
    t = torch.randn(200, 1, generator=gen)
    x = torch.cat([3 * t, -2 * t, 0.01 * torch.randn(200, 1, generator=gen)], 1) + 5  # nearly a line, off centre
    proj = x.pca(2)
    assert proj.shape == (200, 2)
    assert torch.allclose(proj.mean(0), torch.zeros(2), atol=1e-4)  # centred
    variances = proj.var(0)
    assert variances[0] > 1000 * variances[1]  # the line's direction first
    assert torch.allclose(variances[0], (x - x.mean(0)).var(0).sum(), rtol=1e-3)  # it holds nearly all variance
    assert abs(torch.corrcoef(proj.T)[0, 1]) < 1e-3
