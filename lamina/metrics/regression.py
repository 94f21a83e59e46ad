"""Regression scores over the epoch (preds and targets flattened to 1-D), named as scikit-learn names them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import AccumMetric, _weights


def _one_minus_ratio(residual: Tensor, total: Tensor) -> float:
    # A constant target (total == 0) scores 1 if predicted exactly, else 0, as scikit-learn does.
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1 - residual / total)


def _r2(preds: Tensor, targs: Tensor, sample_weight: Sequence[float] | Tensor | None = None) -> float:
    preds, targs = torch.as_tensor(preds).double(), torch.as_tensor(targs).double()
    w = _weights(len(targs), sample_weight)
    mean = (w * targs).sum() / w.sum()
    return _one_minus_ratio((w * (targs - preds) ** 2).sum(), (w * (targs - mean) ** 2).sum())


def _explained_variance(preds: Tensor, targs: Tensor, sample_weight: Sequence[float] | Tensor | None = None) -> float:
    preds, targs = torch.as_tensor(preds).double(), torch.as_tensor(targs).double()
    w = _weights(len(targs), sample_weight)
    diff = targs - preds

    def variance(x: Tensor) -> Tensor:
        return (w * (x - (w * x).sum() / w.sum()) ** 2).sum() / w.sum()

    return _one_minus_ratio(variance(diff), variance(targs))


def _pearson(preds: Tensor, targs: Tensor) -> float:
    x, y = torch.as_tensor(preds).double(), torch.as_tensor(targs).double()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / torch.sqrt((x * x).sum() * (y * y).sum()))  # NaN for a constant input


def _average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..n, ties sharing the mean of their ranks."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    return (first + (counts + 1) / 2).double()[inverse]


def _spearman(preds: Tensor, targs: Tensor) -> float:
    return _pearson(_average_ranks(torch.as_tensor(preds)), _average_ranks(torch.as_tensor(targs)))


class R2Score(AccumMetric):
    """Coefficient of determination ``1 − SS_res / SS_tot`` over the epoch; name 'r2_score'."""

    def __init__(self, sample_weight: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(_r2, name="r2_score", sample_weight=sample_weight)


class ExplainedVariance(AccumMetric):
    """``1 − Var(targ − pred) / Var(targ)`` over the epoch; name 'explained_variance_score'."""

    def __init__(self, sample_weight: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(_explained_variance, name="explained_variance_score", sample_weight=sample_weight)


class PearsonCorrCoef(AccumMetric):
    """Pearson correlation of predictions and targets over the epoch; name 'pearsonr'."""

    def __init__(self, dim_argmax: int | None = None, activation: str = "no", thresh: float | None = None) -> None:
        super().__init__(_pearson, dim_argmax=dim_argmax, activation=activation, thresh=thresh, name="pearsonr")


class SpearmanCorrCoef(AccumMetric):
    """Spearman rank correlation (ties get average ranks) over the epoch; name 'spearmanr'."""

    def __init__(self, dim_argmax: int | None = None, activation: str = "no", thresh: float | None = None) -> None:
        super().__init__(_spearman, dim_argmax=dim_argmax, activation=activation, thresh=thresh, name="spearmanr")
