"""Metrics: objects the Learner resets before a pass, feeds after every batch, and reads at the end.

Three ways to get an exact epoch value whatever the batch sizes:

* `AvgMetric(func)` for functions that are a mean over samples (``accuracy``, ``mse``): a batch-size-weighted
  mean of the per-batch values.
* `AccumMetric(func)` for everything else (F1, AUC, RMSE): keeps the epoch's predictions and targets on the
  CPU and calls ``func`` once. `F1Score`, `RocAuc`, `R2Score`, ... are ready-made `AccumMetric` subclasses,
  computed in torch (no scikit-learn needed) and named after their scikit-learn counterparts as fastai names
  them (``f1_score``, ``roc_auc_score``, ``r2_score``, ...), so ``monitor='f1_score'`` works.
* Running sums (`Dice`, `DiceMulti`, `JaccardCoeff`, `MeanIoU`) for segmentation, where keeping every pixel
  would not fit in memory.

Example:
    >>> learn = Learner(dls, model, metrics=[accuracy, F1Score(average='macro'), rmse])

Write your own by subclassing `Metric` and implementing ``reset``, ``accumulate(learn)`` and ``value``;
``accumulate`` may read ``learn.pred``, ``learn.yb``, ``learn.loss``, ``learn.training`` and ``learn.loss_func``.

Layout: `base` (the protocol, generic metrics, helpers), `functions` (per-sample functions), `classification`,
`ranking` (average precision), `regression`, `segmentation`, `text` (perplexity, BLEU) and `loss` (parts of a
loss as columns); import everything from ``lamina.metrics``.
"""

from .base import AccumMetric, AvgLoss, AvgMetric, AvgSmoothLoss, Metric, ValueMetric, as_metric, skm_to_fastai
from .classification import (BalancedAccuracy, CohenKappa, F1Score, F1ScoreMulti, FBeta, FBetaMulti,
                             MatthewsCorrCoef, Precision, PrecisionMulti, Recall, RecallMulti, RocAuc,
                             RocAucBinary, RocAucMulti)
from .functions import (accuracy, accuracy_multi, error_rate, exp_rmspe, foreground_acc, mae, mse, msle, rmse,
                        top_k_accuracy)
from .regression import ExplainedVariance, PearsonCorrCoef, R2Score, SpearmanCorrCoef
from .segmentation import Dice, DiceMulti, JaccardCoeff, JaccardCoeffMulti, MeanIoU
from .loss import LossMetric, LossMetrics
from .ranking import APScoreBinary, APScoreMulti, MatthewsCorrCoefMulti
from .text import CorpusBLEUMetric, Perplexity

__all__ = [
    "Metric", "AvgMetric", "AvgLoss", "AvgSmoothLoss", "AccumMetric", "ValueMetric", "as_metric", "skm_to_fastai",
    "accuracy", "error_rate", "top_k_accuracy", "accuracy_multi", "mse", "mae", "msle", "rmse", "exp_rmspe",
    "foreground_acc", "R2Score", "ExplainedVariance", "PearsonCorrCoef", "SpearmanCorrCoef",
    "F1Score", "FBeta", "Precision", "Recall", "BalancedAccuracy", "MatthewsCorrCoef", "CohenKappa",
    "RocAuc", "RocAucBinary", "F1ScoreMulti", "FBetaMulti", "PrecisionMulti", "RecallMulti", "RocAucMulti",
    "Dice", "DiceMulti", "JaccardCoeff", "JaccardCoeffMulti", "MeanIoU", "Perplexity", "CorpusBLEUMetric",
    "APScoreBinary", "APScoreMulti", "MatthewsCorrCoefMulti", "LossMetric", "LossMetrics",
]
