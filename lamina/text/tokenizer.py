"""`Tokenizer`: the first step of a text pipeline: raw text, a text file or DataFrame fields → `Tokens`.

Texts are tokenized in batches (in parallel for large inputs, see `tokenize_corpus`) and remembered, so
the per-item step of a `Datasets` is a lookup:

* `Tokenizer.from_folder(path)` tokenizes every text file under ``path`` when it is built, and caches the
  result beside the folder (``<path>_tok/tokens-<hash>.npz``, as fastai's ``<path>_tok`` folder): a second
  run reads it instead of tokenizing. The hash covers the texts, their file names, the rules and the
  tokenizer, so editing a file, adding one or changing a rule tokenizes again.
* `Tokenizer.from_df(text_cols)` tokenizes the training texts in one batch when the `Datasets` sets it up
  (the `TextDataLoaders` factories tokenize every row up front); with ``cache_dir`` the batch is cached too.

Examples:
    >>> tok = Tokenizer.from_folder(path)            # tokenizes (or reads the cache) now
    >>> tok(path/'train'/'pos'/'0_9.txt')[:5]
    ['xxbos', 'xxmaj', 'bromwell', 'xxmaj', 'high']
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.files import get_files
from .core import FLD, BaseTokenizer, SpacyTokenizer, WordTokenizer, defaults, rule_name, rules_from_names
from .corpus import Corpus, TokenTable, Tokens, corpus_key, load_corpus, save_corpus, tokenize_corpus
from .subword import SentencePieceTokenizer

__all__ = ["Tokenizer", "join_texts", "TOKENIZERS"]

# Word tokenizers an export may name, with the arguments their config holds.
TOKENIZERS: dict[str, type] = {"SpacyTokenizer": SpacyTokenizer, "BaseTokenizer": BaseTokenizer,
                               "SentencePieceTokenizer": SentencePieceTokenizer}


def join_texts(df: pd.DataFrame, text_cols: Sequence[Any], mark_fields: bool = False) -> list[str]:
    """The text of each row: the ``text_cols`` joined with spaces, each preceded by ``xxfld <n>`` if ``mark_fields``."""
    cols = [df.columns[c] if isinstance(c, int) and c not in df.columns else c for c in text_cols]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"Text column(s) {missing} are not in the DataFrame; its columns are {list(df.columns)}. "
                       "Pass text_col= with the column holding the texts")
    joined = (f"{FLD} 1 " if mark_fields else "") + df[cols[0]].astype(str)
    for i, col in enumerate(cols[1:], start=2):
        joined = joined + (f" {FLD} {i} " if mark_fields else " ") + df[col].astype(str)
    return joined.tolist()


def _rule_id(rule: Callable) -> str:
    name = rule_name(rule)
    if name is not None:
        return name
    return f"{getattr(rule, '__module__', '?')}:{getattr(rule, '__qualname__', repr(rule))}"


class Tokenizer:
    """Raw texts → `Tokens`, remembering every text it has tokenized (batch, parallel and disk-cached).

    Args:
        tok: the word tokenizer (an instance or a class; default `WordTokenizer`).
        rules: the rules applied to each text first (default ``defaults.text_proc_rules``).
        counter, lengths: accepted for fastai compatibility (the vocabulary is counted on the training items).
        mode: ``'df'``, ``'folder'`` or None.
        sep: how `decode` joins tokens (the words that pieces spell, for `SubwordTokenizer`).
        post_rules: per-token rules (default ``defaults.text_postproc_rules``).
        n_workers: processes for large batches (default one per CPU, at most 8).
        cache_dir: where batches of texts are cached (None: not cached).
    """

    def __init__(self, tok: Any = None, rules: Sequence[Callable] | None = None, counter: Any = None,
                 lengths: Any = None, mode: str | None = None, sep: str = " ",
                 post_rules: Sequence[Callable] | None = None, n_workers: int | None = None,
                 cache_dir: str | Path | None = None):
        tok = WordTokenizer() if tok is None else tok
        self.tok = tok() if isinstance(tok, type) else tok
        self.rules = list(defaults.text_proc_rules if rules is None else rules)
        self.post_rules = list(defaults.text_postproc_rules if post_rules is None else post_rules)
        self.counter, self.lengths, self.mode, self.sep = counter, lengths, mode, sep
        self.n_workers, self.cache_dir = n_workers, (Path(cache_dir) if cache_dir is not None else None)
        self.text_cols: list = []
        self.mark_fields = False
        self.path: Path | None = None
        self.table = TokenTable()
        self._tok_set_up = False
        self._texts: dict[str, Tokens] = {}  # text -> its tokens
        self._files: dict[str, Tokens] = {}  # file path -> its tokens (folder mode)

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_df(cls, text_cols: Any, tok: Any = None, rules: Sequence[Callable] | None = None, sep: str = " ",
                mark_fields: bool | None = None, tok_text_col: str = "text", n_workers: int | None = None,
                cache_dir: str | Path | None = None, **kwargs: Any) -> "Tokenizer":
        """A tokenizer for the ``text_cols`` of DataFrame rows (several columns are joined, marked with ``xxfld``
        by default). ``tok_text_col`` is accepted for fastai compatibility (the texts stay where they are)."""
        res = cls(tok, rules=rules, mode="df", sep=sep, n_workers=n_workers, cache_dir=cache_dir, **kwargs)
        res.text_cols = list(text_cols) if isinstance(text_cols, (list, tuple)) else [text_cols]
        res.mark_fields = len(res.text_cols) > 1 if mark_fields is None else bool(mark_fields)
        return res

    @classmethod
    def from_folder(cls, path: str | Path, tok: Any = None, rules: Sequence[Callable] | None = None,
                    extensions: Sequence[str] | None = None, folders: Sequence[str] | None = None,
                    output_dir: str | Path | None = None, n_workers: int | None = None, encoding: str = "utf8",
                    skip_if_exists: bool = True, **kwargs: Any) -> "Tokenizer":
        """A tokenizer holding the tokens of every text file under ``path`` (``.txt`` by default, all sub-folders
        unless ``folders``), read from the cache ``output_dir`` (default ``<path>_tok`` beside the folder) when the
        texts, names and rules are unchanged, else tokenized now and cached. ``skip_if_exists`` is accepted for
        fastai compatibility: the cache is always checked against the texts.

        Raises:
            FileNotFoundError: when ``path`` is not a folder, or holds no such file.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"Tokenizer.from_folder: {path} is not a folder; pass the folder that holds the "
                                    "text files (e.g. untar_data(URLs.IMDB))")
        files = get_files(path, extensions=list(extensions or [".txt"]), recurse=True, folders=folders)
        if not files:
            raise FileNotFoundError(f"Tokenizer.from_folder: no {list(extensions or ['.txt'])} files under {path}"
                                    f"{f' in the folders {list(folders)}' if folders else ''}")
        cache = Path(output_dir) if output_dir is not None else path.parent / f"{path.name}_tok"
        res = cls(tok, rules=rules, mode="folder", n_workers=n_workers, cache_dir=cache, **kwargs)
        res.path = path
        names = [f.relative_to(path).as_posix() for f in files]
        texts = [f.read_text(encoding=encoding) for f in files]
        res._fit_tok(texts)
        for name, tokens in zip(names, res._tokenize_cached(texts, names)):
            res._files[str(path / name)] = tokens
        return res

    # --- tokenizing ------------------------------------------------------------------------------------
    def spec(self) -> dict:
        """What determines the tokens (cache key): the word tokenizer and the rules."""
        tok_spec = self.tok.spec() if hasattr(self.tok, "spec") else {"name": type(self.tok).__qualname__}
        return {"tok": tok_spec, "rules": [_rule_id(r) for r in self.rules],
                "post_rules": [_rule_id(r) for r in self.post_rules]}

    def _tokenize_cached(self, texts: Sequence[str], names: Sequence[str] = ()) -> list[Tokens]:
        """The tokens of ``texts`` in this tokenizer's table, from the disk cache when it has them."""
        key = corpus_key(texts, self.spec(), names) if self.cache_dir is not None else None
        found = load_corpus(self.cache_dir, key) if key is not None else None
        if found is not None and list(found[1]) == list(names):
            cached = found[0]
            corpus = Corpus(self.table, self.table.remap(cached.table.itos)[cached.ids].astype(np.int32),
                            cached.offsets)
        else:
            corpus = tokenize_corpus(texts, self.tok, self.rules, self.post_rules, table=self.table,
                                     n_workers=self.n_workers)
            if key is not None:
                try:
                    save_corpus(self.cache_dir, key, corpus, names)
                except OSError as e:  # a read-only data folder: the tokens are still returned, just not kept
                    warnings.warn(f"Could not write the tokenization cache in {self.cache_dir} ({e}); the texts will "
                                  "be tokenized again next time. Pass a writable output_dir=/cache_dir=")
        return [corpus.doc(i) for i in range(len(corpus))]

    def _fit_tok(self, texts: Sequence[str]) -> None:
        """Let a word tokenizer that learns from the texts (one with a ``setup``, as `SubwordTokenizer`) learn from
        ``texts``, with the rules applied: once, and not when it is already ``trained``."""
        if not hasattr(self.tok, "setup") or getattr(self.tok, "trained", False) or self._tok_set_up:
            return
        if self.cache_dir is not None and getattr(self.tok, "cache_dir", False) is None:
            self.tok.cache_dir = self.cache_dir  # keep the learned model beside the cached tokens
        self.tok.setup(texts, self.rules)
        self._tok_set_up = True

    def prepare(self, texts: Sequence[str]) -> None:
        """Tokenize, in one batch, the ``texts`` not seen yet (so later per-item calls are lookups). A word
        tokenizer that learns from the texts (`SubwordTokenizer`) learns from the first ones."""
        new = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t not in self._texts))
        if new:
            self._fit_tok(new)
            self._texts.update(zip(new, self._tokenize_cached(new)))

    def setup(self, values: Sequence[Any]) -> None:
        """(Called by `Datasets` with the training values) tokenize the training texts in one batch."""
        self.prepare([self._as_text(v) for v in values if not isinstance(v, (Tokens, Path))])

    def _as_text(self, o: Any) -> Any:
        if isinstance(o, (list, tuple)) and self.mode == "df" and len(self.text_cols) > 1:
            return join_texts(pd.DataFrame([list(o)]), list(range(len(o))), self.mark_fields)[0]
        if isinstance(o, (str, list, tuple, Tokens, Path)):
            return o
        return str(o)  # a missing value (NaN) or a number in a text column

    def __call__(self, o: Any) -> Tokens:
        """The tokens of a text, a text file, the fields of a row, or a list of tokens (kept as they are)."""
        if isinstance(o, Tokens):
            return o
        if isinstance(o, Path):
            found = self._files.get(str(o))
            return found if found is not None else self._one(o.read_text(encoding="utf8"))
        o = self._as_text(o)
        if isinstance(o, (list, tuple)):
            return Tokens(np.asarray(self.table.ids([str(t) for t in o]), dtype=np.int32), self.table)
        found = self._texts.get(o)
        return found if found is not None else self._one(o)

    def _one(self, text: str) -> Tokens:
        return tokenize_corpus([text], self.tok, self.rules, self.post_rules, table=self.table, n_workers=0).doc(0)

    def encode_many(self, texts: Sequence[Any]) -> list[Tokens]:
        """The tokens of many texts, tokenized in one batch (new texts are not remembered)."""
        texts = [self._as_text(t) for t in texts]
        raw = [t for t in texts if isinstance(t, str) and t not in self._texts]
        fresh = dict(zip(raw, self._tokenize_cached(raw) if raw else []))
        return [fresh[t] if isinstance(t, str) and t in fresh else self(t) for t in texts]

    def words(self, tokens: Sequence[str]) -> list[str]:
        """The words of ``tokens``: the tokens themselves, or the words that `SubwordTokenizer` pieces spell."""
        if isinstance(self.tok, SentencePieceTokenizer):
            return self.tok.decode(list(tokens)).split()
        return list(tokens)

    def decode(self, tokens: Sequence[str]) -> str:
        """The `words` of ``tokens`` joined with ``sep``."""
        return self.sep.join(self.words(tokens))

    def __deepcopy__(self, memo: dict) -> "Tokenizer":
        # `DataBlock` copies steps that have a `setup`: share the remembered tokens (they depend on the text
        # only) instead of copying gigabytes of them.
        return copy.copy(self)

    # --- export ----------------------------------------------------------------------------------------
    def to_config(self) -> dict:
        """A JSON description (word tokenizer and rules by name) that `from_config` rebuilds.

        Raises:
            ValueError: for a word tokenizer or a rule that is not one of lamina's (it cannot be named in a file).
        """
        describe = getattr(self.tok, "to_config", None) or getattr(self.tok, "spec", None)
        tok_spec = describe() if describe is not None else {}
        if tok_spec.get("name") not in TOKENIZERS:
            raise ValueError(f"The word tokenizer {type(self.tok).__name__} cannot be described in an export: use "
                             f"one of {sorted(TOKENIZERS)}")
        names = {"rules": [rule_name(r) for r in self.rules], "post_rules": [rule_name(r) for r in self.post_rules]}
        for field, rules in zip(names, (self.rules, self.post_rules)):
            if None in names[field]:
                custom = [getattr(r, "__name__", repr(r)) for r, n in zip(rules, names[field]) if n is None]
                raise ValueError(f"The text {field} {custom} are not lamina's rules and cannot be named in an "
                                 "export; lamina's rules are in lamina.text.core.TEXT_RULES")
        tok_args = {k: v for k, v in tok_spec.items() if k not in ("name", "spacy")}
        return {"tok": tok_spec["name"], "tok_kwargs": tok_args, **names, "sep": self.sep, "mode": self.mode,
                "text_cols": [c if isinstance(c, (str, int)) else str(c) for c in self.text_cols],
                "mark_fields": self.mark_fields}

    @classmethod
    def from_config(cls, cfg: dict) -> "Tokenizer":
        """The tokenizer `to_config` described.

        Raises:
            ValueError: for an unknown word tokenizer or rule name.
        """
        if cfg.get("tok") not in TOKENIZERS:
            raise ValueError(f"Unknown word tokenizer {cfg.get('tok')!r}: known ones are {sorted(TOKENIZERS)}")
        tok_cls, tok_kwargs = TOKENIZERS[cfg["tok"]], dict(cfg.get("tok_kwargs") or {})
        tok = tok_cls.from_config(tok_kwargs) if hasattr(tok_cls, "from_config") else tok_cls(**tok_kwargs)
        res = cls(tok, rules=rules_from_names(cfg.get("rules", [])), post_rules=rules_from_names(
            cfg.get("post_rules", [])), sep=cfg.get("sep", " "), mode=cfg.get("mode"))
        res.text_cols, res.mark_fields = list(cfg.get("text_cols") or []), bool(cfg.get("mark_fields", False))
        return res

    def __repr__(self) -> str:
        rules = [_rule_id(r) for r in self.rules]
        return f"Tokenizer(tok={type(self.tok).__name__}, rules={rules}, mode={self.mode!r})"
