"""Tests for lamina.metrics.classification: hand-computed scores and batch-size invariance."""


import numpy as np
import pytest
import torch

from lamina.metrics import (AvgMetric, BalancedAccuracy, CohenKappa, F1Score, F1ScoreMulti, FBeta, FBetaMulti,
                            MatthewsCorrCoef, Metric, Precision, PrecisionMulti, Recall, RecallMulti, RocAuc,
                            RocAucBinary, RocAucMulti, accuracy, accuracy_multi, error_rate)
from tests.metrics.helpers import binary_logits, run_metric


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
    assert run_metric(metric, binary_logits(BIN_PRED), torch.tensor(BIN_TARG), [4, 2]) == pytest.approx(expected)


def test_multiclass_averages_hand_computed():
    pred = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 2]), 3).float()
    targ = torch.tensor([0, 1, 2, 2, 2, 0])
    # Per class (tp, n_pred, n_true): 0: (1, 1, 2), 1: (1, 2, 1), 2: (2, 3, 3).
    f1 = [2 / 3, 2 / 3, 2 / 3]
    assert run_metric(F1Score(average="macro"), pred, targ) == pytest.approx(np.mean(f1))
    assert run_metric(F1Score(average="micro"), pred, targ) == pytest.approx(4 / 6)
    assert run_metric(Precision(average="macro"), pred, targ) == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    assert run_metric(Recall(average="weighted"), pred, targ) == pytest.approx((2 * 0.5 + 1 * 1 + 3 * 2 / 3) / 6)
    assert run_metric(Precision(average="macro", labels=[1, 2]), pred, targ) == pytest.approx((0.5 + 2 / 3) / 2)
    weights = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]  # the last sample (class 0 predicted 2) counts 3 times
    assert run_metric(Recall(average="micro", sample_weight=weights), pred, targ) == pytest.approx(4 / 8)


def test_cohen_kappa_weighting_schemes():
    pred = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    targ = torch.tensor([0, 0])
    # One exact match and one miss by 2: po = 1/2, pe = 1/2 for unweighted kappa → 0.
    assert run_metric(CohenKappa(), pred, targ) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"`weights` must be None, 'linear' or 'quadratic'; received: weights='cubic'"):
        CohenKappa(weights="cubic")


def test_roc_auc_binary_hand_computed_with_ties():
    # Scores 0.1, 0.4, 0.35, 0.8 against 0, 0, 1, 1: 3 of 4 positive/negative pairs ranked right.
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    logits = torch.stack([torch.zeros(4), torch.logit(scores)], dim=1)
    assert run_metric(RocAucBinary(), logits, torch.tensor([0, 0, 1, 1]), [3, 1]) == pytest.approx(0.75)
    tied = torch.zeros(2, 2)
    assert run_metric(RocAucBinary(), tied, torch.tensor([0, 1])) == pytest.approx(0.5)  # a tie counts half


def test_roc_auc_multiclass_one_vs_rest():
    # Logits = log-probabilities, so the softmax gives these rows back.
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.3, 0.3], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]])
    targ = torch.tensor([0, 1, 1, 2])
    # Class 0 vs rest: 0.7 beats 0.4, 0.2, 0.3 → 1. Class 1: {0.3, 0.5} vs {0.2, 0.1} → 1.
    # Class 2: 0.6 vs {0.1, 0.3, 0.3} → 1. Then swap two scores to make class 0 imperfect.
    assert run_metric(RocAuc(), probs.log(), targ) == pytest.approx(1.0)
    probs2 = torch.tensor([[0.35, 0.35, 0.3], [0.4, 0.3, 0.3], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]])
    # Class 0: 0.35 vs {0.4, 0.2, 0.3} → 2/3. Class 1: {0.3, 0.5} vs {0.35, 0.1} → 3/4. Class 2: 0.6 vs rest → 1.
    assert run_metric(RocAuc(), probs2.log(), targ, [2, 2]) == pytest.approx((2 / 3 + 3 / 4 + 1) / 3)
    # Weighted by class frequency (1, 2, 1).
    assert run_metric(RocAuc(average="weighted"), probs2.log(), targ) == pytest.approx((2 / 3 + 2 * 3 / 4 + 1) / 4)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="ROC AUC needs positive and negative targets"):
        run_metric(RocAucBinary(), torch.zeros(3, 2), torch.tensor([1, 1, 1]))


def test_multilabel_scores_hand_computed():
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8]])
    targ = torch.tensor([[1, 0], [0, 1], [0, 1]])
    # Thresholded: [[1, 0], [1, 1], [0, 1]]. Column 0: tp 1, fp 1 → F1 2/3. Column 1: tp 2 → F1 1.
    assert run_metric(F1ScoreMulti(sigmoid=False), probs, targ) == pytest.approx(5 / 6)
    assert run_metric(F1ScoreMulti(sigmoid=False, average="micro"), probs, targ, [2, 1]) == pytest.approx(6 / 7)
    # Rows: F1 = 1, 2/3, 1.
    assert run_metric(F1ScoreMulti(sigmoid=False, average="samples"), probs, targ) == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert run_metric(F1ScoreMulti(), torch.logit(probs), targ) == pytest.approx(5 / 6)
    assert run_metric(PrecisionMulti(sigmoid=False), probs, targ) == pytest.approx((0.5 + 1) / 2)
    assert run_metric(RecallMulti(sigmoid=False, labels=[0]), probs, targ) == pytest.approx(1.0)
    assert run_metric(FBetaMulti(2.0, sigmoid=False, thresh=0.95), probs, targ) == pytest.approx(0.0)


def test_roc_auc_multi_hand_computed():
    probs = torch.tensor([[0.9, 0.75], [0.6, 0.7], [0.1, 0.8]])
    targ = torch.tensor([[1, 0], [0, 1], [0, 1]])
    # Column 0: perfectly ranked → 1. Column 1: 0.7 loses to 0.75, 0.8 beats it → 0.5.
    assert run_metric(RocAucMulti(sigmoid=False), probs, targ, [1, 2]) == pytest.approx(0.75)
    assert run_metric(RocAucMulti(), torch.logit(probs), targ, [1, 2]) == pytest.approx(0.75)
    assert run_metric(RocAucMulti(sigmoid=False, average="weighted"), probs, targ) == pytest.approx((1 + 2 * 0.5) / 3)


def test_classification_argument_errors():
    with pytest.raises(ValueError, match=r"`average` must be one of 'binary', 'micro', 'macro', 'weighted'; "
                                         r"received: average='samples'"):
        F1Score(average="samples")
    with pytest.raises(ValueError, match=r"`multi_class` must be 'ovr'"):
        RocAuc(multi_class="ovo")
    three = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).float()
    with pytest.raises(ValueError, match=r"average='binary' needs two classes.*hold 3; pass average='macro'"):
        run_metric(F1Score(), three, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"`sample_weight` must have one weight per validation sample \(3\); "
                                         r"received 2"):
        run_metric(F1Score(average="macro", sample_weight=[1.0, 1.0]), three, torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------------------------------------------------
# Contract tests


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
    whole = run_metric(factory(), pred, targ)
    assert isinstance(whole, float)
    assert run_metric(factory(), pred, targ, [4, 4, 2]) == pytest.approx(whole, abs=1e-12)


@pytest.mark.parametrize("factory", [F1ScoreMulti, RocAucMulti, lambda: AvgMetric(accuracy_multi)])
def test_multilabel_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(4)
    pred, targ = torch.randn(10, 3, generator=gen), torch.randint(0, 2, (10, 3), generator=gen)
    targ[0], targ[1] = torch.tensor([1, 1, 1]), torch.tensor([0, 0, 0])
    assert run_metric(factory(), pred, targ, [4, 4, 2]) == pytest.approx(run_metric(factory(), pred, targ), abs=1e-6)


def test_factories_return_fresh_metrics_with_sklearn_style_names():
    names = {F1Score: "f1_score", FBeta: "fbeta_score", Precision: "precision_score", Recall: "recall_score",
             BalancedAccuracy: "balanced_accuracy_score", MatthewsCorrCoef: "matthews_corrcoef",
             CohenKappa: "cohen_kappa_score", RocAuc: "roc_auc_score", RocAucBinary: "roc_auc_score",
             F1ScoreMulti: "f1_score", FBetaMulti: "fbeta_score", PrecisionMulti: "precision_score",
             RecallMulti: "recall_score", RocAucMulti: "roc_auc_score"}
    for cls, name in names.items():
        args = (2.0,) if cls in (FBeta, FBetaMulti) else ()
        first, second = cls(*args), cls(*args)
        assert first.name == name and first is not second and isinstance(first, Metric)
