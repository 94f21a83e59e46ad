"""MixUp and CutMix: train on blends of two samples, with their labels blended in the same proportion.

During training each batch is blended with a shuffled copy of itself: MixUp interpolates whole inputs
(Zhang et al., 2018), CutMix pastes one box of the shuffled images (Yun et al., 2019). For a loss on class
indices (``loss_func.y_int``, or integer targets) the loss becomes ``lerp(loss(pred, y_shuffled),
loss(pred, y), lam)`` per sample; for other targets (one-hot, soft labels, regression) the targets are
blended instead and the loss is unchanged. The blending loss is the learner's ``loss_func`` during the
training passes only: validation, metrics, ``get_preds`` and exports see the plain loss.

Example:
    >>> learn = vision_learner(dls, xresnet50, pretrained=False, loss_func=LabelSmoothingCrossEntropy(),
    ...                        cbs=MixUp(0.4))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions.beta import Beta

from ..losses import loss_not_reduced
from .core import Callback

__all__ = ["MixHandler", "MixUp", "CutMix", "reduce_loss"]


def reduce_loss(loss: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``loss`` reduced by ``reduction``: ``'mean'``, ``'sum'`` or ``'none'`` (unchanged)."""
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


class MixHandler(Callback):
    """What `MixUp` and `CutMix` share: ``lam`` from ``Beta(alpha, alpha)``, and the blending loss.

    Subclasses set ``self.lam`` (one weight per sample, or one number), ``self.yb1`` (the shuffled targets)
    and the blended ``learn.xb`` in ``before_batch``, then call `_mix_targets`.

    Args:
        alpha: the Beta distribution's parameters (> 0); small values keep most samples nearly unmixed.
    """

    run_valid = False

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        if not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"`alpha` must be a positive number; received: alpha={alpha!r}")
        self.alpha = float(alpha)
        self.distrib = Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        self.old_lf: Callable | None = None
        self.lam: torch.Tensor | None = None
        self.yb1: tuple = ()
        self.stack_y = False

    def before_train(self) -> None:
        self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf

    def after_train(self) -> None:
        if self.old_lf is not None:
            self.learn.loss_func, self.old_lf = self.old_lf, None

    def after_cancel_train(self) -> None:
        self.after_train()

    def after_cancel_fit(self) -> None:
        self.after_train()

    def cleanup(self) -> None:
        """Give the learner its own loss back when a fit ends with an error."""
        self.after_train()

    def _mix_targets(self) -> None:
        """Decide how this batch is mixed; blend the targets unless they are class indices."""
        yb = self.learn.yb
        self.stack_y = bool(getattr(self.old_lf, "y_int", False)) or any(
            not torch.is_floating_point(y) for y in yb)
        if not self.stack_y:
            self.learn.yb = tuple(torch.lerp(y1, y, _per_sample(self.lam, y)) for y1, y in zip(self.yb1, yb))

    def lf(self, pred: torch.Tensor, *yb: torch.Tensor) -> torch.Tensor:
        """The training loss: the plain loss when targets were blended, else the ``lam``-blend of the losses
        against the shuffled and the original targets, reduced like the plain loss."""
        if not self.learn.training or not self.stack_y:
            return self.old_lf(pred, *yb)
        loss1, loss = _unreduced(self.old_lf, pred, self.yb1), _unreduced(self.old_lf, pred, yb)
        bs, lam = pred.shape[0], self.lam.to(loss.dtype)
        lam = lam if lam.ndim == 0 else lam.view(bs, *[1] * (loss.ndim - 1))
        if loss.ndim and loss.shape[0] != bs:  # a *Flat loss flattens (bs, ..., C): one value per position
            loss, loss1 = loss.view(bs, -1), loss1.view(bs, -1)
            lam = lam.view(-1, *[1] * (loss.ndim - 1)) if lam.ndim else lam
        return reduce_loss(torch.lerp(loss1, loss, lam), getattr(self.old_lf, "reduction", "mean"))


def _unreduced(loss_func: Callable, pred: torch.Tensor, yb: tuple) -> torch.Tensor:
    """One loss per element: through ``reduction='none'`` (loss modules) or the ``reduction`` argument."""
    if hasattr(loss_func, "reduction"):
        with loss_not_reduced(loss_func) as lf:
            return lf(pred, *yb)
    try:
        return loss_func(pred, *yb, reduction="none")
    except TypeError as e:
        raise TypeError(f"MixUp/CutMix need one loss per sample, but the loss {loss_func!r} has no `reduction` "
                        "attribute or argument. Use a loss module such as CrossEntropyLossFlat() or "
                        "LabelSmoothingCrossEntropy()") from e


def _per_sample(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``lam`` shaped to broadcast over ``like`` (one weight per sample along the first axis)."""
    lam = lam.to(device=like.device, dtype=like.dtype)
    return lam if lam.ndim == 0 else lam.view(-1, *[1] * (like.ndim - 1))


class MixUp(MixHandler):
    """MixUp (Zhang et al., 2018): each input becomes ``lerp(x_shuffled, x, lam)``, ``lam`` per sample.

    ``lam = max(l, 1 - l)`` with ``l ~ Beta(alpha, alpha)``, so each blend is dominated by its own sample
    (whose target is then the heavier one). Random numbers come from torch's global generator
    (``set_seed`` makes a run repeatable).

    Args:
        alpha: the Beta distribution's parameters (> 0).
    """

    def __init__(self, alpha: float = 0.4):
        super().__init__(alpha)

    def before_batch(self) -> None:
        xb, yb = self.learn.xb, self.learn.yb
        bs = xb[0].shape[0]
        lam = self.distrib.sample((bs,))
        self.lam = torch.maximum(lam, 1 - lam).to(xb[0].device)
        shuffle = torch.randperm(bs).to(xb[0].device)
        self.yb1 = tuple(y[shuffle] for y in yb)
        if not all(torch.is_floating_point(x) for x in xb):
            raise ValueError(f"MixUp blends inputs, so they must be float tensors; received dtypes "
                             f"{[x.dtype for x in xb]}. Use it on images or continuous features")
        self.learn.xb = tuple(torch.lerp(x[shuffle], x, _per_sample(self.lam, x)) for x in xb)
        self._mix_targets()


class CutMix(MixHandler):
    """CutMix (Yun et al., 2019): paste one random box of the shuffled images into every image of the batch.

    The box has area about ``(1 - l)·H·W`` for ``l ~ Beta(alpha, alpha)`` and is clipped to the image;
    ``lam = 1 - box area / (H·W)`` (one number for the batch) weighs the original targets.

    Args:
        alpha: the Beta distribution's parameters (> 0).
    """

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def before_batch(self) -> None:
        x, yb = self.learn.xb[0], self.learn.yb
        if x.ndim < 3:
            raise ValueError(f"CutMix needs images (bs, channels, height, width); received inputs of shape "
                             f"{tuple(x.shape)}. Use MixUp for other inputs")
        bs, (h, w) = x.shape[0], x.shape[-2:]
        lam = self.distrib.sample((1,))
        shuffle = torch.randperm(bs).to(x.device)
        x1, y1, x2, y2 = self.rand_bbox(w, h, lam)
        mixed = x.clone()  # the loader's batch stays untouched
        mixed[..., y1:y2, x1:x2] = x[shuffle][..., y1:y2, x1:x2]
        self.learn.xb = (mixed, *self.learn.xb[1:])
        self.yb1 = tuple(y[shuffle] for y in yb)
        self.lam = torch.tensor(1 - ((x2 - x1) * (y2 - y1)) / float(w * h), device=x.device)
        self._mix_targets()

    def rand_bbox(self, W: int, H: int, lam: torch.Tensor) -> tuple[int, int, int, int]:
        """A box ``(x1, y1, x2, y2)`` of sides ``sqrt(1 - lam)·(W, H)`` around a uniform centre, clipped."""
        cut = float(torch.sqrt(1.0 - lam))
        cut_w, cut_h = round(W * cut), round(H * cut)
        cx, cy = int(torch.randint(0, W, (1,))), int(torch.randint(0, H, (1,)))
        x1, x2 = min(max(cx - cut_w // 2, 0), W), min(max(cx + cut_w // 2, 0), W)
        y1, y2 = min(max(cy - cut_h // 2, 0), H), min(max(cy + cut_h // 2, 0), H)
        return x1, y1, x2, y2
