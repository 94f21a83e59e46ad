"""fastai's small layers and layer helpers that model code writes by hand (``fastai.layers``): reshaping
(`View`, `ResizeBatch`), pooling (`PoolFlatten`, `AdaptiveConcatPool1d`, `adaptive_pool`), composition
(`SequentialEx`, `Cat`, `ProdLayer`, `TimeDistributed`, `SimpleCNN`), activations (`swish`, `mish`,
`vleaky_relu`, `sigmoid`), initialisation (`init_default`) and module walking (`has_children`,
`children_and_parameters`), plus the `module` decorator and `NoneReduce`.

`SequentialEx` runs its layers in turn and lets a layer see the block's input: lamina's `MergeLayer` and
`ResizeToOrig` receive it as their second argument, and a layer of the user's own reads it as ``x.orig``, as in
fastai (``ProdLayer`` multiplies by it).

Example:
    >>> block = SequentialEx(ConvLayer(16, 16), ConvLayer(16, 16, act_cls=None), MergeLayer())  # a residual block
    >>> head = nn.Sequential(PoolFlatten(), nn.Linear(16, 10))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaptiveConcatPool2d, ConvLayer, Flatten, MergeLayer, NormType, ResizeToOrig

__all__ = ["module", "Identity", "PartialLambda", "View", "ResizeBatch", "Debugger", "AdaptiveConcatPool1d",
           "PoolType", "adaptive_pool", "PoolFlatten", "BatchNorm1dFlat", "sigmoid", "sigmoid_", "vleaky_relu",
           "init_default", "SequentialEx", "Cat", "SimpleCNN", "ProdLayer", "inplace_relu", "TimeDistributed",
           "swish", "Swish", "mish", "Mish", "ParameterModule", "children_and_parameters", "has_children",
           "NoneReduce"]


def module(*flds: str, **defaults: Any) -> Callable[[Callable], type]:
    """Decorator: a function ``f(self, x)`` becomes an ``nn.Module`` class whose constructor takes ``flds`` (then
    ``defaults``) as attributes and whose ``forward`` is ``f``.

    Example:
        >>> @module('scale')
        ... def Scale(self, x): return x * self.scale
        >>> Scale(2)(torch.ones(1))
        tensor([2.])
    """
    def decorate(f: Callable) -> type:
        def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807 (the class's constructor)
            nn.Module.__init__(self)
            if len(args) > len(flds):
                raise TypeError(f"{f.__name__} takes {len(flds)} positional arguments {list(flds)}; received "
                                f"{len(args)}")
            for name, value in {**defaults, **dict(zip(flds, args)), **kwargs}.items():
                setattr(self, name, value)
        return type(f.__name__, (nn.Module,), {"__init__": __init__, "forward": f, "__doc__": f.__doc__})
    return decorate


Identity = nn.Identity  # returns its input (torch's)


class PartialLambda(nn.Module):
    """A layer applying ``func`` (typically a ``functools.partial``); its repr shows the function and keywords."""

    def __init__(self, func: Callable):
        super().__init__()
        self.func = func

    def forward(self, x: Any) -> Any:
        return self.func(x)

    def __repr__(self) -> str:
        inner = getattr(self.func, "func", self.func)
        return f"PartialLambda({getattr(inner, '__name__', repr(inner))}, {getattr(self.func, 'keywords', {})})"


class View(nn.Module):
    """``x.view(*size)``."""

    def __init__(self, *size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(self.size)


class ResizeBatch(nn.Module):
    """Each item of the batch reshaped to ``size``: ``x.view(batch, *size)``."""

    def __init__(self, *size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), *self.size)


class Debugger(nn.Module):
    """Stops in the Python debugger when the batch reaches it (for inspecting activations); returns its input."""

    def forward(self, x: Any) -> Any:
        breakpoint()
        return x


class AdaptiveConcatPool1d(nn.Module):
    """Max and average 1-d pooling side by side (twice the channels)."""

    def __init__(self, size: int | None = None):
        super().__init__()
        size = size or 1
        self.max, self.avg = nn.AdaptiveMaxPool1d(size), nn.AdaptiveAvgPool1d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], 1)


class PoolType:
    """The pooling kinds `adaptive_pool` knows."""
    Avg, Max, Cat = "Avg", "Max", "Cat"


def adaptive_pool(pool_type: str) -> type[nn.Module]:
    """The 2-d adaptive pooling class of ``pool_type`` ('Avg', 'Max' or 'Cat': both side by side)."""
    kinds = {"Avg": nn.AdaptiveAvgPool2d, "Max": nn.AdaptiveMaxPool2d, "Cat": AdaptiveConcatPool2d}
    if pool_type not in kinds:
        raise ValueError(f"adaptive_pool: pool_type={pool_type!r} is not one of {sorted(kinds)}")
    return kinds[pool_type]


class PoolFlatten(nn.Sequential):
    """Adaptive pooling to 1x1, then flatten: (N, C, H, W) → (N, C), or (N, 2C) for 'Cat'."""

    def __init__(self, pool_type: str = PoolType.Avg):
        super().__init__(adaptive_pool(pool_type)(1), Flatten())


class BatchNorm1dFlat(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes (N, L, C) sequences, normalising over the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return super().forward(x)
        *lead, last = x.shape
        return super().forward(x.contiguous().view(-1, last)).view(*lead, last)


def sigmoid(input: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:  # noqa: A002 (fastai's argument name)
    """The sigmoid, kept within ``[eps, 1 - eps]`` (so a log of it stays finite)."""
    return input.sigmoid().clamp(eps, 1 - eps)


def sigmoid_(input: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:  # noqa: A002
    """`sigmoid` in place."""
    return input.sigmoid_().clamp_(eps, 1 - eps)


def vleaky_relu(input: torch.Tensor, inplace: bool = True) -> torch.Tensor:  # noqa: A002
    """A very leaky ReLU (negative slope 0.3)."""
    return F.leaky_relu(input, negative_slope=0.3, inplace=inplace)


inplace_relu = functools.partial(nn.ReLU, inplace=True)


def init_default(m: nn.Module, func: Callable | None = nn.init.kaiming_normal_) -> nn.Module:
    """Initialise ``m``'s weight with ``func`` and its bias to zero; returns ``m``."""
    with torch.no_grad():
        if func is not None and getattr(m, "weight", None) is not None:
            func(m.weight)
        if isinstance(getattr(m, "bias", None), torch.Tensor):
            m.bias.fill_(0.0)
    return m


class SequentialEx(nn.Module):
    """Layers run in turn, each able to see the block's input (see the module docstring)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x
        for layer in self.layers:
            if isinstance(layer, (MergeLayer, ResizeToOrig)):
                res = layer(res, x)
                continue
            res.orig = x
            out = layer(res)
            res.orig = None
            res = out
        return res

    def __getitem__(self, i: int) -> nn.Module:
        return self.layers[i]

    def append(self, layer: nn.Module) -> None:
        self.layers.append(layer)

    def extend(self, layers: Sequence[nn.Module]) -> None:
        self.layers.extend(layers)

    def insert(self, i: int, layer: nn.Module) -> None:
        self.layers.insert(i, layer)


class ProdLayer(nn.Module):
    """Multiplies by the block's input (in a `SequentialEx`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig = getattr(x, "orig", None)
        if orig is None:
            raise ValueError("ProdLayer multiplies by the block's input: use it inside a SequentialEx")
        return x * orig


class Cat(nn.ModuleList):
    """Each layer on the same input, outputs concatenated along ``dim``."""

    def __init__(self, layers: Sequence[nn.Module], dim: int = 1):
        super().__init__(layers)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([layer(x) for layer in self], dim=self.dim)


class SimpleCNN(nn.Sequential):
    """Convolutions from ``filters[i]`` to ``filters[i + 1]`` channels (batch norm on all but the last when
    ``bn``), then average pooling and flatten.

    Args:
        filters: the channels, input first.
        kernel_szs: one kernel size per convolution (default 3).
        strides: one stride per convolution (default 2).
        bn: batch norm after each convolution but the last.
    """

    def __init__(self, filters: Sequence[int], kernel_szs: Sequence[int] | None = None,
                 strides: Sequence[int] | None = None, bn: bool = True):
        n = len(filters) - 1
        kernel_szs, strides = list(kernel_szs or [3] * n), list(strides or [2] * n)
        if len(kernel_szs) != n or len(strides) != n:
            raise ValueError(f"SimpleCNN: {n} convolutions need {n} kernel sizes and strides; received "
                             f"{len(kernel_szs)} and {len(strides)}")
        layers = [ConvLayer(filters[i], filters[i + 1], kernel_szs[i], stride=strides[i],
                            norm_type=NormType.Batch if bn and i < n - 1 else None) for i in range(n)]
        super().__init__(*layers, PoolFlatten())


class TimeDistributed(nn.Module):
    """``module`` applied to every time step of (N, T, ...) inputs (several inputs: all split the same way).

    Args:
        module: the layer.
        low_mem: one time step at a time (less memory, slower) instead of all at once.
        tdim: the time dimension.
    """

    def __init__(self, module: nn.Module, low_mem: bool = False, tdim: int = 1):
        super().__init__()
        self.module, self.low_mem, self.tdim = module, low_mem, tdim

    def forward(self, *tensors: torch.Tensor, **kwargs: Any) -> Any:
        if self.low_mem or self.tdim != 1:
            steps = [self.module(*[t.select(self.tdim, i) for t in tensors], **kwargs)
                     for i in range(tensors[0].shape[self.tdim])]
            return _stack_steps(steps, self.tdim)
        n, t = tensors[0].shape[:2]
        out = self.module(*[x.reshape(n * t, *x.shape[2:]) for x in tensors], **kwargs)
        if isinstance(out, tuple):
            return tuple(o.reshape(n, t, *o.shape[1:]) for o in out)
        return out.reshape(n, t, *out.shape[1:])

    def __repr__(self) -> str:
        return f"TimeDistributed({self.module})"


def _stack_steps(steps: list[Any], dim: int) -> Any:
    if isinstance(steps[0], tuple):
        return tuple(torch.stack(parts, dim=dim) for parts in zip(*steps))
    return torch.stack(steps, dim=dim)


def swish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``x * sigmoid(x)`` (torch's SiLU)."""
    return F.silu(x, inplace=inplace)


Swish = nn.SiLU  # the swish activation is torch's SiLU


def mish(x: torch.Tensor) -> torch.Tensor:
    """``x * tanh(softplus(x))``."""
    return F.mish(x)


Mish = nn.Mish


class ParameterModule(nn.Module):
    """A module holding one parameter ``p`` (as ``val``), returning its input: lets a bare parameter sit in a list
    of layers (see `children_and_parameters`)."""

    def __init__(self, p: nn.Parameter):
        super().__init__()
        self.val = p

    def forward(self, x: Any) -> Any:
        return x


def children_and_parameters(m: nn.Module) -> list[nn.Module]:
    """``m``'s children, then its own parameters that no child holds (each in a `ParameterModule`)."""
    children = list(m.children())
    held = {id(p) for c in children for p in c.parameters()}
    return children + [ParameterModule(p) for p in m.parameters() if id(p) not in held]


def has_children(m: nn.Module) -> bool:
    """Whether ``m`` has sub-modules."""
    return next(m.children(), None) is not None


class NoneReduce:
    """A context manager giving ``loss_func`` without reduction (one loss per item), as fastai's: the loss's
    ``reduction`` is set to ``'none'`` and restored after, or, for a function, ``reduction='none'`` is passed."""

    def __init__(self, loss_func: Callable):
        self.loss_func, self.old = loss_func, None

    def __enter__(self) -> Callable:
        if hasattr(self.loss_func, "reduction"):
            self.old, self.loss_func.reduction = self.loss_func.reduction, "none"
            return self.loss_func
        return functools.partial(self.loss_func, reduction="none")

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None:
            self.loss_func.reduction = self.old

