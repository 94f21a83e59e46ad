"""CNN bodies: cut a built classification model to its feature extractor, and measure it.

`create_body` cuts a model where its `lamina.models.archs` entry says (or before its last pooling child) and
adapts the first convolution to ``n_in`` channels; `num_features_model` and `dummy_eval` find what a body puts
out; `timm_body` does the same for timm models (an optional extra). The architecture registry (`ARCHS`,
`model_meta`, `build_arch`, the pretrained weights) lives in `lamina.models.archs`; its names are re-exported
here, the home they had before, so ``from lamina.models.bodies import resnet34`` keeps working.

Example:
    >>> body = create_body(resnet34(weights=None), n_in=1, pretrained=False)   # a 1-channel resnet34 body
    >>> num_features_model(body)
    512
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .archs import (ARCHS, IMAGENET_STATS, Arch, BodySplit, PretrainedWeightsError, arch_meta, build_arch,
                    default_split, model_meta, weights_file)
from .archs import *  # noqa: F401,F403  (the architectures: resnet18 ... regnet_x_32gf, in ARCHS)
from .layers import MaxPool2d

__all__ = ["create_body", "has_pool_type", "cut_model", "num_features_model", "in_channels", "dummy_eval", "TimmBody",
           "timm_body",
           # re-exported from their home, lamina.models.archs (the architectures resnet18 ... follow)
           "Arch", "ARCHS", "model_meta", "arch_meta", "BodySplit", "default_split", "build_arch", "weights_file",
           "PretrainedWeightsError", "IMAGENET_STATS"]
__all__ += list(ARCHS)

_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
          nn.modules.pooling._AdaptiveMaxPoolNd)


# ------------------------------------------------------------------------------------------------------------
# Bodies


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"Found no nn.Conv2d in {type(model).__name__} to take n_in channels; pass n_in=3 or a CNN")


def _new_first_weights(old: torch.Tensor, n_in: int) -> torch.Tensor:
    """Pretrained RGB filters for ``n_in`` channels: summed for 1, the first two ×1.5 for 2, zero-padded for >3.

    Summing (1 channel) and scaling by 3/2 (2 channels) keep a grey input's activations at the RGB scale.
    """
    if n_in == 1:
        return old.sum(dim=1, keepdim=True)
    if n_in == 2:
        return old[:, :2] * 1.5
    new = old.new_zeros(old.shape[0], n_in, *old.shape[2:])
    new[:, :old.shape[1]] = old
    return new


def _adapt_first_conv(model: nn.Module, n_in: int, pretrained: bool) -> None:
    name, conv = _first_conv(model)
    if conv.in_channels == n_in:
        return
    new = nn.Conv2d(n_in, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(_new_first_weights(conv.weight, n_in))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _has_pool(module: nn.Module) -> bool:
    return any(isinstance(m, _POOLS) for m in module.modules())


def has_pool_type(m: nn.Module) -> bool:
    """Whether ``m`` or one of its sub-modules is a pooling layer (`create_body` cuts before the last such child)."""
    return _has_pool(m)


def cut_model(model: nn.Module, cut: int | Callable[[nn.Module], nn.Module]) -> nn.Module:
    """``model``'s children up to ``cut`` (an int) in an ``nn.Sequential``, or ``cut(model)`` (a function).

    Raises:
        TypeError: for a ``cut`` that is neither.
    """
    if isinstance(cut, int):
        return nn.Sequential(*list(model.children())[:cut])
    if callable(cut):
        return cut(model)
    raise TypeError(f"`cut` must be an int or a function of the model; received: cut={cut!r}")


def create_body(model: nn.Module | Callable, n_in: int = 3, pretrained: bool = True,
                cut: int | Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """Cut a classification model to its feature extractor, taking ``n_in`` input channels.

    Its max-pools become lamina's `MaxPool2d` (the same values, faster on the CPU).

    Args:
        model: an instantiated model (e.g. ``resnet34(weights='DEFAULT')``), or an architecture
            (``create_body(resnet34, cut=-2)``, as the fastai book writes it), built here with its pretrained
            weights when ``pretrained``.
        n_in: input channels; when not 3 the first conv is replaced (see `_new_first_weights` for pretrained).
        pretrained: the model holds pretrained weights (the new first conv is then derived from them).
        cut: keep ``children[:cut]`` (an int), or ``cut(model)`` (a function); None cuts before the last
            child that contains a pooling layer.

    Raises:
        ValueError: when no cut is given and no child has a pooling layer.
        TypeError: for a ``cut`` that is neither an int nor callable.
    """
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise TypeError(f"`model` must be a model or an architecture such as resnet34; received {model!r}")
        model = build_arch(model, pretrained=pretrained)
    _adapt_first_conv(model, n_in, pretrained)
    children = list(model.children())
    if cut is None:
        pooled = [i for i, child in enumerate(children) if _has_pool(child)]
        if not pooled:
            raise ValueError(f"Could not find where to cut {type(model).__name__}: no child has a pooling layer. "
                             "Pass cut=<index of the first child to drop> or cut=<function returning the body>")
        cut = pooled[-1]
    return MaxPool2d.replace_in(cut_model(model, cut))


def in_channels(model: nn.Module) -> int:
    """The input channels of the first convolution (or linear layer) of ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return m.in_channels
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ValueError(f"Found no convolution or linear layer in {type(model).__name__}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; each submodule's own mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def dummy_eval(model: nn.Module, size: tuple[int, int] = (64, 64)) -> torch.Tensor:
    """``model`` applied, in eval mode and without gradients, to one zero image of ``size``."""
    p = next(iter(model.parameters()), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    x = torch.zeros(1, in_channels(model), *size, device=device, dtype=dtype)
    with eval_mode(model), torch.no_grad():
        return model(x)


def num_features_model(model: nn.Module) -> int:
    """Channels of a body's output, found by a forward pass at 32 px, then bigger sizes if that is too small."""
    for size in (32, 64, 128, 256, 512):
        try:
            return dummy_eval(model, (size, size)).shape[1]
        except RuntimeError:  # too small for the body's strides and kernels: try a bigger image
            continue
    raise ValueError(f"Could not find the number of features of {type(model).__name__}: a forward pass failed "
                     "at every size from 32 to 512 px")


# ------------------------------------------------------------------------------------------------------------
# timm (optional extra)


class TimmBody(nn.Module):
    """A timm model used as a body: its feature map (``forward_features``) when it has a pooling head."""

    def __init__(self, model: nn.Module, pretrained: bool = True, cut: int | Callable | None = None, n_in: int = 3):
        super().__init__()
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        self.needs_pool = cfg.get("pool_size") is not None
        self.model = model if cut is None else create_body(model, n_in, pretrained, cut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x) if self.needs_pool else self.model(x)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as e:
        raise ImportError("String architecture names are timm models, and timm is not installed. Install it with "
                          "`pip install 'lamina[timm]'` (or `pip install timm`), or pass a torchvision architecture "
                          "such as resnet34.") from e
    return timm


def timm_body(arch: str, pretrained: bool = True, n_in: int = 3, cut: int | Callable | None = None,
              **kwargs: Any) -> tuple[TimmBody, dict]:
    """A timm model without its classifier, as a `TimmBody`, and its pretrained config (mean, std ...).

    Raises:
        ImportError: when timm is not installed (with how to install it).
    """
    timm = _import_timm()
    model = timm.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=n_in, **kwargs)
    cfg = dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})
    return TimmBody(model, pretrained, cut, n_in), cfg
