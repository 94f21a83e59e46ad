"""ShowGraphCallback: the curves it draws after each epoch, one picture redrawn in a notebook, nothing in lr_find."""

import sys
import types

import pytest

from lamina.callbacks import graph as graph_module
from lamina.callbacks.graph import ShowGraphCallback
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp


def _learner(cb):
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp(), cbs=cb)
    learn.progress.show_bars = False
    return learn


def test_it_draws_train_and_valid_losses_in_the_fit_frame(capsys):
    cb = ShowGraphCallback()
    learn = _learner(cb)
    learn.fit(3)
    rec = learn.recorder
    train, valid = cb.fig.axes[0].lines
    assert list(train.get_ydata()) == pytest.approx(rec.losses)
    assert list(valid.get_xdata()) == rec.iters and list(valid.get_ydata()) == pytest.approx(
        [v[1] for v in rec.values])
    assert cb.fig.axes[0].get_xlim() == (0, len(rec.losses))
    assert cb.fig.axes[0].get_ylim()[0] == 0 and cb.fig.axes[0].get_ylim()[1] >= max(rec.losses)


def test_in_a_notebook_one_picture_is_redrawn_each_epoch(monkeypatch):
    shown = []

    class Handle:
        def update(self, picture):
            shown.append(("update", picture))

    def display(picture, display_id=False):
        assert display_id
        shown.append(("display", picture))
        return Handle()

    fake = types.ModuleType("IPython.display")
    fake.display = display
    fake.Image = lambda data, format: data
    monkeypatch.setitem(sys.modules, "IPython.display", fake)
    monkeypatch.setattr(graph_module, "in_notebook", lambda: True)
    learn = _learner(ShowGraphCallback())
    learn.fit(3)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(picture.startswith(b"\x89PNG") for _, picture in shown)


def test_lr_find_draws_nothing():
    cb = ShowGraphCallback()
    learn = _learner(cb)
    learn.lr_find(num_it=10, show_plot=False)
    assert cb.fig is None
    learn.fit(1)
    assert cb.fig is not None


def test_a_nan_loss_or_a_negative_one_does_not_break_the_frame():
    cb = ShowGraphCallback()
    learn = _learner(cb)
    learn.fit(1)
    rec = learn.recorder
    rec._losses = [*rec.losses[:-1], float("nan")]
    rec.values[-1][1] = -0.5
    cb.after_epoch()  # draws again with a NaN training loss and a negative validation loss
    low, high = cb.fig.axes[0].get_ylim()
    assert low < -0.5 and high > 0
    figure = cb.fig
    learn.lr_find(num_it=10, show_plot=False)
    assert cb.fig is figure  # lr_find keeps the last fit's figure
