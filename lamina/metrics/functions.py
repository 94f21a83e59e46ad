"""Per-sample metric functions (use them directly: `metrics=accuracy` wraps them in `AvgMetric`).

`rmse` and `exp_rmspe` are ready-made `AccumMetric` instances: a square root does not average over batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import AccumMetric, _flatten_check


def accuracy(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """Fraction of predictions whose argmax over ``axis`` equals the target."""
    pred, targ = _flatten_check(inp.argmax(dim=axis), targ)
    return (pred == targ).float().mean()


def error_rate(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """``1 − accuracy``."""
    return 1 - accuracy(inp, targ, axis=axis)


def top_k_accuracy(inp: Tensor, targ: Tensor, k: int = 5, axis: int = -1) -> Tensor:
    """Fraction of targets among the ``k`` highest-scoring classes."""
    if targ.dim() == inp.dim():  # (bs, 1) targets
        targ = targ.squeeze(axis)
    top = inp.topk(k, dim=axis).indices
    return (top == targ.unsqueeze(axis)).sum(dim=axis).float().mean()


def accuracy_multi(inp: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: fraction of (sample, label) pairs where ``prob > thresh`` matches the target."""
    inp, targ = _flatten_check(inp, targ)
    if sigmoid:
        inp = inp.sigmoid()
    return ((inp > thresh) == targ.bool()).float().mean()


def mse(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error (both flattened, so (bs, 1) vs (bs,) works)."""
    inp, targ = _flatten_check(inp, targ)
    return F.mse_loss(inp.float(), targ.float())


def mae(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error."""
    inp, targ = _flatten_check(inp, targ)
    return (inp.float() - targ.float()).abs().mean()


def msle(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared logarithmic error, ``mean((log(1+p) − log(1+t))²)``."""
    inp, targ = _flatten_check(inp, targ)
    return F.mse_loss(torch.log1p(inp.float()), torch.log1p(targ.float()))


def foreground_acc(inp: Tensor, targ: Tensor, bkg_idx: int = 0, axis: int = 1) -> Tensor:
    """Pixel accuracy ignoring background pixels (target ``== bkg_idx``), for segmentation.

    As an `AvgMetric` the epoch value weights batches by their size, not by their foreground pixels.
    """
    if targ.dim() == inp.dim():  # (bs, 1, H, W) masks
        targ = targ.squeeze(axis)
    keep = targ != bkg_idx
    return (inp.argmax(dim=axis)[keep] == targ[keep]).float().mean()


def _rmse(preds: Tensor, targs: Tensor) -> Tensor:
    return torch.sqrt(F.mse_loss(preds.float(), targs.float()))


def _exp_rmspe(preds: Tensor, targs: Tensor) -> Tensor:
    preds, targs = torch.exp(preds.double()), torch.exp(targs.double())
    return torch.sqrt((((targs - preds) / targs) ** 2).mean())


#: Root mean squared error over the epoch (an `AccumMetric`: the square root does not average over batches).
rmse = AccumMetric(_rmse, name="rmse")
#: Root mean squared percentage error of ``exp(pred)`` vs ``exp(targ)`` (for log-scale targets), over the epoch.
exp_rmspe = AccumMetric(_exp_rmspe, name="exp_rmspe")
