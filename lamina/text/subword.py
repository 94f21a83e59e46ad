"""`SentencePieceTokenizer` (alias `SubwordTokenizer`): a word tokenizer that learns sub-word pieces from the texts.

Instead of splitting on words, a SentencePiece model learns from the training texts a vocabulary of ``vocab_sz``
pieces (whole common words, fragments of rare ones) and splits every text into them, so no word is ever unknown:
``'▁This ▁movie , ▁which ▁I ▁just ▁dis c over ed'``. ``▁`` marks a piece that starts a word.

The model is learned by `setup` (a `Tokenizer` calls it on the first texts it tokenizes in bulk: every text of
``Tokenizer.from_folder``/``TextDataLoaders.from_df``, the training texts of a `DataBlock`), or read from a
trained ``sp_model`` file. It lives in memory and travels inside pickles and ``learn.export`` files as its
serialized bytes (SentencePiece's protocol-buffer model: data, no code); with ``cache_dir`` it is also kept
there, and a later `setup` on the same texts reads it instead of learning again.

Needs the ``sentencepiece`` package: ``pip install 'lamina[text]'``.

Example:
    >>> sp = SubwordTokenizer(vocab_sz=10000)
    >>> sp.setup(texts)                      # learn the pieces (no rules here: a Tokenizer applies its own)
    >>> ' '.join(first(sp([texts[0]]))[:8])
    '▁Un - b leep ing - be lie'
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..core import usable_cpus
from .core import apply_rules, defaults

__all__ = ["SentencePieceTokenizer", "SubwordTokenizer", "subword_vocab_size", "EU_LANGS"]

# Languages written in a small alphabet: their models cover 99.999% of characters (0.9998 for the others, whose
# rarest characters are better left unknown than given pieces of their own).
EU_LANGS = ("bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv").split()
SPACE = "\u2581"  # how SentencePiece writes the space in front of a word
MAX_MODEL_CHARS = 64 * 2**20  # the largest model (base64 characters) an export may hold
_KEEP_MODELS = 3  # learned models kept in a cache folder (the newest)


def _sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as e:
        raise ImportError("SubwordTokenizer needs SentencePiece: pip install 'lamina[text]' "
                          "(or pip install sentencepiece)") from e
    return sentencepiece


def subword_vocab_size(lines: Iterable[str], max_vocab_sz: int = 30000) -> int:
    """The default number of pieces for ``lines``: a quarter of their distinct words, rounded up to a multiple of 8,
    at least 29 and at most ``max_vocab_sz``."""
    words: set[str] = set()
    for line in lines:
        words.update(line.split())
        if len(words) // 4 > max_vocab_sz:
            return max_vocab_sz
    size = -(-(len(words) // 4) // 8) * 8
    return min(max(size, 29), max_vocab_sz)


class SentencePieceTokenizer:
    """Sub-word tokenization with a SentencePiece model learned from the texts (fastai's ``SubwordTokenizer``).

    Args:
        lang: the language (sets the default ``char_coverage``).
        special_toks: tokens kept whole, each as one piece ``▁xxbos`` (default ``defaults.text_spec_tok``).
        sp_model: a trained SentencePiece ``.model`` file to use instead of learning one.
        vocab_sz: the number of pieces (default from the texts, see `subword_vocab_size`); fewer are learned when
            the texts cannot fill it.
        max_vocab_sz: the most pieces the default ``vocab_sz`` asks for.
        model_type: ``'unigram'``, ``'bpe'``, ``'char'`` or ``'word'``.
        char_coverage: the share of characters given pieces (default 0.99999 for `EU_LANGS`, else 0.9998).
        cache_dir: a folder where `setup` keeps the learned model, to read it back on the same texts (default:
            nowhere, the model stays in memory; fastai writes it to ``tmp``). A `Tokenizer` with a cache folder
            lends it.
        sp_model_proto: the model's serialized bytes (or their base64 text, as exports hold them).

    Raises:
        ValueError: for an unknown ``model_type`` or model bytes that are not a SentencePiece model.
    """

    def __init__(self, lang: str = "en", special_toks: Sequence[str] | None = None, sp_model: str | Path | None = None,
                 vocab_sz: int | None = None, max_vocab_sz: int = 30000, model_type: str = "unigram",
                 char_coverage: float | None = None, cache_dir: str | Path | None = None,
                 sp_model_proto: bytes | str | None = None):
        if model_type not in ("unigram", "bpe", "char", "word"):
            raise ValueError(f"SubwordTokenizer: model_type={model_type!r} is not one of 'unigram', 'bpe', 'char', "
                             "'word'")
        self.lang, self.model_type = lang, model_type
        self.special_toks = list(defaults.text_spec_tok if special_toks is None else special_toks)
        self.vocab_sz, self.max_vocab_sz = vocab_sz, max_vocab_sz
        self.char_coverage = char_coverage if char_coverage is not None else (
            0.99999 if lang in EU_LANGS else 0.9998)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.sp_model = Path(sp_model) if sp_model is not None else None
        self._proto: bytes | None = None
        self._sp: Any = None
        if sp_model_proto is not None:
            self._load(_proto_bytes(sp_model_proto), "the sp_model_proto bytes")
        elif self.sp_model is not None:
            if not self.sp_model.is_file():
                raise FileNotFoundError(f"SubwordTokenizer: sp_model={str(self.sp_model)!r} is not a file; pass a "
                                        "trained SentencePiece .model file, or leave it out to learn one in setup")
            self._load(self.sp_model.read_bytes(), f"the file {self.sp_model}")

    # --- the model ------------------------------------------------------------------------------------------
    @property
    def trained(self) -> bool:
        """Whether the model is learned (or loaded): the tokenizer can split texts."""
        return self._proto is not None

    def _load(self, proto: bytes, source: str) -> None:
        sp = _sentencepiece().SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(proto)
        except (RuntimeError, OSError, TypeError) as e:
            raise ValueError(f"SubwordTokenizer: {source} do not hold a SentencePiece model ({e})") from None
        self._proto, self._sp = proto, sp

    def setup(self, items: Iterable[Any], rules: Sequence[Callable[[str], str]] | None = None) -> dict:
        """Learn the pieces from ``items`` (texts or text files), each rewritten by ``rules`` first (default:
        none). Does nothing when the model is already learned or loaded. With ``cache_dir``, the model is kept
        there (``spm-<digest of texts and settings>.model``) and read back by a later setup on the same texts.

        Returns:
            ``{'sp_model': path}``: the model file (None when the model is only in memory).

        Raises:
            ValueError: when ``items`` hold no text.
        """
        if self.trained:
            return {"sp_model": self.sp_model}
        lines = [line for item in items for line in _text_of(item, rules).splitlines() if line.strip()]
        if not lines:
            raise ValueError("SubwordTokenizer.setup: the texts are empty; pass the training texts (strings or "
                             "text files) to learn the pieces from")
        cached = self.cache_dir / f"spm-{self._key(lines)}.model" if self.cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                self._load(cached.read_bytes(), f"the file {cached}")
                self.sp_model = cached
                return {"sp_model": cached}
            except ValueError:  # a damaged cache file: learn the model again and replace it
                pass
        self._load(self._train(lines), "the learned model")
        if cached is not None:
            try:
                self.sp_model = atomic_write(cached, lambda f: f.write(self._proto), what="SentencePiece model")
                models = sorted(cached.parent.glob("spm-*.model"), key=lambda p: p.stat().st_mtime, reverse=True)
                for stale in models[_KEEP_MODELS:]:  # models of older texts or settings
                    stale.unlink(missing_ok=True)
            except OSError as e:  # a read-only folder: the model is still learned, just not kept
                warnings.warn(f"SubwordTokenizer: could not keep the learned model in {self.cache_dir} ({e}); it "
                              "will be learned again next time. Pass a writable cache_dir=")
        return {"sp_model": self.sp_model}

    def _key(self, lines: Sequence[str]) -> str:
        h = hashlib.sha256(repr((self.model_type, self.vocab_sz, self.max_vocab_sz, self.char_coverage,
                                 self.special_toks, _sentencepiece().__version__)).encode())
        for line in lines:
            h.update(line.encode("utf-8", "surrogatepass") + b"\n")
        return h.hexdigest()[:16]

    def _train(self, lines: list[str]) -> bytes:
        spm = _sentencepiece()
        model = io.BytesIO()
        longest = max(len(line.encode("utf-8")) for line in lines)
        size = self.vocab_sz
        if size is None:  # at least one piece per character, special token and the unknown piece
            chars = len(set().union(*map(set, lines)) - {" "}) + len(self.special_toks) + 2
            size = min(max(subword_vocab_size(lines, self.max_vocab_sz), chars), max(self.max_vocab_sz, chars))
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=model, model_type=self.model_type, vocab_size=size,
                hard_vocab_limit=False, character_coverage=self.char_coverage,
                user_defined_symbols=[SPACE + t for t in self.special_toks], unk_id=0, pad_id=-1, bos_id=-1,
                eos_id=-1, max_sentence_length=max(longest + 1, 4192), minloglevel=2, num_threads=usable_cpus())
        except RuntimeError as e:
            raise ValueError(f"SubwordTokenizer: SentencePiece could not learn {size} pieces from these texts "
                             f"({str(e).split('] ')[-1]}); pass a larger vocab_sz, or leave it out to size the "
                             "vocabulary from the texts") from None
        return model.getvalue()

    # --- tokenizing -----------------------------------------------------------------------------------------
    def __call__(self, items: Iterable[str]) -> Iterator[list[str]]:
        if not self.trained:
            raise RuntimeError("SubwordTokenizer: no model yet; call setup(texts) to learn the pieces (a Tokenizer "
                               "does it when it tokenizes texts in bulk: Tokenizer.setup(texts), from_folder, the "
                               "TextDataLoaders factories), or pass sp_model= a trained .model file")
        return (self._sp.EncodeAsPieces(str(t)) for t in items)

    def decode(self, pieces: Sequence[str]) -> str:
        """The text the pieces spell (``▁`` back to spaces; a special token without its ``▁``, as vocabularies
        hold them, is a word of its own)."""
        special = set(self.special_toks)
        return "".join(SPACE + p if p in special else p for p in pieces).replace(SPACE, " ").strip()

    # --- descriptions -----------------------------------------------------------------------------------------
    def spec(self) -> dict:
        """What identifies this tokenizer's output (the tokenization cache's key): the model's digest."""
        digest = hashlib.sha256(self._proto).hexdigest() if self.trained else None
        return {"name": "SentencePieceTokenizer", "model_type": self.model_type, "model": digest}

    def to_config(self) -> dict:
        """What an export holds to rebuild this tokenizer: its settings and the model's bytes (base64).

        Raises:
            ValueError: when no model is learned yet.
        """
        if not self.trained:
            raise ValueError("SubwordTokenizer: no model to export yet; tokenize the training texts first")
        return {"name": "SentencePieceTokenizer", "lang": self.lang, "special_toks": self.special_toks,
                "model_type": self.model_type, "char_coverage": self.char_coverage,
                "sp_model_proto": base64.b64encode(self._proto).decode("ascii")}

    @classmethod
    def from_config(cls, cfg: dict) -> "SentencePieceTokenizer":
        """The tokenizer an export describes (what `to_config` wrote): settings and the model's bytes, nothing
        that names a file.

        Raises:
            ValueError: for another field, a missing or oversized model, or settings of the wrong type.
        """
        allowed = {"lang", "special_toks", "model_type", "char_coverage", "sp_model_proto"}
        if set(cfg) - allowed:
            raise ValueError(f"SubwordTokenizer in an export: unexpected fields {sorted(set(cfg) - allowed)}; an "
                             f"export holds only {sorted(allowed)}")
        proto, toks = cfg.get("sp_model_proto"), cfg.get("special_toks")
        if not isinstance(proto, str) or not proto or len(proto) > MAX_MODEL_CHARS:
            raise ValueError("SubwordTokenizer in an export: sp_model_proto must hold the model's bytes in base64 "
                             f"(at most {MAX_MODEL_CHARS:,} characters); export the learner again")
        if toks is not None and not (isinstance(toks, list) and all(isinstance(t, str) for t in toks)):
            raise ValueError("SubwordTokenizer in an export: special_toks must be a list of strings")
        coverage = cfg.get("char_coverage", 0.9998)
        if not isinstance(cfg.get("lang", "en"), str) or isinstance(coverage, bool) or not isinstance(
                coverage, (int, float)):
            raise ValueError("SubwordTokenizer in an export: lang must be a string and char_coverage a number")
        return cls(lang=cfg.get("lang", "en"), special_toks=toks, model_type=cfg.get("model_type", "unigram"),
                   char_coverage=cfg.get("char_coverage"), sp_model_proto=proto)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_sp"] = None  # the SentencePiece processor does not pickle: rebuilt from the bytes
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._proto is not None:
            self._load(self._proto, "the pickled model")

    def __repr__(self) -> str:
        size = self._sp.GetPieceSize() if self.trained else None
        return f"SubwordTokenizer(model_type={self.model_type!r}, pieces={size}, lang={self.lang!r})"


SubwordTokenizer = SentencePieceTokenizer


def _proto_bytes(proto: Any) -> bytes:
    """Model bytes from bytes or their base64 text."""
    if isinstance(proto, (bytes, bytearray, memoryview)):
        return bytes(proto)
    if isinstance(proto, str):
        try:
            return base64.b64decode(proto, validate=True)
        except ValueError as e:
            raise ValueError(f"SubwordTokenizer: sp_model_proto is not base64 text ({e})") from None
    raise TypeError(f"SubwordTokenizer: sp_model_proto must be the model's bytes or their base64 text; received "
                    f"{type(proto).__name__}")


def _text_of(item: Any, rules: Sequence[Callable[[str], str]] | None) -> str:
    text = Path(item).read_text(encoding="utf8") if isinstance(item, Path) else str(item)
    return apply_rules(text, rules) if rules else text
