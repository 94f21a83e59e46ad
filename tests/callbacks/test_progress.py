"""Progress output: the epoch table (header once, a row per epoch), bars opened and closed per pass, quiet
modes, rank-0 only output, and the learner's logger given back."""

import pickle

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


def test_a_bar_per_pass_closed_at_its_end():
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
