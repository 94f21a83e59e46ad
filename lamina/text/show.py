"""Showing text batches and predictions as tables (a DataFrame displayed in a notebook, printed elsewhere)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

__all__ = ["show_text_batch", "show_text_results", "show_table"]


def show_table(df: pd.DataFrame) -> None:
    """Display ``df`` in a notebook, or print it elsewhere; returns None (as fastai's show functions do)."""
    from ..callbacks.progress import in_notebook
    if in_notebook():
        from IPython.display import display
        display(df)
    else:
        with pd.option_context("display.max_colwidth", 200, "display.width", 200):
            print(df.to_string(index=False))


def _label(dls: Any, y: torch.Tensor) -> Any:
    classes = getattr(dls, "classes", None) or []
    if y.ndim == 0 and not y.is_floating_point() and 0 <= int(y) < len(classes):
        return classes[int(y)]
    if y.ndim == 1 and classes:  # multi-label: a one-hot (or boolean) vector
        on = torch.nonzero(y > 0.5 if y.is_floating_point() else y).flatten().tolist()
        return ";".join(str(classes[i]) for i in on)
    return y.tolist()


def _frame(dls: Any, batch: tuple, max_n: int, trunc_at: int | None) -> pd.DataFrame:
    x = batch[0][:max_n].cpu()
    df = pd.DataFrame({"text": [dls.decode_text(row, trunc_at) for row in x]})
    if len(batch) > 1 and batch[1] is not None:
        y = batch[1][:max_n].cpu()
        if getattr(dls, "is_lm", False):
            df["text_"] = [dls.decode_text(row, trunc_at) for row in y]
        else:
            df["category"] = [_label(dls, v) for v in y]
    return df


def show_text_batch(dls: Any, batch: tuple, max_n: int = 9, trunc_at: int | None = 150, **kwargs: Any) -> None:
    """A batch as a table: the (decoded) text and its label, or for a language model the text and the text
    shifted by one token (``text_``); texts cut at ``trunc_at`` tokens."""
    show_table(_frame(dls, batch, max_n, trunc_at))


def show_text_results(dls: Any, batch: tuple, preds: torch.Tensor, decoded: torch.Tensor, max_n: int = 9,
                      trunc_at: int | None = 150, **kwargs: Any) -> None:
    """`show_text_batch` plus the predictions: ``category_`` (a classifier) or the predicted next tokens (``pred``)."""
    df = _frame(dls, batch, max_n, trunc_at)
    decoded = torch.as_tensor(decoded)[:max_n].cpu()
    if getattr(dls, "is_lm", False):
        df["pred"] = [dls.decode_text(row, trunc_at) for row in decoded]
    else:
        df["category_"] = [_label(dls, v) for v in decoded]
    show_table(df)
