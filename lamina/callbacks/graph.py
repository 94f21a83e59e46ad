"""`ShowGraphCallback`: the training and validation losses drawn after every epoch, over the whole fit's span.

In a notebook, one picture under the cell is redrawn after each epoch (no figure piles up). Elsewhere nothing
is shown and the figure is kept: ``cb.fig.savefig('losses.png')`` after the fit. Only rank 0 draws when training
on several processes; ``lr_find`` draws nothing.

Example:
    >>> learn = vision_learner(dls, resnet18, metrics=error_rate, cbs=ShowGraphCallback())
    >>> learn.fine_tune(2)
"""

from __future__ import annotations

import io
import math
from typing import Any

from ..config import in_notebook
from ..core import rank_distrib
from .core import Callback
from .schedule import LRFinder

__all__ = ["ShowGraphCallback"]


class ShowGraphCallback(Callback):
    """Draws the smoothed training loss per batch and the validation loss per epoch after each epoch (fastai's).

    The x axis spans every batch the fit will run and the y axis starts at 0, so the curves grow into a fixed
    frame. Attributes: ``fig``, the matplotlib figure of the last fit (None before one).
    """

    order = 65
    run_valid = False

    def __init__(self) -> None:
        super().__init__()
        self.fig: Any = None
        self._display: Any = None
        self.active = False

    def before_fit(self) -> None:
        learn = self.learn
        self.active = rank_distrib() == 0 and not any(isinstance(cb, LRFinder) for cb in learn.cbs) \
            and getattr(learn, "recorder", None) is not None
        if self.active:  # lr_find keeps the last fit's figure
            self.fig, self._display = None, None

    def after_epoch(self) -> None:
        if not self.active:
            return
        rec = self.learn.recorder
        losses = rec.losses
        points = _valid_points(rec)
        valid = [v for _, v in points]
        if not losses:
            return
        from matplotlib.figure import Figure

        if self.fig is None:
            self.fig = Figure(figsize=(6, 4))
            self.fig.add_subplot()
        ax = self.fig.axes[0]
        ax.clear()
        ax.plot(range(len(losses)), losses, label="train")
        if valid:
            ax.plot([i for i, _ in points], valid, label="valid", marker="o")
        per_epoch = len(losses) / max(len(rec.iters), 1)
        planned = int(round(per_epoch * (self.learn.n_epoch - getattr(self.learn, "start_epoch", 0))))
        ax.set_xlim(0, max(planned, len(losses)))
        finite = [v for v in (*losses, *valid) if math.isfinite(v)]
        if finite:  # the frame starts at 0 (or below, for a negative loss); a NaN or inf loss is left out of it
            low, high = min(0.0, min(finite)), max(0.0, max(finite))
            span = (high - low) or 1.0
            ax.set_ylim(low - 0.05 * span if low < 0 else 0.0, high + 0.05 * span)
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        if in_notebook():
            self._show()

    def _show(self) -> None:
        from IPython.display import Image, display

        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png", bbox_inches="tight")
        picture = Image(data=buffer.getvalue(), format="png")
        if self._display is None:
            self._display = display(picture, display_id=True)
        else:
            self._display.update(picture)


def _valid_points(rec: Any) -> list[tuple[int, float]]:
    """(batch count at the epoch's end, validation loss) for each epoch that has a finite one."""
    if "valid_loss" not in rec.metric_names:
        return []
    idx = rec.metric_names.index("valid_loss") - 1
    pairs = [(it, v[idx]) for it, v in zip(rec.iters, rec.values) if isinstance(v[idx], (int, float))]
    return [(it, float(v)) for it, v in pairs if math.isfinite(v)]
