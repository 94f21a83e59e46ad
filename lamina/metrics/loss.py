"""Metrics that report parts of a loss: a loss function that computes several terms and keeps each as an
attribute (``self.bce``, ``self.l1``) can show every term as a column of the epoch table.

Example:
    >>> class TwoPart(nn.Module):
    ...     def forward(self, pred, targ):
    ...         self.mse, self.l1 = F.mse_loss(pred, targ), F.l1_loss(pred, targ)
    ...         return self.mse + self.l1
    >>> learn = Learner(dls, model, loss_func=TwoPart(), metrics=LossMetrics('mse,l1'))
"""

from __future__ import annotations

from typing import Any

from ..foundation import L
from .base import AvgMetric

__all__ = ["LossMetric", "LossMetrics"]


class LossMetric(AvgMetric):
    """The batch-size-weighted mean of ``learn.loss_func.<attr>`` after each batch, named ``nm`` (default
    ``attr``).

    Raises:
        AttributeError: (at the first batch) when the loss function has no such attribute.
    """

    def __init__(self, attr: str, nm: str | None = None) -> None:
        super().__init__(func=None)
        self.attr, self._name = attr, nm

    def _batch_value(self, learn: Any) -> Any:
        loss_func = learn.loss_func
        if not hasattr(loss_func, self.attr):
            raise AttributeError(f"LossMetric({self.attr!r}): the loss function {type(loss_func).__name__} has no "
                                 f"attribute {self.attr!r} after its call; set self.{self.attr} in its forward")
        return getattr(loss_func, self.attr)

    def _default_name(self) -> str:
        return self.attr


def LossMetrics(attrs: str | list[str], nms: str | list[str] | None = None) -> L:  # noqa: N802 (fastai's name)
    """A `LossMetric` per attribute of ``attrs`` (a list, or names separated by commas), named by ``nms``."""
    attrs = [a.strip() for a in attrs.split(",")] if isinstance(attrs, str) else list(attrs)
    nms = [n.strip() for n in nms.split(",")] if isinstance(nms, str) else (list(nms) if nms else attrs)
    if len(nms) != len(attrs):
        raise ValueError(f"LossMetrics: {len(attrs)} attributes {attrs} but {len(nms)} names {nms}; give one name "
                         "per attribute, or none")
    return L([LossMetric(a, n) for a, n in zip(attrs, nms)])
