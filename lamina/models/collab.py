"""Collaborative-filtering models: a dot product of user and item factors plus biases, and an MLP over
user and item embeddings.

Both take ``x``, a LongTensor of shape ``(bs, 2)`` holding (user code, item code) per row, where the codes
index the vocabularies built from the training rows (code 0 is ``'#na#'``, for ids never seen in training).

Example:
    >>> model = EmbeddingDotBias(n_factors=50, n_users=944, n_items=1683, y_range=(0, 5.5))
    >>> model(torch.tensor([[1, 5], [2, 7]])).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.transforms import CategoryMap
from ..registry import register
from .layers import Embedding
from .tabular import TabularModel

__all__ = ["EmbeddingDotBias", "EmbeddingNN", "embedding_dot_bias", "lookup_codes"]


def _sigmoid_range(x: torch.Tensor, y_range: tuple[float, float] | None) -> torch.Tensor:
    if y_range is None:
        return x
    low, high = y_range
    return torch.sigmoid(x) * (high - low) + low


class EmbeddingDotBias(nn.Module):
    """Predicts ``u·i + b_u + b_i`` (squashed into ``y_range`` by a scaled sigmoid when given).

    Args:
        n_factors: width of the user and item factor vectors.
        n_users: number of user codes (the user vocabulary's length, ``'#na#'`` included).
        n_items: number of item codes.
        y_range: ``(low, high)`` of the predictions; a little wider than the rating scale works best
            (e.g. ``(0.5, 5.5)`` for 1–5 stars), since the sigmoid only reaches its ends asymptotically.

    Attributes:
        u_weight, i_weight: the factor embeddings; u_bias, i_bias: the bias embeddings (width 1).
        classes: ``{user column: vocabulary, item column: vocabulary}`` when built by `from_classes`;
            `weight` and `bias` use it to map raw ids (or titles) to rows.
    """

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: tuple[float, float] | None = None):
        super().__init__()
        for name, value in (("n_factors", n_factors), ("n_users", n_users), ("n_items", n_items)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; received: {name}={value!r}")
        self.y_range = tuple(float(v) for v in y_range) if y_range is not None else None
        self.u_weight, self.i_weight = Embedding(n_users, n_factors), Embedding(n_items, n_factors)
        self.u_bias, self.i_bias = Embedding(n_users, 1), Embedding(n_items, 1)
        self.classes: dict | None = None
        self.user = self.item = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of shape ``(bs,)`` for ``x`` of shape ``(bs, 2)``."""
        users, items = x[:, 0], x[:, 1]
        dot = (self.u_weight(users) * self.i_weight(items)).sum(1)
        res = dot + self.u_bias(users).squeeze(-1) + self.i_bias(items).squeeze(-1)
        return _sigmoid_range(res, self.y_range)

    def forward_bias_only(self, x: torch.Tensor, user_known: torch.Tensor, item_known: torch.Tensor) -> torch.Tensor:
        """`forward` where the factors and bias of an unknown user or item count as zero.

        An unknown user with a known item gets the item's bias (through ``y_range``), an unknown item the
        user's bias, and a pair of unknowns the middle of ``y_range`` (0 without one): the fallback for
        users and items the model never saw.

        Args:
            x: codes of shape ``(bs, 2)`` (any code for the unknown side).
            user_known, item_known: boolean masks of shape ``(bs,)``.
        """
        users, items = x[:, 0], x[:, 1]
        u_keep, i_keep = user_known.to(x.device).float(), item_known.to(x.device).float()
        dot = (self.u_weight(users) * self.i_weight(items)).sum(1) * u_keep * i_keep
        res = dot + self.u_bias(users).squeeze(-1) * u_keep + self.i_bias(items).squeeze(-1) * i_keep
        return _sigmoid_range(res, self.y_range)

    @classmethod
    def from_classes(cls, n_factors: int, classes: Mapping[Any, Sequence], user: Any = None, item: Any = None,
                     y_range: tuple[float, float] | None = None) -> "EmbeddingDotBias":
        """Build the model from ``dls.classes`` (``{user column: vocab, item column: vocab}``).

        Args:
            n_factors: width of the factor vectors.
            classes: the vocabularies; the first key is the user column and the second the item column
                unless ``user``/``item`` name them.
            user, item: the column names in ``classes``.
            y_range: ``(low, high)`` of the predictions.

        Raises:
            KeyError: when ``user`` or ``item`` is not a key of ``classes``.
        """
        keys = list(classes)
        user = keys[0] if user is None else user
        item = keys[1] if item is None and len(keys) > 1 else item
        for role, name in (("user", user), ("item", item)):
            if name not in classes:
                raise KeyError(f"`{role}`={name!r} is not a column of `classes`; its columns are {keys}")
        model = cls(n_factors, len(classes[user]), len(classes[item]), y_range=y_range)
        model.user, model.item = user, item
        model.classes = {user: _as_vocab(classes[user]), item: _as_vocab(classes[item])}
        return model

    def _codes(self, arr: Any, is_item: bool) -> torch.Tensor:
        if self.classes is None:
            raise ValueError("This model has no vocabularies to map ids to rows: build it with "
                             "EmbeddingDotBias.from_classes(n_factors, dls.classes) (collab_learner does), or "
                             "index the embeddings directly, e.g. model.i_weight.weight[codes]")
        name = self.item if is_item else self.user
        return lookup_codes(self.classes[name], arr, name, "item" if is_item else "user")

    def weight(self, arr: Any, is_item: bool = True) -> torch.Tensor:
        """Factor vectors of the items (or users, ``is_item=False``) ``arr`` (raw ids or titles).

        Returns:
            a detached CPU tensor of shape ``(len(arr), n_factors)``.

        Raises:
            KeyError: naming the ids never seen in training.
        """
        codes = self._codes(arr, is_item)
        emb = self.i_weight if is_item else self.u_weight
        return emb.weight.detach()[codes.to(emb.weight.device)].cpu()

    def bias(self, arr: Any, is_item: bool = True) -> torch.Tensor:
        """Biases of the items (or users, ``is_item=False``) ``arr`` (raw ids or titles).

        Returns:
            a detached CPU tensor of shape ``(len(arr),)``.

        Raises:
            KeyError: naming the ids never seen in training.
        """
        codes = self._codes(arr, is_item)
        emb = self.i_bias if is_item else self.u_bias
        return emb.weight.detach()[codes.to(emb.weight.device), 0].cpu()


@register("model")
class EmbeddingNN(TabularModel):
    """A `TabularModel` over the user and item embeddings alone (no continuous inputs), with one output.

    For each hidden size a ``Linear → act → BatchNorm1d → Dropout`` block (``lin_first=True``), then a plain
    ``Linear`` to 1, then ``SigmoidRange`` if ``y_range``.

    Args:
        emb_szs: ``[(n_users, width), (n_items, width)]`` (more columns work the same way).
        layers: hidden sizes, e.g. ``[100]``.
        **kwargs: the other `TabularModel` arguments (``ps``, ``embed_p``, ``y_range``, ``use_bn``,
            ``bn_final``, ``bn_cont``, ``act_cls``, ``lin_first``); ``bn_cont`` changes nothing here.
    """

    def __init__(self, emb_szs: Sequence[Sequence[int]], layers: Sequence[int], **kwargs: Any):
        super().__init__([tuple(int(v) for v in e) for e in emb_szs], n_cont=0, out_sz=1,
                         layers=[int(n) for n in layers], **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of shape ``(bs, 1)`` for codes ``x`` of shape ``(bs, n_columns)``."""
        return super().forward(x)


@register("model")
def embedding_dot_bias(n_factors: int, user_name: Any, item_name: Any, user_classes: Sequence,
                       item_classes: Sequence, y_range: Sequence[float] | None = None) -> EmbeddingDotBias:
    """`EmbeddingDotBias.from_classes` from JSON-safe arguments (how an exported learner rebuilds its model)."""
    return EmbeddingDotBias.from_classes(n_factors, {user_name: user_classes, item_name: item_classes},
                                         user=user_name, item=item_name,
                                         y_range=tuple(y_range) if y_range is not None else None)


def lookup_codes(vocab: CategoryMap, arr: Any, column: Any, kind: str = "item") -> torch.Tensor:
    """Codes of the raw ids (or titles) ``arr`` in ``vocab``, as a LongTensor.

    Args:
        vocab: the column's vocabulary (fitted on the training rows).
        arr: one id, or a list, array, Series or tensor of ids.
        column: the column's name (for the error message).
        kind: ``'user'`` or ``'item'`` (for the error message).

    Raises:
        KeyError: naming the ids never seen in training.
    """
    values = _as_list(arr)
    unknown = vocab.unknown(values)
    if unknown or any(_missing(v) for v in values):
        shown = ", ".join(map(repr, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
        raise KeyError(f"{len(unknown)} {kind} id(s) were never seen in training (column {column!r}): "
                       f"{shown or 'missing values'}. Only the {len(vocab) - 1} {kind}s of the training set have "
                       f"embeddings; check the ids against learn.dls.classes[{column!r}]")
    return torch.as_tensor(vocab.encode(values), dtype=torch.long)


def _as_vocab(values: Sequence) -> CategoryMap:
    """A vocabulary kept in the given order (code i is values[i]; ``'#na#'`` stays first)."""
    return values if isinstance(values, CategoryMap) else CategoryMap(list(values), sort=False)


def _as_list(arr: Any) -> list:
    """Ids as a list: a str (or any non-iterable, such as an int) is one id; any other iterable (list,
    tuple, ndarray, Series, Index, a pandas ExtensionArray such as pandas 3's string ``.values``, a tensor)
    holds ids."""
    if isinstance(arr, (torch.Tensor, np.ndarray)):
        return arr.reshape(-1).tolist() if arr.ndim else [arr.item()]
    if isinstance(arr, (str, bytes)) or not isinstance(arr, Iterable):
        return [arr]
    return list(arr)


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
