"""Target encoders: labels to tensors and back (`Categorize`, `MultiCategorize`, `RegressionSetup` ...).

Each is a `TypeTransform`: it learns its vocabulary from the training labels (``setup``), names its kind
(``'category'``, ``'multicategory'``, ``'regression'``), which picks the loss the target implies
(`TARGET_LOSSES`), and decodes predictions back to labels. The blocks of `lamina.data.block` use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ReadableKeyError
from .steps import TypeTransform
from .vocab import CategoryMap

__all__ = ["Category", "Categorize", "MultiCategorize", "EncodedMultiCategorize", "OneHotEncode", "RegressionSetup"]


class Category(str):
    """A decoded class label: the text of the vocabulary entry (a bool label ``True`` decodes to ``'True'``)."""


class Categorize(TypeTransform):
    """Label → class index (a 0-d int64 tensor); the vocabulary comes from the training labels.

    Args:
        vocab: the classes (default: the distinct training labels). Bool labels give ``[False, True]``.
        sort: sort the vocabulary.
        add_na: put ``'#na#'`` first.

    Raises:
        KeyError: (when called) for a label that is not in the vocabulary.
    """

    kind = "category"

    def __init__(self, vocab: Sequence | None = None, sort: bool = True, add_na: bool = False):
        self.sort, self.add_na = sort, add_na
        self.vocab = None if vocab is None else CategoryMap(list(vocab), sort=sort, add_na=add_na)

    def setup(self, labels: Sequence) -> None:
        if self.vocab is None:
            self.vocab = CategoryMap(labels, sort=self.sort, add_na=self.add_na)

    @property
    def c(self) -> int | None:
        return None if self.vocab is None else len(self.vocab)

    def __call__(self, label: Any) -> torch.Tensor:
        key = label.item() if hasattr(label, "item") and not isinstance(label, (str, bytes)) else label
        idx = self.vocab.o2i.get(key)
        if idx is None:
            raise ReadableKeyError(f"Label {label!r} was not included in the training dataset (classes: "
                           f"{list(self.vocab)[:20]}). Put items with this label in the training set, pass the "
                           "classes with CategoryBlock(vocab=...), or remove the item")
        return torch.tensor(idx)

    def decode(self, idx: Any) -> Category:
        return Category(self.vocab[int(idx)])


class MultiCategorize(TypeTransform):
    """A list of labels → a float one-hot vector over the vocabulary (the sorted union of training labels).

    Args:
        vocab: the classes (required when ``encoded``).
        add_na: put ``'#na#'`` first.
        encoded: the labels already are one-hot vectors (one 0/1 per class).
    """

    kind = "multicategory"

    def __init__(self, vocab: Sequence | None = None, add_na: bool = False, encoded: bool = False):
        if encoded and vocab is None:
            raise ValueError("MultiCategoryBlock(encoded=True) needs the class names: pass vocab=[...]")
        self.add_na, self.encoded = add_na, encoded
        self.vocab = None if vocab is None else CategoryMap(list(vocab), sort=False, add_na=add_na)

    def setup(self, labels: Sequence) -> None:
        if self.vocab is None:
            union = {lbl for lbls in labels for lbl in _listify(lbls)}
            self.vocab = CategoryMap(sorted(union, key=str), sort=True, add_na=self.add_na)

    @property
    def c(self) -> int | None:
        return None if self.vocab is None else len(self.vocab)

    def __call__(self, labels: Any) -> torch.Tensor:
        if self.encoded:
            out = torch.as_tensor([float(v) for v in labels], dtype=torch.float32)
            if len(out) != len(self.vocab):
                raise ValueError(f"An encoded label has {len(out)} values but there are {len(self.vocab)} classes")
            return out
        out = torch.zeros(len(self.vocab))
        for label in _listify(labels):
            idx = self.vocab.o2i.get(label)
            if idx is None:
                raise ReadableKeyError(f"Label {label!r} was not included in the training dataset (classes: "
                               f"{list(self.vocab)[:20]}); pass the classes with MultiCategoryBlock(vocab=...)")
            out[idx] = 1.0
        return out

    def decode(self, onehot: Any) -> list:
        flags = torch.as_tensor(onehot)
        return [self.vocab[i] for i in torch.nonzero(flags > 0.5 if flags.is_floating_point() else flags).flatten()]


class EncodedMultiCategorize(MultiCategorize):
    """Labels that already are one-hot vectors over ``vocab`` (fastai's name for ``MultiCategorize(encoded=True)``)."""

    def __init__(self, vocab: Sequence):
        super().__init__(vocab=vocab, encoded=True)


class OneHotEncode(TypeTransform):
    """Class indices → a float one-hot vector of length ``c``; a vector that already is one (what lamina's
    `MultiCategorize` returns) passes through, so fastai pipelines ``[MultiCategorize(), OneHotEncode()]`` work.

    Args:
        c: the number of classes (default: from the training values: a vector's length, else the top index + 1).
    """

    def __init__(self, c: int | None = None):
        self.c = c

    def setup(self, values: Sequence) -> None:
        if self.c is None and len(values):
            first = torch.as_tensor(values[0])
            top = max(int(torch.as_tensor(v).max()) for v in values) if not first.is_floating_point() else None
            self.c = len(first) if top is None else top + 1

    def __call__(self, o: Any) -> torch.Tensor:
        o = torch.as_tensor(o)
        if o.is_floating_point() and o.ndim == 1 and len(o) == self.c:
            return o
        return torch.zeros(self.c).index_fill_(0, o.long().flatten(), 1.0)


class RegressionSetup(TypeTransform):
    """A number or a list of numbers → a float32 tensor; ``c`` (outputs) from ``n_out`` or the first target."""

    kind = "regression"

    def __init__(self, c: int | None = None):
        self.c = c

    def setup(self, values: Sequence) -> None:
        if self.c is None and len(values):
            self.c = int(torch.as_tensor(values[0], dtype=torch.float32).numel())

    def __call__(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32)


def _listify(o: Any) -> list:
    if o is None:
        return []
    return list(o) if isinstance(o, (list, tuple, set)) else [o]
