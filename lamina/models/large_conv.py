"""Convolutions on large feature maps through NNPACK, where it is faster than torch's CPU kernel (oneDNN).

The full-resolution convolutions of a U-Net dominate its training step on the CPU: in a resnet18 U-Net at 96×128
the two 99→99-channel 3×3 convolutions at 96×128 took 1.4 of the 3.8 s of a step (batch 8, 2 threads, a 2-core
AVX2 CPU), oneDNN running there at 70–80 GFLOP/s. PyTorch ships NNPACK, whose fast-convolution algorithms
(Winograd, FFT) took half oneDNN's time for that convolution's forward (120 against 240 ms) and for its input
gradient (a convolution of the output gradient with the flipped kernel: 146 against 297 ms). But NNPACK is not
faster everywhere: on the same CPU it was slower with 128 channels at 96×128, with 384 channels at 12×16 and with
64 channels at 24×32; torch does not use it when oneDNN is present.

`conv2d_large` therefore decides per shape, by timing: the first call of a shape (input, kernel, padding,
threads) runs torch's forward and NNPACK's twice each and keeps NNPACK where its faster run took at most
`MARGIN` of torch's; the input gradient's route is chosen the same way at the first backward of the shape. The
weight gradient is always torch's. The choices last for the process. The two routes compute the same sums by
different algorithms: outputs and gradients agree to float32 rounding (relative differences of 1e-7 to 1e-5
measured), not bit for bit, and since the choice rests on timing, two processes may choose differently, as
``torch.backends.cudnn.benchmark`` does on the GPU. ``set_seed(seed, reproducible=True)`` (which sets
``torch.backends.cudnn.deterministic``) and ``torch.use_deterministic_algorithms(True)`` keep torch's kernel.

Only channels-first float32 CPU tensors without autocast, with an input map of at least `MIN_PIXELS` pixels, stride
1, no dilation, one group and a padding smaller than the kernel are candidates; tracing, compiling, functorch
transforms and anomaly detection keep torch's kernel (a fast algorithm mixes a tile's pixels, so one NaN or inf
input makes a whole tile of outputs NaN, where torch's kernel spoils only the outputs that read it). NNPACK's
thread pool is made at torch's thread count of its first use and never resized: after ``torch.set_num_threads``
changes the count, torch's kernel runs. `large_conv_mode` applies the route to every ``conv2d`` call inside a
block; `lamina.models.small_conv.small_convs` pushes it around a model's convolution modules on large inputs
during the Learner's passes (``learn.small_convs = False`` turns it off).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any, Callable

import torch

from lamina.models.cpu_pool import RouteMode, int_pair, transforms_active

__all__ = ["conv2d_large", "large_conv_mode", "nnpack_available", "routes", "MIN_PIXELS", "MARGIN"]

MIN_PIXELS = 8192
"""Input maps of fewer pixels keep torch's kernel. On a 2-core AVX2 CPU the gain was large at 96×128 (12288
pixels) and mixed at 48×64 (a resnet18 U-Net's training step was slower with the route on its 48×64 maps too)."""

MARGIN = 0.9
"""NNPACK is kept for a shape when its faster timed run took at most this fraction of torch's."""

_choices: dict[tuple, bool] = {}  # (route, shape key) -> NNPACK chosen
_lock = threading.Lock()
_pool_threads: list[int] = []  # the thread count NNPACK's pool was made with, at its first use here


@functools.lru_cache(maxsize=1)
def nnpack_available() -> bool:
    """Whether this torch build has NNPACK (the query also initialises it, which its convolution needs)."""
    return torch.backends.nnpack.is_available()


def routes() -> dict[tuple, bool]:
    """A copy of the choices made so far: ``(route, shape key) -> True`` where NNPACK was chosen, ``route`` being
    ``"forward"`` or ``"input_grad"``."""
    with _lock:
        return dict(_choices)


def _known(key: tuple) -> bool | None:
    """The choice made for ``key`` (True: NNPACK), None before the first call of the shape."""
    with _lock:
        return _choices.get(key)


def _deterministic() -> bool:
    return torch.are_deterministic_algorithms_enabled() or bool(torch.backends.cudnn.deterministic)


def _nnpack_usable() -> bool:
    """NNPACK is there and its thread pool (made once, at torch's thread count of its first use, and never
    resized) has torch's current thread count: after ``torch.set_num_threads`` changes it, torch's kernel."""
    return nnpack_available() and (not _pool_threads or _pool_threads[0] == torch.get_num_threads())


def _padding(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Any, padding: Any,
             dilation: Any, groups: int) -> tuple[int, int] | None:
    """The padding when the call is a candidate for the route (see the module's docstring), else None."""
    if torch.jit.is_tracing() or groups != 1 or not isinstance(x, torch.Tensor) \
            or not isinstance(weight, torch.Tensor) or x.dim() != 4 or weight.dim() != 4 or x.device.type != "cpu" \
            or x.layout != torch.strided:
        return None  # (tracing first: the shape tests below would warn while tracing)
    if x.shape[2] * x.shape[3] < MIN_PIXELS or not x.is_contiguous() or not weight.is_contiguous() \
            or x.shape[0] == 0:
        return None
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or weight.device.type != "cpu" \
            or (bias is not None and (bias.dtype != torch.float32 or tuple(bias.shape) != (weight.shape[0],))):
        return None
    kh, kw = weight.shape[2:]
    pad = int_pair(padding)
    if int_pair(stride) != (1, 1) or int_pair(dilation) != (1, 1) or pad is None or weight.shape[1] != x.shape[1] \
            or kh > 16 or kw > 16 or not (0 <= pad[0] < kh and 0 <= pad[1] < kw):
        return None
    if torch.is_autocast_enabled("cpu") or transforms_active() or _deterministic() or torch.is_anomaly_enabled() \
            or torch.jit.is_tracing() or torch.compiler.is_compiling() or not _nnpack_usable():
        return None
    return pad


def conv2d_large(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor | None:
    """``F.conv2d`` of a large feature map with NNPACK in its forward or its input gradient where that was timed
    faster for the shape, or None where torch's convolution should run.

    Args:
        input, weight, bias, stride, padding, dilation, groups: as ``torch.nn.functional.conv2d``.

    Returns:
        The convolution's output (the values ``F.conv2d`` gives, up to float32 rounding), or None when the call is
        not a candidate (see the module's docstring) or torch's kernel was timed faster for both routes.
    """
    pad = _padding(input, weight, bias, stride, padding, dilation, groups)
    if pad is None:
        return None
    key = (tuple(input.shape), tuple(weight.shape), pad, bias is not None, torch.get_num_threads())
    grad = torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))
    input_grad = grad and input.requires_grad
    if _known(("forward", key)) is False and (not input_grad or _known(("input_grad", key)) is False):
        return None  # torch's kernel wherever this call goes: leave it (and its autograd) to torch
    if grad:
        return _LargeConv.apply(input, weight, bias, pad, key)
    return _forward(input, weight, bias, pad, key)


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: tuple,
             key: tuple) -> torch.Tensor:
    with torch.no_grad():
        return _choose(("forward", key), lambda: torch.conv2d(x, weight, bias, 1, pad),
                       lambda: _nnpack(x, weight, bias, pad))


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: tuple) -> torch.Tensor:
    with _lock:
        if not _pool_threads:
            _pool_threads.append(torch.get_num_threads())
    return torch._nnpack_spatial_convolution(x.contiguous(), weight.contiguous(), bias, list(pad), [1, 1])


def _choose(key: tuple, torch_route: Callable[[], torch.Tensor],
            nnpack_route: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The output of the route chosen for ``key``; the first call of a key times both routes twice and chooses."""
    known = _known(key)
    if known is False:
        return torch_route()
    if known:
        try:
            return nnpack_route()
        except RuntimeError:  # e.g. NNPACK's workspace allocation failed: torch's kernel from now on
            with _lock:
                _choices[key] = False
            return torch_route()
    timings: dict[bool, list[float]] = {False: [], True: []}
    outs: dict[bool, torch.Tensor] = {}
    for _ in range(2):
        for use, route in ((False, torch_route), (True, nnpack_route)):
            start = time.perf_counter()
            try:
                outs[use] = route()
            except RuntimeError:
                if not use:
                    raise  # torch's own error: the call's, as without the route
                timings[True].append(float("inf"))  # NNPACK refused the shape: torch's kernel, for good
                continue
            timings[use].append(time.perf_counter() - start)
    chosen = min(timings[True]) <= MARGIN * min(timings[False])
    with _lock:
        _choices.setdefault(key, chosen)
    return outs[chosen]


class _LargeConv(torch.autograd.Function):
    """The convolution with its forward and input gradient through the routes chosen for the shape; the weight
    and bias gradients are torch's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: tuple,
                key: tuple) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pad, ctx.key, ctx.has_bias = pad, key, bias is not None
        return _forward(x, weight, bias, pad, key)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        (kh, kw), (ph, pw) = weight.shape[2:], ctx.pad
        need_x, grad_x = ctx.needs_input_grad[0], None
        # NNPACK may take the input gradient unless torch's kernel won it or the thread count changed since the
        # forward; otherwise torch computes it in the same call as the weight gradient
        if need_x and _known(("input_grad", ctx.key)) is not False and _nnpack_usable():
            back_pad = (kh - 1 - ph, kw - 1 - pw)
            grad_x = _choose(("input_grad", ctx.key),
                             lambda: _torch_grads(g, x, weight, ctx.pad, (True, False, False))[0],
                             lambda: _nnpack(g, weight.flip(2, 3).transpose(0, 1), None, back_pad))
            need_x = False
        torch_x, grad_w, grad_b = _torch_grads(g, x, weight, ctx.pad, (need_x, ctx.needs_input_grad[1],
                                                                       ctx.has_bias and ctx.needs_input_grad[2]))
        return (grad_x if grad_x is not None else torch_x), grad_w, grad_b, None, None


def _torch_grads(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, pad: tuple, mask: tuple) -> tuple:
    return torch.ops.aten.convolution_backward(g, x, weight, [weight.shape[0]], [1, 1], list(pad), [1, 1], False,
                                               [0, 0], 1, list(mask))


class large_conv_mode(RouteMode):
    """Inside this block, ``torch.conv2d`` calls (``F.conv2d``, ``nn.Conv2d``) that `conv2d_large` takes run
    through it; the rest run unchanged.

    Example:
        >>> with large_conv_mode():
        ...     loss = loss_func(model(x), y)  # large-map convolutions through the route timed faster
        >>> loss.backward()
    """

    target = torch.conv2d

    @staticmethod
    def route(*args: Any, **kwargs: Any) -> torch.Tensor | None:
        return conv2d_large(*args, **kwargs)  # (looked up at each call)
