"""Interpretation: confusion matrix, most confused pairs, top losses."""

import numpy as np
import pytest
import torch

from lamina.interpret import ClassificationInterpretation
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp


@pytest.fixture(scope="module")
def interp():
    torch.manual_seed(0)
    learn = Learner(synth_classification(n=200, n_classes=3, bs=16, noise=0.2), tiny_mlp(n_out=3))
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    learn.fit(1, 1e-2)
    return ClassificationInterpretation.from_learner(learn)


def test_confusion_matrix_matches_counts(interp):
    cm = interp.confusion_matrix()
    t, p = interp.targs.numpy(), interp.preds.argmax(1).numpy()
    expected = np.zeros((3, 3), int)
    for a, b in zip(t, p):
        expected[a, b] += 1
    assert (cm == expected).all() and cm.sum() == 50


def test_most_confused_sorted_and_off_diagonal(interp):
    pairs = interp.most_confused()
    assert all(a != b for a, b, _ in pairs)
    assert [c for *_, c in pairs] == sorted((c for *_, c in pairs), reverse=True)
    assert all(a in interp.vocab for a, _, _ in pairs)


def test_top_losses(interp):
    losses, idxs = interp.top_losses(5)
    assert torch.equal(losses, interp.losses[idxs]) and (losses[:-1] >= losses[1:]).all()
    inputs, preds, targs, decoded, item_losses = interp[idxs]
    assert torch.equal(item_losses, losses) and inputs.shape == (5, 2)


def test_plots_and_report(interp, capsys):
    fig = interp.plot_confusion_matrix(normalize=True)
    assert fig is not None
    report = interp.print_classification_report()
    assert "precision" in report and "c0" in capsys.readouterr().out
    with pytest.raises(NotImplementedError, match="cannot show its items"):
        interp.plot_top_losses(3)
