"""Test-time augmentation: `Learner.tta` predicts on augmented copies of the data and blends them with the
plain predictions.

The validation items go through the *training* transforms ``n`` times (the random crops, flips, rotations and
lighting changes of ``split_idx`` 0, item and batch transforms alike) with the model in evaluation mode; the
average of those passes (or their maximum, ``use_max``) is then blended with one plain pass.

Example:
    >>> preds, targs = learn.tta()                  # 4 augmented passes, 0.75 of them + 0.25 of the plain one
    >>> error_rate(preds, targs)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from .data.transforms import as_steps, fuse_tfms, sort_tfms

__all__ = ["TTAMixin", "augmented_loader", "blend_tta"]


def _training_view(dataset: Any, item_tfms: Sequence | None) -> Any:
    """A view of ``dataset`` whose item transforms draw as in training (``split_idx`` 0), optionally with
    ``item_tfms`` in place of its own. A dataset without a ``split_idx`` (tensors) is returned as it is."""
    if not hasattr(dataset, "split_idx"):
        if item_tfms is not None:
            raise ValueError(f"`item_tfms` needs a dataset with item transforms; this loader's dataset is a "
                             f"{type(dataset).__name__}. Pass batch_tfms= instead, or build the data with a DataBlock")
        return dataset
    # `Datasets._view` keeps the getters (a plain copy would go through the state workers receive)
    view = dataset._view() if hasattr(dataset, "_view") else copy.copy(dataset)
    view.split_idx = 0
    if item_tfms is not None:
        view.item_tfms = sort_tfms(as_steps(item_tfms))
    return view


def augmented_loader(dl: Any, item_tfms: Sequence | None = None, batch_tfms: Sequence | None = None) -> Any:
    """A copy of ``dl`` (in its order, nothing dropped) that applies the training transforms to its items.

    Args:
        dl: a loader, usually the validation one.
        item_tfms, batch_tfms: transforms that replace the loader's own, as fastai's ``tta`` does (so keep what
            the data needs, e.g. ``ToTensor`` and ``IntToFloatTensor``/``Normalize``).

    Its seed is drawn from torch's generator, so `set_seed` before the call repeats the augmentations.
    """
    # the shuffle seed (also the workers' seeds) is drawn from torch's generator, so `set_seed` repeats the draws
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    kwargs: dict[str, Any] = {"shuffle": False, "drop_last": False, "split_idx": 0, "seed": seed}
    if batch_tfms is not None:
        kwargs["after_batch"] = fuse_tfms(as_steps(batch_tfms))
    dataset = _training_view(dl.dataset, item_tfms)
    new = dl.new(dataset, **kwargs) if dataset is not dl.dataset else dl.new(**kwargs)
    new.epochs_seen = 0
    return new


def blend_tta(aug_preds: torch.Tensor, preds: torch.Tensor, beta: float | None = 0.25,
              use_max: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Combine the augmented passes ``aug_preds`` (``n × items × ...``) with the plain ``preds``.

    Returns:
        ``max`` of everything when ``use_max``; else the mean of the passes ``a`` and, with ``beta``,
        ``a + beta * (preds - a)`` (``beta`` is the plain prediction's weight), or ``(a, preds)`` when beta is None.
    """
    if use_max:
        return torch.maximum(aug_preds.max(0).values, preds)
    mean = aug_preds.mean(0)
    return (mean, preds) if beta is None else torch.lerp(mean, preds, beta)


def _check_tta_args(n: Any, beta: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` (the number of augmented passes) must be a positive integer; received: n={n!r}")
    if beta is not None and not (isinstance(beta, (int, float)) and 0 <= beta <= 1):
        raise ValueError(f"`beta` (the plain predictions' weight) must be between 0 and 1, or None to get both "
                         f"predictions; received: beta={beta!r}")


class TTAMixin:
    """`tta` for the Learner (uses `get_preds` from `PredictMixin`)."""

    def tta(self, ds_idx: int = 1, dl: Any = None, n: int = 4, item_tfms: Sequence | None = None,
            batch_tfms: Sequence | None = None, beta: float | None = 0.25, use_max: bool = False) -> tuple:
        """Predictions with test-time augmentation on ``dls[ds_idx]`` (default: validation) or ``dl``.

        Args:
            ds_idx: which of ``dls`` when ``dl`` is not given.
            dl: a loader (e.g. ``dls.test_dl(files)``).
            n: how many augmented passes.
            item_tfms, batch_tfms: transforms replacing the loader's own in the augmented passes
                (see `augmented_loader`).
            beta: the weight of the plain predictions in the blend: ``lerp(mean of the passes, plain, beta)``;
                None returns both.
            use_max: take the element-wise maximum of the passes and the plain predictions instead.

        Returns:
            ``(preds, targets)``, or ``((augmented, plain), targets)`` when ``beta`` is None; targets is None
            for unlabelled data. Predictions are activated (e.g. softmax), in the dataset's order.

        Raises:
            ValueError: for ``n`` below 1 or ``beta`` outside [0, 1].

        Example:
            >>> (augmented, plain), targs = learn.tta(n=8, beta=None)
        """
        _check_tta_args(n, beta)
        if dl is None:
            dl = self.dls[ds_idx].new(shuffle=False, drop_last=False)
        aug_dl = augmented_loader(dl, item_tfms, batch_tfms)
        combined = None  # a running sum (or maximum) of the passes: one pass in memory, not n
        for _ in range(n):
            pass_preds = self.get_preds(dl=aug_dl)[0]
            combined = pass_preds if combined is None else \
                (torch.maximum(combined, pass_preds) if use_max else combined.add_(pass_preds))
        combined = combined if use_max else combined / n
        preds, targs = self.get_preds(dl=dl)[:2]
        return blend_tta(combined.unsqueeze(0), preds, beta, use_max), targs
