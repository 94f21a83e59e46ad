"""`Numericalize`: tokens → vocabulary ids, with the vocabulary built from the training texts.

The vocabulary (fastai's rule, so pretrained vocabularies line up): the special tokens first (``xxunk`` 0,
``xxpad`` 1, ...), then the tokens seen at least ``min_freq`` times in the training texts, most frequent
first (ties: first seen first), at most ``max_vocab`` in all, padded with ``xxfake`` to a multiple of 8
(tensor cores like dimensions that are multiples of 8). Unknown tokens map to ``xxunk``.

Counting and mapping are vectorised for `Tokens` (token ids into a shared table): one ``bincount`` over all
training tokens, then one array gather per document.

Example:
    >>> num = Numericalize(min_freq=1); num.setup([tokens]); num(tokens)
    tensor([2, 8, 9, ...])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .core import PAD, UNK, defaults
from .corpus import TokenTable, Tokens

__all__ = ["make_vocab", "Numericalize", "ReverseText", "FAKE"]

FAKE = "xxfake"


def _finish_vocab(ranked: Sequence[str], max_vocab: int, special_toks: Sequence[str] | None) -> list[str]:
    special = list(defaults.text_spec_tok if special_toks is None else special_toks)
    taken = set(special)
    vocab = (special + [t for t in ranked if t not in taken])[:max_vocab]
    return vocab + [FAKE] * (-len(vocab) % 8)


def make_vocab(count: Counter, min_freq: int = 3, max_vocab: int = 60000,
               special_toks: Sequence[str] | None = None) -> list[str]:
    """The vocabulary of a token ``Counter``: special tokens, then tokens with ``count >= min_freq`` by
    decreasing count (ties in the counter's order), ``max_vocab`` at most, ``xxfake`` up to a multiple of 8."""
    ranked = [t for t, c in count.most_common(max_vocab) if c >= min_freq]
    return _finish_vocab(ranked, max_vocab, special_toks)


def _ranked_from_ids(docs: Sequence[Tokens], min_freq: int, max_vocab: int) -> list[str]:
    """Tokens of ``docs`` (sharing one table) with ``count >= min_freq``, by decreasing count, ties first seen."""
    table = docs[0].table
    ids = np.concatenate([d.ids for d in docs]) if docs else np.zeros(0, dtype=np.int32)
    counts = np.bincount(ids, minlength=len(table))
    first = np.full(len(table), len(ids), dtype=np.int64)
    seen, where = np.unique(ids, return_index=True)
    first[seen] = where
    keep = np.nonzero(counts >= max(min_freq, 1))[0]
    order = keep[np.lexsort((first[keep], -counts[keep]))][:max_vocab]
    return [table.itos[i] for i in order.tolist()]


class Numericalize:
    """Tokens → a LongTensor of vocabulary ids; the vocabulary comes from the training texts (`setup`).

    Args:
        vocab: a fixed vocabulary (e.g. ``dls_lm.vocab`` to reuse a language model's); default: built in `setup`.
        min_freq: a token needs this many occurrences in the training texts to enter the vocabulary.
        max_vocab: the largest vocabulary (special tokens included, ``xxfake`` padding excluded).
        special_toks: the tokens heading the vocabulary (default ``defaults.text_spec_tok``).
    """

    kind = "text"

    def __init__(self, vocab: Sequence[str] | None = None, min_freq: int = 3, max_vocab: int = 60000,
                 special_toks: Sequence[str] | None = None):
        self.min_freq, self.max_vocab, self.special_toks = min_freq, max_vocab, special_toks
        self.vocab: list[str] | None = None
        self.o2i: dict[str, int] = {}
        self._table: TokenTable | None = None
        self._map = np.zeros(0, dtype=np.int64)
        if vocab is not None:
            self._set_vocab(list(vocab))

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.o2i = {t: i for i, t in enumerate(vocab) if t != FAKE}
        self._table, self._map = None, np.zeros(0, dtype=np.int64)

    def setup(self, docs: Sequence[Any]) -> None:
        """Build the vocabulary from the training documents (unless one was given)."""
        if self.vocab is not None:
            return
        docs = list(docs)
        if docs and all(isinstance(d, Tokens) and d.table is docs[0].table for d in docs):
            ranked = _ranked_from_ids(docs, self.min_freq, self.max_vocab)
            self._set_vocab(_finish_vocab(ranked, self.max_vocab, self.special_toks))
        else:
            count = Counter(t for d in docs for t in d)
            self._set_vocab(make_vocab(count, self.min_freq, self.max_vocab, self.special_toks))

    @property
    def pad_idx(self) -> int:
        """The id of ``xxpad`` (1 with the default special tokens)."""
        return self.o2i.get(PAD, 1)

    def _table_map(self, table: TokenTable) -> np.ndarray:
        """Table id → vocabulary id, extended for tokens the table gained since the last call."""
        if self._table is not table:
            self._table, self._map = table, np.zeros(0, dtype=np.int64)
        if len(self._map) < len(table):
            get, unk = self.o2i.get, self.o2i.get(UNK, 0)
            extra = np.asarray([get(t, unk) for t in table.itos[len(self._map):]], dtype=np.int64)
            self._map = np.concatenate([self._map, extra])
        return self._map

    def __call__(self, tokens: Any) -> torch.Tensor:
        if self.vocab is None:
            raise RuntimeError("Numericalize has no vocabulary yet: call setup(training_tokens) or pass vocab=")
        if isinstance(tokens, torch.Tensor):
            return tokens.long()
        if isinstance(tokens, Tokens):
            return torch.from_numpy(self._table_map(tokens.table)[tokens.ids])
        unk = self.o2i.get(UNK, 0)
        return torch.tensor([self.o2i.get(t, unk) for t in tokens], dtype=torch.long)

    def decode(self, ids: Any) -> list[str]:
        """The tokens of ``ids``."""
        return [self.vocab[i] for i in torch.as_tensor(ids).reshape(-1).tolist()]

    def __repr__(self) -> str:
        size = None if self.vocab is None else len(self.vocab)
        return f"Numericalize(vocab size={size}, min_freq={self.min_freq}, max_vocab={self.max_vocab})"


class ReverseText:
    """Reverse the token order (for a backwards language model)."""

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.flip(0)

    def decode(self, ids: Any) -> Any:
        return torch.as_tensor(ids).flip(-1)
