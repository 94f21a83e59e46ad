"""Tokenized texts stored compactly, tokenized in parallel, and cached on disk.

Millions of tokens as Python lists of ``str`` take gigabytes (one object per token). A `Corpus` keeps them as
one int32 array of token ids into a `TokenTable` (each distinct token string once) plus document offsets;
a `Tokens` is one document: a view into that array that reads like a list of ``str``. `Numericalize` maps
table ids to vocabulary ids with one array gather per document.

`tokenize_corpus` runs the rules and the word tokenizer serially for small inputs and over worker
processes for large ones (spaCy's tokenizer is single-threaded Python/Cython: ~1.5 MB of text per second
per core). `save_corpus`/`load_corpus` write and read a tokenized corpus as a ``.npz`` file without pickles,
keyed by `corpus_key`: a hash of the texts, the rules and the tokenizer, so changed texts are tokenized again.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_write
from ..data.datasets import default_num_workers
from .core import SpacyTokenizer, TokenizeWithRules, _pieces, apply_rules

__all__ = ["TokenTable", "Tokens", "Corpus", "tokenize_corpus", "corpus_key", "save_corpus", "load_corpus",
           "PARALLEL_MIN_CHARS", "CACHE_VERSION"]

# Below this much text, starting worker processes costs more than it saves. Measured on the IMDB sample (1.4 MB,
# 2 cores, fresh process, spaCy's import included): 1.4 s serially, 1.1 s with the workers.
PARALLEL_MIN_CHARS = 500_000
CACHE_VERSION = 2  # 2: each whitespace piece tokenized as if alone
_KEEP_CACHED = 3  # cache files kept per folder: the newest ones (an LM corpus and a classifier's, and one more)


class TokenTable:
    """Distinct token strings ↔ ids (first seen, first numbered); grows as new texts are tokenized."""

    def __init__(self, itos: Sequence[str] = ()):
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """The ids of ``tokens``, adding the new ones."""
        stoi, out = self.stoi, []
        for t in tokens:
            i = stoi.get(t)
            if i is None:
                i = stoi[t] = len(self.itos)
                self.itos.append(t)
            out.append(i)
        return out

    def remap(self, itos: Sequence[str]) -> np.ndarray:
        """For another table's ``itos``: the id of each of its tokens in this table (new ones added)."""
        return np.asarray(self.ids(itos), dtype=np.int64)


class Tokens(Sequence):
    """One tokenized document: a read-only view of token ids into a `TokenTable`; reads as a list of ``str``.

    Example:
        >>> toks = tokenizer("Hello world"); list(toks), len(toks)
        (['xxbos', 'xxmaj', 'hello', 'world'], 4)
    """

    __slots__ = ("ids", "table")

    def __init__(self, ids: np.ndarray, table: TokenTable):
        self.ids, self.table = ids, table

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.table.itos[j] for j in self.ids[i].tolist()]
        return self.table.itos[int(self.ids[i])]

    def __iter__(self) -> Iterator[str]:
        itos = self.table.itos
        return (itos[j] for j in self.ids.tolist())

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (Tokens, list, tuple)) else NotImplemented

    def __repr__(self) -> str:
        head = " ".join(self[:20])
        return f"Tokens('{head}{' ...' if len(self) > 20 else ''}', {len(self)} tokens)"


class Corpus:
    """Documents as one id array plus offsets: document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, table: TokenTable, ids: np.ndarray, offsets: np.ndarray):
        self.table, self.ids, self.offsets = table, ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> Tokens:
        return Tokens(self.ids[self.offsets[i]:self.offsets[i + 1]], self.table)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _tokenize_chunk(texts: Sequence[str], tok: Any, rules: Sequence[Callable],
                    post_rules: Sequence[Callable]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tokenize ``texts`` into a local table: (its itos, the ids of every token, the length of each text)."""
    table, ids, lens = TokenTable(), [], []
    for tokens in TokenizeWithRules(tok, rules, post_rules)(texts):
        ids.extend(table.ids(tokens))
        lens.append(len(tokens))
    return table.itos, np.asarray(ids, dtype=np.int32), np.asarray(lens, dtype=np.int64)


def _picklable(*objs: Any) -> bool:
    try:
        pickle.dumps(objs)
        return True
    except (pickle.PicklingError, AttributeError, TypeError):
        return False


def _chunks(texts: Sequence[str], n: int) -> list[Sequence[str]]:
    size = -(-len(texts) // n)
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def tokenize_corpus(texts: Sequence[str], tok: Any, rules: Sequence[Callable], post_rules: Sequence[Callable],
                    table: TokenTable | None = None, n_workers: int | None = None,
                    min_chars: int = PARALLEL_MIN_CHARS) -> Corpus:
    """Tokenize ``texts`` into a `Corpus` (ids in ``table``, a new one by default), in order.

    Args:
        texts: the raw texts.
        tok, rules, post_rules: the word tokenizer and the rules (see `TokenizeWithRules`).
        table: the token table to extend.
        n_workers: worker processes (default: one per usable CPU, at most 8).
        min_chars: below this many characters in all, tokenize in this process.
    """
    table = table if table is not None else TokenTable()
    workers = default_num_workers() if n_workers is None else n_workers
    total = sum(len(t) for t in texts)
    parallel = workers > 1 and len(texts) >= 2 * workers and total >= min_chars
    if parallel and not _picklable(tok, list(rules), list(post_rules)):
        warnings.warn("The tokenizer or a rule cannot be sent to worker processes (a lambda or local function?): "
                      "tokenizing in this process. Define them at module level to tokenize in parallel")
        parallel = False
    if parallel and type(tok) is SpacyTokenizer:  # a subclass may tokenize otherwise: it gets the general path
        return _tokenize_in_two_steps(texts, tok, rules, post_rules, table, workers)
    if parallel:
        list(tok(["warm up"]))  # build the word tokenizer here: forked workers inherit it instead of each building one
        pieces = _chunks(list(texts), workers * 4)  # several chunks per worker: a slow chunk does not stall the rest
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_tokenize_chunk, pieces, *([x] * len(pieces) for x in (tok, rules, post_rules))))
    else:
        parts = [_tokenize_chunk(texts, tok, rules, post_rules)] if len(texts) else []
    ids = [table.remap(itos)[local] for itos, local, _ in parts]  # local table ids -> shared table ids
    lens = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    flat = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, dtype=np.int32)
    return Corpus(table, flat, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))


def _split_chunk(texts: Sequence[str], rules: Sequence[Callable]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """In a worker: the rules on each text, then its pieces (`_pieces`): (the distinct pieces, each piece's index
    among them, the number of pieces of each text)."""
    table, numbers, lens = TokenTable(), [], []
    for text in texts:
        pieces = _pieces(apply_rules(str(text), rules))
        numbers.extend(table.ids(pieces))
        lens.append(len(pieces))
    return table.itos, np.asarray(numbers, dtype=np.int64), np.asarray(lens, dtype=np.int64)


class _PieceTokens:
    """The token ids (in ``table``) of each distinct piece of the texts, every piece tokenized once."""

    def __init__(self, tok: SpacyTokenizer, post_rules: Sequence[Callable], table: TokenTable):
        self.tok, self.post_rules, self.table = tok, list(post_rules), table
        self.pieces, self.flat, self.counts = TokenTable(), [], []
        self.post: dict[str, str] = {}  # post rules rewrite one token at a time: each distinct token once

    def add(self, pieces: list[str]) -> np.ndarray:
        """The numbers of ``pieces`` (distinct); the new ones are tokenized."""
        before = len(self.pieces)
        numbers = self.pieces.remap(pieces)
        tokens = self.tok.tokenize_pieces(self.pieces.itos[before:])
        flat = [t for piece in tokens for t in piece]
        self.flat.extend(self.table.ids([self._post(t) for t in flat] if self.post_rules else flat))
        self.counts.extend(map(len, tokens))
        return numbers

    def _post(self, token: str) -> str:
        done = self.post.get(token)
        if done is None:
            done = self.post[token] = apply_rules(token, self.post_rules)
        return done

    def assemble(self, numbers: np.ndarray, lens: np.ndarray) -> Corpus:
        """The corpus of texts given as piece numbers, ``lens[i]`` pieces for text ``i``."""
        counts = np.asarray(self.counts, dtype=np.int64)
        starts = np.cumsum(counts) - counts
        per_piece = counts[numbers]
        ends = np.cumsum(per_piece)
        # token j of the output is token (j - first output token of its piece) of that piece's run in flat
        index = np.repeat(starts[numbers] - (ends - per_piece), per_piece) + np.arange(int(per_piece.sum()))
        ids = np.asarray(self.flat, dtype=np.int32)[index]
        bounds = np.concatenate([[0], ends])[np.concatenate([[0], np.cumsum(lens)])]
        return Corpus(self.table, ids, bounds.astype(np.int64))


def _tokenize_in_two_steps(texts: Sequence[str], tok: SpacyTokenizer, rules: Sequence[Callable],
                           post_rules: Sequence[Callable], table: TokenTable, workers: int) -> Corpus:
    """The rules and the whitespace split in worker processes, spaCy here on each distinct piece once.

    The workers start before this process loads spaCy (about a second) and work while it loads; spaCy then sees
    each distinct piece of the whole corpus once instead of once per worker.
    """
    known, numbers, lens = _PieceTokens(tok, post_rules, table), [], []
    chunks = _chunks(list(texts), workers * 4)
    with ProcessPoolExecutor(max_workers=max(workers - 1, 1)) as pool:  # a core left for this process's work
        for itos, local, n in pool.map(_split_chunk, chunks, [list(rules)] * len(chunks)):
            numbers.append(known.add(itos)[local])
            lens.append(n)
    return known.assemble(np.concatenate(numbers), np.concatenate(lens))


# --- the disk cache --------------------------------------------------------------------------------------


def corpus_key(texts: Sequence[str], spec: dict, names: Sequence[str] = ()) -> str:
    """A hash of the texts (and their file names), the rules and the tokenizer (``spec``): the cache key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"version": CACHE_VERSION, **spec}, sort_keys=True, default=str).encode())
    for name in names:
        h.update(name.encode("utf-8", "surrogatepass") + b"\0")
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def save_corpus(cache_dir: Path, key: str, corpus: Corpus, names: Sequence[str] = ()) -> Path:
    """Write ``corpus`` to ``cache_dir/tokens-<key>.npz`` atomically; keep only the newest few cache files there."""
    cache_dir = Path(cache_dir)
    buf = io.BytesIO()
    np.savez(buf, ids=corpus.ids, offsets=corpus.offsets, table=_json_bytes(corpus.table.itos),
             names=_json_bytes(list(names)), meta=_json_bytes({"version": CACHE_VERSION, "key": key}))
    path = atomic_write(cache_dir / f"tokens-{key}.npz", lambda f: f.write(buf.getvalue()),
                        size_hint=buf.tell(), what="tokenization cache")
    old = sorted(cache_dir.glob("tokens-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)[_KEEP_CACHED:]
    for stale in old:  # older texts or rules: invalidated
        stale.unlink(missing_ok=True)
    return path


def load_corpus(cache_dir: Path, key: str) -> tuple[Corpus, list[str]] | None:
    """The corpus cached under ``key`` and its file names, or None when absent or unreadable (it is then rebuilt)."""
    path = Path(cache_dir) / f"tokens-{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(f["meta"].tobytes().decode("utf-8"))
            if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
                return None
            itos = json.loads(f["table"].tobytes().decode("utf-8", "surrogatepass"))
            names = json.loads(f["names"].tobytes().decode("utf-8", "surrogatepass"))
            ids, offsets = f["ids"].astype(np.int32), f["offsets"].astype(np.int64)
    except (OSError, ValueError, KeyError) as e:
        warnings.warn(f"Ignoring the unreadable tokenization cache {path} ({e}); tokenizing again")
        return None
    if len(offsets) == 0 or offsets[-1] != len(ids) or (len(ids) and int(ids.max()) >= len(itos)):
        warnings.warn(f"Ignoring the inconsistent tokenization cache {path}; tokenizing again")
        return None
    path.touch()  # recently used: kept when older entries are pruned
    return Corpus(TokenTable(itos), ids, offsets), names
