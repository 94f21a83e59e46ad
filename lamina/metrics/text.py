"""Metrics for language models."""

from __future__ import annotations

import math

from .base import AvgLoss

__all__ = ["Perplexity"]


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
