"""Tests for lamina.metrics.regression: hand-computed scores and batch-size invariance."""

import math

import pytest
import torch

from lamina.metrics import (AvgMetric, ExplainedVariance, Metric, PearsonCorrCoef, R2Score, SpearmanCorrCoef, mae,
                            mse, msle, rmse)
from tests.metrics.helpers import run_metric


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
    assert run_metric(metric, REG_PRED, REG_TARG, [2, 1]) == pytest.approx(expected)


def test_r2_of_a_constant_target():
    assert run_metric(R2Score(), torch.tensor([2.0, 2.0]), torch.tensor([2.0, 2.0])) == 1.0
    assert run_metric(R2Score(), torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])) == 0.0


def test_spearman_uses_average_ranks_for_ties():
    # Ranks of [1, 1, 2] are [1.5, 1.5, 3]; of [1, 2, 3] are [1, 2, 3]: Pearson of those = sqrt(3)/2.
    value = run_metric(SpearmanCorrCoef(), torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert value == pytest.approx(math.sqrt(3) / 2)


@pytest.mark.parametrize("factory", [R2Score, ExplainedVariance, PearsonCorrCoef, SpearmanCorrCoef, lambda: rmse,
                                     lambda: AvgMetric(mse), lambda: AvgMetric(mae), lambda: AvgMetric(msle)])
def test_regression_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(3)
    pred, targ = torch.rand(10, 1, generator=gen), torch.rand(10, generator=gen)
    assert run_metric(factory(), pred, targ, [4, 4, 2]) == pytest.approx(run_metric(factory(), pred, targ), abs=1e-6)


def test_factories_return_fresh_metrics_with_sklearn_style_names():
    names = {R2Score: "r2_score", ExplainedVariance: "explained_variance_score", PearsonCorrCoef: "pearsonr",
             SpearmanCorrCoef: "spearmanr"}
    for cls, name in names.items():
        first, second = cls(), cls()
        assert first.name == name and first is not second and isinstance(first, Metric)
