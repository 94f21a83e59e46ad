"""Fitting policies (one-cycle, flat-cos, SGDR, fine-tuning), the hyper-parameter scheduler and the LR finder.

`ScheduleMixin` gives the Learner its ``fit_*`` methods; each builds pure schedules
(`lamina.schedules`) and hands them to a `ParamScheduler` for one `fit`.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..core import listify
from ..distributed import world_size
from ..schedules import SchedCos, SchedNo, combine_scheds, combined_cos
from .core import Callback, CancelFitException, CancelValidException

__all__ = ["ParamScheduler", "LRFinder", "ScheduleMixin", "SuggestedLRs", "SuggestionMethod", "valley", "slide",
           "minimum", "steep", "plot_lr_find"]


class ParamScheduler(Callback):
    """Sets each scheduled hyper-parameter from ``learn.pct_train`` before every training batch.

    Args:
        scheds: ``{hyper name: schedule}``; a schedule maps progress in [0, 1] to a value (or one per group).
    """

    order = 60
    run_valid = False

    def __init__(self, scheds: dict[str, Callable[[float], Any]]):
        super().__init__()
        self.scheds = scheds

    def before_fit(self) -> None:
        recorder = getattr(self.learn, "recorder", None)
        self.hps = recorder.hps if recorder is not None else {}
        for name in self.scheds:
            self.hps.setdefault(name, [])

    def before_batch(self) -> None:
        for name, sched in self.scheds.items():
            value = sched(self.learn.pct_train)
            self.learn.opt.set_hyper(name, value)
            self.hps[name].append(value[-1] if isinstance(value, list) else value)


class LRFinder(Callback):
    """Raises the learning rate exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` batches.

    The model's and optimizer's states are copied before and restored after, so `lr_find` leaves
    the learner as it found it. Validation is skipped; the run stops early when the smoothed loss
    passes 4× its best (``stop_div``) or becomes NaN.
    """

    order = 60
    run_valid = False

    def __init__(self, start_lr: float | Sequence[float] = 1e-7, end_lr: float | Sequence[float] = 10,
                 num_it: int = 100, stop_div: bool = True):
        super().__init__()
        self.start_lr, self.end_lr = np.asarray(start_lr, float), np.asarray(end_lr, float)
        self.num_it, self.stop_div = num_it, stop_div

    def before_fit(self) -> None:
        learn = self.learn
        self.saved_model = {k: v.detach().to("cpu", copy=True) for k, v in learn.model.state_dict().items()}
        self.saved_opt = _cpu_copy(learn.opt.state_dict())
        self.saved_epochs = [dl.epochs_seen for dl in learn.dls.loaders]
        self.best = math.inf
        self.num_it = max(self.num_it, 6)

    def before_batch(self) -> None:
        pos = self.learn.train_iter / self.num_it
        lr = self.start_lr * (self.end_lr / self.start_lr) ** pos
        self.learn.opt.set_hyper("lr", lr.tolist() if lr.ndim else float(lr))

    def after_batch(self) -> None:
        smooth = self.learn.smooth_loss
        smooth = float(smooth) if smooth is not None else math.nan  # lr_find needs the value every batch
        if smooth < self.best:
            self.best = smooth
        if (self.stop_div and (smooth > 4 * self.best or math.isnan(smooth))) or self.learn.train_iter >= self.num_it:
            raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()

    def after_fit(self) -> None:
        """Put back the weights, optimizer state and loader counters saved at the start."""
        learn = self.learn
        learn.opt.zero_grad()
        learn.model.load_state_dict(self.saved_model)
        learn.opt.load_state_dict(self.saved_opt)
        for dl, seen in zip(learn.dls.loaders, self.saved_epochs):
            dl.epochs_seen = seen

    cleanup = after_fit  # interrupted (Ctrl-C, an error): the weights are restored all the same


def _cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


# --- suggestions from an LR-finder curve ---------------------------------------------------------
def valley(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[float, tuple[float, float]]:
    """The lr about halfway down the longest strictly decreasing stretch of the loss curve."""
    n = len(losses)
    run = [1] * n  # run[i]: longest strictly decreasing subsequence ending at i
    for i in range(1, n):
        run[i] = 1 + max((run[j] for j in range(i) if losses[j] > losses[i]), default=0)
    end = int(np.argmax(run))
    start = end - run[end]
    length = end - start
    idx = max(start + int(length / 3) + int(length / 6), 0)
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


def slide(lrs: Sequence[float], losses: Sequence[float], num_it: int, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> tuple[float, tuple[float, float]]:
    """Slide a window of ``lr_diff`` points back from the end until the loss slope flattens below ``thresh``."""
    grad = np.gradient(np.asarray(losses, float))
    right, left = len(losses) - 1, len(losses) - 1 - lr_diff
    chosen = max(left, 0)
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        chosen = left
        right, left = right - 1, left - 1
    lr = float(lrs[chosen]) * adjust_value
    idx = int(np.argmin(np.abs(np.asarray(lrs) - lr)))
    return lr, (lr, float(losses[idx]))


def minimum(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[float, tuple[float, float]]:
    """A tenth of the lr at the lowest loss."""
    idx = int(np.argmin(losses))
    return float(lrs[idx]) / 10, (float(lrs[idx]), float(losses[idx]))


def steep(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[float, tuple[float, float]]:
    """The lr where the loss falls fastest against log(lr)."""
    grads = np.gradient(np.asarray(losses, float), np.log(np.asarray(lrs, float)))
    idx = int(np.argmin(grads))
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


class SuggestionMethod:
    """The suggestion functions by fastai's names: ``SuggestionMethod.Valley`` ..."""

    Valley, Slide, Minimum, Steep = staticmethod(valley), staticmethod(slide), staticmethod(minimum), staticmethod(steep)


def SuggestedLRs(names: Sequence[str], values: Sequence[float]) -> tuple:
    """A namedtuple of suggested learning rates, one field per suggestion function."""
    return namedtuple("SuggestedLRs", list(names))(*values)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], suggestions: dict[str, tuple] | None = None,
                 skip_end: int = 5, ax: Any = None) -> Any:
    """Loss against learning rate (log scale), with the suggested points marked; returns the figure."""
    from ..figures import subplots
    ax = ax if ax is not None else subplots()[1]
    end = len(lrs) - skip_end if len(lrs) > skip_end else len(lrs)
    ax.plot(lrs[:end], losses[:end])
    ax.set_xscale("log")
    ax.set_xlabel("Learning Rate")
    ax.set_ylabel("Loss")
    for (name, point), color in zip((suggestions or {}).items(), ["C1", "C2", "C3", "C4"]):
        ax.plot(*point, "o", color=color, label=name)
    if suggestions:
        ax.legend()
    return ax.figure


class ScheduleMixin:
    """The Learner's fitting policies."""

    def fit_one_cycle(self, n_epoch: int, lr_max: float | slice | list | None = None, div: float = 25.0,
                      div_final: float = 1e5, pct_start: float = 0.25, wd: float | None = None,
                      moms: tuple | None = None, cbs: Any = None, reset_opt: bool = False, start_epoch: int = 0) -> None:
        """One cycle: lr warms up (cosine) from ``lr_max/div`` to ``lr_max`` over ``pct_start`` of training,
        then anneals to ``lr_max/div_final``; momentum goes the opposite way (0.95 → 0.85 → 0.95)."""
        if not 0 <= pct_start <= 1:
            raise ValueError(f"`pct_start` must be between 0 and 1 (the share of warm-up); received: pct_start={pct_start}")
        if self.opt is None:
            self.create_opt()
        top = np.asarray(self.lr_per_group(self.lr if lr_max is None else lr_max))
        moms = self.moms if moms is None else moms
        scheds = {"lr": combined_cos(pct_start, (top / div).tolist(), top.tolist(), (top / div_final).tolist()),
                  "mom": combined_cos(pct_start, *moms)}
        self.fit(n_epoch, cbs=[ParamScheduler(scheds), *listify(cbs)], reset_opt=reset_opt, wd=wd,
                 start_epoch=start_epoch)

    def fit_flat_cos(self, n_epoch: int, lr: float | slice | list | None = None, div_final: float = 1e5,
                     pct_start: float = 0.75, wd: float | None = None, cbs: Any = None, reset_opt: bool = False,
                     start_epoch: int = 0) -> None:
        """A flat lr for ``pct_start`` of training, then cosine annealing to ``lr/div_final``."""
        if not 0 <= pct_start <= 1:
            raise ValueError(f"`pct_start` must be between 0 and 1 (the share at a flat lr); received: pct_start={pct_start}")
        if self.opt is None:
            self.create_opt()
        top = np.asarray(self.lr_per_group(self.lr if lr is None else lr))
        sched = combine_scheds([pct_start, 1 - pct_start], [SchedNo(top.tolist()), SchedCos(top.tolist(), (top / div_final).tolist())])
        self.fit(n_epoch, cbs=[ParamScheduler({"lr": sched}), *listify(cbs)], reset_opt=reset_opt, wd=wd,
                 start_epoch=start_epoch)

    def fit_sgdr(self, n_cycles: int, cycle_len: int, lr_max: float | slice | list | None = None, cycle_mult: int = 2,
                 cbs: Any = None, reset_opt: bool = False, wd: float | None = None, start_epoch: int = 0) -> None:
        """Cosine annealing with warm restarts: cycle i lasts ``cycle_len * cycle_mult**i`` epochs."""
        if self.opt is None:
            self.create_opt()
        top = self.lr_per_group(self.lr if lr_max is None else lr_max)
        n_epoch = cycle_len * (cycle_mult ** n_cycles - 1) // (cycle_mult - 1) if cycle_mult != 1 else cycle_len * n_cycles
        pcts = [cycle_len * cycle_mult ** i / n_epoch for i in range(n_cycles)]
        sched = combine_scheds(pcts, [SchedCos(top, [0.0] * len(top)) for _ in range(n_cycles)])
        self.fit(n_epoch, cbs=[ParamScheduler({"lr": sched}), *listify(cbs)], reset_opt=reset_opt, wd=wd,
                 start_epoch=start_epoch)

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, **kwargs: Any) -> None:
        """Transfer learning: ``freeze_epochs`` one-cycle epochs on the head alone, then ``epochs`` on the
        whole model with discriminative lrs ``slice(base_lr/2/lr_mult, base_lr/2)``."""
        self.freeze()
        self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, **kwargs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, **kwargs)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                show_plot: bool = True, suggest_funcs: Iterable[Callable] = (valley,)) -> tuple:
        """Try exponentially growing learning rates for ``num_it`` batches; return suggestions.

        The weights and optimizer state are restored afterwards.

        Returns:
            a ``SuggestedLRs`` namedtuple with one field per suggestion function (``valley`` by default).
        """
        if self.opt is None:
            self.create_opt()
        num_it = max(num_it, 6)
        n_epoch = num_it // max(len(self.dls.train) // world_size(), 1) + 1  # each rank reads 1/world of it
        finder = LRFinder(start_lr, end_lr, num_it, stop_div)
        with self.no_logging():
            self.fit(n_epoch, cbs=finder)
        lrs, losses = self.recorder.lrs, self.recorder.losses
        cut = slice(num_it // 10, -5 if len(losses) > num_it // 10 + 5 else None)
        lrs, losses = np.asarray(lrs[cut], float), np.asarray(losses[cut], float)
        finite = np.isfinite(losses)
        if not finite.all():
            stop = int(np.argmin(finite))
            lrs, losses = lrs[:stop], losses[:stop]
        if len(losses) < 2:
            raise RuntimeError(f"lr_find recorded only {len(losses)} usable points; raise `num_it` (received {num_it}) "
                               "or lower `start_lr`")
        funcs = list(suggest_funcs) if isinstance(suggest_funcs, (list, tuple)) else [suggest_funcs]
        results = {f.__name__: f(lrs, losses, num_it) for f in funcs}
        if show_plot:
            plot_lr_find(lrs.tolist(), losses.tolist(), {n: r[1] for n, r in results.items()})
        return SuggestedLRs(list(results), [r[0] for r in results.values()])
