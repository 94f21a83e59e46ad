"""Loss functions that carry what the Learner needs besides the loss value.

Every lamina loss is an `nn.Module` (so `.to(device)` moves its class weights) with the same small interface:

* ``reduction``: ``'mean'``, ``'sum'`` or ``'none'``; settable at any time (see `loss_not_reduced`).
* ``y_int``: True when targets are class indices (MixUp then mixes losses instead of targets).
* ``activation(pred)``: turns raw model output into probabilities (softmax, sigmoid or identity).
* ``decodes(pred)``: turns activated output into labels (argmax, ``> thresh`` or identity).
* ``to_config()``: a JSON-safe ``{"name", "kwargs"}`` dict; `loss_from_config` rebuilds the loss from it.

A ``*Flat`` loss moves ``axis`` (the class axis) last and flattens, so one loss serves classification
``(bs, C)`` and segmentation ``(bs, C, H, W)`` alike: with ``reduction='none'`` it returns one value per
flattened position.

Example:
    >>> loss_func = CrossEntropyLossFlat(axis=1)        # segmentation: pred (bs, C, H, W), mask (bs, H, W)
    >>> loss_from_config(loss_func.to_config())
    CrossEntropyLossFlat(weight=None, axis=1, ignore_index=-100, reduction='mean', label_smoothing=0.0)

To add your own loss to exports, subclass `Loss`, list its constructor arguments in ``_config_keys`` and
register it: ``LOSSES["MyLoss"] = MyLoss``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Loss", "CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "BCELossFlat", "MSELossFlat", "L1LossFlat",
           "LabelSmoothingCrossEntropy", "LabelSmoothingCrossEntropyFlat", "FocalLossFlat", "DiceLoss",
           "LOSSES", "loss_from_config", "loss_not_reduced"]

_REDUCTIONS = ("mean", "sum", "none")
_TENSOR_KWARGS = ("weight", "pos_weight")  # constructor arguments stored as lists in a config


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'mean', 'sum' or 'none'; received: reduction={reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    reduction = _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _optional_tensor(value: Sequence[float] | Tensor | None) -> Tensor | None:
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


# ------------------------------------------------------------------------------------------------------------
# Element-wise losses: pred and target have the same number of elements.


class _ElementwiseFlat(Loss):
    """Moves ``axis`` last, casts the target to pred's float dtype, and returns flattened per-element losses."""

    def __init__(self, axis: int = -1, reduction: str = "mean") -> None:
        super().__init__()
        self.axis, self.reduction = axis, _check_reduction(reduction)

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
        return _reduce(self._elementwise(pred, targ).reshape(-1), self.reduction)


class BCEWithLogitsLossFlat(_ElementwiseFlat):
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
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)
        self.register_buffer("pos_weight", _optional_tensor(pos_weight), persistent=False)

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(pred, targ, weight=self.weight, pos_weight=self.pos_weight,
                                                  reduction="none")

    def activation(self, pred: Tensor) -> Tensor:
        return torch.sigmoid(pred)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred > self.thresh


class BCELossFlat(_ElementwiseFlat):
    """Binary cross-entropy on probabilities (the model ends in a sigmoid); `decodes` is ``pred > thresh``."""

    _config_keys = ("weight", "axis", "thresh", "reduction")

    def __init__(self, weight: Sequence[float] | Tensor | None = None, *, axis: int = -1, thresh: float = 0.5,
                 reduction: str = "mean") -> None:
        super().__init__(axis, reduction)
        self.thresh = thresh
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.binary_cross_entropy(pred, targ, weight=self.weight, reduction="none")

    def decodes(self, pred: Tensor) -> Tensor:
        return pred > self.thresh


class MSELossFlat(_ElementwiseFlat):
    """Mean squared error; a (bs, 1) prediction against a (bs,) target works (both are flattened)."""

    _config_keys = ("axis", "reduction")

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.mse_loss(pred, targ, reduction="none")


class L1LossFlat(_ElementwiseFlat):
    """Mean absolute error, flattened like `MSELossFlat`."""

    _config_keys = ("axis", "reduction")

    def _elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.l1_loss(pred, targ, reduction="none")


# ------------------------------------------------------------------------------------------------------------
# Classification losses: pred has a class axis, the target holds class indices.


class _ClassFlat(Loss):
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


class CrossEntropyLossFlat(_ClassFlat):
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
        self.reduction = _check_reduction(reduction)
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        return F.cross_entropy(pred, targ, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=_check_reduction(self.reduction), label_smoothing=self.label_smoothing)


def _label_smoothing_ce(pred: Tensor, targ: Tensor, eps: float, weight: Tensor | None, reduction: str) -> Tensor:
    """eps/C · Σ_c(−log p_c) + (1 − eps) · NLL, with the class axis at dim 1."""
    n_classes = pred.shape[1]
    log_probs = F.log_softmax(pred, dim=1)
    smooth = _reduce(-log_probs.sum(dim=1), reduction)
    nll = F.nll_loss(log_probs, targ.long(), weight=weight, reduction=_check_reduction(reduction))
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
        self.eps, self.reduction = eps, _check_reduction(reduction)
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        return _label_smoothing_ce(pred, targ, self.eps, self.weight, self.reduction)

    def activation(self, pred: Tensor) -> Tensor:
        return F.softmax(pred, dim=1)

    def decodes(self, pred: Tensor) -> Tensor:
        return pred.argmax(dim=1)


class LabelSmoothingCrossEntropyFlat(_ClassFlat):
    """`LabelSmoothingCrossEntropy` over class axis ``axis``, flattened to (N, C) first."""

    _config_keys = ("eps", "weight", "reduction", "axis")

    def __init__(self, eps: float = 0.1, weight: Sequence[float] | Tensor | None = None,
                 reduction: str = "mean", *, axis: int = -1) -> None:
        super().__init__()
        self.eps, self.axis, self.reduction = eps, axis, _check_reduction(reduction)
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        return _label_smoothing_ce(pred, targ, self.eps, self.weight, self.reduction)


class FocalLossFlat(_ClassFlat):
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
        self.gamma, self.axis, self.reduction = gamma, axis, _check_reduction(reduction)
        self.register_buffer("weight", _optional_tensor(weight), persistent=False)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._flatten(pred, targ)
        log_p_true = -F.cross_entropy(pred, targ, reduction="none")
        loss = -((1 - log_p_true.exp()) ** self.gamma) * log_p_true
        if self.weight is not None:
            loss = loss * self.weight[targ]
        return _reduce(loss, self.reduction)


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
        self.reduction = _check_reduction(reduction)

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
        return _reduce(loss, self.reduction)

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
