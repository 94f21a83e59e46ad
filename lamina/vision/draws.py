"""Random draws for the batch transforms of `lamina.vision.lighting` and `lamina.vision.augment`.

Every draw comes from torch's generator of the batch's device (``torch.manual_seed`` makes them repeat), one per
image, or one for the whole batch when ``batch`` is True, without host-device synchronisation. A user may fix a
draw (``draw=...``: a number, one value per image, or a function of the batch), which `drawn` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["check_p", "coin", "uniform", "drawn"]


def check_p(p: float, name: str = "p") -> float:
    """``p`` as a float probability.

    Raises:
        ValueError: naming ``name`` when ``p`` is not in [0, 1].
    """
    if not 0 <= p <= 1:
        raise ValueError(f"`{name}` is a probability and must be in [0, 1]; received: {name}={p!r}")
    return float(p)


def coin(bs: int, p: float, device: torch.device, batch: bool) -> Tensor:
    """Which images a transform applies to: True with probability ``p``, per image or for the whole batch."""
    return (torch.rand(1 if batch else bs, device=device) < p).expand(bs)


def uniform(low: float, high: float, bs: int, device: torch.device, batch: bool) -> Tensor:
    """``bs`` draws from U(low, high), or one draw repeated when ``batch``."""
    return (low + (high - low) * torch.rand(1 if batch else bs, device=device)).expand(bs)


def drawn(draw: float | Sequence[float] | Callable | None, ref: Tensor, default: Tensor, name: str = "draw") -> Tensor:
    """The user's fixed draw (a number, one value per image, or a function of the batch) or ``default``.

    Raises:
        ValueError: naming ``name`` when the draw is neither a number nor one value per image of ``ref``.
    """
    if draw is None:
        return default
    value = torch.as_tensor(draw(ref) if callable(draw) else draw, dtype=torch.float32, device=ref.device)
    if value.ndim == 0:
        return value.expand(len(ref))
    if value.shape != (len(ref),):
        raise ValueError(f"`{name}` must be a number, one value per image ({len(ref)}) or a function returning "
                         f"them; received a value of shape {tuple(value.shape)}")
    return value
