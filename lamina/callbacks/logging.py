"""Loggers: the epoch table to a CSV file (others — TensorBoard, W&B, MLflow — come as extras)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..core import rank_distrib
from .core import Callback
from .schedule import LRFinder

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Append one row per epoch of the table to ``learn.path/fname`` (written as it goes, flushed each row).

    Args:
        fname: the file, relative to ``learn.path``.
        append: keep the rows of earlier fits (else the file is started anew at each fit).
    """

    order = 60

    def __init__(self, fname: str = "history.csv", append: bool = False):
        super().__init__()
        self.fname, self.append = Path(fname), append
        self.path: Path | None = None

    def before_fit(self) -> None:
        self.path = self.learn.path / self.fname  # kept after the fit, for read_log
        self.active = rank_distrib() == 0 and not any(isinstance(c, LRFinder) for c in self.learn.cbs)
        if not self.active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (self.append and self.path.exists())
        self.file = open(self.path, "w" if fresh else "a", newline="")
        self.writer = csv.writer(self.file)
        if fresh:
            self.writer.writerow(self.learn.recorder.metric_names)
            self.file.flush()

    def after_epoch(self) -> None:
        if getattr(self, "active", False) and not self.learn.recorder.cancelled:  # the Recorder (order 50) made the row
            row = self.learn.recorder.log
            self.writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row])
            self.file.flush()

    def after_fit(self) -> None:
        if getattr(self, "active", False):
            self.file.close()
            self.active = False

    cleanup = after_fit

    def read_log(self) -> Any:
        """The log as a pandas ``DataFrame``.

        Raises:
            ValueError: before any fit has written the file.
        """
        import pandas as pd
        if self.path is None:
            raise ValueError("Nothing logged yet: read_log works after a fit with this CSVLogger")
        return pd.read_csv(self.path)
