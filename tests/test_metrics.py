import functools
import math
import types

import numpy as np
import pytest
import torch

from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import (AccumMetric, AvgLoss, AvgMetric, AvgSmoothLoss, BalancedAccuracy, CohenKappa, Dice,
                            DiceMulti, ExplainedVariance, F1Score, F1ScoreMulti, FBeta, FBetaMulti, JaccardCoeff,
                            JaccardCoeffMulti, MatthewsCorrCoef, MeanIoU, Metric, PearsonCorrCoef, Precision,
                            PrecisionMulti, R2Score, Recall, RecallMulti, RocAuc, RocAucBinary, RocAucMulti,
                            SpearmanCorrCoef, ValueMetric, accuracy, accuracy_multi, as_metric, error_rate,
                            exp_rmspe, foreground_acc, mae, mse, msle, rmse, skm_to_fastai, top_k_accuracy)


def _learn(pred, *yb, loss=None, training=False):
    return types.SimpleNamespace(pred=pred, yb=tuple(yb), loss=loss, training=training,
                                 loss_func=CrossEntropyLossFlat())


def _run(metric, pred, targ, sizes=None):
    """Reset, feed ``pred``/``targ`` in batches of ``sizes`` (default: one batch), return the value."""
    metric.reset()
    start = 0
    for bs in sizes or [len(pred)]:
        metric.accumulate(_learn(pred[start:start + bs], targ[start:start + bs]))
        start += bs
    return metric.value


def _binary_logits(labels):
    """Two-column logits whose argmax is ``labels``."""
    labels = torch.tensor(labels)
    return torch.stack([1 - labels, labels], dim=1).float()


# ------------------------------------------------------------------------------------------------------------
# Per-sample functions


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


# ------------------------------------------------------------------------------------------------------------
# Generic metrics


def test_avg_metric_is_exact_across_unequal_batches():
    pred = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    targ = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(1))
    metric = AvgMetric(accuracy)
    whole = _run(metric, pred, targ)
    assert whole == pytest.approx(accuracy(pred, targ).item())
    assert _run(metric, pred, targ, [4, 4, 2]) == pytest.approx(whole)
    assert metric.name == "accuracy"
    assert AvgMetric(functools.partial(accuracy_multi, thresh=0.2)).name == "accuracy_multi"


def test_avg_metric_value_is_none_before_any_batch():
    assert AvgMetric(accuracy).value is None


def test_avg_loss_weights_batches_by_size():
    metric = AvgLoss()
    metric.reset()
    metric.accumulate(_learn(torch.zeros(4), torch.zeros(4), loss=torch.tensor(1.0)))
    metric.accumulate(_learn(torch.zeros(2), torch.zeros(2), loss=torch.tensor(4.0)))
    assert metric.value == pytest.approx((4 * 1 + 2 * 4) / 6)
    assert metric.name == "loss"
    metric.reset()
    assert metric.value is None


def test_avg_loss_batch_size_falls_back_to_pred_without_targets():
    metric = AvgLoss()
    metric.accumulate(_learn(torch.zeros(3), loss=torch.tensor(2.0)))
    metric.accumulate(_learn(torch.zeros(1), loss=torch.tensor(6.0)))
    assert metric.value == pytest.approx((3 * 2 + 6) / 4)


def test_avg_smooth_loss_debiased_ema_over_training_batches_only():
    metric = AvgSmoothLoss(beta=0.5)
    assert metric.value is None
    metric.accumulate(_learn(torch.zeros(1), loss=torch.tensor(1.0), training=True))
    assert metric.value == pytest.approx(1.0)  # 0.5 / (1 − 0.5)
    metric.accumulate(_learn(torch.zeros(1), loss=torch.tensor(9.0), training=False))  # ignored
    metric.accumulate(_learn(torch.zeros(1), loss=torch.tensor(2.0), training=True))
    assert metric.value == pytest.approx((0.5 * 0.5 + 0.5 * 2) / (1 - 0.25))
    assert metric.name == "avg_smooth_loss"


def test_accum_metric_activations_threshold_and_arguments():
    pred = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targ = torch.tensor([0, 1])

    def first_args(preds, targs):
        return (preds, targs)

    softmax = AccumMetric(first_args, activation="softmax", flatten=False)
    probs, _ = _run(softmax, pred, targ)
    assert torch.allclose(probs, torch.softmax(pred, dim=-1))
    argmaxed = AccumMetric(first_args, dim_argmax=-1)
    assert _run(argmaxed, pred, targ)[0].tolist() == [0, 1]
    binary = AccumMetric(first_args, activation="BinarySoftmax")  # fastai's capitalised spelling works too
    assert torch.allclose(_run(binary, pred, targ)[0], torch.softmax(pred, dim=-1)[:, 1])
    thresholded = AccumMetric(first_args, activation="sigmoid", thresh=0.6, flatten=False)
    assert _run(thresholded, pred, targ)[0].tolist() == [[True, False], [False, True]]
    inverted = AccumMetric(first_args, dim_argmax=-1, invert_arg=True, to_np=True)
    first, second = _run(inverted, pred, torch.tensor([1, 1]))
    assert isinstance(first, np.ndarray) and first.tolist() == [1, 1] and second.tolist() == [0, 1]


def test_accum_metric_name_value_and_errors():
    metric = AccumMetric(functools.partial(torch.nn.functional.l1_loss, reduction="sum"))
    assert metric.name == "l1_loss" and metric.value is None
    assert _run(metric, torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]), [1, 1]) == 2.0
    assert AccumMetric(mse, name="my_mse").name == "my_mse"
    with pytest.raises(ValueError, match=r"`activation` must be one of .*received: activation='relu'"):
        AccumMetric(mse, activation="relu")
    with pytest.raises(ValueError, match=r"metric 'mse' needs targets.*learn.yb is empty"):
        AccumMetric(mse).accumulate(_learn(torch.zeros(2)))


def test_rmse_and_exp_rmspe_over_the_epoch():
    pred, targ = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 2.0])
    assert _run(rmse, pred, targ, [2, 1]) == pytest.approx(math.sqrt(5 / 3))
    assert rmse.name == "rmse" and exp_rmspe.name == "exp_rmspe"
    log_pred, log_targ = torch.tensor([math.log(2.0), math.log(1.0)]), torch.tensor([math.log(4.0), math.log(1.0)])
    assert _run(exp_rmspe, log_pred, log_targ, [1, 1]) == pytest.approx(math.sqrt((0.5**2 + 0) / 2))


def test_skm_to_fastai_passes_numpy_targets_first():
    def true_minus_pred(y_true, y_pred):
        assert isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray)
        return float(y_true.sum() - y_pred.sum())

    metric = skm_to_fastai(true_minus_pred)
    assert metric.name == "true_minus_pred"
    assert _run(metric, _binary_logits([0, 1, 1]), torch.tensor([1, 1, 1]), [2, 1]) == 1.0  # argmax: 3 − 2
    thresholded = skm_to_fastai(true_minus_pred, thresh=0.5)  # sigmoid ≥ 0.5 → [1, 0, 1, 1]
    logits = torch.tensor([[0.0, -1.0], [2.0, 0.5]])
    assert _run(thresholded, logits, torch.zeros(2, 2), [1, 1]) == -3.0


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


# ------------------------------------------------------------------------------------------------------------
# Classification scores. The binary example: tp=2, fp=2, fn=0, tn=2.

BIN_PRED, BIN_TARG = [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("metric, expected", [
    (F1Score(), 2 / 3),                 # P = 0.5, R = 1
    (FBeta(2.0), 5 * 2 / (4 * 2 + 4)),  # (1 + b²)·tp / (b²·n_true + n_pred)
    (Precision(), 0.5),
    (Recall(), 1.0),
    (F1Score(pos_label=0), 2 / 3),      # class 0: tp=2, fp=0, fn=2
    (BalancedAccuracy(), 0.75),         # recalls 0.5 and 1
    (BalancedAccuracy(adjusted=True), 0.5),
    (MatthewsCorrCoef(), 0.5),          # (2·2 − 2·0) / sqrt(4·2·4·2)
    (CohenKappa(), 0.4),                # po = 2/3, pe = 4/9
])
def test_binary_classification_scores(metric, expected):
    assert _run(metric, _binary_logits(BIN_PRED), torch.tensor(BIN_TARG), [4, 2]) == pytest.approx(expected)


def test_multiclass_averages_hand_computed():
    pred = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 2]), 3).float()
    targ = torch.tensor([0, 1, 2, 2, 2, 0])
    # Per class (tp, n_pred, n_true): 0: (1, 1, 2), 1: (1, 2, 1), 2: (2, 3, 3).
    f1 = [2 / 3, 2 / 3, 2 / 3]
    assert _run(F1Score(average="macro"), pred, targ) == pytest.approx(np.mean(f1))
    assert _run(F1Score(average="micro"), pred, targ) == pytest.approx(4 / 6)
    assert _run(Precision(average="macro"), pred, targ) == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    assert _run(Recall(average="weighted"), pred, targ) == pytest.approx((2 * 0.5 + 1 * 1 + 3 * 2 / 3) / 6)
    assert _run(Precision(average="macro", labels=[1, 2]), pred, targ) == pytest.approx((0.5 + 2 / 3) / 2)
    weights = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]  # the last sample (class 0 predicted 2) counts 3 times
    assert _run(Recall(average="micro", sample_weight=weights), pred, targ) == pytest.approx(4 / 8)


def test_cohen_kappa_weighting_schemes():
    pred = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    targ = torch.tensor([0, 0])
    # One exact match and one miss by 2: po = 1/2, pe = 1/2 for unweighted kappa → 0.
    assert _run(CohenKappa(), pred, targ) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"`weights` must be None, 'linear' or 'quadratic'; received: weights='cubic'"):
        CohenKappa(weights="cubic")


def test_roc_auc_binary_hand_computed_with_ties():
    # Scores 0.1, 0.4, 0.35, 0.8 against 0, 0, 1, 1: 3 of 4 positive/negative pairs ranked right.
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    logits = torch.stack([torch.zeros(4), torch.logit(scores)], dim=1)
    assert _run(RocAucBinary(), logits, torch.tensor([0, 0, 1, 1]), [3, 1]) == pytest.approx(0.75)
    tied = torch.zeros(2, 2)
    assert _run(RocAucBinary(), tied, torch.tensor([0, 1])) == pytest.approx(0.5)  # a tie counts half


def test_roc_auc_multiclass_one_vs_rest():
    # Logits = log-probabilities, so the softmax gives these rows back.
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.3, 0.3], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]])
    targ = torch.tensor([0, 1, 1, 2])
    # Class 0 vs rest: 0.7 beats 0.4, 0.2, 0.3 → 1. Class 1: {0.3, 0.5} vs {0.2, 0.1} → 1.
    # Class 2: 0.6 vs {0.1, 0.3, 0.3} → 1. Then swap two scores to make class 0 imperfect.
    assert _run(RocAuc(), probs.log(), targ) == pytest.approx(1.0)
    probs2 = torch.tensor([[0.35, 0.35, 0.3], [0.4, 0.3, 0.3], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]])
    # Class 0: 0.35 vs {0.4, 0.2, 0.3} → 2/3. Class 1: {0.3, 0.5} vs {0.35, 0.1} → 3/4. Class 2: 0.6 vs rest → 1.
    assert _run(RocAuc(), probs2.log(), targ, [2, 2]) == pytest.approx((2 / 3 + 3 / 4 + 1) / 3)
    # Weighted by class frequency (1, 2, 1).
    assert _run(RocAuc(average="weighted"), probs2.log(), targ) == pytest.approx((2 / 3 + 2 * 3 / 4 + 1) / 4)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="ROC AUC needs positive and negative targets"):
        _run(RocAucBinary(), torch.zeros(3, 2), torch.tensor([1, 1, 1]))


def test_multilabel_scores_hand_computed():
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8]])
    targ = torch.tensor([[1, 0], [0, 1], [0, 1]])
    # Thresholded: [[1, 0], [1, 1], [0, 1]]. Column 0: tp 1, fp 1 → F1 2/3. Column 1: tp 2 → F1 1.
    assert _run(F1ScoreMulti(sigmoid=False), probs, targ) == pytest.approx(5 / 6)
    assert _run(F1ScoreMulti(sigmoid=False, average="micro"), probs, targ, [2, 1]) == pytest.approx(6 / 7)
    # Rows: F1 = 1, 2/3, 1.
    assert _run(F1ScoreMulti(sigmoid=False, average="samples"), probs, targ) == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert _run(F1ScoreMulti(), torch.logit(probs), targ) == pytest.approx(5 / 6)
    assert _run(PrecisionMulti(sigmoid=False), probs, targ) == pytest.approx((0.5 + 1) / 2)
    assert _run(RecallMulti(sigmoid=False, labels=[0]), probs, targ) == pytest.approx(1.0)
    assert _run(FBetaMulti(2.0, sigmoid=False, thresh=0.95), probs, targ) == pytest.approx(0.0)


def test_roc_auc_multi_hand_computed():
    probs = torch.tensor([[0.9, 0.75], [0.6, 0.7], [0.1, 0.8]])
    targ = torch.tensor([[1, 0], [0, 1], [0, 1]])
    # Column 0: perfectly ranked → 1. Column 1: 0.7 loses to 0.75, 0.8 beats it → 0.5.
    assert _run(RocAucMulti(sigmoid=False), probs, targ, [1, 2]) == pytest.approx(0.75)
    assert _run(RocAucMulti(), torch.logit(probs), targ, [1, 2]) == pytest.approx(0.75)
    assert _run(RocAucMulti(sigmoid=False, average="weighted"), probs, targ) == pytest.approx((1 + 2 * 0.5) / 3)


def test_classification_argument_errors():
    with pytest.raises(ValueError, match=r"`average` must be one of 'binary', 'micro', 'macro', 'weighted'; "
                                         r"received: average='samples'"):
        F1Score(average="samples")
    with pytest.raises(ValueError, match=r"`multi_class` must be 'ovr'"):
        RocAuc(multi_class="ovo")
    three = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).float()
    with pytest.raises(ValueError, match=r"average='binary' needs two classes.*hold 3; pass average='macro'"):
        _run(F1Score(), three, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"`sample_weight` must have one weight per validation sample \(3\); "
                                         r"received 2"):
        _run(F1Score(average="macro", sample_weight=[1.0, 1.0]), three, torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------------------------------------------------
# Regression scores: pred [1, 2, 4] against targ [1, 2, 3].

REG_PRED, REG_TARG = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize("metric, expected", [
    (R2Score(), 0.5),                           # 1 − 1/2
    (R2Score(sample_weight=[1.0, 1.0, 0.0]), 1.0),
    (ExplainedVariance(), 2 / 3),               # 1 − (2/9) / (2/3)
    (PearsonCorrCoef(), 9 / math.sqrt(84)),     # 3 / sqrt(42/9 · 2)
    (SpearmanCorrCoef(), 1.0),
])
def test_regression_scores(metric, expected):
    assert _run(metric, REG_PRED, REG_TARG, [2, 1]) == pytest.approx(expected)


def test_r2_of_a_constant_target():
    assert _run(R2Score(), torch.tensor([2.0, 2.0]), torch.tensor([2.0, 2.0])) == 1.0
    assert _run(R2Score(), torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])) == 0.0


def test_spearman_uses_average_ranks_for_ties():
    # Ranks of [1, 1, 2] are [1.5, 1.5, 3]; of [1, 2, 3] are [1, 2, 3]: Pearson of those = sqrt(3)/2.
    value = _run(SpearmanCorrCoef(), torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert value == pytest.approx(math.sqrt(3) / 2)


# ------------------------------------------------------------------------------------------------------------
# Segmentation


def _masks_to_logits(masks, n_classes):
    return torch.nn.functional.one_hot(masks, n_classes).permute(0, 3, 1, 2).float()


def test_binary_dice_and_jaccard_hand_computed():
    pred = _masks_to_logits(torch.tensor([[[1, 1, 0, 0]], [[1, 0, 0, 0]]]), 2)
    targ = torch.tensor([[[1, 0, 0, 0]], [[1, 1, 0, 0]]])
    # Class 1: intersection 2, |P| = 3, |T| = 3 → Dice 4/6, Jaccard 2/4.
    assert _run(Dice(), pred, targ, [1, 1]) == pytest.approx(4 / 6)
    assert _run(JaccardCoeff(), pred, targ, [1, 1]) == pytest.approx(0.5)
    assert Dice().value is None
    assert _run(Dice(), pred, torch.zeros_like(targ)) == pytest.approx(0.0)


def test_multiclass_dice_jaccard_and_mean_iou_hand_computed():
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1, 2]]]), 4)
    targ = torch.tensor([[[0, 1, 2, 2]]])
    # Per class (inter, |P|, |T|): 0: (1, 1, 1), 1: (1, 2, 1), 2: (1, 1, 2), 3: absent.
    assert _run(DiceMulti(), pred, targ) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert _run(JaccardCoeffMulti(), pred, targ) == pytest.approx((1 + 0.5 + 0.5) / 3)
    miou = MeanIoU()
    assert _run(miou, pred, targ) == pytest.approx((1 + 0.5 + 0.5) / 3)
    iou = miou.per_class_iou
    assert torch.allclose(iou[:3], torch.tensor([1.0, 0.5, 0.5], dtype=iou.dtype)) and iou[3].isnan()
    assert miou.name == "mean_iou"


def test_dice_multi_counts_classes_only_predicted_in_some_batches():
    # Class 1 is in the targets of batch 1 only; batch 2 predicts it wrongly: that false positive counts.
    pred = _masks_to_logits(torch.tensor([[[1, 0]], [[1, 0]]]), 2)
    targ = torch.tensor([[[1, 0]], [[0, 0]]])
    # Class 0: inter 2, |P| 2, |T| 3 → 4/5. Class 1: inter 1, |P| 2, |T| 1 → 2/3.
    assert _run(DiceMulti(), pred, targ, [1, 1]) == pytest.approx((4 / 5 + 2 / 3) / 2)


def test_mean_iou_ignore_index_and_class_count_check():
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1, 2]]]), 3)
    targ = torch.tensor([[[0, 1, 255, 2]]])
    # The 255 pixel is left out: every class is predicted right once → IoU 1.
    assert _run(MeanIoU(ignore_index=255), pred, targ) == pytest.approx(1.0)
    miou = MeanIoU(ignore_index=2)
    # Pixels of class 2 are left out and so is class 2: class 0 → 1, class 1 → 1 (the pixel at index 2 is void).
    assert _run(miou, pred, torch.tensor([[[0, 1, 2, 2]]])) == pytest.approx(1.0)
    assert miou.per_class_iou[2].isnan()
    with pytest.raises(ValueError, match=r"MeanIoU\(n_classes=5\) got predictions with 3 classes.*n_classes=3"):
        _run(MeanIoU(n_classes=5), pred, targ)
    assert MeanIoU().value is None and MeanIoU().per_class_iou is None


# ------------------------------------------------------------------------------------------------------------
# Contract tests over every epoch-level metric


def _classification_data(n_classes):
    gen = torch.Generator().manual_seed(n_classes)
    return torch.randn(10, n_classes, generator=gen), torch.randint(0, n_classes, (10,), generator=gen)


BATCH_INVARIANT = {
    "f1_binary": (lambda: F1Score(), 2),
    "f1_macro": (lambda: F1Score(average="macro"), 3),
    "fbeta_weighted": (lambda: FBeta(0.5, average="weighted"), 3),
    "precision_micro": (lambda: Precision(average="micro"), 3),
    "recall_macro": (lambda: Recall(average="macro"), 3),
    "balanced_accuracy": (lambda: BalancedAccuracy(), 3),
    "matthews": (lambda: MatthewsCorrCoef(), 3),
    "kappa": (lambda: CohenKappa(weights="quadratic"), 3),
    "roc_auc": (lambda: RocAuc(), 2),
    "roc_auc_binary": (lambda: RocAucBinary(), 2),
    "accuracy": (lambda: AvgMetric(accuracy), 3),
    "error_rate": (lambda: AvgMetric(error_rate), 3),
}


@pytest.mark.parametrize("key", sorted(BATCH_INVARIANT))
def test_classification_metrics_are_exact_across_unequal_batches(key):
    factory, n_classes = BATCH_INVARIANT[key]
    pred, targ = _classification_data(n_classes)
    targ[:2] = torch.tensor([0, 1])  # both classes present for the AUCs
    whole = _run(factory(), pred, targ)
    assert isinstance(whole, float)
    assert _run(factory(), pred, targ, [4, 4, 2]) == pytest.approx(whole, abs=1e-12)


@pytest.mark.parametrize("factory", [R2Score, ExplainedVariance, PearsonCorrCoef, SpearmanCorrCoef, lambda: rmse,
                                     lambda: AvgMetric(mse), lambda: AvgMetric(mae), lambda: AvgMetric(msle)])
def test_regression_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(3)
    pred, targ = torch.rand(10, 1, generator=gen), torch.rand(10, generator=gen)
    assert _run(factory(), pred, targ, [4, 4, 2]) == pytest.approx(_run(factory(), pred, targ), abs=1e-6)


@pytest.mark.parametrize("factory", [F1ScoreMulti, RocAucMulti, lambda: AvgMetric(accuracy_multi)])
def test_multilabel_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(4)
    pred, targ = torch.randn(10, 3, generator=gen), torch.randint(0, 2, (10, 3), generator=gen)
    targ[0], targ[1] = torch.tensor([1, 1, 1]), torch.tensor([0, 0, 0])
    assert _run(factory(), pred, targ, [4, 4, 2]) == pytest.approx(_run(factory(), pred, targ), abs=1e-6)


@pytest.mark.parametrize("factory", [Dice, JaccardCoeff, DiceMulti, JaccardCoeffMulti, MeanIoU,
                                     lambda: AvgMetric(functools.partial(accuracy, axis=1))])
def test_segmentation_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(5)
    pred, targ = torch.randn(10, 3, 4, 4, generator=gen), torch.randint(0, 3, (10, 4, 4), generator=gen)
    if factory in (Dice, JaccardCoeff):
        pred, targ = pred[:, :2], targ.clamp(max=1)
    assert _run(factory(), pred, targ, [4, 4, 2]) == pytest.approx(_run(factory(), pred, targ), abs=1e-6)


def test_factories_return_fresh_metrics_with_sklearn_style_names():
    names = {F1Score: "f1_score", FBeta: "fbeta_score", Precision: "precision_score", Recall: "recall_score",
             BalancedAccuracy: "balanced_accuracy_score", MatthewsCorrCoef: "matthews_corrcoef",
             CohenKappa: "cohen_kappa_score", RocAuc: "roc_auc_score", RocAucBinary: "roc_auc_score",
             F1ScoreMulti: "f1_score", FBetaMulti: "fbeta_score", PrecisionMulti: "precision_score",
             RecallMulti: "recall_score", RocAucMulti: "roc_auc_score", R2Score: "r2_score",
             ExplainedVariance: "explained_variance_score", PearsonCorrCoef: "pearsonr",
             SpearmanCorrCoef: "spearmanr", Dice: "dice", DiceMulti: "dice_multi", JaccardCoeff: "jaccard_coeff",
             JaccardCoeffMulti: "jaccard_coeff_multi", MeanIoU: "mean_iou"}
    for cls, name in names.items():
        args = (2.0,) if cls in (FBeta, FBetaMulti) else ()
        first, second = cls(*args), cls(*args)
        assert first.name == name and first is not second and isinstance(first, Metric)
