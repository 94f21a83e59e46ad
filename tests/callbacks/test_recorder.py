"""The Recorder's records and plots."""

import pytest

from lamina.learner import Learner
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp


@pytest.fixture(scope="module")
def learn():
    learn = Learner(synth_classification(n=256, bs=16), tiny_mlp(), metrics=accuracy)
    learn.progress.show_bars = False
    learn.fit_one_cycle(2, 1e-2)
    return learn


def test_records(learn):
    rec = learn.recorder
    assert len(rec.losses) == len(rec.lrs) == 24 and rec.iters == [12, 24]
    assert len(rec.values) == 2 and learn.final_record == rec.values[-1]
    assert rec.metric_value("accuracy") == rec.values[-1][2]
    assert len(rec.hps["lr"]) == 24 and len(rec.hps["mom"]) == 24


def test_plots(learn):
    fig = learn.recorder.plot_loss(skip_start=2, show_epochs=True)
    assert len(fig.axes[0].lines) >= 2  # train curve and valid points
    fig = learn.recorder.plot_sched()
    assert len(fig.axes) == 2


def test_plot_sched_needs_a_schedule():
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp())
    learn.progress.show_bars = False
    learn.fit(1)
    with pytest.raises(ValueError, match="Nothing was scheduled"):
        learn.recorder.plot_sched()


def test_lr_find_plot():
    learn = Learner(synth_classification(n=512, bs=16), tiny_mlp())
    learn.progress.show_bars = False
    import matplotlib.pyplot as plt
    plt.close("all")
    learn.lr_find(num_it=30, show_plot=True)
    ax = plt.gca()
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Learning Rate"


def test_plot_loss_after_a_fit_shorter_than_skip_start_warns_and_plots_it_all():
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp())
    learn.progress.show_bars = False
    learn.fit(1)
    n = len(learn.recorder.losses)
    with pytest.warns(UserWarning, match=rf"recorded {n} training losses, no more than skip_start=5"):
        fig = learn.recorder.plot_loss()
    assert len(fig.axes[0].lines[0].get_xdata()) == n
