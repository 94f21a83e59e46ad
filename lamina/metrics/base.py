"""The Metric protocol (reset, accumulate, value), the generic metrics built on it, and shared helpers.

`AvgMetric` averages per-sample functions weighted by batch size, `AccumMetric` keeps the epoch's predictions
and targets and calls its function once, `AvgLoss`/`AvgSmoothLoss` track the loss and `ValueMetric` reports a
value computed elsewhere. `as_metric` is what the Learner applies to each entry of ``metrics``.
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

from ..book_names import flatten_check as _flatten_check  # (its metrics use it under this name)
from ..distributed import all_gather_cat, all_reduce_sum


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


def _weights(n: int, sample_weight: Sequence[float] | Tensor | None) -> Tensor:
    if sample_weight is None:
        return torch.ones(n, dtype=torch.float64)
    weight = torch.as_tensor(sample_weight, dtype=torch.float64).reshape(-1)
    if len(weight) != n:
        raise ValueError(f"`sample_weight` must have one weight per validation sample ({n}); "
                         f"received {len(weight)} weights")
    return weight


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

    def sync(self) -> None:
        """Combine what every process accumulated, so that `value` covers the whole data (data-parallel runs).

        Called on every rank after a sharded pass. Decomposable metrics all-reduce their sums and counts; metrics
        that need every prediction gather them. A metric without `sync` would report its own process's share,
        so the default refuses: implement it (see `AvgMetric.sync` and `AccumMetric.sync`).

        Raises:
            NotImplementedError: for a metric that does not say how its parts combine.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement sync(), so under data-parallel "
                                  "training its value would cover one process's share of the validation set only. "
                                  "Implement sync() (all-reduce sums and counts with "
                                  "lamina.distributed.all_reduce_sum, or gather predictions with all_gather_cat), "
                                  "or subclass AvgMetric or AccumMetric")

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

    def sync(self) -> None:
        """Sum the totals and counts of every process (float64, so the order of the sum hardly matters)."""
        total = self.total.detach().double().cpu() if isinstance(self.total, Tensor) else float(self.total)
        both = all_reduce_sum(torch.tensor([total, float(self.count)], dtype=torch.float64))
        self.total, self.count = both[0], int(both[1].item())

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
        loss = learn.loss.detach().float()
        loss = loss.mean() if loss.dim() else loss
        if isinstance(self.val, Tensor):  # beta·val + (1 − beta)·loss in one kernel: lerp from loss to val
            self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)
        else:  # the first batch (val 0.0) or an average resumed from a checkpoint (a float)
            self.val = loss * (1 - self.beta) + self.beta * self.val

    @property
    def value(self) -> float | None:
        # Debiasing: the EMA starts at 0, so after n steps its weights sum to 1 − beta**n, not 1.
        return None if self.count == 0 else _to_float(self.tensor_value)

    @property
    def tensor_value(self) -> Any:
        """The debiased average as a tensor on the loss's device (reading it forces no GPU sync)."""
        return None if self.count == 0 else self.val / (1 - self.beta**self.count)

    def sync(self) -> None:
        """Nothing to combine: under data-parallel training the loss it averages is already the mean over ranks."""


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

    def sync(self) -> None:
        """Gather every process's predictions and targets, in rank order (the dataset's order for the
        contiguous evaluation shares of `lamina.data.distributed.DistributedDL`)."""
        if not self.preds:
            raise RuntimeError(f"{self.name}: this process accumulated no predictions to gather; every rank needs "
                               "at least one validation item")
        self.preds = [all_gather_cat(torch.cat(self.preds))]
        self.targs = [all_gather_cat(torch.cat(self.targs))]

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

    def sync(self) -> None:
        """Nothing to combine: the value is computed elsewhere."""

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
            try:
                return m()
            except TypeError as e:
                raise TypeError(f"the metric class {m.__name__} needs arguments ({e}); pass an instance, e.g. "
                                f"metrics={m.__name__}(...)") from e
        raise TypeError(f"each metric must be a Metric, a Metric subclass or a function; received the class "
                        f"{m.__name__}, which is not a Metric subclass")
    if callable(m):
        return AvgMetric(m)
    raise TypeError(f"each metric must be a Metric, a Metric subclass or a function like `accuracy`; "
                    f"received: {m!r} (type {type(m).__name__})")
