"""Progress: a tqdm bar per pass over a loader and the epoch table (text in a terminal, HTML in a notebook)."""

from __future__ import annotations

import sys
from typing import Any

from ..core import rank_distrib
from .core import Callback, noop

__all__ = ["ProgressCallback", "format_row", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where the table is shown as HTML)."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def format_row(values: list, widths: list[int]) -> str:
    """One text row of the epoch table: floats with 6 decimals, columns left-aligned."""
    cells = [f"{v:.6f}" if isinstance(v, float) else str(v) for v in values]
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths))


class ProgressCallback(Callback):
    """Shows a progress bar over batches (comment: the smoothed loss) and writes one table row per epoch.

    Only rank 0 prints when training on several processes.
    """

    order = 60
    show_bars = True

    def before_fit(self) -> None:
        self.active = rank_distrib() == 0
        self.bar = None
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
        if self._saved_logger is noop:  # inside learn.no_logging()
            return
        if in_notebook():
            return self._write_html(row)
        if not self._header_written:
            self._print(format_row(self.names, self.widths))
            self._header_written = True
        self._print(format_row(row, self.widths))

    def _print(self, line: str) -> None:
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
        self._open_bar("train")

    def before_validate(self) -> None:
        self._open_bar("valid")

    def _open_bar(self, desc: str) -> None:
        if not getattr(self, "active", False) or not self.show_bars:
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
        self._close_bar()

    def after_validate(self) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()
            self.bar = None

    def after_fit(self) -> None:
        self._close_bar()
        self.learn.logger = self._saved_logger
        self._handle = None

    def cleanup(self) -> None:
        """A failed fit: close the bar and give the learner its logger back."""
        self._close_bar()
        if hasattr(self, "_saved_logger"):
            self.learn.logger = self._saved_logger

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("bar", "_handle")}
