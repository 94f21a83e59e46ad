"""Max pooling of channels-first feature maps on the CPU, through torch's channels-last kernel.

torch's CPU max pooling is several times slower on a contiguous (NCHW) map than on a channels-last one: the
stem's 3×3 stride-2 pooling of an xresnet18 at 64 px (batch 64, 64 channels, 32×32) took 25 ms forward on a
2-core AVX2 CPU against 3 ms channels-last, and 36 ms forward and backward. `max_pool2d_nchw` converts the map
to channels-last for the forward (one copy), returns the output in the input's layout, and runs the backward
with torch's channels-first backward kernel, which is fast: 13 ms forward alone and 24 ms with the backward
there; at maps of 8×8 to 48×64, 1.5–2.7× faster than torch's forward and backward, 2–5× its forward alone. The
values, the gradients (ties included: both layouts pick the same window position) and the second derivatives
are torch's. Channels-last maps already take the fast kernel and are left alone.

`pool_mode` applies it to every ``max_pool2d`` call inside a block; `lamina.models.small_conv.small_convs`
pushes it around a model's ``nn.MaxPool2d`` modules during the Learner's passes.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["max_pool2d_nchw", "pool_mode", "transforms_active", "int_pair", "RouteMode", "POOL_MIN_PIXELS"]

POOL_MIN_PIXELS = 64
"""Maps of fewer pixels (below 8×8, where the gain was not measured) keep torch's kernel."""

_FLOATS = (torch.float32, torch.float64)


def int_pair(v: Any, default: Any = None) -> tuple[int, int] | None:
    """A 2-d operator's size argument (``stride=2``, ``(2,)``, ``[2, 1]``) as two ints; ``default`` for None or
    an empty one (pooling's stride then is the kernel's), None for any other form (torch's own call decides)."""
    if v is None or (isinstance(v, (tuple, list)) and len(v) == 0):
        return default
    if isinstance(v, int):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) in (1, 2) and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[-1])
    return None


class RouteMode(TorchFunctionMode):
    """A mode that sends the calls of one torch function (``target``) through ``route``, which returns the result
    or None to leave the call to torch. Subclasses set both."""

    target: Any = None

    @staticmethod
    def route(*args: Any, **kwargs: Any) -> Any:
        return None

    def __torch_function__(self, func: Any, types: Any, args: Sequence = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is self.target:
            out = self.route(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


def max_pool2d_nchw(input: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
                    dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor | None:
    """``F.max_pool2d`` of a channels-first CPU map through the channels-last kernel, or None where torch's own
    call should run (channels-last or non-CPU input, indices asked for, not float32/float64, an unbatched or
    small map, functorch transforms or forward AD, arguments in another form)."""
    x = input
    if return_indices or not isinstance(x, torch.Tensor) or x.dim() != 4 or x.device.type != "cpu" \
            or x.layout != torch.strided or x.dtype not in _FLOATS or x.shape[2] * x.shape[3] < POOL_MIN_PIXELS:
        return None
    if transforms_active() or not x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return None  # (vmap cannot tell memory formats)
    k = int_pair(kernel_size)
    st, pad, dil = int_pair(stride, k), int_pair(padding), int_pair(dilation)
    if k is None or st is None or pad is None or dil is None or not isinstance(ceil_mode, bool):
        return None
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPoolThroughChannelsLast.apply(x, k, st, pad, dil, ceil_mode)
    out = torch.max_pool2d(x.contiguous(memory_format=torch.channels_last), k, st, pad, dil, ceil_mode)
    return out.contiguous()


def transforms_active() -> bool:
    """Whether functorch transforms (``torch.func.grad``, ``vmap``) or forward-mode AD are on: the custom autograd
    Functions of the CPU routes define neither, and ``vmap`` cannot tell memory formats, so torch's own kernels
    serve them."""
    functorch = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)()
    return bool(functorch or getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0)


class _MaxPoolThroughChannelsLast(torch.autograd.Function):
    """Forward through the channels-last kernel; backward through the channels-first one, with the window
    positions (indices, the same in both layouts) the forward found. The backward is torch's differentiable
    ``max_pool2d_with_indices_backward``, so second derivatives are exact."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: tuple, st: tuple, pad: tuple, dil: tuple, ceil: bool) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                              k, st, pad, dil, ceil)
        ctx.save_for_backward(x, indices.contiguous())
        ctx.geometry = (k, st, pad, dil, ceil)
        return out.contiguous()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        x, indices = ctx.saved_tensors
        grad = torch.ops.aten.max_pool2d_with_indices_backward(g.contiguous(), x, *ctx.geometry, indices)
        return grad, None, None, None, None, None


_CALLS = {F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
          torch.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")}


class pool_mode(TorchFunctionMode):
    """Inside this block, every ``max_pool2d`` call that `max_pool2d_nchw` can compute is computed by it.

    Example::

        with pool_mode():
            loss = loss_func(model(x), y)   # channels-first max pooling runs through the channels-last kernel
        loss.backward()
    """

    def __torch_function__(self, func: Any, types: Any, args: Sequence = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        names = _CALLS.get(func)
        if names is not None and len(args) <= len(names) and set(kwargs) <= set(names):
            bound = {**dict(zip(names, args)), **kwargs}
            if "input" in bound and "kernel_size" in bound:
                out = max_pool2d_nchw(**bound)
                if out is not None:
                    return out
        return func(*args, **kwargs)
