"""Convolutions on large feature maps through NNPACK where it was timed faster: the same values and gradients as
torch's (to float32 rounding), the choice made once per shape, taken only where it applies, and the Learner's
passes using it without changing the model. The tests lower `MIN_PIXELS` so that tiny maps qualify, and set
`MARGIN` to force a route (a huge margin: NNPACK always; zero: torch always)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lamina.models.large_conv as lc
import lamina.models.small_conv as sc
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.models.large_conv import conv2d_large, large_conv_mode, routes

pytestmark = pytest.mark.skipif(not lc.nnpack_available(), reason="this torch build has no NNPACK")
NNPACK, TORCH = 1e9, 0.0


@pytest.fixture(autouse=True)
def small_maps(monkeypatch):
    monkeypatch.setattr(lc, "MIN_PIXELS", 64)
    lc._choices.clear()
    yield
    lc._choices.clear()


def _grads(out, tensors, g):
    return torch.autograd.grad(out, [t for t in tensors if t is not None], g)


@pytest.mark.parametrize("margin", [NNPACK, TORCH])
@pytest.mark.parametrize("n,c,o,hw,k,pad,with_bias", [
    (2, 5, 4, (12, 10), 3, (1, 1), True), (3, 6, 7, (9, 11), 3, (1, 2), False), (1, 4, 4, (10, 9), 5, (2, 0), True),
    (2, 3, 8, (16, 16), 3, (0, 0), True), (2, 3, 2, (8, 12), (3, 1), (1, 0), True)])
def test_outputs_and_gradients_equal_torch(monkeypatch, margin, n, c, o, hw, k, pad, with_bias):
    monkeypatch.setattr(lc, "MARGIN", margin)
    torch.manual_seed(0)
    kernel = (k, k) if isinstance(k, int) else k
    x = torch.randn(n, c, *hw, requires_grad=True)
    w = torch.randn(o, c, *kernel, requires_grad=True)
    b = torch.randn(o, requires_grad=True) if with_bias else None
    out, ref = conv2d_large(x, w, b, 1, pad), F.conv2d(x, w, b, 1, pad)
    g = torch.randn_like(ref)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for mine, theirs in zip(_grads(out, [x, w, b], g), _grads(ref, [x, w, b], g)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
    key = ((n, c, *hw), (o, c, *kernel), pad, with_bias, torch.get_num_threads())
    assert routes() == {("forward", key): margin == NNPACK, ("input_grad", key): margin == NNPACK}


def test_the_choice_is_made_once_per_shape_and_torch_both_ways_leaves_the_call_to_torch(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", TORCH)
    timed = []
    real = lc._nnpack
    monkeypatch.setattr(lc, "_nnpack", lambda *a: timed.append(1) or real(*a))
    x, w = torch.randn(2, 3, 10, 10, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    conv2d_large(x, w, None, 1, 1).sum().backward()
    assert len(timed) == 4  # forward and input gradient, timed twice each
    assert conv2d_large(x, w, None, 1, 1) is None  # torch's kernel both ways: torch runs the call itself
    assert len(timed) == 4
    conv2d_large(torch.randn(3, 3, 10, 10), w.detach(), None, 1, 1)  # another batch size: another shape
    assert len(timed) == 6 and len(routes()) == 3
    monkeypatch.setattr(lc, "MARGIN", NNPACK)  # a decision stands for the process
    assert conv2d_large(x, w, None, 1, 1) is None


def test_nnpack_forward_with_torchs_input_gradient(monkeypatch):
    x, w = torch.randn(2, 3, 10, 10, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    key = ((2, 3, 10, 10), (4, 3, 3, 3), (1, 1), True, torch.get_num_threads())
    lc._choices.update({("forward", key): True, ("input_grad", key): False})  # as chosen by an earlier call
    calls = []
    real = lc._nnpack
    monkeypatch.setattr(lc, "_nnpack", lambda *a: calls.append(1) or real(*a))
    out, ref = conv2d_large(x, w, b, 1, 1), F.conv2d(x, w, b, 1, 1)
    g = torch.randn_like(ref)
    for mine, theirs in zip(_grads(out, [x, w, b], g), _grads(ref, [x, w, b], g)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)  # one torch call for all three
    assert len(calls) == 1  # the forward only


def test_nnpack_refusing_a_shape_keeps_torch_and_torch_errors_are_the_calls(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", NNPACK)

    def refuse(*args):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")
    monkeypatch.setattr(lc, "_nnpack", refuse)
    x, w = torch.randn(2, 3, 10, 10), torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(conv2d_large(x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1))
    assert list(routes().values()) == [False]
    with pytest.raises(RuntimeError):  # the padded input is smaller than the kernel: torch's own error
        conv2d_large(torch.randn(1, 3, 1, 100), torch.randn(4, 3, 5, 5), None, 1, 1)


def test_what_is_left_to_torch(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", NNPACK)
    x, w = torch.randn(2, 4, 10, 10), torch.randn(4, 4, 3, 3)
    assert conv2d_large(x, w, None, 2, 1) is None  # strided
    assert conv2d_large(x, w, None, 1, 2, 2) is None  # dilated
    assert conv2d_large(x, torch.randn(4, 2, 3, 3), None, 1, 1, 1, 2) is None  # grouped
    assert conv2d_large(x, w, None, 1, 3) is None  # padding as large as the kernel (NNPACK's limit)
    assert conv2d_large(x, w, None, 1, "same") is None
    assert conv2d_large(x.double(), w.double(), None, 1, 1) is None
    assert conv2d_large(x.contiguous(memory_format=torch.channels_last), w, None, 1, 1) is None
    assert conv2d_large(torch.randn(2, 4, 7, 7), w, None, 1, 1) is None  # 49 pixels: below MIN_PIXELS
    assert conv2d_large(torch.randn(4, 10, 10), w, None, 1, 1) is None  # unbatched
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv2d_large(x, w, None, 1, 1) is None
    with torch.backends.cudnn.flags(deterministic=True):  # what set_seed(..., reproducible=True) sets
        assert conv2d_large(x, w, None, 1, 1) is None
    torch.use_deterministic_algorithms(True)
    try:
        assert conv2d_large(x, w, None, 1, 1) is None
    finally:
        torch.use_deterministic_algorithms(False)
    per_sample = torch.func.vmap(lambda xi: F.conv2d(xi[None], w, None, 1, 1))
    with large_conv_mode():
        routed = per_sample(x)
    torch.testing.assert_close(routed, per_sample(x))
    assert routes() == {}  # functorch transforms keep torch's kernel
    with torch.inference_mode(), large_conv_mode():
        torch.testing.assert_close(F.conv2d(input=x, weight=w, padding=1), F.conv2d(x, w, None, 1, 1), rtol=1e-4,
                                   atol=1e-4)
    assert len(routes()) == 1  # keyword calls are routed; inference needs no gradient route


def test_second_derivatives_through_the_route_equal_torch(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", NNPACK)
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 2, 3, padding=1))
    x = torch.randn(2, 3, 10, 10, requires_grad=True)

    def penalised_grads(routed: bool):
        with sc.small_convs(critic, enabled=routed):
            out = critic(x).pow(2).mean()
            gx, = torch.autograd.grad(out, x, create_graph=True)  # a gradient penalty, as WGAN-GP critics use
            loss = out + 10 * ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean()
            return torch.autograd.grad(loss, list(critic.parameters()))
    ref = penalised_grads(False)
    assert routes() == {}
    mine = penalised_grads(True)
    assert sum(routes().values()) == 4  # both convolutions, forward and input gradient
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _fit(routed: bool) -> tuple:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 10, 10, generator=gen), torch.randint(0, 2, (48,), generator=gen)
    dls = DataLoaders.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=8, device="cpu", shuffle=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), default_cbs=True)
    learn.small_convs = routed
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    return [p.detach().clone() for p in learn.model.parameters()], learn.get_preds()[0]


def test_learner_fit_with_and_without_the_route_ends_with_the_same_weights(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", NNPACK)
    w_torch, p_torch = _fit(False)
    assert routes() == {}
    w_routed, p_routed = _fit(True)
    assert routes() and all(routes().values())  # both convolutions (the first needs no input gradient)
    assert {route for route, _ in routes()} == {"forward", "input_grad"}
    for a, b in zip(w_routed, w_torch):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(p_routed, p_torch, rtol=1e-3, atol=1e-4)
    assert not sc._global_handles and not sc._hooked


@pytest.mark.parametrize("margin", [NNPACK, TORCH])
def test_in_place_operations_after_a_routed_convolution(monkeypatch, margin):
    monkeypatch.setattr(lc, "MARGIN", margin)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(2, 3, 10, 10)  # the first convolution's input needs no gradient
    ref = torch.autograd.grad(model(x).pow(2).sum(), list(model.parameters()))
    for _ in range(2):  # the first step chooses, the second runs the choices
        with sc.small_convs(model):
            out = model(x)
            out += 1  # in place on the last convolution's output too
        grads = torch.autograd.grad((out - 1).pow(2).sum(), list(model.parameters()))
        for a, b in zip(grads, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    first = ((2, 3, 10, 10), (4, 3, 3, 3), (1, 1), True, torch.get_num_threads())
    assert ("input_grad", first) not in routes()  # nothing asks for the first convolution's input gradient
    if margin == TORCH:  # torch's kernel both ways: the calls are torch's own
        assert conv2d_large(x, model[0].weight, model[0].bias, 1, 1) is None


def test_a_changed_thread_count_nnpack_failing_later_and_what_steps_aside(monkeypatch):
    monkeypatch.setattr(lc, "MARGIN", NNPACK)
    x, w = torch.randn(2, 3, 10, 10, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    monkeypatch.setattr(lc, "_pool_threads", [torch.get_num_threads() + 1])  # NNPACK's pool has another size
    assert conv2d_large(x, w, None, 1, 1) is None
    monkeypatch.setattr(lc, "_pool_threads", [])
    out = conv2d_large(x, w, None, 1, 1)
    assert lc._pool_threads == [torch.get_num_threads()]
    calls = []
    real = lc._nnpack
    monkeypatch.setattr(lc, "_nnpack", lambda *a: calls.append(1) or real(*a))
    lc._pool_threads[0] += 1  # torch.set_num_threads between the forward and the backward
    gx, = torch.autograd.grad(out.sum(), x)
    assert not calls and not any(route == "input_grad" for route, _ in routes())
    torch.testing.assert_close(gx, torch.autograd.grad(F.conv2d(x, w, None, 1, 1).sum(), x)[0])
    lc._pool_threads[0] -= 1

    def fail(*args):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")
    monkeypatch.setattr(lc, "_nnpack", fail)  # chosen before, failing now: torch's kernel from now on
    with torch.no_grad():
        torch.testing.assert_close(conv2d_large(x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1))
    assert list(routes().values()) == [False]
    lc._choices.clear()
    monkeypatch.setattr(lc, "_nnpack", real)
    assert conv2d_large(x, w.contiguous(memory_format=torch.channels_last), None, 1, 1) is None
    with torch.autograd.detect_anomaly():
        assert conv2d_large(x, w, None, 1, 1) is None  # a NaN would spread over a whole NNPACK tile
    model = nn.Conv2d(3, 4, 3, padding=1)
    with large_conv_mode():
        traced = torch.jit.trace(model, torch.randn(2, 3, 10, 10), check_trace=False)  # (the check runs eagerly)
    assert "_LargeConv" not in str(traced.inlined_graph)  # tracing records torch's own convolution
    assert routes() == {}
