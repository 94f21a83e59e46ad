"""XResNet: the ResNet of "Bag of Tricks for Image Classification" (He et al., 2019), as fastai builds it.

The tweaks over torchvision's ResNet: a stem of three 3×3 convs (widths 32, 32, 64) instead of one 7×7;
the stride of a bottleneck on its 3×3 conv; shortcuts that average-pool before their 1×1 conv; the last
batch norm of every block starting at zero (each block starts as the identity); kaiming-normal weights and
zero biases everywhere (`init_cnn`). ``xresnet50(n_out=1000)`` has 25,576,264 parameters: torchvision's
resnet50 plus the 19,232 of the wider stem.

Every builder is a bare model, ``xresnet18(n_out=10)``, and an architecture for ``vision_learner(dls,
xresnet50, pretrained=False)``, which cuts it before its pool (`model_meta`: ``cut=-4``, groups stem | rest |
head). lamina has no pretrained weights for them. They are registered as model builders, so an export of a
Learner on a bare xresnet loads when ``learn.model_config = {"factory": "xresnet18", "kwargs": {"n_out": 10}}``.

Example:
    >>> model = xresnet50(n_out=10, act_cls=nn.Mish, sa=True)
    >>> learn = Learner(dls, xresnet18(n_out=dls.c), loss_func=LabelSmoothingCrossEntropy())
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..registry import register
from .layers import ConvLayer, Flatten, ResBlock

__all__ = ["XResNet", "init_cnn", "SEBlock", "SEResNeXtBlock", "SeparableBlock", "XRESNETS",
           "AvgPool", "MaxPool", "AdaptiveAvgPool"]


def AvgPool(ks: int = 2, stride: int | None = None, padding: int = 0, ndim: int = 2,
            ceil_mode: bool = False) -> nn.Module:
    """`nn.AvgPool1d/2d/3d` for ``ndim`` spatial dimensions."""
    return getattr(nn, f"AvgPool{ndim}d")(ks, stride=stride, padding=padding, ceil_mode=ceil_mode)


def MaxPool(ks: int = 2, stride: int | None = None, padding: int = 0, ndim: int = 2,
            ceil_mode: bool = False) -> nn.Module:
    """`nn.MaxPool1d/2d/3d` for ``ndim`` spatial dimensions."""
    return getattr(nn, f"MaxPool{ndim}d")(ks, stride=stride, padding=padding, ceil_mode=ceil_mode)


def AdaptiveAvgPool(sz: int = 1, ndim: int = 2) -> nn.Module:
    """`nn.AdaptiveAvgPool1d/2d/3d` to size ``sz`` for ``ndim`` spatial dimensions."""
    return getattr(nn, f"AdaptiveAvgPool{ndim}d")(sz)


def init_cnn(module: nn.Module) -> nn.Module:
    """Kaiming-normal weights for every conv and linear layer and zero biases everywhere (norms included).

    Batch-norm weights are left alone, so the zero-initialised last norm of each block stays at zero. A
    spectrally normalised conv gets its raw weight initialised. Returns ``module``.
    """
    for m in module.modules():
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            parametrized = nn.utils.parametrize.is_parametrized(m, "weight")
            nn.init.kaiming_normal_(m.parametrizations.weight.original if parametrized else m.weight)
    return module


def SEBlock(expansion: int, ni: int, nf: int, groups: int = 1, reduction: int = 16, stride: int = 1,
            **kwargs: Any) -> ResBlock:
    """A `ResBlock` with squeeze-and-excitation; hidden widths ``2·nf`` then ``nf·expansion`` (SENet)."""
    return ResBlock(expansion, ni, nf, stride=stride, groups=groups, reduction=reduction, nh1=nf * 2,
                    nh2=nf * expansion, **kwargs)


def SEResNeXtBlock(expansion: int, ni: int, nf: int, groups: int = 32, reduction: int = 16, stride: int = 1,
                   base_width: int = 4, **kwargs: Any) -> ResBlock:
    """A ResNeXt `ResBlock` (``groups`` groups of ``nf·base_width/64`` channels) with squeeze-and-excitation
    (``reduction=0``: none, a plain ResNeXt block)."""
    width = math.floor(nf * (base_width / 64)) * groups
    return ResBlock(expansion, ni, nf, stride=stride, groups=groups, reduction=reduction, nh2=width, **kwargs)


def SeparableBlock(expansion: int, ni: int, nf: int, reduction: int = 16, stride: int = 1, base_width: int = 4,
                   **kwargs: Any) -> ResBlock:
    """A `ResBlock` with a depthwise ``ks×ks`` conv of ``2·nf`` channels and squeeze-and-excitation."""
    return ResBlock(expansion, ni, nf, stride=stride, reduction=reduction, nh2=nf * 2, dw=True, **kwargs)


class XResNet(nn.Sequential):
    """Stem (three convs), a max pool, one stage of ``block`` per entry of ``layers``, then the classifier.

    Children: ``[ConvLayer × len(stem_szs), MaxPool, stage × len(layers), AdaptiveAvgPool, Flatten,
    Dropout(p), Linear]``. Stage ``i`` has ``layers[i]`` blocks of width 64, 128, 256, 512 (then 256 for
    stages past the fourth) × ``widen``; every stage but the first starts with ``stride``.

    Args:
        block: the block class or builder, called as ``block(expansion, ni, nf, stride=..., sa=...,
            act_cls=..., ndim=..., ks=..., **kwargs)`` (`ResBlock`, `SEBlock`, `SEResNeXtBlock` ...).
        expansion: 1 (basic blocks) or 4 (bottlenecks).
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        p: dropout before the final linear layer.
        c_in: input channels.
        n_out: outputs.
        stem_szs: widths of the stem's convs (the last one must divide by ``expansion``).
        widen: width multiplier of the stages.
        sa: a `SimpleSelfAttention` in the last block of the stage fourth from the end.
        act_cls: activation class.
        ndim: spatial dimensions (1, 2 or 3).
        ks: kernel size of the stem, the max pool and the blocks (odd).
        stride: stride of the stem's first conv, the max pool and each stage's first block.
        **kwargs: more arguments of every block (``sym``, ``norm_type``, ``pool``, ``groups`` ...).

    Raises:
        ValueError: for an even ``ks``, or a stem width that ``expansion`` does not divide.

    A `Learner` trains it channels-last where that is faster (`ChannelsLastWhereFaster`): every layer here runs
    in either memory format.
    """

    channels_last_where_faster = True

    def __init__(self, block: Callable[..., nn.Module], expansion: int, layers: Sequence[int], p: float = 0.0,
                 c_in: int = 3, n_out: int = 1000, stem_szs: Sequence[int] = (32, 32, 64), widen: float = 1.0,
                 sa: bool = False, act_cls: type[nn.Module] = nn.ReLU, ndim: int = 2, ks: int = 3, stride: int = 2,
                 **kwargs: Any):
        if ks % 2 == 0:
            raise ValueError(f"`ks` must be odd (a conv keeps the size at stride 1 with padding ks//2); "
                             f"received: ks={ks}")
        if stem_szs[-1] % expansion:
            raise ValueError(f"the stem's last width must divide by `expansion`={expansion}; received: "
                             f"stem_szs={tuple(stem_szs)}")
        sizes = [c_in, *stem_szs]
        stem = [ConvLayer(sizes[i], sizes[i + 1], ks=ks, stride=stride if i == 0 else 1, act_cls=act_cls, ndim=ndim)
                for i in range(len(stem_szs))]
        stage_widths = [64, 128, 256, 512] + [256] * (len(layers) - 4)
        widths = [stem_szs[-1] // expansion] + [int(w * widen) for w in stage_widths]
        stages = []
        for i, n_blocks in enumerate(layers):
            stage_sa = sa and i == len(layers) - 4  # fastai's choice: the stage fourth from the end
            stages.append(nn.Sequential(*[
                block(expansion, widths[i] if j == 0 else widths[i + 1], widths[i + 1],
                      stride=(1 if i == 0 else stride) if j == 0 else 1, sa=stage_sa and j == n_blocks - 1,
                      act_cls=act_cls, ndim=ndim, ks=ks, **kwargs)
                for j in range(n_blocks)]))
        super().__init__(*stem, MaxPool(ks, stride=stride, padding=ks // 2, ndim=ndim), *stages,
                         AdaptiveAvgPool(1, ndim=ndim), Flatten(), nn.Dropout(p),
                         nn.Linear(widths[-1] * expansion, n_out))
        init_cnn(self)


def _xresnet(name: str, block: Callable, expansion: int, layers: list[int], pretrained: bool,
             kwargs: dict) -> XResNet:
    if pretrained:
        raise ValueError(f"lamina has no pretrained weights for {name}: pass pretrained=False, e.g. "
                         f"vision_learner(dls, {name}, pretrained=False) or {name}(n_out=10)")
    return XResNet(block, expansion, layers, **kwargs)


_SE = dict(groups=1, reduction=16)          # SE-ResNet
_SEX = dict(groups=32, reduction=16)        # SE-ResNeXt
_X = dict(groups=32, reduction=0)           # ResNeXt (no squeeze-and-excitation)
_G0, _G1, _G2, _G3 = [2, 2, 2, 2], [3, 4, 6, 3], [3, 4, 23, 3], [3, 8, 36, 3]


# --- plain XResNets: xresnet<depth>(pretrained=False, **XResNet kwargs) -----------------------------------


@register("model")
def xresnet18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18: basic blocks ``[2, 2, 2, 2]``; ``kwargs`` go to `XResNet` (``n_out``, ``act_cls``, ``sa`` ...)."""
    return _xresnet("xresnet18", ResBlock, 1, _G0, pretrained, kwargs)


@register("model")
def xresnet34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34: basic blocks ``[3, 4, 6, 3]``; ``kwargs`` go to `XResNet`."""
    return _xresnet("xresnet34", ResBlock, 1, _G1, pretrained, kwargs)


@register("model")
def xresnet50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50: bottlenecks ``[3, 4, 6, 3]``; ``kwargs`` go to `XResNet`."""
    return _xresnet("xresnet50", ResBlock, 4, _G1, pretrained, kwargs)


@register("model")
def xresnet101(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-101: bottlenecks ``[3, 4, 23, 3]``; ``kwargs`` go to `XResNet`."""
    return _xresnet("xresnet101", ResBlock, 4, _G2, pretrained, kwargs)


@register("model")
def xresnet152(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-152: bottlenecks ``[3, 8, 36, 3]``; ``kwargs`` go to `XResNet`."""
    return _xresnet("xresnet152", ResBlock, 4, _G3, pretrained, kwargs)


@register("model")
def xresnet18_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18 with two more stages of one block: ``[2, 2, 2, 2, 1, 1]``."""
    return _xresnet("xresnet18_deep", ResBlock, 1, _G0 + [1, 1], pretrained, kwargs)


@register("model")
def xresnet34_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34 with two more stages of one block: ``[3, 4, 6, 3, 1, 1]``."""
    return _xresnet("xresnet34_deep", ResBlock, 1, _G1 + [1, 1], pretrained, kwargs)


@register("model")
def xresnet50_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50 with two more stages of one bottleneck: ``[3, 4, 6, 3, 1, 1]``."""
    return _xresnet("xresnet50_deep", ResBlock, 4, _G1 + [1, 1], pretrained, kwargs)


@register("model")
def xresnet18_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet with basic blocks ``[2, 2, 1, 1, 1, 1, 1, 1]``."""
    return _xresnet("xresnet18_deeper", ResBlock, 1, [2, 2, 1, 1, 1, 1, 1, 1], pretrained, kwargs)


@register("model")
def xresnet34_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet with basic blocks ``[3, 4, 6, 3, 1, 1, 1, 1]``."""
    return _xresnet("xresnet34_deeper", ResBlock, 1, _G1 + [1, 1, 1, 1], pretrained, kwargs)


@register("model")
def xresnet50_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet with bottlenecks ``[3, 4, 6, 3, 1, 1, 1, 1]``."""
    return _xresnet("xresnet50_deeper", ResBlock, 4, _G1 + [1, 1, 1, 1], pretrained, kwargs)


# --- squeeze-and-excitation and ResNeXt variants: (n_out=1000, pretrained=False, **XResNet kwargs) ---------


@register("model")
def xse_resnet18(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-18: squeeze-and-excitation basic blocks ``[2, 2, 2, 2]``."""
    return _xresnet("xse_resnet18", SEBlock, 1, _G0, pretrained,
                    {**_SE, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext18(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-18: 32 groups and squeeze-and-excitation, ``[2, 2, 2, 2]``."""
    return _xresnet("xse_resnext18", SEResNeXtBlock, 1, _G0, pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xresnext18(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-18: 32 groups, ``[2, 2, 2, 2]``."""
    return _xresnet("xresnext18", SEResNeXtBlock, 1, _G0, pretrained,
                    {**_X, **kwargs, "n_out": n_out})


@register("model")
def xse_resnet34(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-34: squeeze-and-excitation basic blocks ``[3, 4, 6, 3]``."""
    return _xresnet("xse_resnet34", SEBlock, 1, _G1, pretrained,
                    {**_SE, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext34(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-34: 32 groups and squeeze-and-excitation, ``[3, 4, 6, 3]``."""
    return _xresnet("xse_resnext34", SEResNeXtBlock, 1, _G1, pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xresnext34(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-34: 32 groups, ``[3, 4, 6, 3]``."""
    return _xresnet("xresnext34", SEResNeXtBlock, 1, _G1, pretrained,
                    {**_X, **kwargs, "n_out": n_out})


@register("model")
def xse_resnet50(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-50: squeeze-and-excitation bottlenecks ``[3, 4, 6, 3]``."""
    return _xresnet("xse_resnet50", SEBlock, 4, _G1, pretrained,
                    {**_SE, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext50(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-50 (32x4d): bottlenecks ``[3, 4, 6, 3]``."""
    return _xresnet("xse_resnext50", SEResNeXtBlock, 4, _G1, pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xresnext50(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-50 (32x4d): bottlenecks ``[3, 4, 6, 3]``."""
    return _xresnet("xresnext50", SEResNeXtBlock, 4, _G1, pretrained,
                    {**_X, **kwargs, "n_out": n_out})


@register("model")
def xse_resnet101(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-101: squeeze-and-excitation bottlenecks ``[3, 4, 23, 3]``."""
    return _xresnet("xse_resnet101", SEBlock, 4, _G2, pretrained,
                    {**_SE, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext101(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-101 (32x4d): bottlenecks ``[3, 4, 23, 3]``."""
    return _xresnet("xse_resnext101", SEResNeXtBlock, 4, _G2, pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xresnext101(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-101 (32x4d): bottlenecks ``[3, 4, 23, 3]``."""
    return _xresnet("xresnext101", SEResNeXtBlock, 4, _G2, pretrained,
                    {**_X, **kwargs, "n_out": n_out})


@register("model")
def xse_resnet152(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-152: squeeze-and-excitation bottlenecks ``[3, 8, 36, 3]``."""
    return _xresnet("xse_resnet152", SEBlock, 4, _G3, pretrained,
                    {**_SE, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext18_deep(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-18 with two more stages: ``[2, 2, 2, 2, 1, 1]``."""
    return _xresnet("xse_resnext18_deep", SEResNeXtBlock, 1, _G0 + [1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext34_deep(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-34 with two more stages: ``[3, 4, 6, 3, 1, 1]``."""
    return _xresnet("xse_resnext34_deep", SEResNeXtBlock, 1, _G1 + [1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext50_deep(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-50 with two more stages: ``[3, 4, 6, 3, 1, 1]``."""
    return _xresnet("xse_resnext50_deep", SEResNeXtBlock, 4, _G1 + [1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext18_deeper(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt, basic blocks ``[2, 2, 1, 1, 1, 1, 1, 1]``."""
    return _xresnet("xse_resnext18_deeper", SEResNeXtBlock, 1, [2, 2, 1, 1, 1, 1, 1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext34_deeper(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt, basic blocks ``[3, 4, 4, 2, 2, 1, 1, 1]``."""
    return _xresnet("xse_resnext34_deeper", SEResNeXtBlock, 1, [3, 4, 4, 2, 2, 1, 1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


@register("model")
def xse_resnext50_deeper(n_out: int = 1000, pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt, bottlenecks ``[3, 4, 4, 2, 2, 1, 1, 1]``."""
    return _xresnet("xse_resnext50_deeper", SEResNeXtBlock, 4, [3, 4, 4, 2, 2, 1, 1, 1], pretrained,
                    {**_SEX, **kwargs, "n_out": n_out})


# Every builder by name: how `vision_learner` exports name them (``'lamina:xresnet50'``).
XRESNETS: dict[str, Callable[..., XResNet]] = {f.__name__: f for f in (
    xresnet18, xresnet34, xresnet50, xresnet101, xresnet152, xresnet18_deep, xresnet34_deep, xresnet50_deep,
    xresnet18_deeper, xresnet34_deeper, xresnet50_deeper, xse_resnet18, xse_resnext18, xresnext18, xse_resnet34,
    xse_resnext34, xresnext34, xse_resnet50, xse_resnext50, xresnext50, xse_resnet101, xse_resnext101, xresnext101,
    xse_resnet152, xse_resnext18_deep, xse_resnext34_deep, xse_resnext50_deep, xse_resnext18_deeper,
    xse_resnext34_deeper, xse_resnext50_deeper,
)}
__all__ += list(XRESNETS)
