"""Scores of how well the predictions rank the positives first: average precision (the area under the
precision-recall curve, as scikit-learn's ``average_precision_score`` defines it), and the Matthews correlation of
multi-label decisions.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from .base import AccumMetric, _weights
from .classification import _check_average, _matthews

__all__ = ["APScoreBinary", "APScoreMulti", "MatthewsCorrCoefMulti"]


def _binary_ap(scores: Tensor, targs: Tensor, sample_weight: Any = None, pos_label: Any = 1) -> float:
    """Average precision: the sum over distinct score thresholds, from the highest, of (recall gained) × (precision
    there)."""
    s = torch.as_tensor(scores).reshape(-1).double()
    y = (torch.as_tensor(targs).reshape(-1).double() == float(pos_label)).double()
    w = _weights(len(y), sample_weight)
    if (w * y).sum() == 0:  # as scikit-learn: nothing to find scores 0 (a rare label missing from this epoch)
        warnings.warn("average precision: no positive target in this epoch's data (for this label); it scores 0. "
                      "A larger or stratified validation set avoids it", stacklevel=2)
        return 0.0
    order = torch.argsort(s, descending=True, stable=True)
    s, y, w = s[order], y[order], w[order]
    ends = torch.cat([torch.nonzero(s[1:] != s[:-1]).reshape(-1), torch.tensor([len(s) - 1])])
    tp, seen = torch.cumsum(w * y, 0)[ends], torch.cumsum(w, 0)[ends]
    recall = tp / tp[-1]
    precision = torch.where(seen > 0, tp / torch.where(seen > 0, seen, torch.ones_like(seen)), torch.zeros_like(tp))
    gained = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((gained * precision).sum())


def _multilabel_ap(probs: Tensor, targs: Tensor, average: str = "macro", pos_label: Any = 1,
                   sample_weight: Any = None) -> float:
    """Average precision per column of (N, C) scores, averaged: 'macro' (mean), 'weighted' (by each column's
    positives) or 'micro' (every (item, column) pair as one ranking)."""
    probs, targs = torch.as_tensor(probs).double(), torch.as_tensor(targs).double()
    weight = _weights(len(targs), sample_weight)
    if average == "micro":
        return _binary_ap(probs.reshape(-1), targs.reshape(-1), weight.repeat_interleave(targs.shape[1]), pos_label)
    aps = torch.tensor([_binary_ap(probs[:, c], targs[:, c], weight, pos_label) for c in range(targs.shape[1])],
                       dtype=torch.float64)
    if average == "weighted":
        support = (weight[:, None] * (targs == float(pos_label))).sum(0)
        return float((aps * support).sum() / support.sum())
    return float(aps.mean())


class APScoreBinary(AccumMetric):
    """Average precision of the last class's softmax probability (single-label, two classes); name
    'average_precision_score'.

    Args:
        axis: the class axis.
        average: accepted for compatibility (one positive class: nothing to average).
        pos_label: the target value that counts as positive.
        sample_weight: one weight per validation sample.
    """

    def __init__(self, axis: int = -1, average: str = "macro", pos_label: Any = 1, sample_weight: Any = None) -> None:
        super().__init__(_binary_ap, dim_argmax=axis, activation="binarysoftmax", name="average_precision_score",
                         sample_weight=sample_weight, pos_label=pos_label)


class APScoreMulti(AccumMetric):
    """Multi-label average precision per column of sigmoid scores, averaged ('macro', 'weighted' or 'micro');
    name 'average_precision_score'.

    Args:
        sigmoid: apply a sigmoid first (False when the model outputs probabilities).
        average: how the columns' scores combine.
        pos_label: the target value that counts as positive.
        sample_weight: one weight per validation sample.
    """

    def __init__(self, sigmoid: bool = True, average: str = "macro", pos_label: Any = 1,
                 sample_weight: Any = None) -> None:
        _check_average(average, ("macro", "weighted", "micro"))
        super().__init__(_multilabel_ap, activation="sigmoid" if sigmoid else "no", flatten=False,
                         name="average_precision_score", average=average, pos_label=pos_label,
                         sample_weight=sample_weight)


def _multilabel_matthews(preds: Tensor, targs: Tensor, sample_weight: Any = None) -> float:
    n_labels = preds.shape[1] if preds.ndim > 1 else 1
    weight = None if sample_weight is None else _weights(len(targs), sample_weight).repeat_interleave(n_labels)
    return _matthews(preds.reshape(-1), targs.reshape(-1), weight)


class MatthewsCorrCoefMulti(AccumMetric):
    """Matthews correlation coefficient of multi-label decisions ``sigmoid(pred) >= thresh``, over every
    (item, label) decision; name 'matthews_corrcoef'.

    Args:
        thresh: probability threshold.
        sigmoid: apply a sigmoid first (False when the model outputs probabilities).
        sample_weight: one weight per validation sample (shared by its labels).
    """

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, sample_weight: Any = None) -> None:
        super().__init__(_multilabel_matthews, activation="sigmoid" if sigmoid else "no", thresh=thresh,
                         flatten=False, name="matthews_corrcoef", sample_weight=sample_weight)
