"""Tests for lamina.metrics.functions: the per-sample functions and the rmse/exp_rmspe metrics."""

import math

import numpy as np
import pytest
import torch

from lamina.metrics import (accuracy, accuracy_multi, error_rate, exp_rmspe, foreground_acc, mae, mse, msle, rmse,
                            top_k_accuracy)
from tests.metrics.helpers import run_metric


def test_accuracy_error_rate_and_top_k():
    pred = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    targ = torch.tensor([1, 0, 1, 2])
    assert accuracy(pred, targ).item() == pytest.approx(0.5)
    assert error_rate(pred, targ).item() == pytest.approx(0.5)
    assert accuracy(pred, targ[:, None]).item() == pytest.approx(0.5)  # (bs, 1) targets
    # top-2 sets: {1,2}, {0,1 or 2}, {2,1}, {1,0 or 2}: hits for items 0, 1, 2.
    assert top_k_accuracy(pred, targ, k=2).item() == pytest.approx(0.75)
    assert top_k_accuracy(pred, targ[:, None], k=1).item() == pytest.approx(0.5)
    assert top_k_accuracy(pred.t(), targ, k=3, axis=0).item() == pytest.approx(1.0)


def test_accuracy_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same number of elements; received shapes \(2,\) and \(3,\)"):
        accuracy(torch.zeros(2, 3), torch.zeros(3))


def test_accuracy_multi():
    probs = torch.tensor([[0.9, 0.3], [0.4, 0.6]])
    targ = torch.tensor([[1, 1], [0, 1]])
    assert accuracy_multi(probs, targ, sigmoid=False).item() == pytest.approx(0.75)
    assert accuracy_multi(probs, targ, thresh=0.2, sigmoid=False).item() == pytest.approx(0.75)
    assert accuracy_multi(torch.logit(probs), targ).item() == pytest.approx(0.75)


def test_regression_functions_hand_computed():
    pred, targ = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 2.0])
    assert mse(pred, targ).item() == pytest.approx(5 / 3)
    assert mae(pred, targ).item() == pytest.approx(1.0)
    expected = np.mean((np.log1p([1.0, 2.0, 4.0]) - np.log1p([1.0, 3.0, 2.0])) ** 2)
    assert msle(pred, targ).item() == pytest.approx(expected, rel=1e-5)


def test_foreground_acc_ignores_background():
    # 1 image, 3 classes, 1x4 pixels; predictions (argmax) are [0, 1, 2, 1].
    pred = torch.nn.functional.one_hot(torch.tensor([[[0, 1, 2, 1]]]), 3).permute(0, 3, 1, 2).float()
    targ = torch.tensor([[[0, 1, 1, 0]]])
    # Foreground pixels: 1 and 2 (targets 1, 1), predicted 1 and 2: one right.
    assert foreground_acc(pred, targ).item() == pytest.approx(0.5)
    assert foreground_acc(pred, targ[:, None]).item() == pytest.approx(0.5)
    # With class 1 as background, pixels 0 and 3 (targets 0, 0) remain, predicted 0 and 1.
    assert foreground_acc(pred, targ, bkg_idx=1).item() == pytest.approx(0.5)
    assert foreground_acc(pred, torch.tensor([[[1, 1, 1, 0]]]), bkg_idx=1).item() == pytest.approx(0.0)


def test_rmse_and_exp_rmspe_over_the_epoch():
    pred, targ = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 2.0])
    assert run_metric(rmse, pred, targ, [2, 1]) == pytest.approx(math.sqrt(5 / 3))
    assert rmse.name == "rmse" and exp_rmspe.name == "exp_rmspe"
    log_pred, log_targ = torch.tensor([math.log(2.0), math.log(1.0)]), torch.tensor([math.log(4.0), math.log(1.0)])
    assert run_metric(exp_rmspe, log_pred, log_targ, [1, 1]) == pytest.approx(math.sqrt((0.5**2 + 0) / 2))
