"""Convolutions on tiny feature maps, computed as one matrix product on the CPU.

At the end of a CNN fed small images the feature maps shrink to 2×2 or 1×1 pixels: a resnet18 at 28 px runs
its last stage at 1×1, an xresnet at 64 px at 2×2. A 3×3 convolution there mostly multiplies padding, and the
CPU convolution kernels (oneDNN) are slow at it: a 512→512 3×3 convolution on a 1×1 map, batch 64, took 70 ms
forward and backward on a 2-core AVX2 CPU, where the same arithmetic as a matrix product took 6 ms.

`conv2d_small` computes such a convolution exactly (the same sums, in another order) as a matrix product:

- a 1×1 input giving a 1×1 output reads one tap of the kernel: ``linear(x, weight[:, :, i, j], bias)``;
- an input of fewer pixels than the kernel has taps (2×2 under 3×3) whose every pixel a tap joins to every
  output pixel, batch from `DENSE_MIN_BATCH` in training (`DENSE_MIN_INFERENCE_BATCH` without a gradient): one
  dense map from every input pixel to every output pixel, gathered from the kernel (a NaN weight in a tap that
  only ever reads padding stays out of it, where torch's kernel multiplies padding by it);
- other outputs of at most `MAX_OUTPUT_PIXELS` pixels from at least `MIN_DEPTH` inputs, in training: torch's
  forward, and a backward of two matrix products over the ``unfold``-ed input (im2col), where oneDNN's backward
  was slowest.

It returns None for everything else (larger maps, grouped or 1×1 kernels, GPU tensors, string padding), which
runs the regular convolution. `small_conv_mode` applies it to every ``conv2d`` call inside a block, and
`small_convs(model)` to the model's convolution modules on small inputs inside a block (and
`lamina.models.cpu_pool`'s route to its max-pooling modules): the Learner uses the latter around its passes on
the CPU (``learn.small_convs = False`` turns it off). Nothing in the model changes: its modules, parameters,
state dict and export are the same (process-wide module hooks pick its modules out only during the passes);
only the arithmetic's route is another.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from lamina.models.cpu_pool import RouteMode, int_pair, pool_mode, transforms_active
from lamina.models import large_conv

__all__ = ["conv2d_small", "small_conv_mode", "small_convs", "MAX_OUTPUT_PIXELS", "MIN_DEPTH", "DENSE_MIN_BATCH",
           "DENSE_MIN_INFERENCE_BATCH", "SMALL_INPUT_PIXELS"]

MAX_OUTPUT_PIXELS = 4
"""Outputs of at most this many pixels (2×2) are computed as products: beyond the 1×1 map, in training only,
by the dense route or else the im2col route (torch's forward, a backward of two matrix products over im2col).
Measured on a 2-core AVX2 CPU, forward + backward, batch 8 to 256, 256 and 512 channels: the im2col route took
0.4–1.0× oneDNN's time at 2×2 outputs; at 4×4 outputs the products were 1.3–1.5× slower at batch 64 and 256, so
the bound stops at 2×2. In inference (no gradient) oneDNN's forward was as fast or faster at 2×2, so beyond
the 1×1 map only the dense route, from `DENSE_MIN_INFERENCE_BATCH`, changes there."""

MIN_DEPTH = 2048
"""...and only where each output pixel sums at least this many products (in channels × kernel taps): with 64 or
128 channels and a 3×3 kernel, oneDNN was 1.1–1.8× faster than the products."""

DENSE_MIN_BATCH = 32
"""In training, an input with fewer pixels than the kernel has taps (2×2 under 3×3) becomes one dense map from
all input pixels to all output pixels, gathered from the kernel (`_dense_conv`): no product of padding at all,
where im2col's columns are more than half padding there. Gathering the map costs the same whatever the batch, so
it pays from this batch size on. Measured forward + backward on a 2-core AVX2 CPU, 64 to 512 channels: at
batch 32 to 256, 0.2–0.75× oneDNN's time and at or below the im2col route's (equal at batch 32 with 512
channels); at batch 16 about the im2col route's; at batch 1 to 8 up to 1.6× oneDNN's and 2.3× the im2col
route's time."""

DENSE_MIN_INFERENCE_BATCH = 128
"""Without a gradient the dense map pays from larger batches: forward only on the same CPU, 0.4–0.6× oneDNN's
time at batch 128 and 256, about equal at 64, 1.1–2× slower below."""


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv2d_small(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor | None:
    """``F.conv2d`` of a tiny feature map as a matrix product, or None where the regular convolution should run.

    Args:
        input, weight, bias, stride, padding, dilation, groups: as ``torch.nn.functional.conv2d``.

    Returns:
        The convolution's output (the values ``F.conv2d`` gives, up to float rounding), or None (torch's
        convolution runs) when the input is not a batched CPU tensor with an output of at most
        `MAX_OUTPUT_PIXELS` pixels, the kernel is 1×1, ``groups`` is not 1, ``padding`` is a string or the bias
        is not one value per output channel; and, beyond a 1×1 map, also under autocast or with mixed dtypes,
        below the dense route's batch sizes without a gradient to compute, and on the im2col route under
        functorch transforms or below `MIN_DEPTH`.
    """
    x = input
    if groups != 1 or x.dim() != 4 or weight.dim() != 4 or x.device.type != "cpu" or x.layout != torch.strided:
        return None
    st, pad, dil = int_pair(stride), int_pair(padding), int_pair(dilation)
    (n, c, h, w), (o, _, kh, kw) = x.shape, weight.shape
    if st is None or pad is None or dil is None or kh * kw == 1 or weight.shape[1] != c \
            or (bias is not None and tuple(bias.shape) != (o,)):
        return None
    ho, wo = _out_size(h, kh, st[0], pad[0], dil[0]), _out_size(w, kw, st[1], pad[1], dil[1])
    if ho < 1 or wo < 1 or ho * wo > MAX_OUTPUT_PIXELS:
        return None
    if h == w == ho == wo == 1:  # one pixel in, one out: the tap that reads it
        i, j = pad[0] // dil[0], pad[1] // dil[1]
        if pad[0] % dil[0] or pad[1] % dil[1] or i >= kh or j >= kw:
            return None  # the kernel reads padding only (the output is the bias): rare, leave it to torch
        return F.linear(x.reshape(n, c), weight[:, :, i, j], bias).reshape(n, o, 1, 1)
    if not _plain_dtypes(x, weight, bias):
        return None
    grad = _needs_grad(x, weight, bias)
    if h * w < kh * kw and n >= (DENSE_MIN_BATCH if grad else DENSE_MIN_INFERENCE_BATCH):
        index = _tap_index((h, w), (kh, kw), (st, pad, dil), (ho, wo))
        if index is not None:  # (a pair joined by no tap would multiply an inf or NaN input by 0)
            return _dense_conv(x, weight, bias, index, (ho, wo))
    if not grad or c * kh * kw < MIN_DEPTH or transforms_active():
        return None  # forward alone: oneDNN is as fast or faster (see MAX_OUTPUT_PIXELS)
    return _ProductBackwardConv.apply(x, weight, bias, st, pad, dil)


def _needs_grad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether a gradient is to be computed through this convolution."""
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


def _plain_dtypes(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """One dtype for all operands and no autocast (the conditions of the routes beyond the 1×1 map)."""
    same_dtype = x.dtype == weight.dtype and (bias is None or bias.dtype == x.dtype)
    return same_dtype and not torch.is_autocast_enabled("cpu")


@functools.lru_cache(maxsize=64)
def _tap_index(in_hw: tuple, kernel: tuple, geometry: tuple, out_hw: tuple) -> torch.Tensor | None:
    """(out_pixels * in_pixels,): the kernel tap joining each output pixel to each input pixel; None where some
    pair is joined by no tap (the dense map would hold zeros there)."""
    (h, w), (kh, kw), (st, pad, dil), (ho, wo) = in_hw, kernel, geometry, out_hw
    taps = []
    for oy, ox, iy, ix in itertools.product(range(ho), range(wo), range(h), range(w)):
        ty, ry = divmod(iy - oy * st[0] + pad[0], dil[0])
        tx, rx = divmod(ix - ox * st[1] + pad[1], dil[1])
        if not (ry == rx == 0 and 0 <= ty < kh and 0 <= tx < kw):
            return None
        taps.append(ty * kw + tx)
    with torch.inference_mode(False):  # cached: a tensor made under inference_mode could not be saved for backward
        return torch.tensor(taps, dtype=torch.long)


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _dense_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, index: torch.Tensor,
                out_hw: tuple) -> torch.Tensor:
    """The convolution as one dense map from all input pixels to all output pixels (fewer input pixels than
    kernel taps, each input-output pair joined by one tap: no product of padding is computed).

    The map's rows are (output channel, output pixel), its columns (input pixel, input channel): each block of
    a row is one tap's weights over the input channels, gathered by ``index_select`` from the kernel laid out
    taps-then-channels, and the input is read pixels-then-channels (both views for channels-last operands).
    The output and the gradients of ``x`` and ``weight`` come in the memory format torch's convolution gives
    them (channels-last if either operand is), except under functorch transforms, which cannot tell formats.
    """
    (n, c, h, w), (o, _, kh, kw), (ho, wo) = x.shape, weight.shape, out_hw
    transforms = transforms_active()
    channels_last = not transforms and (_channels_last(x) or _channels_last(weight))
    if not transforms:
        x, weight = _GradInFormat.apply(x, channels_last), _GradInFormat.apply(weight, channels_last)
    taps = weight.permute(0, 2, 3, 1).reshape(o, kh * kw, c)
    dense = taps.index_select(1, index) if transforms else _GatherTaps.apply(taps, index)
    bias = bias.repeat_interleave(ho * wo) if bias is not None else None
    out = F.linear(x.permute(0, 2, 3, 1).reshape(n, h * w * c), dense.reshape(o * ho * wo, h * w * c), bias)
    out = out.reshape(n, o, ho, wo)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class _GatherTaps(torch.autograd.Function):
    """``taps.index_select(1, index)`` for ``taps`` of shape (out channels, kernel taps, in channels), gathered
    as whole rows of the flattened kernel (five times faster than along the middle dimension on CPU, 512
    channels), with the gradient scattered back along the middle dimension (index_add along rows with repeated
    indices was six times slower). Its backward is differentiable (a gradient penalty's second derivative)."""

    @staticmethod
    def forward(ctx: Any, taps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        o, k, c = taps.shape
        ctx.save_for_backward(index)
        ctx.k = k
        rows = (torch.arange(o, device=index.device)[:, None] * k + index).reshape(-1)
        return taps.reshape(o * k, c).index_select(0, rows).view(o, index.numel(), c)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        (index,) = ctx.saved_tensors
        o, _, c = g.shape
        return g.new_zeros(o, ctx.k, c).index_add(1, index, g), None


class _GradInFormat(torch.autograd.Function):
    """The identity, whose backward hands the gradient on in the given memory format (channels-last or
    contiguous), as torch's convolution would."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, channels_last: bool) -> torch.Tensor:
        ctx.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        return g.contiguous(memory_format=ctx.memory_format), None


class _ProductBackwardConv(torch.autograd.Function):
    """A convolution with a small output: torch's forward, a backward of two matrix products over im2col.

    The backward is made of differentiable operations (unfold, matmul, fold), so a second derivative through it
    (a gradient penalty, ``create_graph=True``) is exact.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, st: tuple,
                pad: tuple, dil: tuple) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.has_bias = (st, pad, dil), bias is not None
        return F.conv2d(x, weight, bias, st, pad, dil)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        st, pad, dil = ctx.geometry
        (n, _, h, w), (o, _, kh, kw), pixels = x.shape, weight.shape, g.shape[2] * g.shape[3]
        g_rows = g.reshape(n, o, pixels).transpose(1, 2).reshape(n * pixels, o)  # one row per output pixel
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            cols = F.unfold(x, (kh, kw), dilation=dil, padding=pad, stride=st)  # (n, c*kh*kw, pixels)
            grad_w = (g_rows.t() @ cols.transpose(1, 2).reshape(n * pixels, -1)).reshape(weight.shape)
        if ctx.needs_input_grad[0]:
            grad_cols = (g_rows @ weight.reshape(o, -1)).reshape(n, pixels, -1).transpose(1, 2)
            grad_x = F.fold(grad_cols, (h, w), (kh, kw), dilation=dil, padding=pad, stride=st)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


class small_conv_mode(RouteMode):
    """Inside this block, every ``conv2d`` call that `conv2d_small` can compute is computed by it.

    Example::

        with small_conv_mode():
            loss = loss_func(model(x), y)   # convolutions on 1×1 and 2×2 maps run as matrix products
        loss.backward()                     # their backward is the matrix products' backward
    """

    target = torch.conv2d

    @staticmethod
    def route(*args: Any, **kwargs: Any) -> torch.Tensor | None:
        return conv2d_small(*args, **kwargs)  # (looked up at each call)


SMALL_INPUT_PIXELS = 16
"""A convolution module's forward runs under `small_conv_mode` when its input has at most this many pixels
(4×4: a stride-2 3×3 kernel makes 2×2 of it); larger inputs skip the mode, and what the mode would cost."""


def _candidate(m: nn.Module) -> bool:
    if isinstance(m, nn.MaxPool2d):
        return not m.return_indices
    return isinstance(m, nn.Conv2d) and m.groups == 1 and m.weight.device.type == "cpu" \
        and m.kernel_size[0] * m.kernel_size[1] > 1


def _mode_for(module: nn.Module, x: Any) -> TorchFunctionMode | None:
    """The mode a hooked module's forward runs under for input ``x``, or None."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None  # exports trace torch's own operations
    if isinstance(module, nn.MaxPool2d):
        return pool_mode()  # (`max_pool2d_nchw` tells which maps it takes)
    pixels = x.shape[-1] * x.shape[-2]
    if pixels <= SMALL_INPUT_PIXELS:
        return small_conv_mode()
    return large_conv.large_conv_mode() if pixels >= large_conv.MIN_PIXELS else None


_state = threading.local()  # per thread: the (module id, mode or None) of the hooked modules now in their forward
_hooked: dict[int, int] = {}  # id of a module routed by an open block -> the number of open blocks holding it
_global_handles: list = []  # the process-wide forward hooks, while any block is open
_hooked_lock = threading.Lock()


def _stack() -> list:
    return _state.__dict__.setdefault("modes", [])


def _enter(module: nn.Module, inputs: Any) -> None:
    if id(module) not in _hooked:  # (the hooks see every module's forward while a block is open)
        return
    mode = _mode_for(module, inputs[0] if inputs else None)
    if mode is not None:
        mode.__enter__()
    _stack().append((id(module), mode))


def _exit(module: nn.Module, inputs: Any, output: Any) -> None:
    stack = _stack()
    if stack and stack[-1][0] == id(module):  # (not when an earlier pre-hook raised before `_enter` ran)
        _, mode = stack.pop()
        if mode is not None:
            mode.__exit__(None, None, None)


def _unwind(depth: int) -> None:
    """Pop the modes pushed above ``depth``: a KeyboardInterrupt skips the forward hooks that pop them."""
    stack = _stack()
    while len(stack) > depth:
        _, mode = stack.pop()
        if mode is not None:
            mode.__exit__(None, None, None)


def _hook(modules: list[nn.Module]) -> None:
    """Route ``modules``: the two process-wide module hooks (``register_module_forward_pre_hook`` and
    ``register_module_forward_hook``) are installed while any block is open. Nothing is put on the modules
    themselves, so a copy made during a block (``deepcopy``) carries no hook and scripts as any module."""
    with _hooked_lock:
        for m in modules:
            _hooked[id(m)] = _hooked.get(id(m), 0) + 1
        if not _global_handles:
            _global_handles.extend([register_module_forward_pre_hook(_enter),
                                    register_module_forward_hook(_exit, always_call=True)])


def _unhook(modules: list[nn.Module]) -> None:
    with _hooked_lock:
        for m in modules:
            count = _hooked.get(id(m))
            if count is None:
                continue
            if count > 1:
                _hooked[id(m)] = count - 1
            else:
                del _hooked[id(m)]
        if not _hooked:
            for h in _global_handles:
                h.remove()
            _global_handles.clear()


@contextlib.contextmanager
def small_convs(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Inside this block, the forward of each of ``model``'s ``nn.Conv2d`` modules with an input of at most
    `SMALL_INPUT_PIXELS` pixels runs under `small_conv_mode`, one with an input of at least
    `lamina.models.large_conv.MIN_PIXELS` pixels under `lamina.models.large_conv.large_conv_mode`, and that of
    each ``nn.MaxPool2d`` with a channels-first CPU input of at least `lamina.models.cpu_pool.POOL_MIN_PIXELS`
    pixels under `pool_mode` (tracing and compiling excepted).

    Process-wide module hooks push the mode before those modules' forward and pop it after, also when the
    forward raises (and the block's end pops what an interrupt left); they are removed when the last open block
    ends (nested blocks on one model share them), nothing is put on the modules themselves, and nothing else of
    the model runs under the modes. Nothing is installed when ``enabled`` is False or the model has neither an
    ungrouped ``nn.Conv2d`` with a kernel over 1×1 on the CPU nor, with its parameters on the CPU (or none), an
    ``nn.MaxPool2d``. Yields whether hooks are in place.
    """
    on_cpu = next((p.device.type == "cpu" for p in model.parameters()), True)
    routed = [m for m in model.modules() if _candidate(m) and (on_cpu or isinstance(m, nn.Conv2d))] \
        if enabled else []
    if not routed:
        yield False
        return
    depth = len(_stack())
    _hook(routed)
    try:
        yield True
    finally:
        _unhook(routed)
        _unwind(depth)
