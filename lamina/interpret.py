"""Interpretation: which items the model gets most wrong, and how classes are confused.

Example:
    >>> interp = ClassificationInterpretation.from_learner(learn)
    >>> interp.most_confused(min_val=2); interp.plot_confusion_matrix()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["Interpretation", "ClassificationInterpretation", "SegmentationInterpretation"]


class Interpretation:
    """Predictions, targets and per-item losses of a learner on one loader (default: validation).

    Args:
        learn: the learner.
        dl: the (unshuffled) loader the values come from.
        inputs, preds, targs, decoded, losses: what ``learn.get_preds`` gathered.
    """

    def __init__(self, learn: Any, dl: Any, inputs: Any, preds: torch.Tensor, targs: torch.Tensor,
                 decoded: torch.Tensor, losses: torch.Tensor):
        self.learn, self.dl = learn, dl
        self.inputs, self.preds, self.targs, self.decoded, self.losses = inputs, preds, targs, decoded, losses

    @classmethod
    def from_learner(cls, learn: Any, ds_idx: int = 1, dl: Any = None, act: Any = None) -> "Interpretation":
        """Run ``learn`` over the loader once and keep everything needed to interpret it."""
        if dl is None:
            dl = learn.dls[ds_idx].new(shuffle=False, drop_last=False)
        inputs, preds, targs, decoded, losses = learn.get_preds(dl=dl, with_input=True, with_decoded=True,
                                                                with_loss=True, act=act)
        return cls(learn, dl, inputs, preds, targs, decoded, losses)

    def __getitem__(self, idxs: Any) -> tuple:
        """``(inputs, preds, targs, decoded, losses)`` of the items ``idxs``."""
        pick = (lambda t: tuple(x[idxs] for x in t) if isinstance(t, tuple) else t[idxs])
        return tuple(pick(v) for v in (self.inputs, self.preds, self.targs, self.decoded, self.losses))

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest (or smallest) losses and the indices of their items."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def plot_top_losses(self, k: int = 9, largest: bool = True, **kwargs: Any) -> Any:
        """Show the items with the top losses, titled ``prediction/actual / loss / probability`` (fastai's order;
        a line above the grid says so).

        Returns:
            The figure, shown once in a notebook.

        Raises:
            NotImplementedError: when the data has no way to show results (plain tensors).
        """
        show = getattr(self.dl, "show_results", None)
        if show is None:
            raise NotImplementedError("This data cannot show its items: plot_top_losses needs application data "
                                      "(images, masks, tables)")
        losses, idxs = self.top_losses(k, largest)
        inputs, preds, targs, decoded, _ = self[idxs]
        batch = (*(inputs if isinstance(inputs, tuple) else (inputs,)), targs)
        return show(self.learn.dls, batch, preds, decoded, max_n=len(idxs), losses=losses, **kwargs)


class ClassificationInterpretation(Interpretation):
    """Adds the confusion matrix and the most confused pairs of classes.

    Raises:
        ValueError: (when built) for targets that are not one class index per item (multi-label, regression,
            points), where a table of actual against predicted class has no meaning; it names what to use instead.
    """

    def __init__(self, learn: Any, dl: Any, inputs: Any, preds: torch.Tensor, targs: torch.Tensor,
                 decoded: torch.Tensor, losses: torch.Tensor):
        _check_single_label(learn, targs)
        super().__init__(learn, dl, inputs, preds, targs, decoded, losses)

    @property
    def vocab(self) -> list:
        vocab = getattr(self.learn.dls, "vocab", None)
        return list(vocab) if vocab is not None else list(range(self.preds.shape[-1]))

    def confusion_matrix(self) -> np.ndarray:
        """Counts with actual classes as rows and predicted classes as columns."""
        n = len(self.vocab)
        idx = self.targs.flatten().long() * n + self.decoded.flatten().long()
        return torch.bincount(idx, minlength=n * n).reshape(n, n).numpy()

    def most_confused(self, min_val: int = 1) -> list[tuple[Any, Any, int]]:
        """``(actual, predicted, count)`` for off-diagonal cells with at least ``min_val``, most frequent first."""
        cm = self.confusion_matrix()
        np.fill_diagonal(cm, 0)
        pairs = [(self.vocab[i], self.vocab[j], int(cm[i, j])) for i, j in zip(*np.nonzero(cm >= min_val))]
        return sorted(pairs, key=lambda p: -p[2])

    def plot_confusion_matrix(self, normalize: bool = False, title: str = "Confusion matrix", cmap: str = "Blues",
                              norm_dec: int = 2, plot_txt: bool = True, **fig_kwargs: Any) -> Any:
        """Plot the confusion matrix (rows: actual, columns: predicted).

        Returns:
            The figure, shown once in a notebook (it is drawn when the cell ends, not again as its value).
        """
        from .figures import new_figure
        cm = self.confusion_matrix().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig = new_figure(**fig_kwargs)
        ax = fig.add_subplot()
        ax.imshow(cm, interpolation="nearest", cmap=cmap)
        ax.set_title(title)
        ticks = np.arange(len(self.vocab))
        ax.set_xticks(ticks, [str(v) for v in self.vocab], rotation=90)
        ax.set_yticks(ticks, [str(v) for v in self.vocab], rotation=0)
        if plot_txt:
            for i, j in np.ndindex(cm.shape):
                text = f"{cm[i, j]:.{norm_dec}f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_ylabel("Actual")
        ax.set_xlabel("Predicted")
        fig.tight_layout()
        return fig

    def print_classification_report(self) -> str:
        """Precision, recall, F1 and support per class (printed and returned)."""
        cm = self.confusion_matrix().astype(float)
        tp, support = np.diag(cm), cm.sum(1)
        precision = tp / np.maximum(cm.sum(0), 1)
        recall = tp / np.maximum(support, 1)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        lines = [f"{'':>16}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}"]
        for name, p, r, f, s in zip(self.vocab, precision, recall, f1, support):
            lines.append(f"{str(name):>16}{p:>10.2f}{r:>10.2f}{f:>10.2f}{int(s):>10}")
        lines.append(f"{'accuracy':>16}{'':>20}{tp.sum() / max(cm.sum(), 1):>10.2f}{int(cm.sum()):>10}")
        report = "\n".join(lines)
        print(report)
        return report


def _check_single_label(learn: Any, targs: Any) -> None:
    """Raise a ValueError unless the targets are class indices (integers), naming the kind they are instead."""
    if not isinstance(targs, torch.Tensor) or not targs.is_floating_point():
        return
    kind = getattr(learn.dls, "target_kind", None)
    if kind == "multicategory":
        raise ValueError("ClassificationInterpretation needs one class per item, but these targets are multi-label "
                         "(a yes/no per class), where a confusion matrix of actual against predicted class has no "
                         "meaning. Use Interpretation.from_learner(learn) for the top losses (plot_top_losses), and "
                         "per-class metrics such as accuracy_multi or F1ScoreMulti")
    what = f"of kind {kind!r}" if kind else f"floats (shape {tuple(targs.shape)})"
    raise ValueError(f"ClassificationInterpretation needs one class index per item, but these targets are {what}: "
                     "there are no classes to confuse. Use Interpretation.from_learner(learn) for the top losses")


class SegmentationInterpretation(Interpretation):
    """Interpretation for segmentation: per-image losses (mean over pixels) and their top losses."""
