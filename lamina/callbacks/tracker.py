"""Callbacks that watch a metric: early stopping, keeping the best model, lowering the lr on a plateau."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from .core import Callback, CancelFitException
from .schedule import LRFinder

__all__ = ["TrackerCallback", "EarlyStoppingCallback", "SaveModelCallback", "ReduceLROnPlateau"]


class TrackerCallback(Callback):
    """Tracks ``monitor`` (a column of the epoch table) after each epoch.

    Args:
        monitor: the name to watch, one of ``learn.recorder.metric_names``.
        comp: ``operator.lt`` / ``np.less`` (lower is better) or ``gt``; default: lower for names containing
            'loss' or 'error', higher otherwise.
        min_delta: the least change that counts as an improvement.
        reset_on_fit: forget the best value at each fit.

    Its state (`state_dict`: the best value, and the epochs waited for patience callbacks) goes into
    checkpoints, so a fit resumed with ``learn.load(..., resume=True)`` goes on from it. A checkpoint
    written during ``after_epoch`` by a callback that runs before this one (`SaveModelCallback`) holds the
    state as it will be once this epoch's value is counted, as a checkpoint written after the epoch would.
    """

    order = 60

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 reset_on_fit: bool = True):
        super().__init__()
        if comp is None:
            comp = operator.lt if ("loss" in monitor or "error" in monitor) else operator.gt
        if comp in (operator.lt,) or getattr(comp, "__name__", "") == "less":
            min_delta = -min_delta
        self.monitor, self.comp, self.min_delta, self.reset_on_fit = monitor, comp, min_delta, reset_on_fit
        self.best = None
        self.rows_tracked = 0  # rows of the recorder's table counted so far in this fit

    def before_fit(self) -> None:
        if any(isinstance(c, LRFinder) for c in self.learn.cbs):  # lr_find is not training
            self.run = False
            return
        names = self.learn.recorder.metric_names
        if self.monitor not in names:
            raise ValueError(f"`monitor` must be one of the recorded values {names[1:-1]}; received: "
                             f"monitor={self.monitor!r}")
        if self.reset_on_fit or self.best is None:
            self.best = math.inf if self.comp(0, 1) else -math.inf
        self.new_best, self.rows_tracked = False, 0

    def after_epoch(self) -> None:
        state = self._next_state()
        self.best, self.new_best = state["best"], state["new_best"]
        self.rows_tracked = len(self.learn.recorder.values)
        if self.new_best:
            self.new_best_epoch = self.learn.epoch

    def _next_state(self) -> dict:
        """The state once the last row of the table is counted (computed, nothing changed)."""
        value = self.learn.recorder.metric_value(self.monitor)
        new_best = value is not None and self.comp(value - self.min_delta, self.best)
        return {"best": value if new_best else self.best, "new_best": new_best}

    def state_dict(self) -> dict:
        """``{'best': ...}`` (and ``'wait'`` for patience callbacks); ``{}`` before any fit."""
        if self.best is None:
            return {}
        pending = self.learn is not None and len(self.learn.recorder.values) > self.rows_tracked
        state = self._next_state() if pending else self._current_state()
        state.pop("new_best", None)
        return state

    def _current_state(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a checkpoint's best value (called by a resumed fit after ``before_fit``)."""
        self.best = float(state["best"])


class _PatienceCallback(TrackerCallback):
    """A tracker that acts (`on_plateau`) after ``patience`` epochs without improvement."""

    def __init__(self, monitor: str, comp: Callable | None, min_delta: float, patience: int, reset_on_fit: bool):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience, self.wait = patience, 0

    def before_fit(self) -> None:
        self.wait = 0
        super().before_fit()

    def after_epoch(self) -> None:
        super().after_epoch()
        self.wait = 0 if self.new_best else self.wait + 1
        if self.wait >= self.patience:
            self.on_plateau()

    def _next_state(self) -> dict:
        state = super()._next_state()
        state["wait"] = 0 if state["new_best"] else self.wait + 1
        return state

    def _current_state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a checkpoint's best value and epochs waited."""
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))

    def on_plateau(self) -> None:
        raise NotImplementedError


class EarlyStoppingCallback(_PatienceCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs."""

    order = 63

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 patience: int = 1, reset_on_fit: bool = True):
        super().__init__(monitor, comp, min_delta, patience, reset_on_fit)

    def on_plateau(self) -> None:
        self.learn.logger(f"No improvement since epoch {self.learn.epoch - self.wait}: early stopping")
        raise CancelFitException()


class SaveModelCallback(TrackerCallback):
    """Save the model when ``monitor`` improves (or every epoch), and reload the best at the end.

    Checkpoints go to ``learn.path/learn.model_dir/<fname>.pth`` (``<fname>_<epoch>.pth`` with
    ``every_epoch``). As in fastai, ``with_opt=False`` by default: the files hold the weights and the
    training position but not the optimizer, so they cannot resume a fit (``learn.load(f, resume=True)``
    refuses them). Pass ``with_opt=True`` to keep checkpoints that resume exactly::

        learn.fit_one_cycle(10, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
        learn.load("model_4", resume=True); learn.fit_one_cycle(10, start_epoch=learn.epochs_done)
    """

    order = 61

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 fname: str = "model", every_epoch: bool | int = False, at_end: bool = False,
                 with_opt: bool = False, reset_on_fit: bool = True):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt

    def after_epoch(self) -> None:
        if self.every_epoch:
            if (self.learn.epoch % int(self.every_epoch)) == 0 or self.learn.epoch == self.learn.n_epoch - 1:
                self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        super().after_epoch()
        if self.new_best:
            self.learn.save(self.fname, with_opt=self.with_opt)

    def state_dict(self) -> dict:
        """The best value (``{}`` with ``every_epoch``, which saves every epoch and tracks nothing)."""
        return {} if self.every_epoch else super().state_dict()

    def after_fit(self) -> None:
        if self.at_end:
            self.learn.save(self.fname, with_opt=self.with_opt)
        elif not self.every_epoch and self.best is not None and math.isfinite(self.best):
            self.learn.load(self.fname, with_opt=self.with_opt)


class ReduceLROnPlateau(_PatienceCallback):
    """Divide the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs."""

    order = 62

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 patience: int = 1, factor: float = 10.0, min_lr: float = 0.0, reset_on_fit: bool = True):
        super().__init__(monitor, comp, min_delta, patience, reset_on_fit)
        self.factor, self.min_lr = factor, min_lr

    def _next_state(self) -> dict:
        state = super()._next_state()
        if state["wait"] >= self.patience:  # `on_plateau` starts the count again
            state["wait"] = 0
        return state

    def on_plateau(self) -> None:
        old = [h["lr"] for h in self.learn.opt.hypers]
        self.learn.opt.set_hyper("lr", [max(lr / self.factor, self.min_lr) for lr in old])
        self.wait = 0
        self.learn.logger(f"Epoch {self.learn.epoch}: reducing lr to {self.learn.opt.hypers[-1]['lr']:.3g}")
