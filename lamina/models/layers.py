"""Small layers shared by the architectures: embeddings, linear blocks, pooling, output ranges."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Embedding", "LinBnDrop", "SigmoidRange", "Flatten", "AdaptiveConcatPool2d", "emb_sz_rule",
           "init_linear"]


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


def init_linear(module: nn.Module, init=nn.init.kaiming_normal_) -> None:
    """Initialise linear and conv weights with ``init`` and their biases with zero; norm layers untouched."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
