"""The Recorder: losses, learning rates and metrics of every batch and epoch, and their plots."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from ..core import as_float
from ..metrics import AvgLoss, AvgSmoothLoss
from .core import Callback

__all__ = ["Recorder"]


class Recorder(Callback):
    """Records per batch the smoothed training loss and the learning rate, per epoch the table row.

    Attributes:
        losses: smoothed training loss after each training batch.
        lrs: learning rate of the last param group at each training batch.
        iters: number of recorded batches at the end of each epoch.
        values: per epoch ``[train_loss, valid_loss, *metrics]``.
        hps: scheduled hyper-parameters per batch (filled by the scheduler), e.g. ``hps['lr']``.
        metric_names: the table's columns: ``epoch, train_loss, valid_loss, <metrics>, time``.
    """

    order = 50

    def __init__(self, add_time: bool = True, train_metrics: bool = False, valid_metrics: bool = True,
                 beta: float = 0.98):
        super().__init__()
        self.add_time, self.train_metrics, self.valid_metrics = add_time, train_metrics, valid_metrics
        self.loss, self.smooth_loss = AvgLoss(), AvgSmoothLoss(beta=beta)
        self.lrs, self._losses, self.iters, self.values, self.hps = [], [], [], [], {}
        self.log: list = []

    def before_fit(self) -> None:
        self.lrs, self._losses, self.iters, self.values, self.hps = [], [], [], [], {}
        self.smooth_loss.reset()
        self.learn.smooth_loss = None
        names = [m.name for m in self.learn.metrics]
        train_names = ["train_loss"] + ([f"train_{n}" for n in names] if self.train_metrics else [])
        valid_names = ["valid_loss"] + ([f"valid_{n}" for n in names] if self.train_metrics else names) \
            if self.valid_metrics else []
        self.metric_names = ["epoch", *train_names, *valid_names] + (["time"] if self.add_time else [])

    def state_dict(self) -> dict:
        """The running average of the training loss (``{}`` before any training batch)."""
        if not self.smooth_loss.count:
            return {}
        return {"smooth_loss": [self.smooth_loss.count, float(self.smooth_loss.val)]}

    def load_state_dict(self, state: dict) -> None:
        """Continue the running average of a resumed fit."""
        if "smooth_loss" in state:
            count, val = state["smooth_loss"]
            self.smooth_loss.count, self.smooth_loss.val = int(count), float(val)

    def before_epoch(self) -> None:
        self.epoch_start_time = time.time()
        self.log = [self.learn.epoch]
        self.cancelled = False

    def after_cancel_epoch(self) -> None:
        self.cancelled = True

    def before_train(self) -> None:
        self._reset_metrics()

    def before_validate(self) -> None:
        self._reset_metrics()

    def _reset_metrics(self) -> None:
        self.loss.reset()
        for m in self.learn.metrics:
            m.reset()

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.yb or learn.loss is None:
            return
        if learn.training:
            self.smooth_loss.accumulate(learn)
            # kept as tensors: converting each batch would wait for the GPU every batch
            learn.smooth_loss = self.smooth_loss.tensor_value
            self._losses.append(learn.smooth_loss)
            self.lrs.append(learn.opt.hypers[-1]["lr"])
            if self.train_metrics:
                for m in learn.metrics:
                    m.accumulate(learn)
        else:
            self.loss.accumulate(learn)
            if self.valid_metrics:
                for m in learn.metrics:
                    m.accumulate(learn)

    def after_train(self) -> None:
        self.log.append(self.smooth_loss.value)
        if self.train_metrics:
            self.log.extend(m.value for m in self.learn.metrics)

    def after_validate(self) -> None:
        if not self.valid_metrics:
            return
        self.log.append(self.loss.value)
        self.log.extend(m.value for m in self.learn.metrics)

    def after_epoch(self) -> None:
        if getattr(self, "cancelled", True):  # a skipped epoch has no row
            return
        self.log = [self.log[0], *(as_float(v) for v in self.log[1:])]
        self.values.append(self.log[1:])
        self.learn.final_record = self.values[-1]
        if self.add_time:
            self.log.append(_format_time(time.time() - self.epoch_start_time))
        self.iters.append(len(self._losses))
        self.learn.logger(list(self.log))

    @property
    def losses(self) -> list[float]:
        """The smoothed training loss after each training batch (floats)."""
        if self._losses and not isinstance(self._losses[-1], float):
            values = torch.stack([torch.as_tensor(v, dtype=torch.float32).cpu() for v in self._losses]).tolist()
            self._losses = values
        return self._losses

    def metric_value(self, name: str) -> float | None:
        """The last recorded value of ``name`` (one of `metric_names`), or None."""
        if not self.values or name not in self.metric_names:
            return None
        return self.values[-1][self.metric_names.index(name) - 1]

    # --- plots --------------------------------------------------------------------------------
    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, log: bool = False,
                  show_epochs: bool = False, ax: Any = None) -> Any:
        """Plot the smoothed training loss per batch and the validation loss per epoch.

        A fit of ``skip_start`` batches or fewer gets a warning and its whole curve, not an empty plot.

        Returns:
            The figure (``ax``'s when given), shown once in a notebook.
        """
        from ..figures import subplots
        if len(self.losses) <= skip_start:
            warnings.warn(f"plot_loss: the last fit recorded {len(self.losses)} training losses, no more than "
                          f"skip_start={skip_start}; plotting them all (pass a smaller skip_start to silence this)",
                          stacklevel=2)
            skip_start = 0
        ax = ax if ax is not None else subplots()[1]
        ax.plot(range(skip_start, len(self.losses)), self.losses[skip_start:], label="train")
        if show_epochs:
            for it in self.iters:
                ax.axvline(it, color="grey", ls=":")
        if with_valid and self.values and "valid_loss" in self.metric_names:
            idx = self.metric_names.index("valid_loss") - 1
            ax.plot(self.iters, [v[idx] for v in self.values], label="valid")
        if log:
            ax.set_yscale("log")
        ax.legend()
        return ax.figure

    def plot_lr_find(self, skip_end: int = 5, return_fig: bool = True, suggestions: dict | None = None) -> Any:
        """Loss against learning rate of the last `lr_find` (log scale); the figure when ``return_fig``."""
        from .schedule import plot_lr_find
        fig = plot_lr_find(self.lrs, self.losses, suggestions, skip_end=skip_end)
        return fig if return_fig else None

    def plot_sched(self, keys: list[str] | None = None, figsize: tuple | None = None) -> Any:
        """Plot the scheduled hyper-parameters (``lr``, ``mom`` ...) against the batch number."""
        from ..figures import subplots
        keys = keys or list(self.hps)
        if not keys:
            raise ValueError("Nothing was scheduled: plot_sched works after fit_one_cycle, fit_flat_cos or fit_sgdr")
        fig, axs = subplots(1, len(keys), figsize=figsize or (6 * len(keys), 4), squeeze=False)
        for ax, key in zip(axs[0], keys):
            ax.plot(self.hps[key])
            ax.set_ylabel(key)
        return fig


def _format_time(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
