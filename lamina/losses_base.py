"""The interface every lamina loss shares, and the flattening the ``*Flat`` losses build on.

Every lamina loss is an `nn.Module` (so `.to(device)` moves its class weights) with the same small interface:

* ``reduction``: ``'mean'``, ``'sum'`` or ``'none'``; settable at any time (see `loss_not_reduced`).
* ``y_int``: True when targets are class indices (MixUp then mixes losses instead of targets).
* ``activation(pred)``: turns raw model output into probabilities (softmax, sigmoid or identity).
* ``decodes(pred)``: turns activated output into labels (argmax, ``> thresh`` or identity).
* ``to_config()``: a JSON-safe ``{"name", "kwargs"}`` dict; `lamina.losses.loss_from_config` rebuilds the loss.

A ``*Flat`` loss moves ``axis`` (the class axis) last and flattens, so one loss serves classification
``(bs, C)`` and segmentation ``(bs, C, H, W)`` alike: with ``reduction='none'`` it returns one value per
flattened position. `ElementwiseFlat` does it for targets of pred's shape, `ClassFlat` for class indices.
The concrete losses and their registry live in `lamina.losses`, which re-exports `Loss` and `loss_not_reduced`.

Example:
    >>> class SmoothL1LossFlat(ElementwiseFlat):
    ...     _config_keys = ("axis", "reduction")
    ...     def _elementwise(self, pred, targ):
    ...         return F.smooth_l1_loss(pred, targ, reduction="none")
    >>> SmoothL1LossFlat()(torch.zeros(4, 1), torch.ones(4))
    tensor(0.5000)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Loss", "ElementwiseFlat", "ClassFlat", "check_reduction", "apply_reduction", "as_weight",
           "loss_not_reduced"]

_REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """``reduction`` itself when it is ``'mean'``, ``'sum'`` or ``'none'``.

    Raises:
        ValueError: for any other value.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'mean', 'sum' or 'none'; received: reduction={reduction!r}")
    return reduction


def apply_reduction(loss: Tensor, reduction: str) -> Tensor:
    """``loss`` averaged (``'mean'``), summed (``'sum'``) or returned as it is (``'none'``)."""
    reduction = check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def as_weight(value: Sequence[float] | Tensor | None) -> Tensor | None:
    """A class-weight argument as a float32 tensor (None stays None)."""
    return None if value is None else torch.as_tensor(value, dtype=torch.float32)


class Loss(nn.Module):
    """The interface every lamina loss shares; subclasses implement `forward` and set ``_config_keys``.

    ``_config_keys`` names the constructor arguments that `to_config` saves: each must be an attribute of
    the same name holding a JSON-safe value or a tensor (saved as a list).
    """

    y_int: bool = False
    reduction: str = "mean"
    _config_keys: tuple[str, ...] = ()

    def activation(self, pred: Tensor) -> Tensor:
        """Model output to probabilities; identity unless the subclass says otherwise."""
        return pred

    def decodes(self, pred: Tensor) -> Tensor:
        """Activated output to labels; identity unless the subclass says otherwise."""
        return pred

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe description, ``{"name": class name, "kwargs": constructor arguments}``."""
        kwargs = {}
        for key in self._config_keys:
            value = getattr(self, key)
            kwargs[key] = value.detach().cpu().tolist() if isinstance(value, Tensor) else value
        return {"name": type(self).__name__, "kwargs": kwargs}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.to_config()["kwargs"].items())


class ElementwiseFlat(Loss):
    """Moves ``axis`` last, casts the target to pred's float dtype, and returns flattened per-element losses.

    Subclasses implement ``_elementwise(pred, targ)``: the unreduced loss of two tensors of the same shape.
    """

    def __init__(self, axis: int = -1, reduction: str = "mean") -> None:
        super().__init__()
        self.axis, self.reduction = axis, check_reduction(reduction)

    def _pair(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        if targ.numel() != pred.numel():
            raise ValueError(f"{type(self).__name__} needs one target per prediction; received pred of shape "
                             f"{tuple(pred.shape)} and target of shape {tuple(targ.shape)}")
        same_rank = targ.dim() == pred.dim()
        pred = pred.movedim(self.axis, -1) if pred.dim() > 1 else pred
        if same_rank and targ.dim() > 1:
            targ = targ.movedim(self.axis, -1)
        # (bs, 1) predictions against (bs,) targets is the usual regression case: reshape, don't broadcast.
        dtype = pred.dtype if pred.is_floating_point() else torch.float32
        return pred, targ.reshape(pred.shape).to(dtype)

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._pair(pred, targ)
        return apply_reduction(self._elementwise(pred, targ).reshape(-1), self.reduction)


class ClassFlat(Loss):
    """Moves ``axis`` last and flattens pred to (N, C) and the integer target to (N,)."""

    y_int = True
    axis: int = -1

    def _flatten(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        pred = pred.movedim(self.axis, -1)
        pred = pred.reshape(-1, pred.shape[-1])
        if targ.numel() != pred.shape[0]:
            raise ValueError(f"{type(self).__name__} needs one class index per prediction (the class axis is "
                             f"axis={self.axis}); received pred of shape {tuple(pred.shape)} after flattening "
                             f"and target of shape {tuple(targ.shape)}")
        return pred, targ.reshape(-1).long()

    def activation(self, pred: Tensor) -> Tensor:
        return F.softmax(pred, dim=self.axis)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred.argmax(dim=self.axis)


@contextlib.contextmanager
def loss_not_reduced(loss_func: Any) -> Iterator[Any]:
    """Temporarily set ``loss_func.reduction = 'none'`` so it returns one loss per item; restored on exit.

    Works for lamina losses and torch losses (`nn.CrossEntropyLoss`, ...).

    Example:
        >>> with loss_not_reduced(learn.loss_func) as loss_func:
        ...     per_item = loss_func(preds, targs)

    Raises:
        TypeError: if ``loss_func`` has no ``reduction`` attribute (a plain function, for example).
    """
    if not hasattr(loss_func, "reduction"):
        raise TypeError(f"`loss_func` must have a `reduction` attribute to give per-item losses; received: "
                        f"{loss_func!r}. Use a lamina loss (e.g. CrossEntropyLossFlat()) or a torch.nn loss module "
                        "instead of a plain function.")
    old = loss_func.reduction
    loss_func.reduction = "none"
    try:
        yield loss_func
    finally:
        loss_func.reduction = old
