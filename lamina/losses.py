"""lamina's losses, their registry `LOSSES`, and `loss_from_config`, which rebuilds one from its config.

Each loss has the interface of `lamina.losses_base.Loss` (``reduction``, ``y_int``, ``activation``, ``decodes``,
``to_config``); `Loss` and `loss_not_reduced` are re-exported here. A ``*Flat`` loss moves ``axis`` (the class
axis) last and flattens, so one loss serves classification ``(bs, C)`` and segmentation ``(bs, C, H, W)``.

Example:
    >>> loss_func = CrossEntropyLossFlat(axis=1)        # segmentation: pred (bs, C, H, W), mask (bs, H, W)
    >>> loss_from_config(loss_func.to_config())
    CrossEntropyLossFlat(weight=None, axis=1, ignore_index=-100, reduction='mean', label_smoothing=0.0)

To add your own loss to exports, subclass `Loss` (or `ElementwiseFlat` / `ClassFlat` from `lamina.losses_base`),
list its constructor arguments in ``_config_keys`` and register it: ``LOSSES["MyLoss"] = MyLoss``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses_base import (ClassFlat, ElementwiseFlat, Loss, apply_reduction, as_weight, check_reduction,
                          loss_not_reduced)

__all__ = ["Loss", "CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "BCELossFlat", "MSELossFlat", "L1LossFlat",
           "LabelSmoothingCrossEntropy", "LabelSmoothingCrossEntropyFlat", "FocalLossFlat", "DiceLoss",
           "LOSSES", "loss_from_config", "loss_not_reduced"]

_TENSOR_KWARGS = ("weight", "pos_weight")  # constructor arguments stored as lists in a config


# ------------------------------------------------------------------------------------------------------------
# Element-wise losses: pred and target have the same number of elements.


class BCEWithLogitsLossFlat(ElementwiseFlat):
    """Binary cross-entropy on logits, for single- and multi-label targets of pred's shape.

    ``weight`` and ``pos_weight`` broadcast against the class axis once it is moved last, so a per-class
    ``pos_weight`` of length C works for (bs, C) and (bs, C, H, W) predictions.

    Args:
        weight: per-element rescaling weight, broadcast against the moved prediction.
        axis: the class axis of the prediction.
        thresh: probability above which `decodes` says "present".
        pos_weight: weight of positive examples per class.
        reduction: 'mean', 'sum' or 'none'.
    """

    _config_keys = ("weight", "axis", "thresh", "pos_weight", "reduction")

    def __init__(self, weight: Sequence[float] | Tensor | None = None, *, axis: int = -1, thresh: float = 0.5,
                 pos_weight: Sequence[float] | Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__(axis, reduction)
        self.thresh = thresh
        self.register_buffer("weight", as_weight(weight), persistent=False)
        self.register_buffer("pos_weight", as_weight(pos_weight), persistent=False)

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(pred, targ, weight=self.weight, pos_weight=self.pos_weight,
                                                  reduction="none")

    def activation(self, pred: Tensor) -> Tensor:
        return torch.sigmoid(pred)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred > self.thresh


class BCELossFlat(ElementwiseFlat):
    """Binary cross-entropy on probabilities (the model ends in a sigmoid); `decodes` is ``pred > thresh``."""

    _config_keys = ("weight", "axis", "thresh", "reduction")

    def __init__(self, weight: Sequence[float] | Tensor | None = None, *, axis: int = -1, thresh: float = 0.5,
                 reduction: str = "mean") -> None:
        super().__init__(axis, reduction)
        self.thresh = thresh
        self.register_buffer("weight", as_weight(weight), persistent=False)

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.binary_cross_entropy(pred, targ, weight=self.weight, reduction="none")

    def decodes(self, pred: Tensor) -> Tensor:
        return pred > self.thresh


class MSELossFlat(ElementwiseFlat):
    """Mean squared error; a (bs, 1) prediction against a (bs,) target works (both are flattened)."""

    _config_keys = ("axis", "reduction")

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.mse_loss(pred, targ, reduction="none")


class L1LossFlat(ElementwiseFlat):
    """Mean absolute error, flattened like `MSELossFlat`."""

    _config_keys = ("axis", "reduction")

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.l1_loss(pred, targ, reduction="none")


# ------------------------------------------------------------------------------------------------------------
# Classification losses: pred has a class axis, the target holds class indices.


class CrossEntropyLossFlat(ClassFlat):
    """Cross-entropy over class axis ``axis``; the arguments are those of `nn.CrossEntropyLoss`.

    Args:
        weight: per-class weight (length C).
        axis: the class axis of the prediction (1 for segmentation masks).
        ignore_index: target value that contributes no loss (e.g. 255 for "void" pixels).
        reduction: 'mean', 'sum' or 'none' (one value per flattened position).
        label_smoothing: amount of smoothing in [0, 1].
    """

    _config_keys = ("weight", "axis", "ignore_index", "reduction", "label_smoothing")

    def __init__(self, weight: Sequence[float] | Tensor | None = None, *, axis: int = -1,
                 ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.axis, self.ignore_index, self.label_smoothing = axis, ignore_index, label_smoothing
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", as_weight(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        return F.cross_entropy(pred, targ, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=check_reduction(self.reduction), label_smoothing=self.label_smoothing)


def _label_smoothing_ce(pred: Tensor, targ: Tensor, eps: float, weight: Tensor | None, reduction: str) -> Tensor:
    """eps/C · Σ_c(−log p_c) + (1 − eps) · NLL, with the class axis at dim 1."""
    n_classes = pred.shape[1]
    log_probs = F.log_softmax(pred, dim=1)
    smooth = apply_reduction(-log_probs.sum(dim=1), reduction)
    nll = F.nll_loss(log_probs, targ.long(), weight=weight, reduction=check_reduction(reduction))
    return smooth * eps / n_classes + (1 - eps) * nll


class LabelSmoothingCrossEntropy(Loss):
    """Cross-entropy with label smoothing, class axis 1 (no flattening).

    ``loss = eps/C · Σ_c(−log p_c) + (1 − eps) · NLL(log p, target)``.

    Args:
        eps: smoothing amount.
        weight: per-class weight for the NLL term.
        reduction: 'mean', 'sum' or 'none'.
    """

    y_int = True
    _config_keys = ("eps", "weight", "reduction")

    def __init__(self, eps: float = 0.1, weight: Sequence[float] | Tensor | None = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.eps, self.reduction = eps, check_reduction(reduction)
        self.register_buffer("weight", as_weight(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        return _label_smoothing_ce(pred, targ, self.eps, self.weight, self.reduction)

    def activation(self, pred: Tensor) -> Tensor:
        return F.softmax(pred, dim=1)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred.argmax(dim=1)


class LabelSmoothingCrossEntropyFlat(ClassFlat):
    """`LabelSmoothingCrossEntropy` over class axis ``axis``, flattened to (N, C) first."""

    _config_keys = ("eps", "weight", "reduction", "axis")

    def __init__(self, eps: float = 0.1, weight: Sequence[float] | Tensor | None = None,
                 reduction: str = "mean", *, axis: int = -1) -> None:
        super().__init__()
        self.eps, self.axis, self.reduction = eps, axis, check_reduction(reduction)
        self.register_buffer("weight", as_weight(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        return _label_smoothing_ce(pred, targ, self.eps, self.weight, self.reduction)


class FocalLossFlat(ClassFlat):
    """Focal loss ``−w_y (1 − p_y)^gamma · log p_y`` (Lin et al. 2017), flattened like `CrossEntropyLossFlat`.

    gamma=0 gives plain cross-entropy; gamma=2 down-weights an example the model already gets right with
    p=0.9 by 100×, so training concentrates on the hard ones.

    Args:
        gamma: focusing parameter.
        axis: the class axis of the prediction.
        weight: per-class weight (length C), applied after the focal term; the mean is over positions.
        reduction: 'mean', 'sum' or 'none'.
    """

    _config_keys = ("gamma", "axis", "weight", "reduction")

    def __init__(self, gamma: float = 2.0, *, axis: int = -1, weight: Sequence[float] | Tensor | None = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.gamma, self.axis, self.reduction = gamma, axis, check_reduction(reduction)
        self.register_buffer("weight", as_weight(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        log_p_true = -F.cross_entropy(pred, targ, reduction="none")
        loss = -((1 - log_p_true.exp()) ** self.gamma) * log_p_true
        if self.weight is not None:
            loss = loss * self.weight[targ]
        return apply_reduction(loss, self.reduction)


class DiceLoss(Loss):
    """Soft Dice loss ``1 − (2·Σ p·t + smooth) / (Σ (p + t) + smooth)`` per item and class, for segmentation.

    The sums run over every dimension except the batch and the class axis, so ``reduction='none'`` gives a
    (bs, C) tensor; 'sum' (the default) adds those up.

    Args:
        axis: the class axis of the prediction.
        smooth: added to numerator and denominator so empty classes give a loss of 0, not NaN.
        reduction: 'mean', 'sum' or 'none'.
        square_in_union: use Σ(p² + t) in the denominator (V-Net's variant).
    """

    y_int = True
    _config_keys = ("axis", "smooth", "reduction", "square_in_union")

    def __init__(self, axis: int = 1, smooth: float = 1e-6, reduction: str = "sum",
                 square_in_union: bool = False) -> None:
        super().__init__()
        self.axis, self.smooth, self.square_in_union = axis, smooth, square_in_union
        self.reduction = check_reduction(reduction)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        axis = self.axis % pred.dim()
        if targ.dim() == pred.dim():  # (bs, 1, H, W) masks
            targ = targ.squeeze(axis)
        one_hot = F.one_hot(targ.long(), pred.shape[axis]).movedim(-1, axis).to(pred.dtype)
        if one_hot.shape != pred.shape:
            raise ValueError(f"DiceLoss needs a target with pred's shape minus the class axis (axis={self.axis}); "
                             f"received pred of shape {tuple(pred.shape)} and target of shape {tuple(targ.shape)}")
        probs = self.activation(pred)
        sum_dims = [d for d in range(pred.dim()) if d not in (0, axis)]
        inter, union = probs * one_hot, (probs**2 if self.square_in_union else probs) + one_hot
        if sum_dims:  # torch.sum over an empty dim list would reduce everything
            inter, union = inter.sum(dim=sum_dims), union.sum(dim=sum_dims)
        loss = 1 - (2 * inter + self.smooth) / (union + self.smooth)
        return apply_reduction(loss, self.reduction)

    def activation(self, pred: Tensor) -> Tensor:
        return F.softmax(pred, dim=self.axis)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred.argmax(dim=self.axis)


LOSSES: dict[str, type[Loss]] = {
    "CrossEntropyLossFlat": CrossEntropyLossFlat,
    "BCEWithLogitsLossFlat": BCEWithLogitsLossFlat,
    "BCELossFlat": BCELossFlat,
    "MSELossFlat": MSELossFlat,
    "L1LossFlat": L1LossFlat,
    "LabelSmoothingCrossEntropy": LabelSmoothingCrossEntropy,
    "LabelSmoothingCrossEntropyFlat": LabelSmoothingCrossEntropyFlat,
    "FocalLossFlat": FocalLossFlat,
    "DiceLoss": DiceLoss,
}


def loss_from_config(cfg: Mapping[str, Any]) -> nn.Module:
    """Rebuild a loss from the dict its `to_config()` returned.

    Args:
        cfg: ``{"name": <a key of LOSSES>, "kwargs": {...}}``.

    Returns:
        A new loss module (on the CPU).

    Raises:
        ValueError: if ``cfg`` is malformed or names a loss that is not in `LOSSES`.
    """
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError("`cfg` must be a dict like {'name': 'CrossEntropyLossFlat', 'kwargs': {...}} as returned "
                         f"by `loss.to_config()`; received: cfg={cfg!r}")
    name = cfg["name"]
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}. "
                         f"Register a custom one with `LOSSES[{name!r}] = YourLossClass`.")
    kwargs = dict(cfg.get("kwargs") or {})
    for key in _TENSOR_KWARGS:
        if kwargs.get(key) is not None:
            kwargs[key] = torch.tensor(kwargs[key], dtype=torch.float32)
    return LOSSES[name](**kwargs)
