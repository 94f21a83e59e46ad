"""Segmentation metrics: pred (bs, C, H, W), target (bs, H, W).

Running sums rather than stored pixels, since keeping every pixel of an epoch would not fit in memory. One
running confusion matrix serves every metric here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..distributed import all_reduce_sum
from .base import Metric, _flatten_check, _target


class _SegmentationConfusion(Metric):
    """Accumulates a C×C confusion matrix (rows = targets) of argmax predictions with `torch.bincount`.

    Pixels whose target is outside [0, C) (e.g. 255 "void") or equals ``ignore_index`` are left out.
    """

    def __init__(self, axis: int = 1, n_classes: int | None = None, ignore_index: int | None = None) -> None:
        self.axis, self.n_classes, self.ignore_index = axis, n_classes, ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion: Tensor | None = None
        self.pred_elsewhere: Tensor | None = None  # per class: predicted pixels whose target is outside [0, C)

    def accumulate(self, learn: Any) -> None:
        n = learn.pred.shape[self.axis]
        if self.n_classes is not None and self.n_classes != n:
            raise ValueError(f"{type(self).__name__}(n_classes={self.n_classes}) got predictions with {n} classes "
                             f"along axis {self.axis}; pass n_classes={n} or leave it as None")
        pred, targ = _flatten_check(learn.pred.detach().argmax(dim=self.axis), _target(learn, self).long())
        keep = (targ >= 0) & (targ < n)
        if self.ignore_index is not None:
            keep &= targ != self.ignore_index
        matrix = torch.bincount(targ[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
        elsewhere = torch.bincount(pred[~keep], minlength=n)
        self.confusion = matrix if self.confusion is None else self.confusion + matrix
        self.pred_elsewhere = elsewhere if self.pred_elsewhere is None else self.pred_elsewhere + elsewhere

    def sync(self) -> None:
        """Sum every process's confusion matrix (and pixels predicted outside the classes)."""
        if self.confusion is not None:
            self.confusion = all_reduce_sum(self.confusion)
            self.pred_elsewhere = all_reduce_sum(self.pred_elsewhere)

    def _counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per class: pixels right (intersection), predicted, and in the targets."""
        matrix = self.confusion.double().cpu()
        return matrix.diagonal(), matrix.sum(0), matrix.sum(1)


class Dice(_SegmentationConfusion):
    """Binary Dice ``2·|P∩T| / (|P| + |T|)`` of class 1 over the epoch (None until a pixel of it is seen)."""

    def __init__(self, axis: int = 1) -> None:
        super().__init__(axis)

    def _ratio(self, inter: Tensor, union: Tensor) -> Tensor:
        return 2 * inter / union

    @property
    def value(self) -> float | None:
        if self.confusion is None or len(self.confusion) < 2:
            return None
        inter, n_pred, n_targ = (x[1] for x in self._counts())
        union = n_pred + n_targ
        return None if union == 0 else float(self._ratio(inter, union))


class JaccardCoeff(Dice):
    """Binary Jaccard index ``|P∩T| / |P∪T|`` of class 1 over the epoch."""

    def _ratio(self, inter: Tensor, union: Tensor) -> Tensor:
        return inter / (union - inter)


class DiceMulti(_SegmentationConfusion):
    """Dice per class over the epoch, averaged over the classes present in the predictions or the targets.

    A class predicted but absent from the targets counts with Dice 0; a class in neither is left out (as in
    fastai). Every predicted pixel counts, also where the target is outside the classes (a void value).
    """

    def __init__(self, axis: int = 1) -> None:
        super().__init__(axis)

    def _ratio(self, inter: Tensor, union: Tensor) -> Tensor:
        return 2 * inter / union

    @property
    def value(self) -> float | None:
        if self.confusion is None:
            return None
        inter, n_pred, n_targ = self._counts()
        union = n_pred + self.pred_elsewhere.double().cpu() + n_targ
        present = union > 0
        return float(self._ratio(inter, union)[present].mean()) if present.any() else None


class JaccardCoeffMulti(DiceMulti):
    """Jaccard index per class, averaged over the classes present in the epoch's predictions or targets."""

    def _ratio(self, inter: Tensor, union: Tensor) -> Tensor:
        return inter / (union - inter)


class MeanIoU(_SegmentationConfusion):
    """Mean intersection-over-union over the classes present in predictions or targets; name 'mean_iou'.

    Args:
        n_classes: number of classes (checked against the predictions; default: read from them).
        ignore_index: target value to leave out (its pixels and its class).
        axis: class axis of the predictions.
    """

    def __init__(self, n_classes: int | None = None, ignore_index: int | None = None, axis: int = 1) -> None:
        super().__init__(axis, n_classes, ignore_index)

    def _default_name(self) -> str:
        return "mean_iou"

    @property
    def per_class_iou(self) -> Tensor | None:
        """IoU of each class, NaN for classes absent from predictions and targets (and for ``ignore_index``)."""
        if self.confusion is None:
            return None
        inter, n_pred, n_targ = self._counts()
        union = n_pred + n_targ - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan")))
        if self.ignore_index is not None and 0 <= self.ignore_index < len(iou):
            iou[self.ignore_index] = float("nan")
        return iou

    @property
    def value(self) -> float | None:
        iou = self.per_class_iou
        if iou is None or iou.isnan().all():
            return None
        return float(iou[~iou.isnan()].mean())
