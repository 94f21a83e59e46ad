"""Tiny synthetic data and models for tests, examples and benchmarks.

Everything here is deterministic given its ``seed`` and small enough to train in a second on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from .data.loaders import DataLoaders
from .registry import register

__all__ = ["synth_classification", "synth_regression", "tiny_mlp", "TinyMLP", "body_head_splitter"]


class TinyMLP(nn.Module):
    """A two-layer perceptron with batch norm: ``n_in → hidden → n_out``.

    ``body`` and ``head`` are separate so it can be split into two param groups.
    """

    def __init__(self, n_in: int = 2, n_out: int = 2, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register("model")
def tiny_mlp(n_in: int = 2, n_out: int = 2, hidden: int = 16) -> TinyMLP:
    """`TinyMLP` factory (used by export tests: rebuilt from its JSON arguments)."""
    return TinyMLP(n_in, n_out, hidden)


def body_head_splitter(model: TinyMLP) -> list:
    """Two param groups: body, head."""
    return [list(model.body.parameters()), list(model.head.parameters())]


def _split(x: torch.Tensor, y: torch.Tensor, valid_pct: float) -> tuple:
    cut = int(len(x) * (1 - valid_pct))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def synth_classification(n: int = 512, n_in: int = 2, n_classes: int = 2, bs: int = 32, seed: int = 0,
                         valid_pct: float = 0.25, noise: float = 0.0, device: str | None = "cpu") -> DataLoaders:
    """Linearly separable classes (``noise`` flips a share of labels), as tensor `DataLoaders`.

    Class ``k`` is the arg-max of ``x @ W`` for a fixed random ``W``; ``vocab`` is ``['c0', 'c1', ...]``.
    """
    from .losses import CrossEntropyLossFlat
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=gen)
    w = torch.randn(n_in, n_classes, generator=gen)
    y = (x @ w).argmax(1)
    if noise:
        flip = torch.rand(n, generator=gen) < noise
        y[flip] = torch.randint(0, n_classes, (int(flip.sum()),), generator=gen)
    return DataLoaders.from_tensors(*_split(x, y, valid_pct), bs=bs, device=device,
                                    vocab=[f"c{i}" for i in range(n_classes)], loss_func=CrossEntropyLossFlat())


def synth_regression(n: int = 512, n_in: int = 1, bs: int = 32, seed: int = 0, valid_pct: float = 0.25,
                     a: float = 2.0, b: float = 3.0, noise: float = 0.1, device: str | None = "cpu") -> DataLoaders:
    """``y = a·mean(x) + b + noise``, as tensor `DataLoaders` with targets of shape (n, 1)."""
    from .losses import MSELossFlat
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=gen)
    y = a * x.mean(1, keepdim=True) + b + noise * torch.randn(n, 1, generator=gen)
    return DataLoaders.from_tensors(*_split(x, y, valid_pct), bs=bs, device=device, n_out=1, loss_func=MSELossFlat())
