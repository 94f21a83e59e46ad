"""Tests for lamina.metrics.base: the Metric protocol, the generic metrics, as_metric and skm_to_fastai."""

import functools

import numpy as np
import pytest
import torch

from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import (AccumMetric, AvgLoss, AvgMetric, AvgSmoothLoss, DiceMulti, F1Score, Metric, ValueMetric,
                            accuracy, accuracy_multi, as_metric, mse, skm_to_fastai)
from tests.metrics.helpers import binary_logits, fake_learn, run_metric


def test_avg_metric_is_exact_across_unequal_batches():
    pred = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    targ = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(1))
    metric = AvgMetric(accuracy)
    whole = run_metric(metric, pred, targ)
    assert whole == pytest.approx(accuracy(pred, targ).item())
    assert run_metric(metric, pred, targ, [4, 4, 2]) == pytest.approx(whole)
    assert metric.name == "accuracy"
    assert AvgMetric(functools.partial(accuracy_multi, thresh=0.2)).name == "accuracy_multi"


def test_avg_metric_value_is_none_before_any_batch():
    assert AvgMetric(accuracy).value is None


def test_avg_loss_weights_batches_by_size():
    metric = AvgLoss()
    metric.reset()
    metric.accumulate(fake_learn(torch.zeros(4), torch.zeros(4), loss=torch.tensor(1.0)))
    metric.accumulate(fake_learn(torch.zeros(2), torch.zeros(2), loss=torch.tensor(4.0)))
    assert metric.value == pytest.approx((4 * 1 + 2 * 4) / 6)
    assert metric.name == "loss"
    metric.reset()
    assert metric.value is None


def test_avg_loss_batch_size_falls_back_to_pred_without_targets():
    metric = AvgLoss()
    metric.accumulate(fake_learn(torch.zeros(3), loss=torch.tensor(2.0)))
    metric.accumulate(fake_learn(torch.zeros(1), loss=torch.tensor(6.0)))
    assert metric.value == pytest.approx((3 * 2 + 6) / 4)


def test_avg_smooth_loss_debiased_ema_over_training_batches_only():
    metric = AvgSmoothLoss(beta=0.5)
    assert metric.value is None
    metric.accumulate(fake_learn(torch.zeros(1), loss=torch.tensor(1.0), training=True))
    assert metric.value == pytest.approx(1.0)  # 0.5 / (1 − 0.5)
    metric.accumulate(fake_learn(torch.zeros(1), loss=torch.tensor(9.0), training=False))  # ignored
    metric.accumulate(fake_learn(torch.zeros(1), loss=torch.tensor(2.0), training=True))
    assert metric.value == pytest.approx((0.5 * 0.5 + 0.5 * 2) / (1 - 0.25))
    assert metric.name == "avg_smooth_loss"
    resumed = AvgSmoothLoss(beta=0.5)
    resumed.count, resumed.val = 3, 0.875  # as a checkpoint restores it: a float
    resumed.accumulate(fake_learn(torch.zeros(1), loss=torch.tensor(2.0), training=True))
    assert resumed.value == pytest.approx((0.5 * 0.875 + 0.5 * 2) / (1 - 0.5**4))


def test_accum_metric_activations_threshold_and_arguments():
    pred = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targ = torch.tensor([0, 1])

    def first_args(preds, targs):
        return (preds, targs)

    softmax = AccumMetric(first_args, activation="softmax", flatten=False)
    probs, _ = run_metric(softmax, pred, targ)
    assert torch.allclose(probs, torch.softmax(pred, dim=-1))
    argmaxed = AccumMetric(first_args, dim_argmax=-1)
    assert run_metric(argmaxed, pred, targ)[0].tolist() == [0, 1]
    binary = AccumMetric(first_args, activation="BinarySoftmax")  # fastai's capitalised spelling works too
    assert torch.allclose(run_metric(binary, pred, targ)[0], torch.softmax(pred, dim=-1)[:, 1])
    thresholded = AccumMetric(first_args, activation="sigmoid", thresh=0.6, flatten=False)
    assert run_metric(thresholded, pred, targ)[0].tolist() == [[True, False], [False, True]]
    inverted = AccumMetric(first_args, dim_argmax=-1, invert_arg=True, to_np=True)
    first, second = run_metric(inverted, pred, torch.tensor([1, 1]))
    assert isinstance(first, np.ndarray) and first.tolist() == [1, 1] and second.tolist() == [0, 1]


def test_accum_metric_name_value_and_errors():
    metric = AccumMetric(functools.partial(torch.nn.functional.l1_loss, reduction="sum"))
    assert metric.name == "l1_loss" and metric.value is None
    assert run_metric(metric, torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]), [1, 1]) == 2.0
    assert AccumMetric(mse, name="my_mse").name == "my_mse"
    with pytest.raises(ValueError, match=r"`activation` must be one of .*received: activation='relu'"):
        AccumMetric(mse, activation="relu")
    with pytest.raises(ValueError, match=r"metric 'mse' needs targets.*learn.yb is empty"):
        AccumMetric(mse).accumulate(fake_learn(torch.zeros(2)))


def test_skm_to_fastai_passes_numpy_targets_first():
    def true_minus_pred(y_true, y_pred):
        assert isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray)
        return float(y_true.sum() - y_pred.sum())

    metric = skm_to_fastai(true_minus_pred)
    assert metric.name == "true_minus_pred"
    assert run_metric(metric, binary_logits([0, 1, 1]), torch.tensor([1, 1, 1]), [2, 1]) == 1.0  # argmax: 3 − 2
    thresholded = skm_to_fastai(true_minus_pred, thresh=0.5)  # sigmoid ≥ 0.5 → [1, 0, 1, 1]
    logits = torch.tensor([[0.0, -1.0], [2.0, 0.5]])
    assert run_metric(thresholded, logits, torch.zeros(2, 2), [1, 1]) == -3.0


def test_value_metric():
    metric = ValueMetric(lambda: 0.25, metric_name="lr")
    metric.reset()
    metric.accumulate(None)
    assert metric.value == 0.25 and metric.name == "lr"

    def best_score():
        return 3

    assert ValueMetric(best_score).name == "best_score"


def test_metric_names_from_class_names():
    class FooBarMetric(Metric):
        pass

    class Custom(Metric):
        pass

    assert FooBarMetric().name == "foo_bar" and Custom().name == "custom"
    renamed = Custom()
    renamed.name = "other"
    assert renamed.name == "other"
    with pytest.raises(NotImplementedError, match=r"Custom must implement reset\(\)"):
        Custom().reset()


def test_as_metric():
    metric = F1Score()
    assert as_metric(metric) is metric
    assert isinstance(as_metric(DiceMulti), DiceMulti)
    wrapped = as_metric(accuracy)
    assert isinstance(wrapped, AvgMetric) and wrapped.func is accuracy
    assert as_metric(functools.partial(accuracy_multi, thresh=0.3)).name == "accuracy_multi"
    with pytest.raises(TypeError, match=r"received the class CrossEntropyLossFlat, which is not a Metric"):
        as_metric(CrossEntropyLossFlat)
    with pytest.raises(TypeError, match=r"received: 'accuracy' \(type str\)"):
        as_metric("accuracy")
