"""Attention inside residual blocks: squeeze-and-excitation (`SEModule`) and `SimpleSelfAttention`.

Both keep their input's shape, so `ResBlock` appends them to its conv path (``reduction=`` and ``sa=``).

Example:
    >>> se = SEModule(64, reduction=16)
    >>> se(torch.randn(2, 64, 8, 8)).shape
    torch.Size([2, 64, 8, 8])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SEModule", "SimpleSelfAttention"]


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): scale each channel by a gate computed from all channels.

    ``x * sigmoid(conv(act(conv(avg_pool(x)))))``, the hidden width ``ceil(ch // reduction / 8) * 8``
    (a multiple of 8, as fastai's). Both 1×1 convs have biases.

    Args:
        ch: channels in and out.
        reduction: how much narrower the hidden layer is.
        act_cls: activation of the hidden layer.
        ndim: spatial dimensions (1, 2 or 3).
    """

    def __init__(self, ch: int, reduction: int, act_cls: type[nn.Module] = nn.ReLU, ndim: int = 2):
        super().__init__()
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"`reduction` must be a positive integer; received: reduction={reduction!r}")
        hidden = max(8, math.ceil(ch // reduction / 8) * 8)
        conv = getattr(nn, f"Conv{ndim}d")
        self.squeeze = getattr(nn, f"AdaptiveAvgPool{ndim}d")(1)
        self.excite = nn.Sequential(conv(ch, hidden, 1), act_cls(), conv(hidden, ch, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(self.squeeze(x))


class SimpleSelfAttention(nn.Module):
    """Self-attention of cost linear in the positions: ``gamma · (x xᵀ) conv(x) + x`` over flattened positions.

    ``conv`` is a spectrally normalised 1-D convolution without bias; ``gamma`` starts at 0, so the layer
    starts as the identity. With ``sym`` the 1×1 conv's weight is made symmetric, ``(W + Wᵀ) / 2``.

    Args:
        n_in: channels.
        ks: kernel size of the 1-D convolution (1 with ``sym``).
        sym: use a symmetric weight.

    Raises:
        ValueError: for ``sym`` with ``ks != 1`` (only a square 1×1 weight can be symmetric).
    """

    def __init__(self, n_in: int, ks: int = 1, sym: bool = False):
        super().__init__()
        if sym and ks != 1:
            raise ValueError(f"SimpleSelfAttention(sym=True) needs ks=1 (a square weight); received: ks={ks!r}")
        self.n_in, self.ks, self.sym = n_in, ks, sym
        conv = nn.Conv1d(n_in, n_in, ks, padding=ks // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        self.conv = nn.utils.parametrizations.spectral_norm(conv)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape
        flat = x.reshape(*size[:2], -1)                                   # (bs, c, positions)
        weight = self.conv.weight
        if self.sym:
            square = weight.view(self.n_in, self.n_in)
            weight = ((square + square.t()) / 2).view_as(weight)
        convx = F.conv1d(flat, weight, padding=self.ks // 2)
        xxt = torch.bmm(flat, flat.transpose(1, 2))                       # (bs, c, c)
        out = self.gamma * torch.bmm(xxt, convx) + flat
        return out.view(size)
