"""Shared helpers of the metric tests: a stand-in learner and a batch-by-batch runner."""

import types

import torch

from lamina.losses import CrossEntropyLossFlat


def fake_learn(pred, *yb, loss=None, training=False):
    return types.SimpleNamespace(pred=pred, yb=tuple(yb), loss=loss, training=training,
                                 loss_func=CrossEntropyLossFlat())


def run_metric(metric, pred, targ, sizes=None):
    """Reset, feed ``pred``/``targ`` in batches of ``sizes`` (default: one batch), return the value."""
    metric.reset()
    start = 0
    for bs in sizes or [len(pred)]:
        metric.accumulate(fake_learn(pred[start:start + bs], targ[start:start + bs]))
        start += bs
    return metric.value


def binary_logits(labels):
    """Two-column logits whose argmax is ``labels``."""
    labels = torch.tensor(labels)
    return torch.stack([1 - labels, labels], dim=1).float()
