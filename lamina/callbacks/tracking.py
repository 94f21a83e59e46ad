"""What the experiment-tracking callbacks (TensorBoard, W&B, MLflow) share: the base class that decides when to
log, the fit's hyper-parameters, the epoch's metrics, and a few predictions to show.

`TrackingBase` does the bookkeeping once: it runs on rank 0 only, stays silent during ``lr_find`` and outside a
fit (``validate``/``get_preds`` fire batch events too), buffers the per-step training loss and hyper-parameters
(the loss stays a tensor until a flush, so logging does not wait for the GPU every batch), and hands rows to its
subclass through four methods: `start_run`, `log_steps`, `log_epoch`, `end_run`.

Example (a logger of your own):
    >>> class PrintTracker(TrackingBase):
    ...     def log_epoch(self, metrics, step): print(step, metrics)
    >>> learn.fit(2, cbs=PrintTracker())
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from types import ModuleType
from typing import Any

import torch

from ..core import as_members, rank_distrib
from .core import Callback
from .recorder import Recorder
from .schedule import LRFinder, ParamScheduler

__all__ = ["TrackingBase", "check_library", "import_library", "fit_hparams", "epoch_metrics", "prediction_samples"]


def check_library(module: str, package: str, extra: str, who: str) -> None:
    """Fail now, without importing it, when ``module`` is not installed.

    Raises:
        ImportError: naming the package and the lamina extra that installs it.
    """
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise ImportError(f"{who} needs the `{package}` package, which is not installed: "
                          f"pip install 'lamina[{extra}]'")


def import_library(module: str, package: str, extra: str, who: str) -> ModuleType:
    """Import ``module``; a missing package gives an error that names the lamina extra installing it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise  # the library is there but one of its own dependencies is broken: show that error as it is
        raise ImportError(f"{who} needs the `{package}` package, which is not installed: "
                          f"pip install 'lamina[{extra}]'") from e


def _name_of(obj: Any) -> str:
    func = getattr(obj, "func", obj)  # a functools.partial names its function
    return getattr(func, "__name__", type(func).__name__)


def _peak_lr(learn: Any) -> float | None:
    """The largest learning rate of the last param group this fit will use (a schedule's top, else the lr)."""
    for cb in learn.cbs:
        sched = cb.scheds.get("lr") if isinstance(cb, ParamScheduler) else None
        if sched is not None:  # schedules are pure functions of progress: 101 points find one-cycle's top
            values = [sched(i / 100) for i in range(101)]
            return max(float(v[-1] if isinstance(v, (list, tuple)) else v) for v in values)
    return learn.opt.hypers[-1].get("lr") if learn.opt is not None else None


def fit_hparams(learn: Any) -> dict[str, Any]:
    """The hyper-parameters of the fit about to run, by name: ``lr`` (the peak), ``bs``, ``epochs``, ``opt``,
    ``wd``, ``loss_func``, ``model``, ``n_params`` and, for learners built by a lamina factory, ``arch``.

    Values are numbers or text (what every tracker accepts); unknown ones are left out.
    """
    hypers = learn.opt.hypers[-1] if learn.opt is not None else {}
    config = getattr(learn, "model_config", None) or {}
    arch = (config.get("kwargs") or {}).get("arch")
    train = getattr(learn.dls, "train", None)
    values = {"lr": _peak_lr(learn), "bs": getattr(train, "bs", None), "epochs": learn.n_epoch,
              "opt": _name_of(learn.opt_func), "wd": hypers.get("wd"), "loss_func": _name_of(learn.loss_func),
              "model": type(learn.model).__name__, "arch": arch if isinstance(arch, str) else None,
              "n_params": sum(p.numel() for p in learn.model.parameters() if p.requires_grad)}
    return {k: v for k, v in values.items() if v is not None}


def epoch_metrics(learn: Any) -> dict[str, float]:
    """The epoch's row of the Recorder (``train_loss``, ``valid_loss``, metrics) without ``epoch`` and ``time``."""
    recorder = learn.recorder
    return {name: float(value) for name, value in zip(recorder.metric_names, recorder.log)
            if name not in ("epoch", "time") and isinstance(value, (int, float))}


def _label(value: torch.Tensor, vocab: list | None) -> str:
    """One target or prediction as text: a class name, the names of a multi-label vector, or the numbers."""
    value = value.detach().cpu()
    if vocab is not None and value.ndim == 0 and not value.is_floating_point() and 0 <= int(value) < len(vocab):
        return str(vocab[int(value)])
    if vocab is not None and value.ndim == 1 and len(value) == len(vocab) and value.dtype == torch.bool:
        return ";".join(str(vocab[i]) for i in torch.nonzero(value).flatten().tolist())
    numbers = value.flatten().tolist()
    text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in numbers[:8])
    return text + (", ..." if len(numbers) > 8 else "")


def _as_images(x: Any) -> torch.Tensor | None:
    """A batch of images (N, C, H, W, C in 1 or 3) as floats in [0, 1], or None when ``x`` is not one."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        return None
    x = x.detach().cpu()
    return x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)


def prediction_samples(learn: Any, n: int, dl: Any = None) -> tuple[torch.Tensor | None, list[str], list[str]]:
    """Up to ``n`` items of ``dl`` (default: the validation loader) with the model's decoded predictions.

    Returns:
        ``(images, targets, predictions)``: images are (n, C, H, W) floats in [0, 1] when the first input is a
        batch of images (else None); targets and predictions are text (class names where the data has a vocab).
    """
    dl = dl if dl is not None else learn.dls.valid
    vocab = getattr(learn.dls, "vocab", None)
    act, decodes = getattr(learn.loss_func, "activation", None), getattr(learn.loss_func, "decodes", None)
    images, targets, preds = [], [], []
    was_training, seen = learn.model.training, getattr(dl, "epochs_seen", None)
    learn.model.eval()
    try:
        with torch.no_grad():
            for batch in map(as_members, dl):
                n_inp = getattr(learn.dls, "n_inp", None) or max(1, len(batch) - 1)
                out = learn.model(*batch[:n_inp])
                out = act(out) if act is not None else out
                out = decodes(out) if decodes is not None else out
                shown = dl.decode(tuple(batch)) if hasattr(dl, "decode") else tuple(batch)
                images.append(_as_images(shown[0]))
                ys = batch[n_inp] if len(batch) > n_inp else [None] * len(out)
                targets += ["" if y is None else _label(y, vocab) for y in ys]
                preds += [_label(p, vocab) for p in out]
                if len(preds) >= n:
                    break
    finally:
        learn.model.train(was_training)
        if seen is not None:  # a look at the data is not an epoch: exact resume counts epochs
            dl.epochs_seen = seen
    kept = None if any(i is None for i in images) or not images else torch.cat(images)[:n]
    return kept, targets[:n], preds[:n]


class TrackingBase(Callback):
    """Base of the experiment-tracking callbacks: when to log, and the rows to log.

    Subclasses implement `start_run` (open or join the run, log hyper-parameters), `log_steps` (per training
    step), `log_epoch` (per epoch) and `end_run`; each runs on rank 0 only, inside a fit that is not ``lr_find``.

    Attributes:
        log_every_step: whether `log_steps` is used (the loss and hyper-parameters of every training batch).
        flush_every: the steps kept before `log_steps` is called (also called at the end of each training pass).
        step_base: the step number before this fit's first batch (set by `start_run` to continue a run).
    """

    order = Recorder.order + 1  # after the Recorder: the epoch's row and the smoothed loss are written
    log_every_step: bool = True
    flush_every: int = 100

    def __init__(self):
        super().__init__()
        self.active, self.step_base, self._rows = False, 0, []

    @property
    def step(self) -> int:
        """The step of the last training batch (1 for the first), counted from the start of the run."""
        return self.step_base + self.learn.train_iter

    def before_fit(self) -> None:
        learn = self.learn
        self.active = rank_distrib() == 0 and not any(isinstance(c, LRFinder) for c in learn.cbs)
        if not self.active:
            return
        if not isinstance(getattr(learn, "recorder", None), Recorder):
            self.active = False
            raise ValueError(f"{type(self).__name__} logs what the Recorder records, but this Learner has none: "
                             "create the Learner with default_cbs=True (the default) or add a Recorder()")
        self._rows = []
        try:
            self.start_run()
        except BaseException:
            self.active = False
            raise

    def after_batch(self) -> None:
        learn = self.learn
        if not (self.active and self.log_every_step and learn.training) or learn.smooth_loss is None:
            return
        hypers = {f"{k}_{i}": float(v) for i, h in enumerate(learn.opt.hypers) for k, v in h.items()}
        self._rows.append((self.step, torch.as_tensor(learn.smooth_loss).detach().float().reshape(()), hypers))
        if len(self._rows) >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        losses = torch.stack([loss.cpu() for _, loss, _ in self._rows]).tolist()  # one device sync per flush
        rows = [(step, {"train_loss": loss, **hypers}) for (step, _, hypers), loss in zip(self._rows, losses)]
        self._rows = []
        self.log_steps(rows)

    def after_train(self) -> None:
        if self.active:
            self._flush()

    def after_epoch(self) -> None:
        if self.active and not self.learn.recorder.cancelled:
            self.log_epoch(epoch_metrics(self.learn), self.step)

    def after_fit(self) -> None:
        self._close(failed=False)

    def cleanup(self) -> None:
        """A fit ended with an error (or Ctrl-C): write what is buffered and close the run as failed."""
        self._close(failed=True)

    def _close(self, failed: bool) -> None:
        if not self.active:
            return
        self.active = False
        try:
            try:
                self._flush()
            finally:
                self.end_run(failed)
        except Exception as e:
            if not failed:
                raise
            # the fit's own error is the one to see: a tracker failing to close must not replace it
            warnings.warn(f"{type(self).__name__} could not close its run after the fit failed: {e!r}")

    # --- what a subclass writes ------------------------------------------------------------------
    def start_run(self) -> None:
        """Open (or join) the run and log the fit's hyper-parameters (`fit_hparams`)."""

    def log_steps(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        """Log ``(step, {"train_loss": ..., "lr_0": ..., "mom_0": ...})`` rows, in step order."""

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        """Log the epoch's metrics (`epoch_metrics`) at training step ``step``."""

    def end_run(self, failed: bool) -> None:
        """Write what is left and close what `start_run` opened (``failed``: the fit raised)."""
