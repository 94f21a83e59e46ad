"""Small layers shared by the architectures: embeddings, linear and conv blocks, pooling, output ranges."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SEModule, SimpleSelfAttention

__all__ = ["Embedding", "MaxPool2d", "LinBnDrop", "SigmoidRange", "Flatten", "AdaptiveConcatPool2d", "emb_sz_rule",
           "init_linear", "default_init", "NormType", "BatchNorm", "InstanceNorm", "ConvLayer", "icnr_init",
           "PixelShuffle_ICNR", "ResBlock", "SelfAttention", "MergeLayer", "ResizeToOrig"]


class Embedding(nn.Embedding):
    """An embedding initialised from a truncated normal with std 0.01 (small, so early training is stable)."""

    def __init__(self, ni: int, nf: int, std: float = 0.01):
        super().__init__(ni, nf)
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)


def emb_sz_rule(n_cat: int) -> int:
    """Embedding width for a column of ``n_cat`` categories: ``min(600, round(1.6 * n_cat**0.56))``."""
    return int(min(600, round(1.6 * n_cat ** 0.56)))


class LinBnDrop(nn.Sequential):
    """Batch norm, dropout and a linear layer (bias only without norm), in either order.

    ``lin_first=False``: ``BatchNorm1d(n_in) → Dropout(p) → Linear → act``;
    ``lin_first=True``: ``Linear → act → BatchNorm1d(n_out) → Dropout(p)``.
    """

    def __init__(self, n_in: int, n_out: int, bn: bool = True, p: float = 0.0, act: nn.Module | None = None,
                 lin_first: bool = False):
        norm = [nn.BatchNorm1d(n_out if lin_first else n_in)] if bn else []
        drop = [nn.Dropout(p)] if p != 0 else []
        lin = [nn.Linear(n_in, n_out, bias=not bn)] + ([act] if act is not None else [])
        super().__init__(*(lin + norm + drop if lin_first else norm + drop + lin))


class SigmoidRange(nn.Module):
    """Squash outputs into ``(low, high)`` with a scaled sigmoid."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class Flatten(nn.Module):
    """Flatten all but the batch dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class AdaptiveConcatPool2d(nn.Module):
    """Max pooling and average pooling side by side (twice the channels): keeps both peak and mean signal."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.max, self.avg = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], 1)


class MaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d` that pools a contiguous CPU batch in channels-last layout and gives it back contiguous.

    The values are the same; the time is not: PyTorch's CPU max-pool kernel vectorises over channels only in
    channels-last layout. Measured with one thread, resnet's 3x3/2 pool on a (64, 64, 14, 14) batch: 8.1 ms
    forward as is, 1.2 ms through this round trip (10.3 ms and 5.4 ms with the backward pass); on
    (16, 64, 112, 112): 134 ms and 67 ms. `create_body` puts it in place of the encoders' max-pools.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.ndim == 4 and not self.return_indices and x.is_contiguous()
                and not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return super().forward(x)

    @classmethod
    def replace_in(cls, model: nn.Module) -> nn.Module:
        """Swap every plain `nn.MaxPool2d` inside ``model`` for this class (same settings); returns ``model``."""
        for name, child in model.named_children():
            if type(child) is nn.MaxPool2d:
                new = cls(child.kernel_size, child.stride, child.padding, child.dilation, child.return_indices,
                          child.ceil_mode)
                setattr(model, name, new)
            else:
                cls.replace_in(child)
        return model


def init_linear(module: nn.Module, init=nn.init.kaiming_normal_) -> None:
    """Initialise linear and conv weights with ``init`` and their biases with zero; norm layers untouched."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------------------------
# Convolutional blocks (vision bodies, the U-Net decoder)


class NormType(enum.Enum):
    """Which normalisation a `ConvLayer` uses (the ``Zero`` variants start the norm's weight at 0)."""

    Batch = 1
    BatchZero = 2
    Weight = 3
    Spectral = 4
    Instance = 5
    InstanceZero = 6


def BatchNorm(nf: int, ndim: int = 2, norm_type: NormType = NormType.Batch, **kwargs: Any) -> nn.Module:
    """A batch norm with weight 1 (0 for ``NormType.BatchZero``) and bias 1e-3.

    A zero weight makes a residual branch start as the identity; the tiny bias keeps ReLUs after it alive.
    """
    bn = getattr(nn, f"BatchNorm{ndim}d")(nf, **kwargs)
    _init_norm(bn, zero=norm_type == NormType.BatchZero)
    return bn


def InstanceNorm(nf: int, ndim: int = 2, norm_type: NormType = NormType.Instance, affine: bool = True,
                 **kwargs: Any) -> nn.Module:
    """An instance norm initialised like `BatchNorm` (weight 1, or 0 for ``InstanceZero``; bias 1e-3)."""
    inn = getattr(nn, f"InstanceNorm{ndim}d")(nf, affine=affine, **kwargs)
    _init_norm(inn, zero=norm_type == NormType.InstanceZero)
    return inn


def _init_norm(norm: nn.Module, zero: bool) -> None:
    if getattr(norm, "weight", None) is not None:
        with torch.no_grad():
            norm.weight.fill_(0.0 if zero else 1.0)
            norm.bias.fill_(1e-3)


_BATCH = (NormType.Batch, NormType.BatchZero)
_INSTANCE = (NormType.Instance, NormType.InstanceZero)


# Activations whose convs start with kaiming (He) init: they zero (or nearly zero) negative inputs, so a
# layer keeps its output variance only with twice the variance of a linear layer's weights.
_RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Mish)
# Saturating activations, for which Glorot (Xavier) init keeps the inputs in their linear range.
_SATURATING = (nn.Sigmoid, nn.Tanh)


def default_init(act_cls: type[nn.Module] | None) -> Callable | None:
    """The weight init a `ConvLayer` with activation ``act_cls`` gets for ``init="auto"`` (fastai's rule).

    Returns:
        ``kaiming_uniform_`` for the ReLU family (ReLU, ReLU6, LeakyReLU, SiLU, Mish), ``xavier_uniform_``
        for Sigmoid and Tanh, and None (torch's default init) for anything else, no activation included: a
        conv whose outputs are logits or feed a residual sum should not be scaled up for a ReLU.
    """
    if isinstance(act_cls, type) and issubclass(act_cls, _RELU_LIKE):
        return nn.init.kaiming_uniform_
    if isinstance(act_cls, type) and issubclass(act_cls, _SATURATING):
        return nn.init.xavier_uniform_
    return None


def _resolve_init(init: Callable | str | None, act_cls: type[nn.Module] | None) -> Callable | None:
    if not isinstance(init, str):
        return init
    if init != "auto":
        raise ValueError(f"`init` must be 'auto', None or an initialiser such as nn.init.kaiming_normal_; "
                         f"received: init={init!r}")
    return default_init(act_cls)


class ConvLayer(nn.Sequential):
    """A convolution, then an optional norm and activation: ``conv → norm → act`` (or ``conv → act → norm``).

    Args:
        ni: input channels.
        nf: output channels.
        ks: kernel size.
        stride: stride.
        padding: padding (default ``(ks - 1) // 2``: the size is kept at stride 1; 0 when ``transpose``).
        bias: conv bias (default: only without a batch or instance norm, which has its own).
        ndim: 1, 2 or 3 spatial dimensions.
        norm_type: a `NormType` or None. ``Weight``/``Spectral`` reparametrise the conv's weight.
        bn_1st: norm before the activation.
        act_cls: activation class (None for none).
        transpose: a transposed convolution.
        init: initialiser of the conv weight; ``"auto"`` picks it from ``act_cls`` (see `default_init`),
            None keeps torch's default.
        bias_std: a bias starts at N(0, bias_std) (zeros when 0).
        xtra: an extra module appended at the end.
        **kwargs: other arguments of the torch conv (``groups``, ``dilation`` ...).
    """

    def __init__(self, ni: int, nf: int, ks: int = 3, stride: int = 1, padding: int | None = None,
                 bias: bool | None = None, ndim: int = 2, norm_type: NormType | None = NormType.Batch,
                 bn_1st: bool = True, act_cls: type[nn.Module] | None = nn.ReLU, transpose: bool = False,
                 init: Callable | str | None = "auto", bias_std: float = 0.01, xtra: nn.Module | None = None,
                 **kwargs: Any):
        if padding is None:
            padding = 0 if transpose else (ks - 1) // 2
        norm_inside = norm_type in _BATCH or norm_type in _INSTANCE
        bias = not norm_inside if bias is None else bias
        conv_cls = getattr(nn, f"ConvTranspose{ndim}d" if transpose else f"Conv{ndim}d")
        conv = conv_cls(ni, nf, kernel_size=ks, stride=stride, padding=padding, bias=bias, **kwargs)
        init = _resolve_init(init, act_cls)
        with torch.no_grad():
            if init is not None:  # None keeps torch's default (what an output conv without activation wants)
                init(conv.weight)
            if conv.bias is not None:  # small random biases, as fastai's conv layers start (0: zeros)
                conv.bias.normal_(0, bias_std) if bias_std else conv.bias.zero_()
        if norm_type == NormType.Weight:
            conv = nn.utils.parametrizations.weight_norm(conv)
        elif norm_type == NormType.Spectral:
            conv = nn.utils.parametrizations.spectral_norm(conv)
        layers = [conv]
        extra = []
        if act_cls is not None:
            extra.append(act_cls())
        if norm_inside:
            norm = (BatchNorm if norm_type in _BATCH else InstanceNorm)(nf, ndim=ndim, norm_type=norm_type)
            extra.insert(0 if bn_1st else len(extra), norm)
        layers += extra + ([xtra] if xtra is not None else [])
        super().__init__(*layers)


def icnr_init(weight: torch.Tensor, scale: int = 2, init: Callable = nn.init.kaiming_normal_) -> torch.Tensor:
    """Fill a conv weight (in place) so that a pixel shuffle after it starts as nearest-neighbour upsampling.

    `nn.PixelShuffle` builds output channel ``c`` from the ``scale**2`` consecutive conv channels
    ``c*scale**2 ...``; giving those channels the same kernel makes every ``scale×scale`` output block
    constant at first, which removes the checkerboard artefacts of a random start (Aitken et al., 2017).
    """
    n_out, *rest = weight.shape
    if n_out % (scale ** 2):
        raise ValueError(f"icnr_init needs output channels divisible by scale**2={scale ** 2}; "
                         f"received a weight of shape {tuple(weight.shape)}")
    base = init(weight.new_empty(n_out // scale ** 2, *rest))
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(scale ** 2, dim=0))
    return weight


class PixelShuffle_ICNR(nn.Sequential):
    """Upsample by ``scale``: a 1×1 conv to ``nf * scale**2`` channels (ICNR init), then a pixel shuffle.

    Args:
        ni: input channels.
        nf: output channels (default ``ni``).
        scale: the upsampling factor.
        blur: smooth with a replication pad and a 2×2 average pool of stride 1 (fewer checkerboard artefacts).
        norm_type: norm of the conv (`NormType.Weight` by default, as in the original).
        act_cls: activation after the conv.
    """

    def __init__(self, ni: int, nf: int | None = None, scale: int = 2, blur: bool = False,
                 norm_type: NormType | None = NormType.Weight, act_cls: type[nn.Module] | None = nn.ReLU):
        nf = ni if nf is None else nf
        conv = ConvLayer(ni, nf * scale ** 2, ks=1, norm_type=norm_type, act_cls=act_cls,
                         init=lambda w: icnr_init(w, scale), bias_std=0)
        layers = [conv, nn.PixelShuffle(scale)]
        if blur:
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)


class ResBlock(nn.Module):
    """A residual block: ``act(convs(x) + shortcut(x))``.

    ``expansion=1`` gives two ``ks×ks`` convs (``ni → nh2 → nf``); ``expansion>1`` a bottleneck
    ``1×1 → ks×ks → 1×1`` (``ni → nh1 → nh2 → nf``) with ``ni * expansion`` inputs and ``nf * expansion``
    outputs. The last conv's norm starts at zero (``BatchZero``) so the block starts as the identity. The
    shortcut is a pool when ``stride > 1`` and a 1×1 conv when the channels differ.

    Args:
        expansion: 1 (basic block) or the bottleneck factor.
        ni: input channels (before expansion).
        nf: output channels (before expansion).
        stride: stride of the ``ks×ks`` conv.
        ks: kernel size.
        act_cls: activation class.
        norm_type: norm of the convs (None for none).
        ndim: spatial dimensions.
        groups: groups of the ``ks×ks`` conv (ResNeXt); ``dw`` makes it depthwise.
        reduction: add a squeeze-and-excitation `SEModule` with this reduction (None: none).
        nh1, nh2: hidden widths (default ``nf``).
        g2: groups of the last conv.
        sa, sym: add a `SimpleSelfAttention` (symmetric with ``sym``).
        pool: the shortcut's pool, called as ``pool(stride, ndim=ndim, ceil_mode=True)`` (default average).
        pool_first: pool before the shortcut's conv.
        **kwargs: more arguments of every `ConvLayer` of the block (``init``, ``bias_std``, ``bn_1st`` ...).
    """

    def __init__(self, expansion: int, ni: int, nf: int, stride: int = 1, ks: int = 3,
                 act_cls: type[nn.Module] = nn.ReLU, norm_type: NormType | None = NormType.Batch, ndim: int = 2,
                 groups: int = 1, reduction: int | None = None, nh1: int | None = None, nh2: int | None = None,
                 dw: bool = False, g2: int = 1, sa: bool = False, sym: bool = False, pool: Callable | None = None,
                 pool_first: bool = True, **kwargs: Any):
        super().__init__()
        last_norm = {NormType.Batch: NormType.BatchZero, NormType.Instance: NormType.InstanceZero}.get(
            norm_type, norm_type)
        nh2 = nf if nh2 is None else nh2
        nh1 = nh2 if nh1 is None else nh1
        ni, nf = ni * expansion, nf * expansion
        common = dict(ndim=ndim, act_cls=act_cls, norm_type=norm_type, **kwargs)
        last = dict(ndim=ndim, act_cls=None, norm_type=last_norm, groups=g2, **kwargs)
        if expansion == 1:
            convs = [ConvLayer(ni, nh2, ks, stride=stride, groups=ni if dw else groups, **common),
                     ConvLayer(nh2, nf, ks, **last)]
        else:
            convs = [ConvLayer(ni, nh1, 1, **common),
                     ConvLayer(nh1, nh2, ks, stride=stride, groups=nh1 if dw else groups, **common),
                     ConvLayer(nh2, nf, 1, **last)]
        convs += [SEModule(nf, reduction, act_cls, ndim)] if reduction else []
        convs += [SimpleSelfAttention(nf, ks=1, sym=sym)] if sa else []
        self.convpath = nn.Sequential(*convs)
        shortcut = [ConvLayer(ni, nf, 1, ndim=ndim, act_cls=None, norm_type=norm_type, **kwargs)] if ni != nf else []
        if stride != 1:
            down = pool(stride, ndim=ndim, ceil_mode=True) if pool is not None else \
                getattr(nn, f"AvgPool{ndim}d")(stride, ceil_mode=True)
            shortcut.insert(0 if pool_first else len(shortcut), down)
        self.idpath = nn.Sequential(*shortcut)
        self.act = act_cls()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


class SelfAttention(nn.Module):
    """Self-attention over the positions of a feature map (SAGAN, Zhang et al., 2018).

    Query and key project to ``n_channels // 8`` channels, the value keeps ``n_channels``; the output is
    ``gamma * attention + x`` with ``gamma`` starting at 0, so the layer starts as the identity.
    """

    def __init__(self, n_channels: int):
        super().__init__()
        small = max(1, n_channels // 8)
        self.query, self.key, self.value = (self._conv(n_channels, c) for c in (small, small, n_channels))
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _conv(ni: int, nf: int) -> nn.Module:
        conv = nn.Conv1d(ni, nf, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        return nn.utils.parametrizations.spectral_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)                                   # (bs, c, h*w)
        q, k, v = self.query(flat), self.key(flat), self.value(flat)
        weights = F.softmax(torch.bmm(q.transpose(1, 2), k), dim=1)   # (bs, h*w, h*w)
        out = self.gamma * torch.bmm(v, weights) + flat
        return out.view_as(x)


class MergeLayer(nn.Module):
    """Merge a tensor with the network's input: concatenate channels (``dense``) or add."""

    def __init__(self, dense: bool = False):
        super().__init__()
        self.dense = dense

    def forward(self, x: torch.Tensor, orig: torch.Tensor | None = None) -> torch.Tensor:
        orig = orig if orig is not None else getattr(x, "orig", None)  # fastai's form: inside a SequentialEx
        if orig is None:
            raise ValueError("MergeLayer merges with the block's input: call it as layer(x, orig), or put it in a "
                             "SequentialEx")
        return torch.cat([x, orig], dim=1) if self.dense else x + orig


class ResizeToOrig(nn.Module):
    """Interpolate a tensor to the spatial size of the network's input (for inputs of odd sizes)."""

    def __init__(self, mode: str = "nearest"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != orig.shape[-2:]:
            x = F.interpolate(x, size=orig.shape[-2:], mode=self.mode)
        return x
