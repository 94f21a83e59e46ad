"""Metrics: objects the Learner resets before a pass, feeds after every batch, and reads at the end.

Three ways to get an exact epoch value whatever the batch sizes:

* `AvgMetric(func)` for functions that are a mean over samples (``accuracy``, ``mse``): a batch-size-weighted
  mean of the per-batch values.
* `AccumMetric(func)` for everything else (F1, AUC, RMSE): keeps the epoch's predictions and targets on the
  CPU and calls ``func`` once. `F1Score`, `RocAuc`, `R2Score`, ... are ready-made `AccumMetric` subclasses,
  computed in torch (no scikit-learn needed) and named after their scikit-learn counterparts as fastai names
  them (``f1_score``, ``roc_auc_score``, ``r2_score``, ...), so ``monitor='f1_score'`` works.
* Running sums (`Dice`, `DiceMulti`, `JaccardCoeff`, `MeanIoU`) for segmentation, where keeping every pixel
  would not fit in memory.

Example:
    >>> learn = Learner(dls, model, metrics=[accuracy, F1Score(average='macro'), rmse])

Write your own by subclassing `Metric` and implementing ``reset``, ``accumulate(learn)`` and ``value``;
``accumulate`` may read ``learn.pred``, ``learn.yb``, ``learn.loss``, ``learn.training`` and ``learn.loss_func``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Metric", "AvgMetric", "AvgLoss", "AvgSmoothLoss", "AccumMetric", "ValueMetric", "as_metric", "skm_to_fastai",
    "accuracy", "error_rate", "top_k_accuracy", "accuracy_multi", "mse", "mae", "msle", "rmse", "exp_rmspe",
    "foreground_acc", "R2Score", "ExplainedVariance", "PearsonCorrCoef", "SpearmanCorrCoef",
    "F1Score", "FBeta", "Precision", "Recall", "BalancedAccuracy", "MatthewsCorrCoef", "CohenKappa",
    "RocAuc", "RocAucBinary", "F1ScoreMulti", "FBetaMulti", "PrecisionMulti", "RecallMulti", "RocAucMulti",
    "Dice", "DiceMulti", "JaccardCoeff", "JaccardCoeffMulti", "MeanIoU",
]


def _snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _func_name(func: Callable) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", None) or _snake(type(func).__name__)


def _to_float(value: Any) -> Any:
    """0-d tensors and numpy scalars become Python floats; anything else is returned as is."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    return float(value) if isinstance(value, (np.generic, int)) and not isinstance(value, bool) else value


def _target(learn: Any, metric: Metric) -> Tensor:
    if not learn.yb:
        raise ValueError(f"metric {metric.name!r} needs targets, but this batch has none (learn.yb is empty)")
    return learn.yb[0]


def _batch_size(learn: Any) -> int:
    return len(learn.yb[0]) if learn.yb else len(learn.pred)


def _flatten_check(pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
    if pred.numel() != targ.numel():
        raise ValueError(f"predictions and targets must have the same number of elements; received shapes "
                         f"{tuple(pred.shape)} and {tuple(targ.shape)}")
    return pred.reshape(-1), targ.reshape(-1)


# ------------------------------------------------------------------------------------------------------------
# The Metric protocol and the generic metrics


class Metric:
    """Base class: ``reset()`` before a pass, ``accumulate(learn)`` after each batch, then read ``value``.

    ``name`` is the class name without a trailing "Metric", in snake case (``MeanIoU`` sets its own); assign
    ``metric.name = 'other'`` to change the column header.
    """

    _name: str | None = None

    def reset(self) -> None:
        """Forget everything accumulated."""
        raise NotImplementedError(f"{type(self).__name__} must implement reset()")

    def accumulate(self, learn: Any) -> None:
        """Add one batch (read from ``learn``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement accumulate(learn)")

    @property
    def value(self) -> Any:
        """The metric over everything accumulated since `reset`, or None if nothing was."""
        raise NotImplementedError(f"{type(self).__name__} must implement the `value` property")

    @property
    def name(self) -> str:
        return self._name or self._default_name()

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def _default_name(self) -> str:
        return _snake(re.sub(r"Metric$", "", type(self).__name__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class AvgMetric(Metric):
    """Batch-size-weighted mean of ``func(pred, *yb)``: exact for per-sample means such as `accuracy`.

    Args:
        func: ``func(pred, *targets) -> scalar``; the metric's name is the function's name.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def _batch_value(self, learn: Any) -> Any:
        return self.func(learn.pred, *learn.yb)

    def accumulate(self, learn: Any) -> None:
        value = self._batch_value(learn)
        bs = _batch_size(learn)
        # Keep the sum as a tensor on the batch's device: no GPU sync per batch.
        self.total = self.total + (value.detach().float() if isinstance(value, Tensor) else float(value)) * bs
        self.count += bs

    @property
    def value(self) -> float | None:
        return None if self.count == 0 else _to_float(self.total / self.count)

    def _default_name(self) -> str:
        return _func_name(self.func)


class AvgLoss(AvgMetric):
    """Batch-size-weighted mean of ``learn.loss`` (the validation loss); named 'loss'."""

    def __init__(self) -> None:
        super().__init__(func=None)

    def _batch_value(self, learn: Any) -> Tensor:
        return learn.loss.mean()

    def _default_name(self) -> str:
        return "loss"


class AvgSmoothLoss(Metric):
    """Exponential moving average of the training loss, debiased by ``1 − beta**count``.

    Only training batches count: validation batches pass through untouched.

    Args:
        beta: weight of the past; 0.98 averages over roughly the last 50 batches.
    """

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self.reset()

    def reset(self) -> None:
        self.count, self.val = 0, 0.0

    def accumulate(self, learn: Any) -> None:
        if not learn.training:
            return
        self.count += 1
        self.val = self.beta * self.val + (1 - self.beta) * learn.loss.detach().float().mean()

    @property
    def value(self) -> float | None:
        # Debiasing: the EMA starts at 0, so after n steps its weights sum to 1 − beta**n, not 1.
        return None if self.count == 0 else _to_float(self.val / (1 - self.beta**self.count))


_ACTIVATIONS = ("no", "softmax", "binarysoftmax", "sigmoid")


class AccumMetric(Metric):
    """Stores the epoch's (activated) predictions and targets on the CPU and calls ``func`` once in `value`.

    Per batch: ``activation`` ('softmax' over ``dim_argmax`` (default -1), 'binarysoftmax' = softmax then the
    last column, 'sigmoid') or, when ``activation='no'`` and ``dim_argmax`` is set, an argmax over
    ``dim_argmax``; then ``>= thresh`` if ``thresh`` is set; then both are flattened if ``flatten``.

    Args:
        func: ``func(preds, targs, **kwargs)`` (``func(targs, preds, ...)`` with ``invert_arg``, scikit-learn
            style).
        dim_argmax: axis to softmax or argmax over.
        activation: 'no', 'softmax', 'binarysoftmax' or 'sigmoid'.
        thresh: threshold turning probabilities into booleans.
        to_np: pass numpy arrays instead of tensors.
        invert_arg: pass targets first.
        flatten: flatten predictions and targets to 1-D.
        name: column name (default: the function's name).
        **kwargs: passed to ``func``.
    """

    def __init__(self, func: Callable, dim_argmax: int | None = None, activation: str = "no",
                 thresh: float | None = None, to_np: bool = False, invert_arg: bool = False, flatten: bool = True,
                 name: str | None = None, **kwargs: Any) -> None:
        activation = str(activation).lower()  # fastai's ActivationType values are 'No', 'Softmax', ...
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {', '.join(map(repr, _ACTIVATIONS))}; "
                             f"received: activation={activation!r}")
        self.func, self.dim_argmax, self.activation, self.thresh = func, dim_argmax, activation, thresh
        self.to_np, self.invert_arg, self.flatten, self.kwargs = to_np, invert_arg, flatten, kwargs
        self._name = name
        self.reset()

    def reset(self) -> None:
        self.preds: list[Tensor] = []
        self.targs: list[Tensor] = []

    def _activate(self, pred: Tensor) -> Tensor:
        dim = -1 if self.dim_argmax is None else self.dim_argmax
        if self.activation in ("softmax", "binarysoftmax"):
            pred = F.softmax(pred.float(), dim=dim)
            pred = pred.select(dim, -1) if self.activation == "binarysoftmax" else pred
        elif self.activation == "sigmoid":
            pred = torch.sigmoid(pred.float())
        elif self.dim_argmax is not None:
            pred = pred.argmax(dim=self.dim_argmax)
        return pred if self.thresh is None else pred >= self.thresh

    def accumulate(self, learn: Any) -> None:
        self.accum_values(self._activate(learn.pred.detach()), _target(learn, self))

    def accum_values(self, preds: Tensor, targs: Tensor) -> None:
        """Store one batch of already-activated predictions and targets."""
        preds, targs = preds.detach().cpu(), targs.detach().cpu()
        if self.flatten:
            preds, targs = _flatten_check(preds, targs)
        self.preds.append(preds)
        self.targs.append(targs)

    @property
    def value(self) -> Any:
        if not self.preds:
            return None
        preds, targs = torch.cat(self.preds), torch.cat(self.targs)
        if self.to_np:
            preds, targs = preds.numpy(), targs.numpy()
        args = (targs, preds) if self.invert_arg else (preds, targs)
        return _to_float(self.func(*args, **self.kwargs))

    def _default_name(self) -> str:
        return _func_name(self.func)


class ValueMetric(Metric):
    """A metric whose value is ``func()``, computed elsewhere (e.g. by a callback); nothing is accumulated."""

    def __init__(self, func: Callable[[], Any], metric_name: str | None = None) -> None:
        self.func, self._name = func, metric_name

    def reset(self) -> None:
        pass

    def accumulate(self, learn: Any) -> None:
        pass

    @property
    def value(self) -> Any:
        return self.func()

    def _default_name(self) -> str:
        return _func_name(self.func)


def skm_to_fastai(func: Callable, is_class: bool = True, thresh: float | None = None, axis: int = -1,
                  activation: str | None = None, **kwargs: Any) -> AccumMetric:
    """Wrap a scikit-learn style ``func(y_true, y_pred, **kwargs)`` as an `AccumMetric` (numpy, targets first).

    Classification (``is_class``) argmaxes over ``axis``, or, with ``thresh``, applies a sigmoid and thresholds.

    Example:
        >>> from sklearn.metrics import cohen_kappa_score
        >>> kappa = skm_to_fastai(cohen_kappa_score, weights='quadratic')
    """
    if activation is None:
        activation = "sigmoid" if is_class and thresh is not None else "no"
    dim_argmax = axis if is_class and thresh is None else None
    return AccumMetric(func, dim_argmax=dim_argmax, activation=activation, thresh=thresh, to_np=True,
                       invert_arg=True, **kwargs)


def as_metric(m: Any) -> Metric:
    """What the Learner does with each entry of ``metrics``.

    A `Metric` instance is used as is, a `Metric` subclass is instantiated, a function (or
    `functools.partial`) becomes `AvgMetric(m)`.

    Raises:
        TypeError: for anything else (e.g. a class that is not a Metric, or a number).
    """
    if isinstance(m, Metric):
        return m
    if isinstance(m, type):
        if issubclass(m, Metric):
            return m()
        raise TypeError(f"each metric must be a Metric, a Metric subclass or a function; received the class "
                        f"{m.__name__}, which is not a Metric subclass")
    if callable(m):
        return AvgMetric(m)
    raise TypeError(f"each metric must be a Metric, a Metric subclass or a function like `accuracy`; "
                    f"received: {m!r} (type {type(m).__name__})")


# ------------------------------------------------------------------------------------------------------------
# Per-sample functions (use them directly: `metrics=accuracy` wraps them in AvgMetric)


def accuracy(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """Fraction of predictions whose argmax over ``axis`` equals the target."""
    pred, targ = _flatten_check(inp.argmax(dim=axis), targ)
    return (pred == targ).float().mean()


def error_rate(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """``1 − accuracy``."""
    return 1 - accuracy(inp, targ, axis=axis)


def top_k_accuracy(inp: Tensor, targ: Tensor, k: int = 5, axis: int = -1) -> Tensor:
    """Fraction of targets among the ``k`` highest-scoring classes."""
    if targ.dim() == inp.dim():  # (bs, 1) targets
        targ = targ.squeeze(axis)
    top = inp.topk(k, dim=axis).indices
    return (top == targ.unsqueeze(axis)).sum(dim=axis).float().mean()


def accuracy_multi(inp: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: fraction of (sample, label) pairs where ``prob > thresh`` matches the target."""
    inp, targ = _flatten_check(inp, targ)
    if sigmoid:
        inp = inp.sigmoid()
    return ((inp > thresh) == targ.bool()).float().mean()


def mse(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error (both flattened, so (bs, 1) vs (bs,) works)."""
    inp, targ = _flatten_check(inp, targ)
    return F.mse_loss(inp.float(), targ.float())


def mae(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error."""
    inp, targ = _flatten_check(inp, targ)
    return (inp.float() - targ.float()).abs().mean()


def msle(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared logarithmic error, ``mean((log(1+p) − log(1+t))²)``."""
    inp, targ = _flatten_check(inp, targ)
    return F.mse_loss(torch.log1p(inp.float()), torch.log1p(targ.float()))


def foreground_acc(inp: Tensor, targ: Tensor, bkg_idx: int = 0, axis: int = 1) -> Tensor:
    """Pixel accuracy ignoring background pixels (target ``== bkg_idx``), for segmentation.

    As an `AvgMetric` the epoch value weights batches by their size, not by their foreground pixels.
    """
    if targ.dim() == inp.dim():  # (bs, 1, H, W) masks
        targ = targ.squeeze(axis)
    keep = targ != bkg_idx
    return (inp.argmax(dim=axis)[keep] == targ[keep]).float().mean()


def _rmse(preds: Tensor, targs: Tensor) -> Tensor:
    return torch.sqrt(F.mse_loss(preds.float(), targs.float()))


def _exp_rmspe(preds: Tensor, targs: Tensor) -> Tensor:
    preds, targs = torch.exp(preds.double()), torch.exp(targs.double())
    return torch.sqrt((((targs - preds) / targs) ** 2).mean())


#: Root mean squared error over the epoch (an `AccumMetric`: the square root does not average over batches).
rmse = AccumMetric(_rmse, name="rmse")
#: Root mean squared percentage error of ``exp(pred)`` vs ``exp(targ)`` (for log-scale targets), over the epoch.
exp_rmspe = AccumMetric(_exp_rmspe, name="exp_rmspe")


# ------------------------------------------------------------------------------------------------------------
# Regression scores over the epoch (preds and targets flattened to 1-D)


def _weights(n: int, sample_weight: Sequence[float] | Tensor | None) -> Tensor:
    if sample_weight is None:
        return torch.ones(n, dtype=torch.float64)
    weight = torch.as_tensor(sample_weight, dtype=torch.float64).reshape(-1)
    if len(weight) != n:
        raise ValueError(f"`sample_weight` must have one weight per validation sample ({n}); "
                         f"received {len(weight)} weights")
    return weight


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


# ------------------------------------------------------------------------------------------------------------
# Classification scores over the epoch. Labels are compared as float64, so int, bool and 0./1. targets mix.

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


# ------------------------------------------------------------------------------------------------------------
# Segmentation: pred (bs, C, H, W), target (bs, H, W). One running confusion matrix serves every metric here.


class _SegmentationConfusion(Metric):
    """Accumulates a C×C confusion matrix (rows = targets) of argmax predictions with `torch.bincount`.

    Pixels whose target is outside [0, C) (e.g. 255 "void") or equals ``ignore_index`` are left out.
    """

    def __init__(self, axis: int = 1, n_classes: int | None = None, ignore_index: int | None = None) -> None:
        self.axis, self.n_classes, self.ignore_index = axis, n_classes, ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion: Tensor | None = None

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
        self.confusion = matrix if self.confusion is None else self.confusion + matrix

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
    """Dice per class, averaged over the classes present in the epoch's targets."""

    def __init__(self, axis: int = 1) -> None:
        super().__init__(axis)

    def _ratio(self, inter: Tensor, union: Tensor) -> Tensor:
        return 2 * inter / union

    @property
    def value(self) -> float | None:
        if self.confusion is None:
            return None
        inter, n_pred, n_targ = self._counts()
        present = n_targ > 0
        return float(self._ratio(inter, n_pred + n_targ)[present].mean()) if present.any() else None


class JaccardCoeffMulti(DiceMulti):
    """Jaccard index per class, averaged over the classes present in the epoch's targets."""

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
