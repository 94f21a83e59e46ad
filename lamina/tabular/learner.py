"""`tabular_learner` and `TabularLearner`: a `TabularModel` sized from the data, with row-level prediction.

Prediction on new data, three ways:

* ``learn.predict(row)`` — one row (a Series such as ``df.iloc[0]``, or a dict) → ``(row, class index,
  probabilities)``; ``row`` is the processed row decoded, with the prediction in the target column.
* ``learn.predict_df(df)`` — a DataFrame → a copy with ``<target>_pred`` columns (and, for classification,
  one ``<target>_prob_<class>`` column per class).
* ``learn.get_preds(dl=learn.dls.test_dl(df))`` — the raw probability tensor, as in fastai.

Example:
    >>> learn = tabular_learner(dls, metrics=accuracy)
    >>> learn.fit_one_cycle(3)
    >>> row, clas, probs = learn.predict(df.iloc[0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..export import ExportError
from ..learner import Learner
from ..models.activations import activation_config
from ..models.embedding_sizes import get_emb_sz  # its home; still importable from here
from ..models.tabular import TabularModel, tabular_config
from ..registry import register
from .tables import decode_targets, show_frame

__all__ = ["tabular_learner", "TabularLearner", "get_emb_sz", "TabularRow"]


class TabularRow(pd.DataFrame):
    """A one-row DataFrame (the processed row `predict` returns), with fastai's ``row.show()``."""

    def show(self) -> None:
        """Show the row as a table: displayed in a notebook, printed elsewhere (returns None, as in fastai)."""
        show_frame(self)


@register("learner")
class TabularLearner(Learner):
    """A `Learner` for tables: `predict` takes a raw row, `predict_df` a DataFrame; `show_results` is a table.

    Attributes:
        unexportable: why `export` must refuse (e.g. an activation JSON cannot describe), or None.
    """

    unexportable: str | None = None

    def _activated(self, cats: torch.Tensor, conts: torch.Tensor) -> torch.Tensor:
        """Model outputs after the loss's activation (softmax, sigmoid or identity), on the CPU."""
        device = next(self.model.parameters()).device
        if self.model.training:  # eval() walks every submodule: skip it when already in eval mode
            self.model.eval()
        with torch.no_grad():
            out = self.model(cats.to(device), conts.to(device))
        act = getattr(self.loss_func, "activation", None)
        return (act(out) if act is not None else out).float().cpu()

    def _decoded(self, probs: torch.Tensor) -> torch.Tensor:
        decodes = getattr(self.loss_func, "decodes", None)
        return decodes(probs) if decodes is not None else probs

    def predict(self, row: pd.Series | Mapping[str, Any], with_input: bool = False) -> tuple:
        """Predict one raw row (a Series such as ``df.iloc[0]``, or a dict); extra columns are ignored.

        Returns:
            ``(row, class index, probabilities)`` for classification, ``(row, values, values)`` for
            regression; ``row`` is a one-row DataFrame of the processed row decoded, with the prediction in
            the target column(s).

        Raises:
            ValueError: for a missing column or a non-numeric continuous value (naming the column), or more
                than one row (use `predict_df`).

        Warns:
            UserWarning: naming the column and value, for a category the training rows did not have (it is
                encoded as ``#na#``).
        """
        processor = self.dls.processor
        cats, conts = processor.encode(row, with_labels=False)
        if len(cats) != 1:
            raise ValueError(f"predict takes one row; received {len(cats)} rows. Use learn.predict_df(df) or "
                             "learn.get_preds(dl=learn.dls.test_dl(df)) for many rows")
        probs = self._activated(cats, conts)
        decoded = self._decoded(probs)
        full = TabularRow(processor.decode_table(cats, conts, decoded), copy=False)
        out = (full, decoded[0], probs[0])
        return ((cats, conts), *out) if with_input else out

    def predict_df(self, df: pd.DataFrame, bs: int = 4096) -> pd.DataFrame:
        """Predict every row of ``df`` → a copy of ``df`` with the predictions added.

        Adds ``<target>_pred`` (decoded labels or values) and, for single-label classification, one
        ``<target>_prob_<class>`` column per class.
        """
        processor = self.dls.processor
        cats, conts = processor.encode(df, with_labels=False)
        probs = torch.cat([self._activated(cats[i:i + bs], conts[i:i + bs]) for i in range(0, len(cats), bs)]) \
            if len(cats) else torch.zeros(0, self.dls.n_out or 1)
        out = df.copy()
        preds = decode_targets(self._decoded(probs), processor.y_names, processor.y_kind, processor.y_vocab)
        for col, values in preds.items():
            out[f"{col}_pred"] = values
        if processor.y_kind == "category":
            for i, name in enumerate(processor.y_vocab):
                out[f"{processor.y_names[0]}_prob_{name}"] = probs[:, i].numpy()
        return out

    def show_results(self, ds_idx: int = 1, dl: Any = None, max_n: int = 9, shuffle: bool = True,
                     **kwargs: Any) -> None:
        """Show ``max_n`` rows of a loader, decoded, with their targets and ``<target>_pred`` columns.

        Like fastai's show functions it shows and returns None: displayed in a notebook, printed elsewhere
        (`predict_df` returns predictions as a DataFrame).

        Args:
            ds_idx: which of ``dls`` (1: validation) when ``dl`` is not given.
            dl: a loader (e.g. ``dls.test_dl(df)``).
            max_n: how many rows.
            shuffle: random rows (else the first ones).

        Raises:
            ValueError: when the loader holds no rows.
        """
        show_frame(self._results_frame(self.dls[ds_idx] if dl is None else dl, max_n, shuffle))

    def _results_frame(self, dl: Any, max_n: int, shuffle: bool) -> pd.DataFrame:
        tensors = getattr(dl, "tensors", ())
        if not tensors or len(tensors[0]) == 0:
            raise ValueError("show_results needs rows, but this loader is empty (a loaded learner keeps no data); "
                             "pass dl=learn.dls.test_dl(df)")
        n = len(tensors[0])
        pick = torch.randperm(n)[:max_n] if shuffle else torch.arange(min(n, max_n))
        cats, conts, *ys = (t[pick.to(t.device)] for t in tensors)
        processor = self.dls.processor
        frame = processor.decode(cats, conts, ys[0] if ys else None)
        preds = decode_targets(self._decoded(self._activated(cats, conts)), processor.y_names,
                               processor.y_kind, processor.y_vocab)
        for col, values in preds.items():
            frame[f"{col}_pred"] = values
        return frame

    def export(self, fname: str | Path = "export.pkl") -> Path | None:
        """Write this learner for inference, with its fitted procs (see `Learner.export`).

        Raises:
            ExportError: when the model cannot be described as JSON (a custom activation, named), or a
                categorical column holds values JSON cannot store (dates..., naming the column).
        """
        problem = self.unexportable or self.dls.processor.json_problem()
        if problem:
            raise ExportError(problem)
        return super().export(fname)


def tabular_learner(dls: Any, layers: Sequence[int] | None = None, emb_szs: Mapping[str, int] | None = None,
                    config: Mapping[str, Any] | None = None, n_out: int | None = None,
                    y_range: Sequence[float] | None = None, **learner_kwargs: Any) -> TabularLearner:
    """A `TabularLearner` with a `TabularModel` sized from ``dls``.

    Args:
        dls: `TabularDataLoaders`.
        layers: hidden layer sizes (default ``[200, 100]``).
        emb_szs: embedding widths for some columns, ``{column: width}`` (others follow `emb_sz_rule`).
        config: `TabularModel` options from `tabular_config` (dropout, batch norm, activation...).
        n_out: number of outputs (default ``dls.n_out``: classes, or target columns for regression).
        y_range: ``(low, high)`` of regression outputs.
        **learner_kwargs: `Learner` arguments (``metrics``, ``opt_func``, ``lr``, ``wd``, ``cbs``...).

    Example:
        >>> learn = tabular_learner(dls, layers=[200, 100], metrics=accuracy)

    Raises:
        ValueError: when the number of outputs cannot be inferred (pass ``n_out``).
    """
    config = dict(tabular_config() if config is None else config)
    config_range = config.pop("y_range", None)
    y_range = y_range if y_range is not None else config_range
    n_out = n_out if n_out is not None else getattr(dls, "n_out", None)
    if not n_out:
        raise ValueError("Could not infer the number of outputs from the data; pass `n_out=` to tabular_learner")
    kwargs = dict(emb_szs=[list(sz) for sz in get_emb_sz(dls, emb_szs)], n_cont=len(dls.cont_names),
                  out_sz=int(n_out), layers=[200, 100] if layers is None else [int(n) for n in layers],
                  y_range=[float(v) for v in y_range] if y_range is not None else None, **config)
    learn = TabularLearner(dls, TabularModel(**kwargs), **learner_kwargs)
    try:  # the model keeps the user's activation; its JSON description is needed only to export
        act = activation_config(kwargs.get("act_cls", "ReLU"))
    except ValueError as e:
        learn.unexportable = str(e)
        return learn
    learn.model_config = {"factory": "TabularModel",
                          "kwargs": {**kwargs, "act_cls": act, "ps": _plain_ps(kwargs.get("ps"))}}
    return learn


def _plain_ps(ps: Any) -> Any:
    if ps is None or isinstance(ps, (int, float)):
        return ps
    return [float(p) for p in np.asarray(ps, dtype=float).reshape(-1)]
