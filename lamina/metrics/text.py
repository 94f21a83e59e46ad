"""Metrics for text models: `Perplexity` for language models, `CorpusBLEUMetric` for sequence-to-sequence ones."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from ..distributed import all_reduce_sum
from .base import AvgLoss, Metric, _target

__all__ = ["Perplexity", "CorpusBLEUMetric"]


class Perplexity(AvgLoss):
    """``exp`` of the mean validation loss (cross-entropy per token): a language model as uncertain as a uniform
    choice among N words has perplexity N. Named 'perplexity'.

    Example:
        >>> learn = language_model_learner(dls, AWD_LSTM, metrics=[accuracy, Perplexity()])
    """

    @property
    def value(self) -> float | None:
        mean = super().value
        return None if mean is None else math.exp(mean)

    def _default_name(self) -> str:
        return "perplexity"


def _ngrams(tokens: list[int], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


class CorpusBLEUMetric(Metric):
    """Corpus-level BLEU of the predicted token sequences (argmax over ``axis``) against the target sequences.

    For n = 1..4 it counts the predicted n-grams and those also in the target (each target n-gram matched at
    most as often as it occurs there), over the whole validation set; a sequence with no match of some order
    counts 1/2 of a match for the first such order, 1/4 for the next ... (smoothing method 3 of Chen and Cherry,
    2014, as fastai). BLEU is the geometric mean of the four precisions, times ``exp(1 - target length /
    predicted length)`` when the predictions are shorter. Named 'corpus_bleu'. The counts add up across
    processes, so it is exact under data-parallel training.

    Args:
        vocab_sz: accepted for fastai compatibility (n-grams are counted directly).
        axis: the vocabulary axis of the predictions.
    """

    def __init__(self, vocab_sz: int = 5000, axis: int = -1) -> None:
        self.vocab_sz, self.axis = vocab_sz, axis
        self.reset()

    def reset(self) -> None:
        self.pred_len, self.targ_len = 0, 0
        self.corrects, self.counts = [0] * 4, [0] * 4

    def accumulate(self, learn: Any) -> None:
        preds = learn.pred.detach().argmax(dim=self.axis).cpu()
        targs = _target(learn, self).detach().cpu()
        if preds.shape[0] != targs.shape[0]:
            raise ValueError(f"corpus_bleu: {preds.shape[0]} predicted sequences for {targs.shape[0]} targets; the "
                             "model's output must be (batch, length, vocabulary) and the target (batch, length)")
        for pred, targ in zip(preds.reshape(len(preds), -1).tolist(), targs.reshape(len(targs), -1).tolist()):
            self.pred_len += len(pred)
            self.targ_len += len(targ)
            smoothing = 1
            for n in range(1, 5):
                found, wanted = _ngrams(pred, n), _ngrams(targ, n)
                correct = sum(min(c, wanted[g]) for g, c in found.items())
                if correct == 0:  # no match of this order: 1/2, then 1/4 ... (smoothing method 3 of Chen & Cherry)
                    smoothing *= 2
                    correct = 1 / smoothing
                self.counts[n - 1] += sum(found.values())
                self.corrects[n - 1] += correct

    @property
    def value(self) -> float | None:
        if self.pred_len == 0:
            return None
        if min(self.counts) == 0:  # sequences shorter than 4 tokens: no 4-gram to score
            return 0.0
        precision = math.prod(c / t for c, t in zip(self.corrects, self.counts)) ** 0.25
        penalty = math.exp(1 - self.targ_len / self.pred_len) if self.pred_len < self.targ_len else 1.0
        return penalty * precision

    def sync(self) -> None:
        """Add up every process's counts."""
        both = all_reduce_sum(torch.tensor([self.pred_len, self.targ_len, *self.corrects, *self.counts],
                                           dtype=torch.float64)).tolist()
        self.pred_len, self.targ_len, self.corrects, self.counts = int(both[0]), int(both[1]), both[2:6], both[6:10]

    def _default_name(self) -> str:
        return "corpus_bleu"
