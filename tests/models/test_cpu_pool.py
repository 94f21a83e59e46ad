"""Channels-first max pooling through the channels-last kernel: torch's values, gradients (ties and NaN
included) and second derivatives, routed only where it applies, and used by the Learner's passes."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lamina.models.cpu_pool as cp
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.models.cpu_pool import max_pool2d_nchw, pool_mode
from lamina.models.small_conv import small_convs


def _tied(*shape, dtype=torch.float64):
    """Small integers, many of them equal (and half of them 0, as after a ReLU): windows with ties."""
    return torch.randint(-3, 4, shape).to(dtype).relu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_equal_torch_with_ties(dtype):
    torch.manual_seed(0)
    checked = 0
    for k, s, p, d, ceil in itertools.product([2, 3], [None, 1, 2], [0, 1], [1, 2], [False, True]):
        if p > k // 2:
            continue  # torch refuses padding over half the kernel
        x = _tied(2, 3, 9, 11, dtype=dtype).requires_grad_()
        ref = F.max_pool2d(x, k, s, p, d, ceil)
        out = max_pool2d_nchw(x, k, s, p, d, ceil)
        assert out is not None and out.is_contiguous()
        assert torch.equal(out, ref)
        g = torch.randn_like(ref)
        assert torch.equal(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])
        checked += 1
    assert checked >= 24


def test_nan_inputs_and_inference_equal_torch():
    x = torch.randn(2, 4, 16, 16)
    x[0, 1, 3, 4] = float("nan")
    with torch.no_grad():
        out = max_pool2d_nchw(x, 3, 2, 1)
    torch.testing.assert_close(out, F.max_pool2d(x, 3, 2, 1), equal_nan=True)
    assert out.is_contiguous() and torch.isnan(out).sum() == torch.isnan(F.max_pool2d(x, 3, 2, 1)).sum() > 0


def test_second_derivatives_equal_torch():
    x = _tied(2, 3, 8, 8).requires_grad_()
    results = []
    for pool in (lambda t: max_pool2d_nchw(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)):
        g = torch.linspace(-1, 1, 2 * 3 * 16, dtype=torch.float64).reshape(2, 3, 4, 4).requires_grad_()
        gx = torch.autograd.grad(pool(x), x, g, create_graph=True)[0]
        results.append(torch.autograd.grad((gx ** 2).sum(), g)[0])  # a penalty on the input gradient
    assert torch.equal(*results) and results[0].abs().sum() > 0


def test_what_is_left_to_torch():
    x = torch.randn(2, 3, 16, 16)
    assert max_pool2d_nchw(x.contiguous(memory_format=torch.channels_last), 2) is None  # already the fast kernel
    assert max_pool2d_nchw(x, 2, return_indices=True) is None
    assert max_pool2d_nchw(x[:, :, :7, :7].contiguous(), 2) is None  # under POOL_MIN_PIXELS
    assert max_pool2d_nchw(x[0], 2) is None  # unbatched
    assert max_pool2d_nchw(x.to(torch.int32), 2) is None
    assert max_pool2d_nchw(x[:, :, :, ::2], 2) is None  # a strided view: neither layout
    assert max_pool2d_nchw(x, 2, padding="same") is None
    assert max_pool2d_nchw(x, 2) is not None


def test_vmap_keeps_torch_pooling():
    xs = torch.randn(3, 2, 4, 8, 8)
    with pool_mode():
        out = torch.func.vmap(nn.MaxPool2d(2))(xs)  # vmap cannot tell memory formats: torch's pooling serves it
    assert torch.equal(out, torch.func.vmap(nn.MaxPool2d(2))(xs))
    model = nn.Sequential(nn.MaxPool2d(2))
    with small_convs(model):
        assert torch.equal(torch.func.vmap(model)(xs), out)


def test_the_mode_routes_every_spelling(count_routes):
    calls = count_routes(cp, "max_pool2d_nchw")
    x = torch.randn(2, 3, 16, 16)
    with pool_mode():
        outs = [F.max_pool2d(x, 3, 2, 1), torch.max_pool2d(x, 3, 2, 1), nn.MaxPool2d(3, 2, 1)(x),
                F.max_pool2d(input=x, kernel_size=3, stride=2, padding=1)]
        F.max_pool2d(x, 2, return_indices=True)  # torch's, with its indices
    assert calls["routed"] == 4
    for out in outs:
        assert torch.equal(out, F.max_pool2d(x, 3, 2, 1))


def _pool_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),  # 16 -> 8
                         nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),  # 8 -> 4
                         nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),  # 4 -> 2: left to torch
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def test_small_convs_routes_pool_modules_and_a_fit_ends_with_the_same_weights(count_routes):
    calls = count_routes(cp, "max_pool2d_nchw")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 16, 16, generator=gen), torch.randint(0, 2, (48,), generator=gen)
    results = []
    for routed in (True, False):
        dls = DataLoaders.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=16, device="cpu", shuffle=False)
        learn = Learner(dls, _pool_cnn(), loss_func=CrossEntropyLossFlat(), default_cbs=True)
        learn.small_convs = routed
        with learn.no_bar(), learn.no_logging():
            learn.fit(2, 1e-2)
        results.append(([p.detach().clone() for p in learn.model.parameters()], learn.get_preds()[0]))
        if routed:
            # two pools of 8x8 and more, in the training and validation batches of two epochs and get_preds
            assert calls["routed"] == 2 * (2 * 2 + 2 + 1)
            assert not any(m._forward_hooks or m._forward_pre_hooks for m in learn.model.modules())
    (w_on, p_on), (w_off, p_off) = results
    assert calls["routed"] == 14
    for a, b in zip(w_on, w_off):
        assert torch.equal(a, b)
    assert torch.equal(p_on, p_off)


def test_pool_hooks_only_for_cpu_models_and_traces_keep_torch_pooling():
    model = _pool_cnn()
    with small_convs(model) as installed:
        assert installed
        graph = str(torch.jit.trace(model, torch.randn(2, 3, 16, 16)).inlined_graph)
    assert graph.count("aten::max_pool2d(") == 3  # torch's own call, not the route's copies and indices
    assert "max_pool2d_with_indices" not in graph and "PythonOp" not in graph
    with small_convs(nn.Sequential(nn.MaxPool2d(2))) as installed:
        assert installed  # no parameters: taken for a CPU model
    with small_convs(_pool_cnn().to("meta")) as installed:
        assert not installed  # parameters on another device (a GPU's): neither its pools nor its convolutions
