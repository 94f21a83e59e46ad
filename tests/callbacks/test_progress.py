"""Progress output: the epoch table (header once, a row per epoch), bars opened and closed per pass, quiet
modes, rank-0 only output, and the learner's logger given back."""

import io
import pickle
import sys

import pytest

from lamina.callbacks import progress as progress_module
from lamina.callbacks.core import Callback
from lamina.callbacks.progress import ProgressCallback, format_row, in_notebook
from lamina.learner import Learner
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp


def tiny_learner():
    return Learner(synth_classification(n=64, bs=16), tiny_mlp(), metrics=accuracy)


def test_format_row_pads_columns_and_rounds_floats():
    assert format_row([0, 0.5, "00:01"], [5, 9, 5]) == "0      0.500000   00:01"
    assert not in_notebook()  # the tests run in a plain interpreter: text, not HTML


def test_the_table_has_one_header_and_a_row_per_epoch(capsys):
    learn = tiny_learner()
    learn.progress.show_bars = False
    learn.fit(2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"]
    assert learn.logger is print  # the table's logger is given back after the fit


def test_messages_that_are_not_rows_reach_the_original_logger():
    learn = tiny_learner()
    learn.progress.show_bars = False
    got = []
    learn.logger = got.append
    learn.fit(1, cbs=Callback(after_epoch=lambda l: l.logger("a message")))
    assert got == ["a message"]  # the row went to the table, the message to the logger


def test_a_bar_per_pass_closed_at_its_end(monkeypatch):
    monkeypatch.setenv("LAMINA_PROGRESS", "bar")  # pytest's captured stderr is no terminal: bars on purpose
    open_bars = []

    class BarSpy(Callback):
        order = 70  # after ProgressCallback (60) has updated its bar

        def after_batch(self):
            open_bars.append(self.learn.progress.bar is not None)

    learn = tiny_learner()
    with learn.no_logging():
        learn.fit(1, cbs=BarSpy())
    assert open_bars == [True] * 4 and learn.progress.bar is None
    with learn.no_bar(), learn.no_logging():
        open_bars.clear()
        learn.fit(1, cbs=BarSpy())
    assert open_bars == [False] * 4 and learn.progress.show_bars  # no_bar() puts the setting back


def test_only_rank_zero_writes(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "rank_distrib", lambda: 1)
    learn = tiny_learner()
    learn.fit(1)
    captured = capsys.readouterr()
    assert "train_loss" not in captured.out + captured.err and learn.progress.bar is None


def test_a_failed_fit_closes_the_bar_and_gives_the_logger_back():
    class Boom(Callback):
        def after_batch(self):
            raise RuntimeError("boom")

    learn = tiny_learner()
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=Boom())
    assert learn.progress.bar is None and learn.logger is print


def test_progress_pickles_without_its_bar():
    cb = ProgressCallback()
    cb.bar = object()  # a live bar cannot be pickled
    state = pickle.loads(pickle.dumps(cb)).__dict__
    assert "bar" not in state


class Terminal(io.StringIO):
    """A stream that says it is a terminal, to record what tqdm draws there."""

    def isatty(self) -> bool:
        return True


def fit_with_stderr(monkeypatch, stream, epochs=2):
    monkeypatch.setattr(sys, "stderr", stream)
    learn = tiny_learner()
    learn.fit(epochs)
    return learn


def test_not_a_terminal_gets_a_line_per_epoch_and_no_redrawn_bars(capsys, monkeypatch):
    monkeypatch.delenv("LAMINA_PROGRESS", raising=False)
    log = io.StringIO()  # stderr sent to a file: isatty() is False
    learn = fit_with_stderr(monkeypatch, log)
    out = capsys.readouterr().out
    assert learn.progress.mode == "line" and "\r" not in log.getvalue() + out and "it/s" not in log.getvalue()
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["epoch", "train_loss"] and [line.split()[0] for line in lines[1:]] == ["0", "1"]


def test_a_terminal_gets_bars_unless_lamina_progress_says_otherwise(capsys, monkeypatch):
    monkeypatch.delenv("LAMINA_PROGRESS", raising=False)
    terminal = Terminal()
    assert fit_with_stderr(monkeypatch, terminal).progress.mode == "bar"
    assert "\r" in terminal.getvalue() and "epoch 1 valid" in terminal.getvalue()  # bars drawn in place
    capsys.readouterr()
    monkeypatch.setenv("LAMINA_PROGRESS", "line")
    terminal = Terminal()
    fit_with_stderr(monkeypatch, terminal)
    assert terminal.getvalue() == "" and len(capsys.readouterr().out.splitlines()) == 3  # header + 2 rows
    monkeypatch.setenv("LAMINA_PROGRESS", "none")
    learn = fit_with_stderr(monkeypatch, terminal)
    captured = capsys.readouterr()
    assert terminal.getvalue() == "" and captured.out == "" and len(learn.recorder.values) == 2  # still recorded


def test_a_bad_lamina_progress_names_the_variable_and_its_values(monkeypatch):
    monkeypatch.setenv("LAMINA_PROGRESS", "bars")
    with pytest.raises(ValueError, match=r"LAMINA_PROGRESS must be one of bar, line, none; received: "
                                         r"LAMINA_PROGRESS='bars'"):
        tiny_learner().fit(1)


def test_lr_find_opens_no_bar_for_the_validation_it_skips(monkeypatch):
    monkeypatch.setenv("LAMINA_PROGRESS", "bar")
    opened = []
    original = ProgressCallback._open_bar
    monkeypatch.setattr(ProgressCallback, "_open_bar", lambda self, desc: (opened.append(desc), original(self, desc)))
    learn = tiny_learner()
    learn.lr_find(num_it=12, show_plot=False)  # 3 training batches an epoch: 4 epochs, 4 skipped validations
    assert opened and set(opened) == {"train"} and learn.progress.bar is None
