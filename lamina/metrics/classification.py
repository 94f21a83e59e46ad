"""Classification scores over the epoch, computed in torch and named after their scikit-learn counterparts.

Labels are compared as float64, so int, bool and 0./1. targets mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import AccumMetric, _weights


_AVERAGES = ("binary", "micro", "macro", "weighted")
_MULTI_AVERAGES = ("micro", "macro", "weighted", "samples")


def _check_average(average: str, allowed: Sequence[str]) -> None:
    if average not in allowed:
        raise ValueError(f"`average` must be one of {', '.join(map(repr, allowed))}; received: average={average!r}")


def _labels(x: Any) -> Tensor:
    return torch.as_tensor(x).reshape(-1).double()


def _confusion(preds: Tensor, targs: Tensor, sample_weight: Any = None, labels: Any = None) -> tuple[Tensor, Tensor]:
    """Weighted confusion matrix (rows = targets, columns = predictions) over every label seen.

    Returns ``(labels, matrix)``: the sorted labels (those in ``labels`` included even if never seen) and the
    matrix over them.
    """
    preds, targs = _labels(preds), _labels(targs)
    weight = _weights(len(targs), sample_weight)
    seen = torch.unique(torch.cat([preds, targs] + ([] if labels is None else [_labels(labels)])))
    n = len(seen)
    index = torch.searchsorted(seen, targs) * n + torch.searchsorted(seen, preds)
    return seen, torch.bincount(index, weights=weight, minlength=n * n).reshape(n, n)


def _select(seen: Tensor, labels: Any) -> Tensor | slice:
    """Indices of ``labels`` (in the given order) among ``seen``; every index when ``labels`` is None."""
    return slice(None) if labels is None else torch.searchsorted(seen, _labels(labels))


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    # scikit-learn's zero_division default: 0 where the denominator is 0.
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def _prf(kind: str, beta: float, tp: Tensor, n_pred: Tensor, n_true: Tensor) -> Tensor:
    if kind == "precision":
        return _safe_div(tp, n_pred)
    if kind == "recall":
        return _safe_div(tp, n_true)
    # F_beta = (1 + b²)·tp / ((1 + b²)·tp + b²·fn + fp) = (1 + b²)·tp / (b²·n_true + n_pred)
    return _safe_div((1 + beta**2) * tp, beta**2 * n_true + n_pred)


def _averaged(kind: str, beta: float, counts: Sequence[Tensor], average: str) -> float:
    tp, n_pred, n_true = counts
    if average == "micro":
        return float(_prf(kind, beta, tp.sum(), n_pred.sum(), n_true.sum()))
    scores = _prf(kind, beta, tp, n_pred, n_true)
    if average == "weighted":
        return float(_safe_div((scores * n_true).sum(), n_true.sum()))
    return float(scores.mean())


def _class_score(preds: Tensor, targs: Tensor, kind: str, beta: float = 1.0, labels: Any = None,
                 pos_label: int = 1, average: str = "binary", sample_weight: Any = None) -> float:
    """Precision, recall or F-beta of single-label predictions, scikit-learn's conventions."""
    if average == "binary":
        n_seen = len(torch.unique(torch.cat([_labels(preds), _labels(targs)])))
        if n_seen > 2:
            raise ValueError(f"average='binary' needs two classes but predictions and targets hold {n_seen}; "
                             "pass average='macro', 'micro' or 'weighted'")
        labels = [pos_label]
    seen, matrix = _confusion(preds, targs, sample_weight, labels)
    idx = _select(seen, labels)
    # Counted over all samples, so predictions of a label outside ``labels`` still count as misses.
    counts = matrix.diagonal()[idx], matrix.sum(0)[idx], matrix.sum(1)[idx]
    return _averaged(kind, beta, counts, average)


def _multilabel_score(preds: Tensor, targs: Tensor, kind: str, beta: float = 1.0, labels: Any = None,
                      average: str = "macro", sample_weight: Any = None) -> float:
    """Precision, recall or F-beta of (N, C) boolean predictions against (N, C) 0/1 targets."""
    preds, targs = torch.as_tensor(preds).bool(), torch.as_tensor(targs).bool()
    if labels is not None:
        preds, targs = preds[:, list(labels)], targs[:, list(labels)]
    weight = _weights(len(targs), sample_weight)[:, None]
    dim = 1 if average == "samples" else 0  # 'samples': score each row, then average the rows
    counts = [(x * weight).sum(dim) for x in (preds & targs, preds, targs)]
    if average != "samples":
        return _averaged(kind, beta, counts, average)
    scores = _prf(kind, beta, *counts)
    return float((scores * weight[:, 0]).sum() / weight.sum())


def _balanced_accuracy(preds: Tensor, targs: Tensor, sample_weight: Any = None, adjusted: bool = False) -> float:
    matrix = _confusion(preds, targs, sample_weight)[1]
    support = matrix.sum(1)
    present = support > 0  # classes never in the targets have no recall
    score = (matrix.diagonal()[present] / support[present]).mean()
    if adjusted:  # rescale so that chance level scores 0
        chance = 1 / present.sum()
        score = (score - chance) / (1 - chance)
    return float(score)


def _matthews(preds: Tensor, targs: Tensor, sample_weight: Any = None) -> float:
    matrix = _confusion(preds, targs, sample_weight)[1]
    t_sum, p_sum, n = matrix.sum(1), matrix.sum(0), matrix.sum()
    cov_tp = matrix.trace() * n - t_sum @ p_sum
    cov_pp, cov_tt = n**2 - p_sum @ p_sum, n**2 - t_sum @ t_sum
    return 0.0 if cov_pp * cov_tt == 0 else float(cov_tp / torch.sqrt(cov_pp * cov_tt))


def _cohen_kappa(preds: Tensor, targs: Tensor, labels: Any = None, weights: str | None = None,
                 sample_weight: Any = None) -> float:
    seen, matrix = _confusion(preds, targs, sample_weight, labels)
    idx = _select(seen, labels)
    matrix = matrix[idx][:, idx]
    expected = torch.outer(matrix.sum(1), matrix.sum(0)) / matrix.sum()
    i = torch.arange(len(matrix), dtype=torch.float64)
    distance = (i[:, None] - i[None, :]).abs()
    penalty = {None: (distance > 0).double(), "linear": distance, "quadratic": distance**2}[weights]
    return float(1 - (penalty * matrix).sum() / (penalty * expected).sum())


def _binary_auc(scores: Tensor, targs: Tensor, sample_weight: Any = None) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds, so ties count half)."""
    s, y = torch.as_tensor(scores).reshape(-1).double(), torch.as_tensor(targs).reshape(-1).bool().double()
    w = _weights(len(y), sample_weight)
    n_pos, n_neg = (w * y).sum(), (w * (1 - y)).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs positive and negative targets, but this epoch's targets hold only one "
                         "class; use a larger or stratified validation set")
    order = torch.argsort(s, descending=True, stable=True)
    s, y, w = s[order], y[order], w[order]
    # The last position of each run of equal scores: one ROC point per distinct threshold.
    ends = torch.cat([torch.nonzero(s[1:] != s[:-1]).reshape(-1), torch.tensor([len(s) - 1])])
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, torch.cumsum(w * y, 0)[ends] / n_pos])
    fpr = torch.cat([zero, torch.cumsum(w * (1 - y), 0)[ends] / n_neg])
    return float(torch.trapezoid(tpr, fpr))


def _multilabel_auc(probs: Tensor, targs: Tensor, average: str = "macro", sample_weight: Any = None) -> float:
    """ROC AUC per column of (N, C) scores against (N, C) 0/1 targets, averaged."""
    probs, targs = torch.as_tensor(probs).double(), torch.as_tensor(targs).double()
    weight = _weights(len(targs), sample_weight)
    if average == "micro":
        return _binary_auc(probs.reshape(-1), targs.reshape(-1), weight.repeat_interleave(targs.shape[1]))
    aucs = torch.tensor([_binary_auc(probs[:, c], targs[:, c], weight) for c in range(targs.shape[1])])
    if average == "weighted":
        support = (weight[:, None] * targs).sum(0)
        return float((aucs * support).sum() / support.sum())
    return float(aucs.mean())


def _multiclass_auc(probs: Tensor, targs: Tensor, average: str = "macro", sample_weight: Any = None) -> float:
    """One-vs-rest ROC AUC of (N, C) class probabilities against (N,) class indices."""
    probs, targs = torch.as_tensor(probs), torch.as_tensor(targs).reshape(-1)
    one_hot = targs[:, None] == torch.arange(probs.shape[1])[None, :]
    return _multilabel_auc(probs, one_hot, average, sample_weight)


class _SingleLabelScore(AccumMetric):
    def __init__(self, kind: str, name: str, beta: float, axis: int, labels: Any, pos_label: int, average: str,
                 sample_weight: Any) -> None:
        _check_average(average, _AVERAGES)
        super().__init__(_class_score, dim_argmax=axis, name=name, kind=kind, beta=beta, labels=labels,
                         pos_label=pos_label, average=average, sample_weight=sample_weight)


class F1Score(_SingleLabelScore):
    """F1 of argmax-over-``axis`` predictions over the epoch; name 'f1_score'.

    Args:
        axis: class axis of the predictions.
        labels: classes to average over (default: every class in predictions or targets).
        pos_label: the class scored when ``average='binary'``.
        average: 'binary' (``pos_label`` only), 'micro' (pooled counts), 'macro' (plain mean over classes)
            or 'weighted' (mean weighted by each class's number of targets).
        sample_weight: one weight per validation sample, in loader order.
    """

    def __init__(self, axis: int = -1, labels: Any = None, pos_label: int = 1, average: str = "binary",
                 sample_weight: Any = None) -> None:
        super().__init__("fbeta", "f1_score", 1.0, axis, labels, pos_label, average, sample_weight)


class FBeta(_SingleLabelScore):
    """F-beta: recall weighs ``beta`` times as much as precision; other arguments as `F1Score`. Name 'fbeta_score'."""

    def __init__(self, beta: float, axis: int = -1, labels: Any = None, pos_label: int = 1, average: str = "binary",
                 sample_weight: Any = None) -> None:
        super().__init__("fbeta", "fbeta_score", beta, axis, labels, pos_label, average, sample_weight)


class Precision(_SingleLabelScore):
    """Precision ``tp / (tp + fp)``; arguments as `F1Score`. Name 'precision_score'."""

    def __init__(self, axis: int = -1, labels: Any = None, pos_label: int = 1, average: str = "binary",
                 sample_weight: Any = None) -> None:
        super().__init__("precision", "precision_score", 1.0, axis, labels, pos_label, average, sample_weight)


class Recall(_SingleLabelScore):
    """Recall ``tp / (tp + fn)``; arguments as `F1Score`. Name 'recall_score'."""

    def __init__(self, axis: int = -1, labels: Any = None, pos_label: int = 1, average: str = "binary",
                 sample_weight: Any = None) -> None:
        super().__init__("recall", "recall_score", 1.0, axis, labels, pos_label, average, sample_weight)


class BalancedAccuracy(AccumMetric):
    """Mean recall over the classes present in the targets; name 'balanced_accuracy_score'.

    ``adjusted=True`` rescales so that chance scores 0 and perfect scores 1.
    """

    def __init__(self, axis: int = -1, sample_weight: Any = None, adjusted: bool = False) -> None:
        super().__init__(_balanced_accuracy, dim_argmax=axis, name="balanced_accuracy_score",
                         sample_weight=sample_weight, adjusted=adjusted)


class MatthewsCorrCoef(AccumMetric):
    """Matthews correlation coefficient (multiclass form) of argmax predictions; name 'matthews_corrcoef'."""

    def __init__(self, axis: int = -1, sample_weight: Any = None) -> None:
        super().__init__(_matthews, dim_argmax=axis, name="matthews_corrcoef", sample_weight=sample_weight)


class CohenKappa(AccumMetric):
    """Cohen's kappa of argmax predictions; ``weights`` None, 'linear' or 'quadratic'. Name 'cohen_kappa_score'."""

    def __init__(self, axis: int = -1, labels: Any = None, weights: str | None = None,
                 sample_weight: Any = None) -> None:
        if weights not in (None, "linear", "quadratic"):
            raise ValueError(f"`weights` must be None, 'linear' or 'quadratic'; received: weights={weights!r}")
        super().__init__(_cohen_kappa, dim_argmax=axis, name="cohen_kappa_score", labels=labels, weights=weights,
                         sample_weight=sample_weight)


class RocAuc(AccumMetric):
    """One-vs-rest ROC AUC of softmax probabilities (single-label, any number of classes); name 'roc_auc_score'.

    Args:
        axis: class axis (predictions must be (N, C)).
        average: 'macro' (plain mean over classes), 'weighted' (by class frequency) or 'micro'.
        sample_weight: one weight per validation sample.
        multi_class: only 'ovr' (one-vs-rest) is supported.
    """

    def __init__(self, axis: int = -1, average: str = "macro", sample_weight: Any = None,
                 multi_class: str = "ovr") -> None:
        _check_average(average, ("macro", "weighted", "micro"))
        if multi_class != "ovr":
            raise ValueError(f"`multi_class` must be 'ovr' (one-vs-rest); received: multi_class={multi_class!r}")
        super().__init__(_multiclass_auc, dim_argmax=axis, activation="softmax", flatten=False,
                         name="roc_auc_score", average=average, sample_weight=sample_weight)


class RocAucBinary(AccumMetric):
    """ROC AUC of the last class's softmax probability against 0/1 targets; name 'roc_auc_score'.

    ``average`` is accepted for compatibility; with one positive class there is nothing to average.
    """

    def __init__(self, axis: int = -1, average: str = "macro", sample_weight: Any = None) -> None:
        super().__init__(_binary_auc, dim_argmax=axis, activation="binarysoftmax", name="roc_auc_score",
                         sample_weight=sample_weight)


class _MultiLabelScore(AccumMetric):
    def __init__(self, kind: str, name: str, beta: float, thresh: float, sigmoid: bool, labels: Any,
                 average: str, sample_weight: Any) -> None:
        _check_average(average, _MULTI_AVERAGES)
        super().__init__(_multilabel_score, activation="sigmoid" if sigmoid else "no", thresh=thresh,
                         flatten=False, name=name, kind=kind, beta=beta, labels=labels, average=average,
                         sample_weight=sample_weight)


class F1ScoreMulti(_MultiLabelScore):
    """Multi-label F1 of ``sigmoid(pred) >= thresh`` over the epoch; name 'f1_score'.

    Args:
        thresh: probability threshold.
        sigmoid: apply a sigmoid first (False when the model outputs probabilities).
        labels: column indices to score (default: all).
        average: 'macro', 'micro', 'weighted' (by column support) or 'samples' (per row, then mean).
        sample_weight: one weight per validation sample.
    """

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, labels: Any = None, average: str = "macro",
                 sample_weight: Any = None) -> None:
        super().__init__("fbeta", "f1_score", 1.0, thresh, sigmoid, labels, average, sample_weight)


class FBetaMulti(_MultiLabelScore):
    """Multi-label F-beta; other arguments as `F1ScoreMulti`. Name 'fbeta_score'."""

    def __init__(self, beta: float, thresh: float = 0.5, sigmoid: bool = True, labels: Any = None,
                 average: str = "macro", sample_weight: Any = None) -> None:
        super().__init__("fbeta", "fbeta_score", beta, thresh, sigmoid, labels, average, sample_weight)


class PrecisionMulti(_MultiLabelScore):
    """Multi-label precision; arguments as `F1ScoreMulti`. Name 'precision_score'."""

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, labels: Any = None, average: str = "macro",
                 sample_weight: Any = None) -> None:
        super().__init__("precision", "precision_score", 1.0, thresh, sigmoid, labels, average, sample_weight)


class RecallMulti(_MultiLabelScore):
    """Multi-label recall; arguments as `F1ScoreMulti`. Name 'recall_score'."""

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, labels: Any = None, average: str = "macro",
                 sample_weight: Any = None) -> None:
        super().__init__("recall", "recall_score", 1.0, thresh, sigmoid, labels, average, sample_weight)


class RocAucMulti(AccumMetric):
    """Multi-label ROC AUC per column of sigmoid scores, averaged ('macro', 'weighted' or 'micro').

    Name 'roc_auc_score'.
    """

    def __init__(self, sigmoid: bool = True, average: str = "macro", sample_weight: Any = None) -> None:
        _check_average(average, ("macro", "weighted", "micro"))
        super().__init__(_multilabel_auc, activation="sigmoid" if sigmoid else "no", flatten=False,
                         name="roc_auc_score", average=average, sample_weight=sample_weight)
