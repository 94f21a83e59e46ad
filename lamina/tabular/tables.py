"""Reading rows into tables, encoding targets, and building tensors: the checks behind clear errors.

A *table* is a dict ``column → 1-d array``. `read_table` accepts a DataFrame, a list of rows, or one
row (a pandas Series or a dict) and checks it: every input column present, continuous values numeric.
A single row takes a path without pandas, which keeps `predict` fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import warnings

import numpy as np
import pandas as pd
import torch

from ..core import user_stacklevel
from ..data.transforms import CategoryMap

__all__ = ["read_table", "float_values", "target_kind", "encode_targets", "decode_targets", "tensors_of",
           "vocab_codes", "warn_stripped", "warn_unseen", "user_stacklevel", "show_frame", "Y_KINDS"]

Y_KINDS = ("category", "regression", "multicategory")
# fastai's block names -> the kind of target they describe (a block is matched by its class or function name)
_BLOCK_KINDS = {"CategoryBlock": "category", "RegressionBlock": "regression", "MultiCategoryBlock": "multicategory"}


def _object_array(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def float_values(values: Any, col: str) -> np.ndarray:
    """``values`` as float64 (missing → NaN); numbers given as text (``'19'``) are accepted.

    Raises:
        ValueError: naming ``col`` and the first value that is not a number.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    values = np.asarray(values, dtype=object)
    missing = pd.isna(values)
    try:  # the fast path: numbers, missing markers and numeric text convert directly
        return np.where(missing, np.nan, values).astype(np.float64)
    except (TypeError, ValueError):
        pass
    coerced = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64,
                                                                                        na_value=np.nan)
    failed = np.flatnonzero(np.isnan(coerced) & ~missing)
    if not len(failed):
        return coerced
    raise ValueError(f"Column {col!r} is continuous but holds the non-numeric value {values[failed[0]]!r} "
                     f"({len(failed)} such rows); convert it with `df[{col!r}] = pd.to_numeric(df[{col!r}], "
                     f"errors='coerce')`, or list it in `cat_names`")


_FEW = 16  # up to this many values, dict lookups beat building pandas objects (~0.7 ms a column for one row)


def _few_codes(vocab: CategoryMap, values: Any, miss: int) -> np.ndarray:
    """`CategoryMap.encode` for a handful of values (the row of a `predict`), by dict lookups."""
    return np.array([vocab.o2i.get(v, miss) for v in values], dtype=np.int64)


def vocab_codes(vocab: CategoryMap, values: Any, stripped: list | None = None,
                unseen: list | None = None) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (`CategoryMap.encode`: 0 or -1 for missing and unseen values).

    A text value unknown as given but known without its surrounding spaces gets the known code (CSV files
    read without ``skipinitialspace`` keep the space after each comma); such values are appended to
    ``stripped`` so that the caller can say so (`warn_stripped`). Values that are neither missing nor known,
    even stripped, are appended to ``unseen`` (one entry per row; see `warn_unseen`).
    """
    miss = 0 if vocab.add_na else -1
    codes = _few_codes(vocab, values, miss) if len(values) <= _FEW else vocab.encode(values)
    unmatched = np.flatnonzero(codes == miss)
    if len(unmatched):  # usually few: missing or unseen values
        subset = np.asarray(values, dtype=object)[unmatched]
        text = np.array([isinstance(v, str) for v in subset], dtype=bool)
        found = np.full(len(subset), miss, dtype=np.int64)
        found[text] = vocab.encode([v.strip() for v in subset[text]])
        hit = found != miss
        codes[unmatched[hit]] = found[hit]
        if stripped is not None:
            stripped.extend(pd.unique(subset[hit]))
        if unseen is not None:
            rest = subset[~hit]
            unseen.extend(rest[~pd.isna(rest)])
    return codes


def warn_stripped(stripped: dict[str, list], warned: set) -> None:
    """One warning naming the columns (not yet in ``warned``) whose values matched only after stripping spaces,
    with those values; the columns are then added to ``warned``, so each column is reported once."""
    new = {col: values for col, values in stripped.items() if values and col not in warned}
    if not new:
        return
    warned.update(new)
    listed = "; ".join(f"{col!r}: {values[:5]}" for col, values in new.items())
    warnings.warn(f"Values matched the vocabulary only after stripping their spaces, and were encoded as the "
                  f"stripped values, in column(s) {listed}. Strip the column(s), or read the CSV with "
                  "skipinitialspace=True, to silence this", stacklevel=user_stacklevel())


def warn_unseen(unseen: dict[str, list]) -> None:
    """One warning naming the categorical columns whose values the training rows did not have, with the number
    of such rows and up to five of the values per column (from `vocab_codes`'s ``unseen``); nothing if none."""
    found = {col: values for col, values in unseen.items() if len(values)}
    if not found:
        return
    listed = ", ".join(f"{col!r} ({len(values)} row{'s' if len(values) > 1 else ''}: "
                       f"{list(pd.unique(np.asarray(values, dtype=object)))[:5]})" for col, values in found.items())
    warnings.warn(f"Categorical column(s) {listed} have values that were not in the training rows: encoded as "
                  "'#na#', as missing values are, so the model knows nothing of these values. To use them, train on "
                  "rows that have them, or map them to known values first.", stacklevel=user_stacklevel())


def _frame_values(frame: pd.DataFrame, col: str, continuous: bool) -> Any:
    series = frame[col]
    if continuous:
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        return float_values(series.to_numpy(dtype=object), col)
    return series.array if isinstance(series.dtype, pd.CategoricalDtype) else series.to_numpy()


def _check_columns(present: Any, cat_names: list[str], cont_names: list[str], y_names: list[str]) -> None:
    for names, role, fix in ((cat_names, "a categorical input", "missing values become '#na#'"),
                             (cont_names, "a continuous input", "missing values are filled as in training"),
                             (y_names, "a target", "or pass with_labels=False")):
        for col in names:
            if col not in present:
                raise ValueError(f"The data has no column {col!r} ({role} of this model); add it, named as in "
                                 f"training ({fix}). Inputs: cat_names={cat_names}, cont_names={cont_names}")


def read_table(data: Any, cat_names: list[str], cont_names: list[str], y_names: list[str],
               with_labels: bool | None) -> tuple[dict, bool]:
    """Read and check the input (and, if labelled, target) columns of ``data``.

    Args:
        data: a DataFrame, a list of rows, or one row (Series or dict).
        with_labels: read the targets too; None reads them when every target column is present.

    Returns:
        ``(table, labelled)``.
    """
    if isinstance(data, (list, tuple)):
        rows = [d.to_dict() if isinstance(d, pd.Series) else d for d in data]
        data = rows[0] if len(rows) == 1 else pd.DataFrame(rows)
    if isinstance(data, pd.Series):
        data = data.to_dict()
    if isinstance(data, pd.DataFrame):
        present, one_row = data.columns, False
    elif isinstance(data, Mapping):
        present, one_row = data, True
    else:
        raise TypeError(f"Tabular data must be a DataFrame, a list of rows, or one row (a Series or a dict); "
                        f"received {type(data).__name__}")
    labelled = bool(y_names) and (all(c in present for c in y_names) if with_labels is None else with_labels)
    _check_columns(present, cat_names, cont_names, y_names if labelled else [])
    if one_row:
        table = {c: _object_array([data[c]]) for c in cat_names}
        table.update({c: float_values(_object_array([data[c]]), c) for c in cont_names})
        table.update({c: _object_array([data[c]]) for c in (y_names if labelled else [])})
    else:
        table = {c: _frame_values(data, c, False) for c in cat_names}
        table.update({c: _frame_values(data, c, True) for c in cont_names})
        table.update({c: _frame_values(data, c, False) for c in (y_names if labelled else [])})
    return table, labelled


def target_kind(y_block: Any, df: pd.DataFrame, y_names: list[str]) -> tuple[str | None, CategoryMap | None]:
    """The kind of target (``'category'``, ``'regression'``, ``'multicategory'``) and any given vocabulary.

    Raises:
        ValueError: for an unknown ``y_block``, or several target columns for single-label classification.
    """
    if not y_names:
        return None, None
    vocab = None
    if y_block is None:  # booleans are numbers to pandas, but labels to fastai (and here)
        numeric = all(pd.api.types.is_numeric_dtype(df[c].dtype) and not pd.api.types.is_bool_dtype(df[c].dtype)
                      for c in y_names if c in df.columns)
        kind = "regression" if numeric else "category"
    elif isinstance(y_block, str):
        kind = y_block
    else:  # a block (instance or class) of lamina.data.block, or of the same name
        kind = None if isinstance(y_block, type) else getattr(y_block, "kind", None)
        if not isinstance(kind, str):
            kind = _BLOCK_KINDS.get(getattr(y_block, "__name__", type(y_block).__name__))
        tfms = getattr(y_block, "type_tfms", None) if not isinstance(y_block, type) else None
        vocab = getattr(tfms[-1], "vocab", None) if tfms else None
    if kind not in Y_KINDS:
        raise ValueError(f"`y_block` must be None, one of {Y_KINDS}, or CategoryBlock/RegressionBlock/"
                         f"MultiCategoryBlock; received: y_block={y_block!r}")
    if kind == "category" and len(y_names) > 1:
        raise ValueError(f"Classification takes one target column; received y_names={y_names}. For several 0/1 "
                         "label columns pass y_block='multicategory'; for several numbers, y_block='regression'")
    if kind == "multicategory":
        vocab = CategoryMap(y_names, sort=False)
    elif vocab is not None:
        vocab = CategoryMap(vocab, sort=False)
    return kind, vocab


def encode_targets(table: dict, y_names: list[str], kind: str, vocab: CategoryMap | None,
                   warned: set | None = None) -> dict:
    """Targets as class codes (int64) or floats; raises on missing or unknown labels, naming the column.

    ``warned`` holds the columns already warned about labels matched after stripping spaces (`warn_stripped`).
    """
    out = {}
    for col in y_names:
        values = table[col]
        if kind != "category":
            out[col] = float_values(values, col)
            if np.isnan(out[col]).any():
                raise ValueError(f"Target column {col!r} has {int(np.isnan(out[col]).sum())} missing values; drop "
                                 f"those rows first: `df = df.dropna(subset=[{col!r}])`")
            continue
        stripped: list = []
        codes = vocab_codes(vocab, values, stripped)
        _check_codes(codes, values, col, vocab)
        warn_stripped({col: stripped}, set() if warned is None else warned)
        out[col] = codes
    return out


def _check_codes(codes: np.ndarray, values: Any, col: str, vocab: CategoryMap) -> None:
    bad = np.flatnonzero(codes < 0)
    if not len(bad):
        return
    items = np.asarray(values, dtype=object)
    missing = [i for i in bad if pd.isna(items[i])]
    if missing:
        raise ValueError(f"Target column {col!r} has {len(missing)} missing labels; drop those rows first: "
                         f"`df = df.dropna(subset=[{col!r}])`")
    unknown = vocab.unknown([items[i] for i in bad])
    raise ValueError(f"Target column {col!r} has labels the model does not know: {unknown[:5]} "
                     f"({len(bad)} rows); known classes: {list(vocab)[:10]}. Drop or relabel those rows, or pass "
                     "with_labels=False to predict without targets")


def decode_targets(ys: torch.Tensor, y_names: list[str], kind: str, vocab: CategoryMap | None) -> dict:
    """Encoded targets (or decoded predictions) back to labels / numbers, per target column."""
    ys = ys.detach().cpu()
    if kind == "category":
        items = _object_array(list(vocab))
        return {y_names[0]: items[ys.reshape(-1).long().numpy()]}
    ys = ys.reshape(len(ys), -1).double().numpy()
    return {col: ys[:, i] for i, col in enumerate(y_names)}


# decoded numbers went through float32 (about 7 significant digits): 6 are shown, so 158206.000591 reads 158206
SHOWN_DIGITS = 6


def rounded_for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with float columns rounded to `SHOWN_DIGITS` significant digits, and shown as integers
    where every value then is one (missing values stay missing)."""
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_float_dtype(out[col]):
            continue
        values = np.array([float(f"{v:.{SHOWN_DIGITS}g}") for v in out[col].to_numpy(dtype=float)])
        present = values[~np.isnan(values)]
        whole = len(present) > 0 and bool(np.isfinite(present).all() and (present == np.round(present)).all()
                                           and (np.abs(present) < 2**53).all())
        out[col] = pd.array([None if np.isnan(v) else int(v) for v in values], dtype="Int64") if whole else values
    return out


def show_frame(frame: pd.DataFrame) -> None:
    """Display ``frame`` in a notebook, or print it elsewhere; returns None (as fastai's show functions do).

    Numbers are rounded for reading (`rounded_for_display`); ``decode()`` keeps the values themselves.
    """
    from ..callbacks.progress import in_notebook
    frame = rounded_for_display(frame)
    if in_notebook():
        from IPython.display import display
        display(frame)
    else:
        print(frame.to_string())


def tensors_of(table: dict, cat_names: list[str], cont_names: list[str], y_names: list[str],
               kind: str | None) -> tuple[torch.Tensor, ...]:
    """``(cats int64 [n, n_cat], conts float32 [n, n_cont])`` plus the targets when ``y_names`` is not empty:
    int64 ``[n]`` class codes, or float32 ``[n, n_targets]``."""
    n = len(table[(cat_names + cont_names + y_names)[0]])
    cats = (torch.from_numpy(np.stack([np.asarray(table[c], dtype=np.int64) for c in cat_names], 1))
            if cat_names else torch.zeros(n, 0, dtype=torch.int64))
    conts = (torch.from_numpy(np.stack([np.asarray(table[c], dtype=np.float32) for c in cont_names], 1))
             if cont_names else torch.zeros(n, 0, dtype=torch.float32))
    if not y_names:
        return cats, conts
    if kind == "category":
        # np.array copies: the arrays of a frame are read-only
        return cats, conts, torch.from_numpy(np.array(table[y_names[0]], dtype=np.int64))
    ys = np.stack([np.asarray(table[c], dtype=np.float32) for c in y_names], 1)
    return cats, conts, torch.from_numpy(ys)
