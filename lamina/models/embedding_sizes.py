"""`get_emb_sz`: one embedding size per categorical column of tabular or collaborative-filtering data.

It reads only ``classes`` (the vocabularies) and ``cat_names`` (the categorical columns, in order), which a
`TabularPandas`, `TabularDataLoaders` and `CollabDataLoaders` (user then item column) all carry.

Example:
    >>> get_emb_sz(dls)            # chapter 8, MovieLens 100k: [(944, 74), (1665, 102)]
    >>> get_emb_sz(to, {'race': 10})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .layers import emb_sz_rule

__all__ = ["get_emb_sz"]


def get_emb_sz(to: Any, sz_dict: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
    """``(n_categories, width)`` per categorical column, in ``cat_names`` order.

    Args:
        to: tabular data (`TabularPandas`, `TabularDataLoaders`) or collab data (`CollabDataLoaders`): anything
            with ``classes`` and ``cat_names``.
        sz_dict: widths that override `emb_sz_rule` for some columns.

    Raises:
        TypeError: when ``to`` has no ``classes`` or ``cat_names``.
        ValueError: when a categorical column has no vocabulary (no `Categorify` among the procs), or
            ``sz_dict`` names a column that is not categorical.
    """
    if not (hasattr(to, "classes") and hasattr(to, "cat_names")):
        raise TypeError(f"get_emb_sz needs tabular or collab data (with `classes` and `cat_names`); "
                        f"received {type(to).__name__}")
    sz_dict = dict(sz_dict or {})
    unknown = [c for c in sz_dict if c not in to.cat_names]
    if unknown:
        raise ValueError(f"`emb_szs` names columns that are not categorical inputs: {unknown}; "
                         f"categorical columns: {to.cat_names}")
    classes, sizes = to.classes, []
    for col in to.cat_names:
        if col not in classes:
            raise ValueError(f"Categorical column {col!r} has no vocabulary: add Categorify to `procs`")
        n_cat = len(classes[col])
        sizes.append((n_cat, int(sz_dict.get(col, emb_sz_rule(n_cat)))))
    return sizes
