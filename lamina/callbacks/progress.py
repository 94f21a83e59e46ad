"""Progress: a tqdm bar per pass over a loader and the epoch table (text in a terminal, HTML in a notebook).

What is shown follows `lamina.config.progress_mode`: bars and the table in a terminal or a notebook; when
standard error is a file or a pipe (CI, ``nohup``, ``2> log``), the table alone, a line per epoch, so logs hold
no runs of redrawn bars; ``LAMINA_PROGRESS=bar|line|none`` overrides.
"""

from __future__ import annotations

import sys
from typing import Any

from ..config import in_notebook, progress_mode
from ..core import rank_distrib
from .core import Callback, noop

__all__ = ["ProgressCallback", "format_row", "in_notebook"]


def format_row(values: list, widths: list[int]) -> str:
    """One text row of the epoch table: floats with 6 decimals, columns left-aligned."""
    cells = [f"{v:.6f}" if isinstance(v, float) else str(v) for v in values]
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths))


class ProgressCallback(Callback):
    """Shows a progress bar over batches (comment: the smoothed loss) and writes one table row per epoch.

    The mode (`lamina.config.progress_mode`) is read at the start of each fit: ``'bar'`` both, ``'line'`` the
    rows only, ``'none'`` nothing. A bar opens with a pass's first batch, so a pass skipped before it starts
    (``lr_find`` skips validation) leaves no empty bar. Only rank 0 prints when training on several processes.
    """

    order = 60
    show_bars = True

    def before_fit(self) -> None:
        self.active = rank_distrib() == 0
        self.bar, self._pending = None, None
        self.mode = progress_mode()
        self._saved_logger = self.learn.logger
        if not self.active:
            return
        recorder = getattr(self.learn, "recorder", None)
        names = recorder.metric_names if recorder is not None else []
        self.widths = [max(len(n), 9) for n in names]
        self.html_rows: list[list[str]] = []
        self.names = names
        self._header_written = False
        original = self.learn.logger
        # the table replaces plain printing of rows; other messages still go to the original logger
        self.learn.logger = lambda row: self._write_row(row) if isinstance(row, list) else original(row)

    def _write_row(self, row: list) -> None:
        if self._saved_logger is noop or self.mode == "none":  # inside learn.no_logging(), or LAMINA_PROGRESS=none
            return
        if in_notebook():
            return self._write_html(row)
        if not self._header_written:
            self._print(format_row(self.names, self.widths))
            self._header_written = True
        self._print(format_row(row, self.widths))

    def _print(self, line: str) -> None:
        if self.mode != "bar":
            print(line, flush=True)  # no bar to keep clear of; flushed so that a log file follows the fit
            return
        from tqdm.auto import tqdm
        tqdm.write(line)

    def _write_html(self, row: list) -> None:
        from IPython.display import HTML, display
        self.html_rows.append([f"{v:.6f}" if isinstance(v, float) else str(v) for v in row])
        head = "".join(f"<th>{n}</th>" for n in self.names)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in self.html_rows)
        table = HTML(f"<table border='1' class='dataframe'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if getattr(self, "_handle", None) is None:
            self._handle = display(table, display_id=True)
        else:
            self._handle.update(table)

    def before_train(self) -> None:
        self._pending = "train"

    def before_validate(self) -> None:
        self._pending = "valid"

    def before_batch(self) -> None:
        if getattr(self, "_pending", None) is not None:
            self._open_bar(self._pending)
            self._pending = None

    def _open_bar(self, desc: str) -> None:
        if not getattr(self, "active", False) or not self.show_bars or self.mode != "bar":
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=len(self.learn.dl), desc=f"epoch {self.learn.epoch} {desc}", leave=False,
                        file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def after_batch(self) -> None:
        if getattr(self, "bar", None) is None:
            return
        self.bar.update(1)
        # the loss shown is read every 20 batches: reading it waits for the GPU to catch up
        if self.learn.training and self.learn.smooth_loss is not None and self.learn.iter % 20 == 0:
            self.bar.set_postfix_str(f"{float(self.learn.smooth_loss):.4f}", refresh=False)

    def after_train(self) -> None:
        self._close_bar(done=True)

    def after_validate(self) -> None:
        self._close_bar(done=True)

    def _close_bar(self, done: bool = False) -> None:
        """Close the bar; ``done``: the pass ended as planned (a cancel included), so a notebook bar left short
        of its total is hidden like a full one instead of staying as a red, unfinished bar."""
        self._pending = None
        if getattr(self, "bar", None) is not None:
            if done:
                self.bar.total = self.bar.n
            self.bar.close()
            self.bar = None

    def after_fit(self) -> None:
        self._close_bar(done=True)
        self.learn.logger = self._saved_logger
        self._handle = None

    def cleanup(self) -> None:
        """A failed fit: close the bar and give the learner its logger back."""
        self._close_bar()
        if hasattr(self, "_saved_logger"):
            self.learn.logger = self._saved_logger

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("bar", "_handle")}
