"""Splitters (items → train and validation indices) and labellers (item → label).

A splitter is called with the items a `DataBlock` collected (a list, or a DataFrame for `ColSplitter`) and
returns ``(train_idxs, valid_idxs)``, two lists of integer positions. Labellers and getters are small
picklable callables for ``get_x``/``get_y``.

Example:
    >>> train, valid = RandomSplitter(valid_pct=0.2, seed=42)(items)
    >>> parent_label("train/cat/1.jpg")
    'cat'
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..book_tools import range_of  # (re-exported: the items to split a DataFrame's rows by position)
from .errors import getter_name

__all__ = ["range_of", "RandomSplitter", "GrandparentSplitter", "IndexSplitter", "FuncSplitter", "MaskSplitter",
           "FileSplitter", "ColSplitter", "EndSplitter", "RandomSubsetSplitter", "TrainTestSplitter", "parent_label",
           "RegexLabeller", "using_attr", "ColReader", "ItemGetter", "AttrGetter"]

Splits = tuple[list[int], list[int]]


def _check_pct(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be in [0, 1); received: {name}={value!r}")


def _permutation(n: int, seed: int | None) -> torch.Tensor:
    """``torch.randperm(n)`` as after ``torch.manual_seed(seed)``, without touching the global generator.

    With ``seed=None`` the global generator is used (so `set_seed` makes unseeded splits repeat).
    """
    if seed is None:
        return torch.randperm(n)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.randperm(n, generator=gen)


def _complement(n: int, valid: Iterable[int]) -> Splits:
    valid = sorted(set(int(i) for i in valid))
    chosen = set(valid)
    return [i for i in range(n) if i not in chosen], valid


class RandomSplitter:
    """A random ``valid_pct`` of the items goes to validation.

    The permutation is the one ``torch.manual_seed(seed); torch.randperm(n)`` gives, so seeded splits match
    fastai's item for item; the global random state is left alone.

    Args:
        valid_pct: the fraction of items for validation, in [0, 1).
        seed: makes the split repeatable; None draws from torch's global generator.
    """

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None):
        _check_pct("valid_pct", valid_pct)
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence) -> Splits:
        perm = _permutation(len(items), self.seed).tolist()
        cut = int(self.valid_pct * len(items))
        return perm[cut:], perm[:cut]


class RandomSubsetSplitter:
    """Random disjoint subsets of ``train_sz`` and ``valid_sz`` (fractions) of the items; the rest is unused."""

    def __init__(self, train_sz: float, valid_sz: float, seed: int | None = None):
        if not (0 < train_sz < 1 and 0 < valid_sz < 1 and train_sz + valid_sz <= 1):
            raise ValueError("`train_sz` and `valid_sz` must be fractions in (0, 1) that add up to at most 1; "
                             f"received: train_sz={train_sz!r}, valid_sz={valid_sz!r}")
        self.train_sz, self.valid_sz, self.seed = train_sz, valid_sz, seed

    def __call__(self, items: Sequence) -> Splits:
        n = len(items)
        perm = _permutation(n, self.seed).tolist()
        n_train, n_valid = int(self.train_sz * n), int(self.valid_sz * n)
        return perm[:n_train], perm[n_train:n_train + n_valid]


class TrainTestSplitter:
    """A random split with scikit-learn's ``train_test_split`` arguments (stratified by ``stratify`` labels).

    Sizes: a float is a fraction (test ``ceil(test_size * n)`` items, train ``floor(train_size * n)``), an int a
    count; the train set defaults to the rest. With ``stratify`` each class is split in the same proportion
    (counts rounded by largest remainder). scikit-learn is not needed, so the indices drawn differ from its own.

    Args:
        test_size: the validation fraction or count.
        random_state: the seed (None: a different split each time).
        stratify: one label per item, to keep class proportions.
        train_size: the training fraction or count (default: the items not in validation).
        shuffle: False takes the first items for training and the next ones for validation.
    """

    def __init__(self, test_size: float | int = 0.2, random_state: int | None = None, stratify: Any = None,
                 train_size: float | int | None = None, shuffle: bool = True):
        if stratify is not None and not shuffle:
            raise ValueError("TrainTestSplitter(stratify=...) needs shuffle=True")
        self.test_size, self.random_state, self.stratify = test_size, random_state, stratify
        self.train_size, self.shuffle = train_size, shuffle

    def _sizes(self, n: int) -> tuple[int, int]:
        n_test = math.ceil(self.test_size * n) if isinstance(self.test_size, float) else int(self.test_size)
        n_train = n - n_test if self.train_size is None else (
            math.floor(self.train_size * n) if isinstance(self.train_size, float) else int(self.train_size))
        if n_test < 1 or n_train < 1 or n_train + n_test > n:
            raise ValueError(f"TrainTestSplitter cannot take {n_train} training and {n_test} validation items from "
                             f"{n}: check test_size={self.test_size!r} and train_size={self.train_size!r}")
        return n_train, n_test

    def __call__(self, items: Sequence) -> Splits:
        n = len(items)
        n_train, n_test = self._sizes(n)
        if not self.shuffle:
            return list(range(n_train)), list(range(n_train, n_train + n_test))
        rng = np.random.default_rng(self.random_state)
        if self.stratify is None:
            perm = rng.permutation(n).tolist()
            return perm[n_test:n_test + n_train], perm[:n_test]
        labels = np.asarray(list(self.stratify), dtype=object)
        if len(labels) != n:
            raise ValueError(f"`stratify` needs one label per item ({n}); received {len(labels)}")
        groups = [rng.permutation(np.flatnonzero(labels == c)) for c in dict.fromkeys(labels.tolist())]
        test_counts = _largest_remainder([len(g) for g in groups], n_test, rng)
        rest = [g[k:] for g, k in zip(groups, test_counts)]
        train_counts = _largest_remainder([len(g) for g in rest], n_train, rng)
        test = np.concatenate([g[:k] for g, k in zip(groups, test_counts)])
        train = np.concatenate([g[:k] for g, k in zip(rest, train_counts)])
        return rng.permutation(train).tolist(), rng.permutation(test).tolist()


def _largest_remainder(counts: list[int], total: int, rng: np.random.Generator) -> list[int]:
    """``total`` shared among groups in proportion to ``counts``: floors, then one more for the largest remainders
    (ties in random order), never more than a group has."""
    exact = np.array(counts, dtype=float) * total / max(sum(counts), 1)
    share = np.minimum(np.floor(exact).astype(int), counts)
    order = np.lexsort((rng.random(len(counts)), -(exact - share)))
    for i in order[:total - share.sum()]:
        share[i] += 1
    return share.tolist()


def _names(names: str | Sequence[str]) -> set[str]:
    return {names} if isinstance(names, str) else set(names)


class GrandparentSplitter:
    """Split by the name of each file's grandparent folder (``train/cat/1.jpg`` → ``train``).

    Items under neither name are left out of both sets.
    """

    def __init__(self, train_name: str | Sequence[str] = "train", valid_name: str | Sequence[str] = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence) -> Splits:
        grand = [Path(o).parent.parent.name for o in items]
        train, valid = _names(self.train_name), _names(self.valid_name)
        return [i for i, g in enumerate(grand) if g in train], [i for i, g in enumerate(grand) if g in valid]


class IndexSplitter:
    """The items at ``valid_idx`` go to validation, the others to training."""

    def __init__(self, valid_idx: Iterable[int]):
        self.valid_idx = [int(i) for i in valid_idx]

    def __call__(self, items: Sequence) -> Splits:
        n = len(items)
        bad = [i for i in self.valid_idx if not -n <= i < n]
        if bad:
            raise IndexError(f"IndexSplitter: indices {bad[:5]} are out of range for {n} items")
        return _complement(n, [i % n for i in self.valid_idx])


class FuncSplitter:
    """Items for which ``func(item)`` is true go to validation."""

    def __init__(self, func: Callable[[Any], bool]):
        self.func = func

    def __call__(self, items: Sequence) -> Splits:
        return _complement(len(items), [i for i, o in enumerate(_rows(items)) if self.func(o)])


class MaskSplitter:
    """Items whose ``mask`` entry is true go to validation."""

    def __init__(self, mask: Sequence[bool]):
        self.mask = [bool(m) for m in mask]

    def __call__(self, items: Sequence) -> Splits:
        if len(self.mask) != len(items):
            raise ValueError(f"MaskSplitter: the mask has {len(self.mask)} entries but there are {len(items)} items")
        return _complement(len(items), [i for i, m in enumerate(self.mask) if m])


class FileSplitter:
    """Items whose file name is listed (one per line) in the text file ``fname`` go to validation."""

    def __init__(self, fname: str | Path):
        self.fname = Path(fname)

    def __call__(self, items: Sequence) -> Splits:
        if not self.fname.exists():
            raise FileNotFoundError(f"FileSplitter: the list of validation files {self.fname} does not exist")
        names = {line.strip() for line in self.fname.read_text().splitlines() if line.strip()}
        return _complement(len(items), [i for i, o in enumerate(items) if Path(o).name in names])


class ColSplitter:
    """Split a DataFrame by a column: truthy values (or values equal to / in ``on``) go to validation."""

    def __init__(self, col: str | int = "is_valid", on: Any = None):
        self.col, self.on = col, on

    def __call__(self, items: Any) -> Splits:
        import pandas as pd
        if not isinstance(items, pd.DataFrame):
            raise TypeError(f"ColSplitter needs the items to be a DataFrame; received {type(items).__name__}")
        if isinstance(self.col, int) and self.col not in items.columns:
            column = items.iloc[:, self.col]
        elif self.col in items.columns:
            column = items[self.col]
        else:
            raise KeyError(f"ColSplitter: column {self.col!r} is not in the DataFrame; columns: {list(items.columns)}")
        if self.on is None:
            mask = column.astype(bool)
        elif isinstance(self.on, (list, tuple, set)):
            mask = column.isin(self.on)
        else:
            mask = column == self.on
        return _complement(len(items), [i for i, m in enumerate(mask.tolist()) if m])


class EndSplitter:
    """The last (or first) ``valid_pct`` of the items go to validation."""

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True):
        _check_pct("valid_pct", valid_pct)
        self.valid_pct, self.valid_last = valid_pct, valid_last

    def __call__(self, items: Sequence) -> Splits:
        n = len(items)
        cut = int(self.valid_pct * n)
        idxs = list(range(n))
        return (idxs[:n - cut], idxs[n - cut:]) if self.valid_last else (idxs[cut:], idxs[:cut])


def _rows(items: Any) -> list:
    """Items as a list (a DataFrame gives its rows)."""
    if hasattr(items, "iterrows"):
        return [row for _, row in items.iterrows()]
    return list(items)


# --- labellers and getters ------------------------------------------------------------------------------


def parent_label(o: str | Path) -> str:
    """The name of the folder holding ``o`` (``train/cat/1.jpg`` → ``'cat'``)."""
    return Path(o).parent.name


class RegexLabeller:
    """Label = group 1 of ``pat`` found in the item's path (``/`` separators on every OS).

    Args:
        pat: a regular expression with one group, e.g. ``r'^(.+)_\\d+.jpg$'``.
        match: use ``re.match`` (anchored at the start) instead of ``re.search``.

    Raises:
        ValueError: (when called) naming the pattern and the item it did not match.
    """

    def __init__(self, pat: str, match: bool = False):
        self.pat = pat
        self.regex = re.compile(pat)
        self.match = match
        if self.regex.groups < 1:
            raise ValueError(f"`pat` must contain a group (...) that captures the label; received: pat={pat!r}")

    def __call__(self, o: Any) -> str:
        text = str(o).replace(os.sep, "/")
        found = self.regex.match(text) if self.match else self.regex.search(text)
        if found is None:
            raise ValueError(f'Failed to find "{self.pat}" in "{text}"')
        return found.group(1)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat!r})"


def _call_on_attr(f: Callable, attr: str, x: Any) -> Any:
    return f(getattr(x, attr))


def using_attr(f: Callable, attr: str) -> Callable:
    """``g(x) = f(getattr(x, attr))``, picklable whenever ``f`` is (e.g. ``using_attr(is_cat, 'name')``).

    ``g.__name__`` names ``f`` (``'is_cat (on .name)'``), so an error in a pipeline step points at your function.
    """
    g = functools.partial(_call_on_attr, f, attr)
    g.__name__ = f"{getter_name(f)} (on .{attr})"
    return g


class ColReader:
    """Read column(s) ``cols`` (names or positions) of a DataFrame row, with a prefix/suffix and a label delimiter.

    Args:
        cols: a column name or position, or a list of them (then a list of values is returned).
        pref: prepended to each value (e.g. the image folder); values become strings.
        suff: appended to each value.
        label_delim: split each value on this string into a list of labels (``''`` gives ``[]``).
    """

    def __init__(self, cols: Any, pref: str | Path = "", suff: str = "", label_delim: str | None = None):
        self.cols = list(cols) if isinstance(cols, (list, tuple)) else [cols]
        self.multiple = isinstance(cols, (list, tuple))
        self.pref = f"{pref}{os.sep}" if isinstance(pref, Path) else pref
        self.suff, self.label_delim = suff, label_delim

    def _one(self, row: Any, col: Any) -> Any:
        try:
            value = row.iloc[col] if isinstance(col, int) and col not in getattr(row, "index", ()) else row[col]
        except (KeyError, IndexError) as e:
            cols = list(getattr(row, "index", []))
            raise KeyError(f"ColReader: column {col!r} not found in the row; columns: {cols}") from e
        if self.pref or self.suff:
            value = f"{self.pref}{value}{self.suff}"
        if self.label_delim is not None:
            value = [] if value == "" or value != value else str(value).split(self.label_delim)
        return value

    def __call__(self, row: Any) -> Any:
        values = [self._one(row, col) for col in self.cols]
        return values if self.multiple else values[0]

    def __repr__(self) -> str:
        return f"ColReader({self.cols if self.multiple else self.cols[0]!r})"


class ItemGetter:
    """``o[i]``."""

    def __init__(self, i: Any):
        self.i = i

    def __call__(self, o: Any) -> Any:
        return o[self.i]

    def __repr__(self) -> str:
        return f"ItemGetter({self.i!r})"


class AttrGetter:
    """``getattr(o, nm, default)``."""

    def __init__(self, nm: str, default: Any = None):
        self.nm, self.default = nm, default

    def __call__(self, o: Any) -> Any:
        return getattr(o, self.nm, self.default)
