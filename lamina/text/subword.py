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
    >>> sp = SubwordTokenizer(vocab_sz=1000)
    >>> sp.setup(texts)                      # learn the pieces
    >>> ' '.join(first(sp([texts[0]]))[:8])
    '▁xxbos ▁xxmaj ▁this ▁movie , ▁which ▁i ▁just'
"""

from __future__ import annotations

import base64
import hashlib
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
            self._load(base64.b64decode(sp_model_proto, validate=True) if isinstance(sp_model_proto, str)
                       else bytes(sp_model_proto), "the sp_model_proto bytes")
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
        import io
        spm = _sentencepiece()
        model = io.BytesIO()
        longest = max(len(line.encode("utf-8")) for line in lines)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, model_type=self.model_type,
            vocab_size=self.vocab_sz or subword_vocab_size(lines, self.max_vocab_sz), hard_vocab_limit=False,
            character_coverage=self.char_coverage, user_defined_symbols=[SPACE + t for t in self.special_toks],
            unk_id=0, pad_id=-1, bos_id=-1, eos_id=-1, max_sentence_length=max(longest + 1, 4192),
            minloglevel=2, num_threads=usable_cpus())
        return model.getvalue()

    # --- tokenizing -----------------------------------------------------------------------------------------
    def __call__(self, items: Iterable[str]) -> Iterator[list[str]]:
        if not self.trained:
            raise RuntimeError("SubwordTokenizer: no model yet; call setup(texts) to learn the pieces (a Tokenizer "
                               "does it when it tokenizes texts in bulk: Tokenizer.setup(texts), from_folder, the "
                               "TextDataLoaders factories), or pass sp_model= a trained .model file")
        return (self._sp.EncodeAsPieces(str(t)) for t in items)

    def decode(self, pieces: Sequence[str]) -> str:
        """The text the pieces spell (``▁`` back to spaces)."""
        return "".join(pieces).replace(SPACE, " ").strip()

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


def _text_of(item: Any, rules: Sequence[Callable[[str], str]] | None) -> str:
    text = Path(item).read_text(encoding="utf8") if isinstance(item, Path) else str(item)
    return apply_rules(text, rules) if rules else text
