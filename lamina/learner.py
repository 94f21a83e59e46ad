"""The Learner: a model, its data, a loss and an optimizer, and the training loop that fires events.

The loop reads top to bottom: `fit` → epochs → `_train_pass`/`_valid_pass` → `_one_batch`. Around
each part, `_with_events` fires ``before_<name>``, runs it, turns the matching cancel exception into
``after_cancel_<name>``, and always fires ``after_<name>``. Everything else (progress, recording,
schedules, mixed precision, checkpoints) is a callback. Fitting policies (``fit_one_cycle``,
``fine_tune``, ``lr_find``), prediction, saving and precision live in the mixins this class
inherits, one concern per file.

Example:
    >>> learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    >>> learn.fit_one_cycle(3, 1e-3)
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .callbacks.core import (EVENTS, Callback, CancelBackwardException, CancelBatchException,
                             CancelEpochException, CancelFitException, CancelStepException,
                             CancelTrainException, CancelValidException, noop)
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import ScheduleMixin
from .callbacks.training import TrainEvalCallback
from .checkpoint import CheckpointMixin
from .core import listify
from .metrics import as_metric
from .losses import loss_from_config, loss_not_reduced
from .optim import Adam, OptimWrapper, norm_bias_params, params_of, trainable_params
from .predict import PredictMixin
from .callbacks.precision import PrecisionMixin
from .registry import register

__all__ = ["Learner", "DEFAULT_CALLBACKS"]

DEFAULT_CALLBACKS = (TrainEvalCallback, Recorder, ProgressCallback)


@register("learner")
class Learner(ScheduleMixin, PredictMixin, CheckpointMixin, PrecisionMixin):
    """Train ``model`` on ``dls`` with ``loss_func`` and ``opt_func``.

    Args:
        dls: the `DataLoaders`.
        model: the model.
        loss_func: the loss; default ``dls.loss_func``.
        opt_func: optimizer factory called as ``opt_func(param_groups, lr=lr, no_wd=..., force_train=...)``.
        lr: the default learning rate.
        splitter: ``splitter(model)`` → list of param groups (for freezing and discriminative lrs).
        cbs: extra callbacks, kept for every fit.
        metrics: metric functions, `Metric` classes or instances, shown after each epoch.
        path: where ``model_dir`` lives (default ``dls.path``).
        model_dir: the folder (under ``path``) of `save`/`load`.
        wd: weight decay for every fit (None keeps the optimizer's default).
        wd_bn_bias: also decay norm-layer and bias parameters.
        train_bn: norm layers stay trainable when their group is frozen.
        moms: the momentum cycle of `fit_one_cycle`.
        default_cbs: add the default callbacks (training/eval switching, recorder, progress).

    Raises:
        ValueError: when no loss is given and the data carries none.
    """

    def __init__(self, dls: Any, model: nn.Module, loss_func: Callable | None = None,
                 opt_func: Callable = Adam, lr: float = 1e-3, splitter: Callable = trainable_params,
                 cbs: Callback | Iterable[Callback] | None = None, metrics: Any = None,
                 path: str | Path | None = None, model_dir: str | Path = "models", wd: float | None = None,
                 wd_bn_bias: bool = False, train_bn: bool = True, moms: tuple = (0.95, 0.85, 0.95),
                 default_cbs: bool = True):
        loss_func = loss_func if loss_func is not None else _loss_from_data(dls)
        if loss_func is None:
            raise ValueError("Could not infer the loss function from the data: pass `loss_func=` to the Learner "
                             "(e.g. loss_func=CrossEntropyLossFlat() for classification)")
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func
        self.lr, self.splitter, self.wd, self.wd_bn_bias = lr, splitter, wd, wd_bn_bias
        self.train_bn, self.moms = train_bn, moms
        self.path = Path(path) if path is not None else Path(getattr(dls, "path", "."))
        self.model_dir = Path(model_dir)
        self.metrics = metrics
        self.opt = None
        self.cbs: list[Callback] = []
        self._handlers: dict[str, list[Callback]] | None = None  # per-event callbacks, rebuilt on change
        self.training, self.epoch, self.n_epoch, self.iter, self.n_iter = False, 0, 1, 0, 0
        self.train_iter, self.pct_train = 0, 0.0
        self.logger: Callable = print
        self.model_config: dict | None = None  # how `export` rebuilds the model; set by the learner factories
        self.add_cbs([cb() for cb in DEFAULT_CALLBACKS] if default_cbs else [])
        self.add_cbs(cbs)
        self("after_create")

    # --- metrics and callbacks ---------------------------------------------------------------
    @property
    def metrics(self) -> list:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Any) -> None:
        if metrics is None:
            metrics = []
        elif not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self._metrics = [as_metric(m) for m in metrics]

    def add_cb(self, cb: Callback | type) -> "Learner":
        """Add a callback (a class is instantiated); it becomes ``learn.<cb.name>``.

        A second callback with the same name joins the first; ``learn.<name>`` is the newest until it is removed.
        """
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise TypeError(f"Callbacks must be Callback instances or classes; received {cb!r}")
        existing = getattr(self, cb.name, None)
        if existing is not None and not isinstance(existing, Callback):
            raise ValueError(f"Callback name {cb.name!r} would hide the Learner attribute of the same name; "
                             "rename the callback class or set its `name`")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self._handlers = None
        return self

    def add_cbs(self, cbs: Callback | Iterable[Callback] | None) -> "Learner":
        """Add several callbacks (see `add_cb`)."""
        for cb in listify(cbs):
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type) -> "Learner":
        """Remove a callback instance, or every callback of a class."""
        found = [c for c in self.cbs if (isinstance(c, cb) if isinstance(cb, type) else c is cb)]
        for c in found:
            self.cbs.remove(c)
            if getattr(self, c.name, None) is c:
                same = [other for other in self.cbs if other.name == c.name]
                if same:
                    setattr(self, c.name, same[-1])  # the one it had joined is reachable again
                else:
                    delattr(self, c.name)
            c.learn = None
        self._handlers = None
        return self

    def remove_cbs(self, cbs: Iterable) -> "Learner":
        """Remove several callbacks (see `remove_cb`)."""
        for cb in listify(cbs):
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Iterable[Callback] | None) -> Iterator["Learner"]:
        """Callbacks present only inside the ``with`` block."""
        cbs = listify(cbs)
        self.add_cbs(cbs)
        try:
            yield self
        finally:
            self.remove_cbs(cbs)

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Iterable[Callback]) -> Iterator["Learner"]:
        """Callbacks absent inside the ``with`` block."""
        cbs = listify(cbs)
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    def __call__(self, event: str) -> None:
        """Fire ``event`` on every callback that handles it, in ascending order."""
        if self._handlers is None:  # rebuilt only when the callbacks change
            ordered = sorted(self.cbs, key=lambda c: c.order)
            self._handlers = {e: [cb for cb in ordered if hasattr(cb, e)] for e in EVENTS}
        for cb in self._handlers[event]:
            cb(event)
        if event == "after_fit":
            for cb in self.cbs:  # a callback silenced for one fit (run=False) runs again in the next
                cb.run = True

    def show_training_loop(self) -> None:
        """Print every event and the callbacks that handle it, in firing order."""
        for event in EVENTS:
            names = [type(cb).__name__ for cb in sorted(self.cbs, key=lambda c: c.order) if hasattr(cb, event)]
            indent = 0 if event in ("after_create", "before_fit", "after_cancel_fit", "after_fit") else (
                2 if event in ("before_epoch", "after_cancel_epoch", "after_epoch") else (
                    4 if "train" in event or "validate" in event else 6))
            print(f"{' ' * indent}{event:<22} {names if names else ''}")

    # --- optimizer and freezing ----------------------------------------------------------------
    def param_groups(self) -> list[list[nn.Parameter]]:
        """The splitter's groups as lists of parameters."""
        return [params_of(g) for g in self.splitter(self.model)]

    def create_opt(self) -> None:
        """Build the optimizer over the splitter's groups (norm/bias params kept out of weight decay).

        ``opt_func`` is a lamina optimizer factory (`Adam`, `SGD` ...); a ``torch.optim`` class works too,
        wrapped in `OptimWrapper` (its own defaults then apply, e.g. AdamW's weight decay 0.01).
        """
        no_wd = [] if self.wd_bn_bias else norm_bias_params(self.model)
        force_train = norm_bias_params(self.model, with_bias=False) if self.train_bn else []
        opt_func = self.opt_func
        if isinstance(opt_func, type) and issubclass(opt_func, torch.optim.Optimizer):
            opt_func = functools.partial(OptimWrapper, opt=opt_func)
        self.opt = opt_func(self.param_groups(), lr=self.lr, no_wd=no_wd, force_train=force_train)

    def freeze_to(self, n: int) -> None:
        """Freeze the param groups before ``n`` (norm layers stay trainable when ``train_bn``)."""
        if self.opt is None:
            self.create_opt()
        n_groups = len(self.opt.param_lists)
        if n >= n_groups:
            import warnings
            warnings.warn(f"freeze_to({n}) freezes all {n_groups} param groups: nothing will train")
        self.opt.freeze_to(n)
        self.opt.clear_state()

    def freeze(self) -> None:
        """Train only the last param group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every param group."""
        self.freeze_to(0)

    # --- the loop ------------------------------------------------------------------------------
    def _with_events(self, fn: Callable[[], None], name: str, cancel: type[Exception],
                     final: Callable[[], None] | None = None) -> None:
        try:
            self(f"before_{name}")
            fn()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")
        if final is not None:
            final()

    def fit(self, n_epoch: int, lr: float | slice | list | None = None, wd: float | None = None,
            cbs: Callback | Iterable[Callback] | None = None, reset_opt: bool = False, start_epoch: int = 0) -> None:
        """Train for ``n_epoch`` epochs at a constant learning rate (schedules come from callbacks).

        Args:
            n_epoch: number of epochs.
            lr: learning rate: a number, a ``slice`` (spread over the param groups) or a list per group.
            wd: weight decay for this fit (default the Learner's, else the optimizer's).
            cbs: callbacks for this fit only.
            reset_opt: build a new optimizer (fresh state).
            start_epoch: skip the epochs before this one (to resume from a checkpoint).
        """
        if not isinstance(n_epoch, numbers.Integral) or isinstance(n_epoch, bool) or n_epoch < 0:
            raise ValueError(f"`n_epoch` must be a non-negative integer; received: n_epoch={n_epoch!r}")
        n_epoch = int(n_epoch)
        if n_epoch and len(self.dls.train) == 0:
            raise ValueError(f"The training loader has no batches: {len(self.dls.train.dataset)} training items with "
                             f"bs={self.dls.train.bs} and drop_last={self.dls.train.drop_last}. Use a smaller batch "
                             "size (bs=...) or more data")
        if reset_opt or self.opt is None:
            self.create_opt()
        wd = wd if wd is not None else self.wd
        if wd is not None:
            self.opt.set_hyper("wd", wd)
        self.opt.set_hyper("lr", self.lr_per_group(self.lr if lr is None else lr))
        self.n_epoch, self.start_epoch = n_epoch, start_epoch
        with self.added_cbs(cbs):
            try:
                self._with_events(self._do_fit, "fit", CancelFitException, self._end_cleanup)
            except BaseException:  # an error or Ctrl-C: let callbacks release autocast, files, bars
                for cb in self.cbs:
                    if hasattr(cb, "cleanup"):
                        cb.cleanup()
                    cb.run = True
                raise

    def lr_per_group(self, lr: float | slice | list) -> list[float]:
        """One learning rate per param group: ``slice(a, b)`` spaced geometrically, ``slice(b)`` = b/10 then b."""
        n = len(self.opt.param_lists) if self.opt is not None else len(self.param_groups())
        if isinstance(lr, slice):
            if lr.start is None:
                return [lr.stop / 10] * (n - 1) + [lr.stop]
            if n == 1:
                return [lr.stop]
            step = (lr.stop / lr.start) ** (1 / (n - 1))
            return [lr.start * step ** i for i in range(n)]
        if isinstance(lr, (list, tuple)):
            if len(lr) != n:
                raise ValueError(f"`lr` needs one value per param group ({n}); received {len(lr)}: {list(lr)}")
            return [float(v) for v in lr]
        return [float(lr)] * n

    def _do_fit(self) -> None:
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self.dl = self.dls.train
        self._with_events(self._all_batches, "train", CancelTrainException)
        self._valid_pass(self.dls.valid)

    def _valid_pass(self, dl: Any) -> None:
        self.dl = dl
        with torch.no_grad():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl)
        for i, batch in enumerate(self.dl):
            self.iter = i
            self._one_batch(batch)

    def _one_batch(self, batch: tuple) -> None:
        n_inp = self.dls.n_inp if getattr(self.dls, "n_inp", None) else max(1, len(batch) - 1)
        self.xb, self.yb = tuple(batch[:n_inp]), tuple(batch[n_inp:])
        self._with_events(self._do_one_batch, "batch", CancelBatchException)

    def _do_one_batch(self) -> None:
        self.pred = self.model(*self.xb)
        self("after_pred")
        if self.yb:
            self.loss_grad = self.loss_func(self.pred, *self.yb)
            self.loss = self.loss_grad.detach()
        self("after_loss")
        if not self.training or not self.yb:
            return
        self._with_events(self._backward, "backward", CancelBackwardException)
        self._with_events(self.opt.step, "step", CancelStepException)
        self.opt.zero_grad()

    def _backward(self) -> None:
        self.loss_grad.backward()

    def _end_cleanup(self) -> None:
        self.dl, self.xb, self.yb, self.pred, self.loss, self.loss_grad = None, (), (), None, None, None

    # --- context managers for quiet runs -------------------------------------------------------
    @contextlib.contextmanager
    def no_logging(self) -> Iterator["Learner"]:
        """No epoch table inside the block."""
        saved, self.logger = self.logger, noop
        try:
            yield self
        finally:
            self.logger = saved

    @contextlib.contextmanager
    def loss_not_reduced(self) -> Iterator["Learner"]:
        """The loss returns one value per element inside the block (``reduction='none'``)."""
        with loss_not_reduced(self.loss_func):
            yield self

    @contextlib.contextmanager
    def no_bar(self) -> Iterator["Learner"]:
        """No progress bars inside the block (the epoch table is still written)."""
        progress = getattr(self, "progress", None)
        saved = getattr(progress, "show_bars", None)
        if progress is not None:
            progress.show_bars = False
        try:
            yield self
        finally:
            if progress is not None:
                progress.show_bars = saved

    no_mbar = no_bar  # fastai's older name

    def export(self, fname: str | Path = "export.pkl") -> Path | None:
        """Write this learner for inference to ``path/fname``: safetensors weights + a JSON description.

        See `lamina.export`; load it back with ``load_learner``.
        """
        from .export import export_learner
        return export_learner(self, fname)

    def to_onnx(self, path: str | Path, dynamic_batch: bool = True, opset: int | None = None) -> Path:
        """Write the model and its tensor preprocessing to an ONNX file: see `lamina.onnx.to_onnx`."""
        from .onnx import to_onnx
        return to_onnx(self, path, dynamic_batch=dynamic_batch, opset=opset)

    def __repr__(self) -> str:
        return f"Learner(model={type(self.model).__name__}, loss={type(self.loss_func).__name__}, cbs={self.cbs})"


def _loss_from_data(dls: Any) -> Callable | None:
    """The data's loss: ``dls.loss_func``, else built from ``dls.loss_config`` (data layers describe, not build)."""
    loss = getattr(dls, "loss_func", None)
    config = getattr(dls, "loss_config", None)
    return loss if loss is not None else (loss_from_config(config) if config else None)
