"""Fitting policies: one-cycle values, fine_tune phases and per-group lrs, SGDR, lr_find."""

import math

import pytest
import torch

from lamina.callbacks.core import Callback
from lamina.callbacks.schedule import minimum, slide, steep, valley
from lamina.learner import Learner
from lamina.testing import synth_classification, synth_regression, tiny_mlp


class HyperLog(Callback):
    order = 70  # after the scheduler has set the hypers

    def before_fit(self):
        self.lrs, self.moms, self.pcts = [], [], []

    def before_batch(self):
        if self.learn.training:
            self.lrs.append([h["lr"] for h in self.learn.opt.hypers])
            self.moms.append(self.learn.opt.hypers[-1]["mom"])
            self.pcts.append(self.learn.pct_train)


def quiet(learn):
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def test_fit_one_cycle_sets_lr_and_momentum_by_the_formula():
    learn = quiet(Learner(synth_classification(n=160, bs=16), tiny_mlp()))  # 120 train rows: 7 batches
    log = HyperLog()
    learn.fit_one_cycle(2, 1e-2, cbs=log)
    assert len(log.lrs) == 14
    for pct, lrs, mom in zip(log.pcts, log.lrs, log.moms):
        if pct <= 0.25:
            p = pct / 0.25
            lr = 4e-4 + (1 + math.cos(math.pi * (1 - p))) * (1e-2 - 4e-4) / 2
            m = 0.95 + (1 + math.cos(math.pi * (1 - p))) * (0.85 - 0.95) / 2
        else:
            p = (pct - 0.25) / 0.75
            lr = 1e-2 + (1 + math.cos(math.pi * (1 - p))) * (1e-7 - 1e-2) / 2
            m = 0.85 + (1 + math.cos(math.pi * (1 - p))) * (0.95 - 0.85) / 2
        assert lrs[0] == pytest.approx(lr) and mom == pytest.approx(m)
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(log.moms[-1])
    assert learn.recorder.hps["lr"][0] == pytest.approx(4e-4)


def test_fine_tune_two_phases_with_per_group_lrs():
    learn = quiet(Learner(synth_classification(n=160, bs=16), tiny_mlp(),
                          splitter=lambda m: [m.body[0], m.body[1:], m.head]))
    peaks, frozen = [], []

    class Phase(Callback):
        order = 70

        def before_fit(self):
            self.peak = None
            frozen.append(not self.learn.model.body[0].weight.requires_grad)

        def before_batch(self):
            if self.learn.training:
                lrs = [h["lr"] for h in self.learn.opt.hypers]
                if self.peak is None or lrs[-1] > self.peak[-1]:
                    self.peak = lrs

        def after_fit(self):
            peaks.append(self.peak)

    learn.add_cb(Phase())
    learn.fine_tune(2, base_lr=2e-3)
    assert frozen == [True, False]
    # the scheduler reaches within a few percent of lr_max; compare ratios and magnitudes
    assert peaks[0][0] == pytest.approx(peaks[0][1]) and peaks[0][2] == pytest.approx(10 * peaks[0][0])
    assert peaks[0][2] == pytest.approx(2e-3, rel=0.05)
    assert peaks[1] == pytest.approx([1e-5, 1e-4, 1e-3], rel=0.05)
    assert len(learn.recorder.values) == 2  # the second table has 2 epochs


def test_fine_tune_single_group_model():
    learn = quiet(Learner(synth_classification(n=160, bs=16), tiny_mlp()))
    learn.fine_tune(1)
    assert all(p.requires_grad for p in learn.model.parameters())


def test_fit_sgdr_restarts():
    learn = quiet(Learner(synth_classification(n=160, bs=16), tiny_mlp()))
    log = HyperLog()
    learn.fit_sgdr(2, 1, lr_max=1e-2, cbs=log)  # cycles of 1 and 2 epochs = 3 epochs
    lrs = [lr[0] for lr in log.lrs]
    assert len(lrs) == 21
    assert lrs[0] == pytest.approx(1e-2) and lrs[7] == pytest.approx(1e-2)  # restart at epoch 1
    assert lrs[6] < 1e-3


def test_fit_flat_cos():
    learn = quiet(Learner(synth_classification(n=160, bs=16), tiny_mlp()))
    log = HyperLog()
    learn.fit_flat_cos(2, 1e-2, cbs=log)
    lrs = [lr[0] for lr in log.lrs]
    assert lrs[:10] == pytest.approx([1e-2] * 10) and lrs[-1] < lrs[9] / 4 and lrs[-1] < lrs[-2]


def test_lr_find_restores_weights_and_suggests():
    dls = synth_regression(n=2048, bs=32)
    learn = quiet(Learner(dls, tiny_mlp(n_in=1, n_out=1)))
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    suggestion = learn.lr_find(num_it=60, show_plot=False, suggest_funcs=(valley, slide, minimum, steep))
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert suggestion._fields == ("valley", "slide", "minimum", "steep")
    assert 1e-5 < suggestion.valley < 1.0
    assert learn.opt.hypers[0]["lr"] is not None
    learn.fit_one_cycle(2, suggestion.valley)
    assert learn.recorder.values[-1][1] < 1.0  # trained from the suggestion: valid MSE well below the target variance


def test_valley_on_a_known_curve():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    losses = [2.0] * 10 + [2.0 - 0.05 * i for i in range(30)] + [0.5 + 0.2 * i for i in range(20)]
    lr, point = valley(lrs, losses, 60)
    assert lrs[10] < lr < lrs[40]
    assert point[1] < 2.0
