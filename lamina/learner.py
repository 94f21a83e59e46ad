"""The Learner: a model, its data, a loss and an optimizer, and the training loop that fires events.

The loop reads as nested loops: `fit` → epochs → `_one_pass` (train, then validate) → `one_batch` →
`train_step`. Each part runs inside ``with self.events(name):``, which turns the part's cancel
exception into ``after_cancel_<name>`` and always fires ``after_<name>``. Everything else (progress,
recording, schedules, mixed precision, checkpoints) is a callback. Callbacks, the optimizer, fitting
policies (``fit_one_cycle``, ``fine_tune``, ``lr_find``), prediction, test-time augmentation (``tta``), saving
and precision live in the mixins this class inherits, one concern per file.

Example:
    >>> learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    >>> learn.fit_one_cycle(3, 1e-3)
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .callbacks.core import CANCEL_EXCEPTIONS, EVENTS, Callback, CallbackListMixin, noop
from .callbacks.distributed import DistributedMixin
from .callbacks.precision import ChannelsLastWhereFaster, PrecisionMixin
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import ScheduleMixin
from .callbacks.training import TrainEvalCallback
from .checkpoint import CheckpointMixin
from .core import as_members
from .compiled import CompileMixin, is_compiled, uncompiled
from .cpu_memory import reuse_freed_memory
from .export import load_learner
from .losses import loss_from_config, loss_not_reduced
from .models.small_conv import small_convs
from .metrics import AvgLoss, AvgMetric, AvgSmoothLoss, Metric, as_metric
from .optim import Adam, OptimizerMixin, trainable_params
from .predict import PredictMixin
from .registry import register
from .tta import TTAMixin

__all__ = ["Learner", "DEFAULT_CALLBACKS",
           # re-exported from their homes (lamina.export, lamina.callbacks.recorder, lamina.metrics): fastai.learner's
           "load_learner", "Recorder", "Metric", "AvgMetric", "AvgLoss", "AvgSmoothLoss"]

DEFAULT_CALLBACKS = (TrainEvalCallback, Recorder, ProgressCallback)

# ``after_cancel_<name>``, ``after_<name>`` and the cancel exception of each part of the loop, built once
_AFTER = {name: (f"after_cancel_{name}", f"after_{name}", cancel) for name, cancel in CANCEL_EXCEPTIONS.items()}


class _EventScope:
    """The ``with`` block of `Learner.events`: a cancel becomes ``after_cancel_<name>``, then ``after_<name>``."""

    __slots__ = ("learn", "after_cancel", "after", "cancel")

    def __init__(self, learn: "Learner", name: str):
        self.learn = learn
        self.after_cancel, self.after, self.cancel = _AFTER[name]

    def __enter__(self) -> "_EventScope":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        if kind is not None:
            if not issubclass(kind, self.cancel):
                return False  # an error (or another part's cancel) goes on up, without after_<name>
            self.learn(self.after_cancel)
        self.learn(self.after)
        return True


@register("learner")
class Learner(CallbackListMixin, OptimizerMixin, ScheduleMixin, PredictMixin, TTAMixin, CheckpointMixin,
              PrecisionMixin, CompileMixin, DistributedMixin):
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

    Attributes:
        small_convs: on the CPU, convolutions on feature maps of 1×1 and 2×2 pixels (the last stages of a CNN
            fed small images) run as matrix products in every pass (`lamina.models.small_conv`), those on large
            maps through NNPACK where it was timed faster for the shape (`lamina.models.large_conv`), and max
            pooling of channels-first maps runs through torch's channels-last kernel (`lamina.models.cpu_pool`):
            the same values up to float rounding, faster there. True by default (a compiled model keeps
            torch's kernels); set it to False to run torch's kernels only.
        channels_last_where_faster: for a model that declares ``channels_last_where_faster = True`` (lamina's
            `XResNet`), the `ChannelsLastWhereFaster` callback: it puts the model channels-last where that trains
            faster for its device and image size, in the same precision, deciding at the first training batch
            (its ``chosen``); ``learn.to_contiguous()`` removes it. Other models keep the format they come in.
        reuse_memory: during `fit`, `validate` and `get_preds`, CPU tensors over 32 MiB reuse the memory that
            freed ones leave, instead of fresh pages from the system (Linux with glibc, main thread;
            `lamina.cpu_memory`): element-wise operations on such activations several times faster, a higher
            resident memory during the call. True by default; False leaves the allocator alone
            (``LAMINA_REUSE_MEMORY=0`` does it for every Learner).

    Raises:
        ValueError: when no loss is given and the data carries none.

    Extending the step: override `compute_loss` to change the loss of a batch, or `train_step` to change the
    step itself (its body is the template: keep the events of the parts you keep, and callbacks go on
    working)::

        class L1Learner(Learner):
            def compute_loss(self, pred, *yb):
                penalty = sum(p.abs().sum() for p in self.model.parameters())
                return self.loss_func(pred, *yb) + 1e-5 * penalty

        class FrozenStatsLearner(Learner):   # batch-norm statistics stay fixed while training
            def train_step(self):
                if self.training:
                    self.model.apply(lambda m: m.eval() if isinstance(m, nn.BatchNorm1d) else None)
                super().train_step()
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
        self.train_iter, self.pct_train, self.start_epoch = 0, 0.0, 0
        self.smooth_loss, self.final_record = None, None  # set by the Recorder
        self._end_cleanup()  # dl, xb, yb, pred, loss, loss_grad: empty outside a fit
        self.logger: Callable = print
        self.model_config: dict | None = None  # how `export` rebuilds the model; set by the learner factories
        self.small_convs = True
        self.reuse_memory = True
        self.add_cbs([cb() for cb in DEFAULT_CALLBACKS] if default_cbs else [])
        if default_cbs and getattr(model, "channels_last_where_faster", False) is True:
            self.add_cb(ChannelsLastWhereFaster())
        self.add_cbs(cbs)
        self("after_create")

    # --- metrics and events --------------------------------------------------------------------
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

    def __call__(self, event: str) -> None:
        """Fire ``event`` on every callback that handles it, in ascending order."""
        if self._handlers is None:  # rebuilt only when the callbacks change
            ordered = sorted(self.cbs, key=lambda c: c.order)
            self._handlers = {e: [cb for cb in ordered if hasattr(cb, e)] for e in EVENTS}
        for cb in self._handlers[event]:
            cb(event)

    # --- the loop ------------------------------------------------------------------------------
    def events(self, name: str) -> "_EventScope":
        """A ``with`` block for one part of the loop (``'fit'``, ``'epoch'``, ``'train'``, ``'validate'``,
        ``'batch'``, ``'backward'``, ``'step'``): its cancel exception becomes ``after_cancel_<name>``, and
        ``after_<name>`` fires when the block ends, cancelled or not (not on an error). The block fires
        ``before_<name>`` itself, first thing, so that a cancel raised there skips the block.

        Example:
            >>> with learn.events("backward"):
            ...     learn("before_backward")
            ...     learn.loss_grad.backward()
        """
        return _EventScope(self, name)

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
        self._prepare_fit(n_epoch, lr, wd, reset_opt, start_epoch)
        # under torchrun: data-parallel (DistributedTrainer); large CPU tensors reuse the memory freed before them
        with self.added_cbs(self._with_distributed(cbs)), reuse_freed_memory(getattr(self, "reuse_memory", True)):
            try:
                with self.events("fit"):
                    self("before_fit")
                    self._restore_callback_states()  # a resumed fit: the checkpoint's callback state
                    for epoch in range(self.start_epoch, self.n_epoch):
                        self.epoch = epoch
                        with self.events("epoch"):
                            self("before_epoch")
                            self._one_pass(self.dls.train, "train")
                            self._one_pass(self.dls.valid, "validate")
            except BaseException:  # an error or Ctrl-C: let callbacks release autocast, files, bars
                for cb in self.cbs:
                    if hasattr(cb, "cleanup"):
                        cb.cleanup()
                    cb.run = True
                raise
            for cb in self.cbs:  # a callback silenced for one fit (run=False) runs again in the next
                cb.run = True
            self._end_cleanup()

    def _prepare_fit(self, n_epoch: int, lr: Any, wd: float | None, reset_opt: bool, start_epoch: int) -> None:
        if not isinstance(n_epoch, numbers.Integral) or isinstance(n_epoch, bool) or n_epoch < 0:
            raise ValueError(f"`n_epoch` must be a non-negative integer; received: n_epoch={n_epoch!r}")
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
        self.n_epoch, self.start_epoch = int(n_epoch), start_epoch

    def _one_pass(self, dl: Any, name: str) -> None:
        """One pass over ``dl``: ``name`` is ``'train'`` or ``'validate'`` (without gradients).

        A ``before_<name>`` callback may replace ``learn.dl`` (data-parallel training reads its rank's share).
        """
        self.dl = dl
        with torch.no_grad() if name == "validate" else contextlib.nullcontext(), self.events(name), \
                small_convs(self.model, getattr(self, "small_convs", True) and not is_compiled(self.model)), \
                reuse_freed_memory(getattr(self, "reuse_memory", True)):
            self(f"before_{name}")
            self.n_iter = len(self.dl)
            for i, batch in enumerate(self.dl):
                self.one_batch(i, batch)

    def one_batch(self, i: int, batch: tuple) -> None:
        """Run batch number ``i``: split it into ``xb``/``yb`` (``dls.n_inp`` inputs), then `train_step`
        between ``before_batch`` and ``after_batch``."""
        self.iter = i
        batch = as_members(batch)  # a loader over single values yields tensors
        n_inp = self.dls.n_inp if getattr(self.dls, "n_inp", None) else max(1, len(batch) - 1)
        self.xb, self.yb = tuple(batch[:n_inp]), tuple(batch[n_inp:])
        with self.events("batch"):
            self("before_batch")
            self.train_step()

    def train_step(self) -> None:
        """The step of one batch: forward, `compute_loss`, and in training backward and the optimizer step.

        It runs for validation batches too (``self.training`` is False), stopping after the loss. Callbacks
        hear ``after_pred``, ``after_loss``, ``before_backward``/``after_backward`` and
        ``before_step``/``after_step``; an override keeps those events where it keeps those parts (see the
        class docstring for an example). In a data-parallel fit the training forward runs through
        ``wrapped_model`` (the DDP wrapper of ``model``), which is what averages the gradients over processes:
        an override calls the model the way this body does.
        """
        # ``wrapped_model``: the DistributedDataParallel wrapper of ``model`` in a data-parallel fit
        model = self.wrapped_model if self.training and self.wrapped_model is not None else self.model
        self.pred = model(*self.xb)
        self("after_pred")
        if self.yb:
            self.loss_grad = self.compute_loss(self.pred, *self.yb)
            self.loss = self.loss_grad.detach()
        self("after_loss")
        if not self.training or not self.yb:
            return
        with self.events("backward"):
            self("before_backward")
            self.loss_grad.backward()
        with self.events("step"):
            self("before_step")
            self.opt.step()
        self.opt.zero_grad()

    def compute_loss(self, pred: Any, *yb: Any) -> torch.Tensor:
        """The loss of a batch, to backpropagate: ``loss_func(pred, *yb)``. Override for extra terms."""
        return self.loss_func(pred, *yb)

    @property
    def x(self) -> Any:
        """The batch's input (``xb[0]`` when there is one input, else the tuple ``xb``)."""
        return self.xb[0] if len(self.xb) == 1 else self.xb

    @property
    def y(self) -> Any:
        """The batch's target (``yb[0]`` when there is one target, else the tuple ``yb``)."""
        return self.yb[0] if len(self.yb) == 1 else self.yb

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

    def summary(self) -> str:
        """A table of the model's layers, output shapes and parameters, then optimizer, loss and callbacks."""
        from .callbacks.summary import learner_summary
        with uncompiled(self):
            return learner_summary(self)

    def to_onnx(self, path: str | Path, dynamic_batch: bool = True, opset: int | None = None) -> Path:
        """Write the model and its tensor preprocessing to an ONNX file: see `lamina.onnx.to_onnx`."""
        from .onnx import to_onnx
        with uncompiled(self):
            return to_onnx(self, path, dynamic_batch=dynamic_batch, opset=opset)

    def __repr__(self) -> str:
        return f"Learner(model={type(self.model).__name__}, loss={type(self.loss_func).__name__}, cbs={self.cbs})"


def _loss_from_data(dls: Any) -> Callable | None:
    """The data's loss: ``dls.loss_func``, else built from ``dls.loss_config`` (data layers describe, not build)."""
    loss = getattr(dls, "loss_func", None)
    config = getattr(dls, "loss_config", None)
    return loss if loss is not None else (loss_from_config(config) if config else None)
