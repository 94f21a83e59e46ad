"""Ratings tables to `DataLoaders`: users and items categorised on the training rows, batches sliced from tensors.

A ratings table has one row per (user, item, rating); the first three columns are used unless named.
The rows are split at random (``valid_pct``, ``seed``), the user and item vocabularies are built from
**all** the rows (``['#na#', *sorted ids]``, as the book's sizes show: 944 users and 1665 titles for
MovieLens 100k), and every row becomes codes once: ``x`` a LongTensor ``(n, 2)`` of (user code, item code)
and ``y`` a float tensor ``(n, 1)`` of ratings. Batches are index slices of those tensors, so no pandas and
no per-row Python run in the training loop.

A user or item rated only in validation rows has its own code (its embedding keeps its initial values,
since no training row moves it); only new pairs given later (`test_dl`) can hold ids with no code.

Examples:
    >>> dls = CollabDataLoaders.from_csv(path/'ratings.csv')
    >>> xb, yb = dls.one_batch()          # xb: (64, 2) codes, yb: (64, 1) ratings
    >>> dls.classes['movieId'][:3]
    ['#na#', 1, 2]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core import user_stacklevel
from ..data.csvfiles import read_csv
from ..data.loaders import DataLoaders, TensorDataLoader
from ..data.splitters import RandomSplitter
from ..data.transforms import CategoryMap, target_loss_config
from ..losses import loss_from_config
from ..registry import register

__all__ = ["CollabDataLoaders", "collab_inference_dls", "show_collab_batch", "UNKNOWN_POLICIES"]

KINDS = ("collab", "regression")
UNKNOWN_POLICIES = ("error", "na", "bias")


class CollabDataLoaders(DataLoaders):
    """Training and validation loaders over (user, item) → rating, plus the vocabularies.

    Build it with `from_df` or `from_csv`. Besides what every `DataLoaders` carries (``n_out=1``,
    ``loss_func=MSELossFlat()``, the loss of a ``'regression'`` target, ``n_inp=1``), it has ``classes``
    (``{user column: vocab, item column: vocab}``), ``user_name``, ``item_name``, ``rating_name`` and
    ``cat_names``; its `test_dl` takes pairs.
    """

    build_loss = staticmethod(loss_from_config)

    def __init__(self, *loaders: TensorDataLoader, classes: Mapping[Any, CategoryMap], user_name: Any,
                 item_name: Any, rating_name: Any, **kwargs: Any):
        super().__init__(*loaders, **kwargs)
        self.classes = dict(classes)
        self.user_name, self.item_name, self.rating_name = user_name, item_name, rating_name

    @property
    def cat_names(self) -> list:
        """The categorical columns, user then item (as fastai's collab data has them: `get_emb_sz` reads them)."""
        return [self.user_name, self.item_name]

    @classmethod
    def from_df(cls, ratings: pd.DataFrame, valid_pct: float = 0.2, user_name: Any = None, item_name: Any = None,
                rating_name: Any = None, seed: int | None = None, path: str | Path = ".", bs: int = 64,
                val_bs: int | None = None, shuffle: bool = True, device: torch.device | str | None = None,
                drop_last: bool | None = None, **kwargs: Any) -> "CollabDataLoaders":
        """Loaders from a ratings DataFrame.

        Args:
            ratings: one row per rating.
            valid_pct: share of rows held out for validation, in [0, 1).
            user_name, item_name, rating_name: the columns (default: the first, second and third).
            seed: seed of the random split (``None``: torch's global generator, so `set_seed` repeats it).
            path: folder for saved models and exports.
            bs: training batch size; val_bs: validation batch size (default ``bs``).
            shuffle: shuffle the training rows every epoch (``shuffle_train=`` is fastai's older name for it).
            device: where batches go (default `default_device()`); the tensors live there.
            drop_last: drop the last partial training batch. Default: keep it, so every rating counts once
                per epoch, unless it would hold a single row (which BatchNorm in `EmbeddingNN` cannot train on).
            **kwargs: ``shuffle_train``; and ``num_workers``, ``pin_memory``, ``persistent_workers``, accepted
                for fastai compatibility and ignored (batches are slices of tensors: there are no workers).

        Raises:
            ValueError: for a bad ``valid_pct``, a missing column, missing values or non-numeric ratings.
            TypeError: naming any other keyword argument.

        Warns:
            UserWarning: with their count, when validation rows rate a (user, item) pair that training rows
                rate too (repeated ratings make the validation loss read too low).
        """
        shuffle = _loader_options(shuffle, kwargs)
        user_name, item_name, rating_name = _columns(ratings, user_name, item_name, rating_name)
        _check_values(ratings, user_name, item_name, rating_name)
        train_idx, valid_idx = (np.asarray(part, dtype=np.int64)
                                for part in RandomSplitter(valid_pct, seed)(range(len(ratings))))
        users, items = ratings[user_name], ratings[item_name]
        classes = {user_name: CategoryMap(users, add_na=True), item_name: CategoryMap(items, add_na=True)}
        x = torch.stack([torch.from_numpy(classes[user_name].encode(users)),
                         torch.from_numpy(classes[item_name].encode(items))], 1)
        y = torch.as_tensor(ratings[rating_name].to_numpy(dtype=np.float32)).reshape(-1, 1)
        _warn_shared_pairs(x.numpy(), train_idx, valid_idx, len(classes[item_name]), user_name, item_name)
        train_idx, valid_idx = torch.from_numpy(train_idx), torch.from_numpy(valid_idx)
        if drop_last is None:  # a last batch of one row would break BatchNorm in EmbeddingNN: it waits an epoch
            drop_last = shuffle and len(train_idx) % bs == 1
        train = TensorDataLoader((x[train_idx], y[train_idx]), bs=bs, shuffle=shuffle, drop_last=drop_last,
                                 device=device, kinds=KINDS)
        valid = TensorDataLoader((x[valid_idx], y[valid_idx]), bs=val_bs or bs, device=device, kinds=KINDS,
                                 split_idx=1)
        return cls._assemble(train, valid, classes, user_name, item_name, rating_name, path, bs)

    @classmethod
    def from_csv(cls, csv: str | Path, **kwargs: Any) -> "CollabDataLoaders":
        """`from_df` on ``pd.read_csv(csv)``; ``kwargs`` go to `from_df`.

        Raises:
            FileNotFoundError: naming the file when it does not exist.
            pandas.errors.EmptyDataError: (a ValueError) naming the file, when it is empty or has no rows.
        """
        csv = Path(csv)
        if not csv.exists():
            raise FileNotFoundError(f"No ratings file at {csv}: `csv` must be the path of a CSV file with user, item "
                                    "and rating columns")
        return cls.from_df(read_csv(csv), **kwargs)

    @classmethod
    def _assemble(cls, train: TensorDataLoader, valid: TensorDataLoader, classes: dict, user_name: Any,
                  item_name: Any, rating_name: Any, path: str | Path, bs: int) -> "CollabDataLoaders":
        train.show = valid.show = show_collab_batch
        inference = {"builder": "collab_inference_dls",
                     "kwargs": {"user_name": user_name, "item_name": item_name, "rating_name": rating_name,
                                "user_classes": classes[user_name].to_list(),
                                "item_classes": classes[item_name].to_list(), "bs": bs, "path": str(path)}}
        return cls(train, valid, classes=classes, user_name=user_name, item_name=item_name, rating_name=rating_name,
                   path=path, n_out=1, loss_func=target_loss_config("regression"), n_inp=1, inference=inference)

    # --- new pairs ----------------------------------------------------------------------------------
    def encode_pairs(self, items: Any, unknown: str = "error") -> tuple[torch.Tensor, pd.DataFrame]:
        """Codes of (user, item) pairs, and the pairs as a DataFrame.

        Args:
            items: a DataFrame with the user and item columns (the rating column is optional), or a list
                of pairs: ``(user, item)`` tuples, dicts or Series with the column names.
            unknown: ``'error'`` raises on users or items never seen in training; ``'na'`` or ``'bias'``
                give them code 0 (``'#na#'``).

        Returns:
            ``(x, df)``: codes of shape ``(n, 2)`` and the pairs as a DataFrame.

        Raises:
            KeyError: naming the unseen users/items (``unknown='error'``) or a missing column.
        """
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"`unknown` must be one of {UNKNOWN_POLICIES}; received: unknown={unknown!r}")
        df = _pairs_frame(items, self.user_name, self.item_name, self.rating_name)
        codes = []
        for name in (self.user_name, self.item_name):
            vocab, values = self.classes[name], df[name]
            col = vocab.encode(values)
            if unknown == "error" and (col == 0).any():
                unseen = vocab.unknown(values[col == 0].tolist()) or ["missing values"]
                shown = ", ".join(map(repr, unseen[:10])) + (", ..." if len(unseen) > 10 else "")
                raise KeyError(f"{len(unseen)} value(s) of column {name!r} were never seen in training: {shown}. "
                               "The model has no embedding for them; drop those rows, or pass unknown='bias' "
                               "(predict from the known side's bias) or unknown='na' (use the '#na#' embedding)")
            codes.append(torch.from_numpy(col))
        return torch.stack(codes, 1), df

    def test_dl(self, items: Any, with_labels: bool = False, unknown: str = "error", **kwargs: Any) -> TensorDataLoader:
        """A loader over new (user, item) pairs (see `encode_pairs` for ``items`` and ``unknown``).

        Args:
            with_labels: also batch the ratings (the rating column must be present).
            **kwargs: loader arguments (``bs`` ...).
        """
        x, df = self.encode_pairs(items, unknown=unknown)
        tensors = (x,)
        if with_labels:
            if self.rating_name not in df.columns:
                raise KeyError(f"with_labels=True needs the rating column {self.rating_name!r} in `items`; "
                               f"received columns {list(df.columns)}")
            tensors = (x, torch.as_tensor(df[self.rating_name].to_numpy(dtype=np.float32)).reshape(-1, 1))
        return self.valid.new(tensors, shuffle=False, drop_last=False, **kwargs)

    def decode_prediction(self, decoded: torch.Tensor) -> float:
        """A predicted rating as a Python float."""
        return float(decoded.reshape(-1)[0])

    def decode_codes(self, x: torch.Tensor) -> pd.DataFrame:
        """Raw user and item ids of codes ``x`` (shape ``(n, 2)``), as a DataFrame."""
        x = x.detach().cpu()
        return pd.DataFrame({self.user_name: self.classes[self.user_name].decode(x[:, 0].tolist()),
                             self.item_name: self.classes[self.item_name].decode(x[:, 1].tolist())})


@register("data")
def collab_inference_dls(user_name: Any, item_name: Any, rating_name: Any, user_classes: Sequence,
                         item_classes: Sequence, bs: int = 64, path: str = ".") -> CollabDataLoaders:
    """Empty collab loaders holding the vocabularies: what a loaded learner needs to predict new pairs."""
    classes = {user_name: CategoryMap(user_classes, sort=False, add_na=True),
               item_name: CategoryMap(item_classes, sort=False, add_na=True)}
    empty = (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 1))
    train = TensorDataLoader(empty, bs=bs, device="cpu", kinds=KINDS)
    valid = TensorDataLoader(empty, bs=bs, device="cpu", kinds=KINDS, split_idx=1)
    return CollabDataLoaders._assemble(train, valid, classes, user_name, item_name, rating_name, path, bs)


def show_collab_batch(dls: CollabDataLoaders, batch: tuple, max_n: int = 9, **kwargs: Any) -> None:
    """Show a batch as a table of raw user id, item id and rating (displayed in a notebook, else printed)."""
    x, y = batch[0][:max_n], batch[1][:max_n]
    df = dls.decode_codes(x)
    df[dls.rating_name] = y.detach().cpu().reshape(-1).tolist()
    show_table(df)


def show_table(df: pd.DataFrame) -> None:
    """Display ``df`` in a notebook, or print it elsewhere; returns None (as fastai's show functions do)."""
    from ..callbacks.progress import in_notebook
    if in_notebook():
        from IPython.display import display
        display(df)
    else:
        print(df.to_string(index=False))


# --- helpers ------------------------------------------------------------------------------------------
def _columns(ratings: Any, user_name: Any, item_name: Any, rating_name: Any) -> tuple:
    """The user, item and rating column names (default: the first three columns), checked."""
    if not isinstance(ratings, pd.DataFrame):
        raise TypeError(f"`ratings` must be a pandas DataFrame; received: {type(ratings).__name__}")
    cols = list(ratings.columns)
    names = [user_name, item_name, rating_name]
    for i, (arg, name) in enumerate(zip(("user_name", "item_name", "rating_name"), names)):
        if name is None:
            if len(cols) <= i:
                raise ValueError(f"`ratings` needs user, item and rating columns; it has only {cols}. "
                                 "Pass user_name=, item_name=, rating_name=")
            names[i] = cols[i]
        elif name not in ratings.columns:
            raise ValueError(f"`{arg}`={name!r} is not a column of `ratings`; its columns are {cols}")
    if len(set(names)) < 3:
        raise ValueError(f"user, item and rating must be three different columns; received {names}")
    return tuple(names)


def _check_values(ratings: pd.DataFrame, user_name: Any, item_name: Any, rating_name: Any) -> None:
    if len(ratings) == 0:
        raise ValueError("`ratings` is empty: there is nothing to learn from")
    for name in (user_name, item_name, rating_name):
        n_missing = int(ratings[name].isna().sum())
        if n_missing:
            raise ValueError(f"column {name!r} of `ratings` has {n_missing} missing value(s); drop those rows first, "
                             f"e.g. ratings.dropna(subset=[{name!r}])")
    if not pd.api.types.is_numeric_dtype(ratings[rating_name]):
        raise ValueError(f"the rating column {rating_name!r} must be numeric; received dtype "
                         f"{ratings[rating_name].dtype}. Pass rating_name= to pick another column")


def _warn_shared_pairs(codes: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray, n_items: int,
                       user_name: Any, item_name: Any) -> None:
    """Warn when validation rows rate a (user, item) pair that training rows rate too (a repeated rating).

    Such a validation rating is mostly recalled, not predicted, so the validation loss reads too low.
    """
    keys = codes[:, 0] * n_items + codes[:, 1]  # one key per pair; code 0 ('#na#') never occurs here
    # pandas' hash-table isin: ~1.3 s for 20M + 5M rows (MovieLens-25M) on 2 cores, 3x faster than torch.isin
    shared = int(pd.Series(keys[valid_idx]).isin(keys[train_idx]).sum())
    if shared:
        warnings.warn(f"{shared} of the {len(valid_idx)} validation rows rate a ({user_name!r}, {item_name!r}) pair "
                      "that training rows rate too: the same user rated the same item more than once, so the "
                      "validation loss partly measures recall of training ratings and reads too low. Keep one "
                      f"rating per pair before building the data, e.g. ratings.drop_duplicates(subset=[{user_name!r}, "
                      f"{item_name!r}], keep='last')", stacklevel=user_stacklevel())


_IGNORED = ("num_workers", "pin_memory", "persistent_workers")


def _loader_options(shuffle: bool, kwargs: dict) -> bool:
    """``shuffle`` after fastai's alias ``shuffle_train``; raises on keyword arguments the loaders don't take."""
    unknown = sorted(k for k in kwargs if k != "shuffle_train" and k not in _IGNORED)
    if unknown:
        raise TypeError(f"CollabDataLoaders got unexpected keyword argument(s) {unknown}; loader arguments are bs, "
                        f"val_bs, shuffle (or shuffle_train), drop_last, device, and {list(_IGNORED)} (ignored)")
    return shuffle if kwargs.get("shuffle_train") is None else bool(kwargs["shuffle_train"])


def _pairs_frame(items: Any, user_name: Any, item_name: Any, rating_name: Any) -> pd.DataFrame:
    """``items`` (a DataFrame, or a list of tuples/dicts/Series) as a DataFrame with the user and item columns."""
    if isinstance(items, pd.DataFrame):
        df = items
    else:
        rows = list(items)
        if rows and all(isinstance(r, (tuple, list)) for r in rows):
            names = [user_name, item_name, rating_name][:len(rows[0])]
            df = pd.DataFrame([list(r) for r in rows], columns=names)
        else:
            df = pd.DataFrame([dict(r) for r in rows])
    for name in (user_name, item_name):
        if name not in df.columns:
            raise KeyError(f"the pairs to predict need a column {name!r} (users are {user_name!r}, items are "
                           f"{item_name!r}); received columns {list(df.columns)}")
    return df
