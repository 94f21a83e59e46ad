"""Convolutions on tiny feature maps as matrix products: the same values and gradients as torch's, routed only
where they apply, and the Learner's passes using them without changing the model."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lamina.models.small_conv as sc
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.models.small_conv import conv2d_small, small_conv_mode, small_convs
from lamina.data.loaders import DataLoaders


def _grads(out, tensors, g):
    return torch.autograd.grad(out, [t for t in tensors if t is not None], g)


@pytest.mark.parametrize("route", ["im2col", "dense"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 2), (2, 2), (2, 1), (3, 3), (1, 3)])
def test_small_outputs_equal_torch_convolution_with_gradients(monkeypatch, hw, route):
    monkeypatch.setattr(sc, "MIN_DEPTH", 0)  # route even these few channels
    monkeypatch.setattr(sc, "DENSE_MIN_BATCH", 0 if route == "dense" else 10 ** 9)
    torch.manual_seed(0)
    routed = 0
    for k, s, p, d, with_bias in itertools.product([2, 3, 5], [1, 2], [0, 1, 2], [1, 2], [True, False]):
        x = torch.randn(3, 5, *hw, dtype=torch.float64, requires_grad=True)
        w = torch.randn(7, 5, k, k, dtype=torch.float64, requires_grad=True)
        b = torch.randn(7, dtype=torch.float64, requires_grad=True) if with_bias else None
        try:
            ref = F.conv2d(x, w, b, s, p, d)
        except RuntimeError:  # kernel larger than the padded input
            continue
        out = conv2d_small(x, w, b, s, p, d)
        if out is None:
            assert ref.shape[2] * ref.shape[3] > sc.MAX_OUTPUT_PIXELS or (hw == (1, 1) and p % d)
            continue
        routed += 1
        g = torch.randn_like(ref)
        assert out.shape == ref.shape and out.is_contiguous()
        torch.testing.assert_close(out, ref)
        for mine, theirs in zip(_grads(out, [x, w, b], g), _grads(ref, [x, w, b], g)):
            torch.testing.assert_close(mine, theirs)
    assert routed > 10


def test_one_pixel_uses_the_center_tap_in_inference_too():
    x, w, b = torch.randn(4, 64, 1, 1), torch.randn(32, 64, 3, 3), torch.randn(32)
    with torch.no_grad():
        out = conv2d_small(x, w, b, 1, 1)
        torch.testing.assert_close(out, F.conv2d(x, w, b, 1, 1), rtol=1e-5, atol=1e-5)
    assert out.shape == (4, 32, 1, 1)


def test_one_element_size_arguments_are_read_as_torch_reads_them():
    x, w = torch.randn(4, 64, 1, 1), torch.randn(32, 64, 3, 3)
    with torch.no_grad():
        out = conv2d_small(x, w, None, (1,), [1], (1,))  # F.conv2d expands one-element sizes to both sides
        torch.testing.assert_close(out, F.conv2d(x, w, None, (1,), [1], (1,)), rtol=1e-5, atol=1e-5)


def test_what_is_left_to_torch():
    x2 = torch.randn(2, 512, 2, 2, requires_grad=True)
    w = torch.randn(8, 512, 3, 3, requires_grad=True)
    assert conv2d_small(x2, w, None, 1, 1) is not None  # 2x2 output, 4608 products per pixel, training
    with torch.no_grad():
        assert conv2d_small(x2, w, None, 1, 1) is None  # inference at 2x2, small batch: torch's forward is as fast
        big = torch.randn(sc.DENSE_MIN_INFERENCE_BATCH, 16, 2, 2)
        out = conv2d_small(big, torch.randn(8, 16, 3, 3), None, 1, 1)  # ...from large batches the dense map
        assert out is not None and out.shape == (sc.DENSE_MIN_INFERENCE_BATCH, 8, 2, 2)
    assert conv2d_small(torch.randn(2, 512, 4, 4, requires_grad=True), w, None, 1, 1) is None  # 4x4 output
    assert conv2d_small(torch.randn(2, 16, 2, 2, requires_grad=True), torch.randn(8, 16, 3, 3), None, 1, 1) is None
    assert conv2d_small(x2, torch.randn(8, 256, 3, 3), None, 1, 1, 1, 2) is None  # grouped
    assert conv2d_small(x2, torch.randn(8, 512, 1, 1), None, 1, 0) is None  # 1x1 kernel: a product already
    assert conv2d_small(x2, w, None, 1, "same") is None
    assert conv2d_small(x2[0], w, None, 1, 1) is None  # unbatched


def _fmt(t):
    return "channels_last" if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() \
        else "contiguous" if t.is_contiguous() else "other"


@pytest.mark.parametrize("x_last,w_last", [(False, False), (True, False), (False, True), (True, True)])
def test_the_dense_map_at_training_batch_sizes(x_last, w_last):
    torch.manual_seed(0)
    x = torch.randn(64, 64, 2, 2)
    w, b = torch.randn(96, 64, 3, 3), torch.randn(96, requires_grad=True)
    x = (x.contiguous(memory_format=torch.channels_last) if x_last else x).requires_grad_()
    w = (w.contiguous(memory_format=torch.channels_last) if w_last else w).requires_grad_()
    for stride in (1, 2):
        out, ref = conv2d_small(x, w, b, stride, 1), F.conv2d(x, w, b, stride, 1)
        assert out is not None and out.shape == ref.shape
        assert _fmt(out) == _fmt(ref) or out.shape[2:] == (1, 1)  # memory formats as torch's
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        g = torch.randn_like(ref)
        for mine, theirs in zip(_grads(out, [x, w, b], g), _grads(ref, [x, w, b], g)):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
            assert _fmt(mine) == _fmt(theirs)
    with torch.no_grad():
        xs = x.detach().repeat(2, 1, 1, 1)  # 128: the dense map in inference too
        torch.testing.assert_close(conv2d_small(xs, w, b, 1, 1), F.conv2d(xs, w, b, 1, 1), rtol=1e-4, atol=1e-4)


def test_the_dense_map_only_where_every_pixel_pair_has_a_tap():
    x = torch.randn(64, 8, 2, 3, requires_grad=True)
    w = torch.randn(4, 8, 3, 3, requires_grad=True)
    x.data[0, 0, 0, 0] = float("inf")
    # stride 2: output pixel (0, 1) reads no tap of input pixel (0, 0); a dense map would multiply inf by 0
    assert sc._tap_index((2, 3), (3, 3), ((2, 2), (1, 1), (1, 1)), (1, 2)) is None
    assert conv2d_small(x, w, None, 2, 1) is None  # (below MIN_DEPTH for the im2col route too)
    assert sc._tap_index((2, 2), (3, 3), ((1, 1), (1, 1), (1, 1)), (2, 2)) is not None
    xs = torch.randn(3, 130, 8, 2, 2)
    with small_conv_mode():  # vmap cannot tell memory formats: the dense map then leaves them as they come
        out = torch.func.vmap(lambda t: F.conv2d(t, w.detach(), None, 1, 1))(xs)
    torch.testing.assert_close(out, torch.func.vmap(lambda t: F.conv2d(t, w.detach(), None, 1, 1))(xs),
                               rtol=1e-4, atol=1e-4)


def _tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),  # 4 -> 2
                         nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),  # 2 -> 1
                         nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),  # 1 -> 1: the center tap
                         nn.Flatten(), nn.Linear(16, 2))


def test_the_mode_routes_conv2d_and_keeps_outputs_and_gradients(count_routes):
    calls = count_routes(sc, "conv2d_small")
    model, x = _tiny_cnn(), torch.randn(6, 3, 4, 4)
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.sum(), list(model.parameters()))
    with small_conv_mode():
        out = model(x)
    grads = torch.autograd.grad(out.sum(), list(model.parameters()))
    assert calls["routed"] == 1  # the 1x1 -> 1x1 convolution
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace: what the ONNX export uses
def test_small_convs_hooks_are_removed_and_the_mode_popped_on_errors(count_routes):
    calls = count_routes(sc, "conv2d_small")
    model = _tiny_cnn()
    with small_convs(model) as installed:
        assert installed
        model(torch.randn(2, 3, 4, 4))
        assert calls["routed"] == 1
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 5, 4, 4))  # wrong channel count: the forward raises inside the mode
        F.conv2d(torch.randn(2, 16, 1, 1), torch.randn(4, 16, 3, 3), padding=1)  # outside a forward
        assert calls["routed"] == 1  # the mode did not outlive the failed forward
        traced = torch.jit.trace(model, torch.randn(2, 3, 4, 4))  # exports trace torch's own convolutions
        assert str(traced.inlined_graph).count("aten::_convolution") == 3
    routed = calls["routed"]  # (the trace's check ran the model eagerly once more)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    model(torch.randn(2, 3, 4, 4))
    assert calls["routed"] == routed
    with small_convs(model, enabled=False) as installed:
        assert not installed
    with small_convs(nn.Sequential(nn.Linear(2, 2))) as installed:
        assert not installed  # no convolution: nothing to install


def _fit_weights(small: bool, count_routes) -> tuple:
    calls = count_routes(sc, "conv2d_small")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 4, 4, generator=gen), torch.randint(0, 2, (96,), generator=gen)
    dls = DataLoaders.from_tensors(x[:64], y[:64], x[64:], y[64:], bs=16, device="cpu", shuffle=False)
    learn = Learner(dls, _tiny_cnn(), loss_func=CrossEntropyLossFlat(), default_cbs=True)
    learn.small_convs = small
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    preds = learn.get_preds()[0]
    return [p.detach().clone() for p in learn.model.parameters()], preds, calls["routed"]


def test_learner_fit_with_and_without_small_convs_ends_with_the_same_weights(count_routes):
    w_small, p_small, routed = _fit_weights(True, count_routes)
    w_torch, p_torch, routed_off = _fit_weights(False, count_routes)
    assert routed >= 2 * 4 + 2 * 2 + 2 and routed_off == 0  # training and validation batches, get_preds
    for a, b in zip(w_small, w_torch):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p_small, p_torch, rtol=1e-4, atol=1e-5)


def test_second_derivatives_through_the_im2col_route_equal_torch(count_routes):
    calls = count_routes(sc, "conv2d_small")
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(8, 256, 1), nn.LeakyReLU(0.2), nn.Conv2d(256, 4, 3, 2, 1)).double()
    x = torch.randn(4, 8, 4, 4, dtype=torch.float64, requires_grad=True)

    def penalised_grads(small: bool):
        with small_convs(critic, enabled=small):
            out = critic(x).mean()
            gx, = torch.autograd.grad(out, x, create_graph=True)  # a gradient penalty, as WGAN-GP critics use
            loss = out + 10 * ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean()
            return torch.autograd.grad(loss, list(critic.parameters()))
    ref = penalised_grads(False)
    assert calls["routed"] == 0
    mine = penalised_grads(True)
    assert calls["routed"] == 1  # the 4x4 -> 2x2 convolution, 2304 products per pixel, batch 4: im2col
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("w_last", [False, True])
def test_second_derivatives_through_the_dense_map_equal_torch(w_last):
    torch.manual_seed(0)
    x = torch.randn(32, 8, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 8, 3, 3, dtype=torch.float64)
    w = (w.contiguous(memory_format=torch.channels_last) if w_last else w).requires_grad_()

    def penalised_grads(conv):
        out = conv(x, w, None, 1, 1)
        gx, = torch.autograd.grad(out.square().mean(), x, create_graph=True)
        return torch.autograd.grad(out.mean() + gx.square().sum(), [x, w])
    assert conv2d_small(x, w, None, 1, 1) is not None  # the dense route: 2x2 under 3x3, batch 32, training
    for a, b in zip(penalised_grads(conv2d_small), penalised_grads(F.conv2d)):
        torch.testing.assert_close(a, b)


def test_an_interrupt_inside_a_forward_leaves_no_mode_behind():
    model, x = _tiny_cnn(), torch.randn(2, 3, 4, 4)

    def interrupt(module, inputs):
        raise KeyboardInterrupt  # torch skips the always_call forward hooks for a BaseException

    with pytest.raises(KeyboardInterrupt):
        with small_convs(model):
            handle = model[5].register_forward_pre_hook(interrupt)  # runs after lamina's pre-hook
            try:
                model(x)
            finally:
                handle.remove()
    assert torch._C._len_torch_function_stack() == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_keyword_calls_inference_mode_copies_and_functorch(count_routes):
    calls = count_routes(sc, "conv2d_small")
    x, w = torch.randn(2, 16, 1, 1), torch.randn(4, 16, 3, 3)
    with small_conv_mode():
        out = F.conv2d(input=x, weight=w, padding=1)  # F.conv2d's own keyword names
    torch.testing.assert_close(out, F.conv2d(x, w, padding=1))
    assert calls["routed"] == 1
    sc._tap_index.cache_clear()
    x2, w2 = torch.randn(sc.DENSE_MIN_INFERENCE_BATCH, 8, 2, 2), torch.randn(4, 8, 3, 3, requires_grad=True)
    with torch.inference_mode():
        assert conv2d_small(x2, torch.randn(4, 8, 3, 3), None, 1, 1) is not None  # fills the tap index cache
    assert sc._tap_index.cache_info().currsize == 1
    conv2d_small(x2, w2, None, 1, 1).sum().backward()  # a cached tensor made under inference_mode would fail here
    assert w2.grad is not None
    model = _tiny_cnn()
    with small_convs(model):
        copy = __import__("copy").deepcopy(model)  # (an EMA callback's copy, say): not routed, no hooks on it
        before = calls["routed"]
        copy(torch.randn(2, 3, 4, 4))
        assert calls["routed"] == before
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in copy.modules())
        torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)))  # no untyped hooks on modules
    assert not sc._global_handles and not sc._hooked
    assert torch.jit.script(copy)(torch.randn(2, 3, 4, 4)).shape == (2, 2)
    critic = nn.Conv2d(256, 4, 3, 2, 1)
    xs = torch.randn(3, 256, 4, 4)
    with small_convs(critic):
        per_sample = torch.func.vmap(torch.func.grad(lambda xi: critic(xi[None]).sum()))(xs)
    torch.testing.assert_close(per_sample, torch.func.vmap(torch.func.grad(lambda xi: critic(xi[None]).sum()))(xs))
