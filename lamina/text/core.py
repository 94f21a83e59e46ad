"""Text pre-processing: the special tokens, the rules applied around word tokenization, and the word tokenizers.

A text becomes tokens in three steps (fastai's defaults, kept so pretrained vocabularies line up):

1. the *rules* (`defaults.text_proc_rules`) rewrite the raw string: HTML debris fixed, character and word
   repetitions replaced by ``xxrep``/``xxwrep`` markers, ``/`` ``#`` ``\\`` spaced out, capitalised words
   lower-cased behind ``xxup``/``xxmaj`` markers, ``xxbos`` put in front;
2. a *word tokenizer* splits it: spaCy's rule-based English tokenizer (``spacy.blank('en')``, no model
   download) with the special tokens kept whole;
3. the *post rules* (`defaults.text_postproc_rules`) rewrite each token (spaces inside a token become ``▁``).

`decode_spec_tokens` undoes the markers for display (``xxmaj the`` → ``The``).

Example:
    >>> tokenize1("This is a TEST!!!")
    ['xxbos', 'xxmaj', 'this', 'is', 'a', 'xxup', 'test', 'xxrep', '3', '!']
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..book_tools import defaults
from .spacy_rules import RuleTokenizer, spacy_version, word_tokenizer

__all__ = ["UNK", "PAD", "BOS", "EOS", "FLD", "TK_REP", "TK_WREP", "TK_UP", "TK_MAJ", "defaults", "TextDefaults",
           "spec_add_spaces", "rm_useless_spaces", "replace_rep", "replace_wrep", "fix_html", "replace_all_caps",
           "replace_maj", "lowercase", "replace_space", "TEXT_RULES", "rule_name", "rules_from_names",
           "BaseTokenizer", "SpacyTokenizer", "WordTokenizer", "TokenizeWithRules", "tokenize1", "apply_rules",
           "decode_spec_tokens"]

# The special tokens, in the order they head every vocabulary (so xxunk is 0 and xxpad is 1).
UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj")

# --- pre-tokenization rules (str -> str) --------------------------------------------------------------------

_SPECIAL_CHARS = re.compile(r"([/#\\])")
_MULTI_SPACES = re.compile(" {2,}")
_CHAR_REPEAT = re.compile(r"(\S)(\1{2,})")  # a non-space character and at least two more copies of it
_WORD_REPEAT = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")  # a word, then >= 2 more copies of it
_ALL_CAPS = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")
_CAPITALISED = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")
# Debris seen in scraped corpora (IMDB reviews, WikiText): (what, replacement), applied in this order.
_HTML_DEBRIS = (("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
                ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"),
                ("...", " …"))


def spec_add_spaces(t: str) -> str:
    """Put spaces around ``/``, ``#`` and ``\\`` so they become tokens of their own."""
    return _SPECIAL_CHARS.sub(r" \1 ", t)


def rm_useless_spaces(t: str) -> str:
    """Collapse runs of spaces into one."""
    return _MULTI_SPACES.sub(" ", t)


def replace_rep(t: str) -> str:
    """A character repeated 3+ times → ``xxrep <count> <char>`` (``'cccc'`` → ``' xxrep 4 c '``)."""
    def marker(m: re.Match) -> str:
        char, repeats = m.groups()
        return f" {TK_REP} {len(repeats) + 1} {char} "
    return _CHAR_REPEAT.sub(marker, t)


def replace_wrep(t: str) -> str:
    """A word repeated 3+ times → ``xxwrep <count> <word>`` (``'a a a a'`` → ``' xxwrep 4 a '``)."""
    def marker(m: re.Match) -> str:
        word, repeats, end = m.groups()
        return f" {TK_WREP} {len(repeats.split()) + 2} {word} {end}"
    return _WORD_REPEAT.sub(marker, t)


def fix_html(x: str) -> str:
    """Fix the HTML debris of scraped text (``<br />``, ``&amp;`` fragments, WikiText's ``@-@`` ...), then
    unescape HTML entities."""
    for bad, good in _HTML_DEBRIS:
        x = x.replace(bad, good)
    return html.unescape(x)


def replace_all_caps(t: str) -> str:
    """A word in capitals → ``xxup`` + the word in lower case (single letters are only lower-cased)."""
    def marker(m: re.Match) -> str:
        space, word = m.group(1), m.group(2)
        return f"{space}{TK_UP + ' ' if len(word) > 1 else ''}{word.lower()}"
    return _ALL_CAPS.sub(marker, t)


def replace_maj(t: str) -> str:
    """A capitalised word → ``xxmaj`` + the word in lower case (single letters are only lower-cased)."""
    def marker(m: re.Match) -> str:
        space, word = m.group(1), m.group(2)
        return f"{space}{TK_MAJ + ' ' if len(word) > 1 else ''}{word.lower()}"
    return _CAPITALISED.sub(marker, t)


def lowercase(t: str, add_bos: bool = True, add_eos: bool = False) -> str:
    """Lower-case ``t`` and strip it; ``xxbos`` in front (and ``xxeos`` at the end if ``add_eos``)."""
    return f"{BOS + ' ' if add_bos else ''}{t.lower().strip()}{' ' + EOS if add_eos else ''}"


def replace_space(t: str) -> str:
    """(post rule, per token) Spaces inside a token become ``▁``, so joining tokens with spaces is reversible."""
    return t.replace(" ", "▁")


class TextDefaults:
    """The default rules and special tokens (``defaults.text_proc_rules`` ... as in fastai).

    lamina's `defaults` is the one namespace of every surface (``defaults.cpus`` too), with these added where
    they are not set yet. Attributes are read when a tokenizer is built, so assigning new lists changes the
    defaults of tokenizers built afterwards.
    """

    def __init__(self) -> None:
        _set_text_defaults(self, keep=False)


def _set_text_defaults(ns: Any, keep: bool) -> None:
    """Set the text defaults on ``ns``; with ``keep``, leave those it already has (a user's own rules)."""
    values = {"text_spec_tok": [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ],
              "text_proc_rules": [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
                                  replace_all_caps, replace_maj, lowercase],
              "text_postproc_rules": [replace_space]}
    for name, value in values.items():
        if not (keep and hasattr(ns, name)):
            setattr(ns, name, value)


_set_text_defaults(defaults, keep=True)  # the shared namespace gets the text defaults

# Rules by plain name: what an export may name (a file can only ask for these functions).
TEXT_RULES: dict[str, Callable[[str], str]] = {f.__name__: f for f in (
    fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj,
    lowercase, replace_space)}


def rule_name(rule: Callable) -> str | None:
    """The plain name of one of lamina's rules (`TEXT_RULES`), or None for any other function."""
    name = getattr(rule, "__name__", None)
    return name if name is not None and TEXT_RULES.get(name) is rule else None


def rules_from_names(names: Sequence[str]) -> list[Callable[[str], str]]:
    """The rule functions named ``names`` (from `TEXT_RULES` only).

    Raises:
        ValueError: naming a name that is not one of lamina's rules.
    """
    unknown = [n for n in names if n not in TEXT_RULES]
    if unknown:
        raise ValueError(f"Unknown text rules {unknown}: rules are named among {sorted(TEXT_RULES)}")
    return [TEXT_RULES[n] for n in names]


def apply_rules(text: str, rules: Sequence[Callable[[str], str]]) -> str:
    """``text`` through each rule in turn."""
    for rule in rules:
        text = rule(text)
    return text


# --- word tokenizers -------------------------------------------------------------------------------------


class BaseTokenizer:
    """Split on one character (a space by default): fast, for text that is already tokenized.

    Args:
        split_char: the separator.
    """

    def __init__(self, split_char: str = " ", **kwargs: Any):
        self.split_char = split_char

    def __call__(self, items: Iterable[str]) -> Iterator[list[str]]:
        return (t.split(self.split_char) for t in items)

    def spec(self) -> dict:
        """What identifies this tokenizer's output (for the tokenization cache and exports)."""
        return {"name": "BaseTokenizer", "split_char": self.split_char}


@functools.lru_cache(maxsize=4)
def _spacy_tokenizer(lang: str, special_toks: tuple[str, ...]) -> Any:
    """spaCy's rule-based tokenizer for ``lang`` with ``special_toks`` kept whole, built once per process: a
    `RuleTokenizer` over its rules where those give spaCy's tokens (no spaCy import, see `lamina.text.spacy_rules`),
    else spaCy's own."""
    return word_tokenizer(lang, special_toks)


class SpacyTokenizer:
    """spaCy's rule-based tokenizer (``spacy.blank(lang)``: no model to download), special tokens kept whole.

    The spaCy object is built on first use in each process (worker processes build their own), so the
    tokenizer is cheap to copy and to send to workers.

    Args:
        lang: the spaCy language code.
        special_toks: tokens never split (default ``defaults.text_spec_tok``).
        buf_sz: how many texts spaCy takes at once.
    """

    def __init__(self, lang: str = "en", special_toks: Sequence[str] | None = None, buf_sz: int = 5000):
        self.lang, self.buf_sz = lang, buf_sz
        self.special_toks = list(defaults.text_spec_tok if special_toks is None else special_toks)

    def __call__(self, items: Iterable[str]) -> Iterator[list[str]]:
        tokenizer = _spacy_tokenizer(self.lang, tuple(self.special_toks))
        memo: dict[str, list[str]] = {}
        for texts in _batches(map(str, items), self.buf_sz):
            yield from _tokenize_by_span(tokenizer, texts, memo)

    def tokenize_pieces(self, pieces: Sequence[str]) -> list[list[str]]:
        """The tokens of each of ``pieces``: distinct texts without inner whitespace (see `_pieces`), or runs of
        whitespace, as a text's pieces are tokenized within it."""
        memo: dict[str, list[str]] = {}
        _tokenize_pieces(_spacy_tokenizer(self.lang, tuple(self.special_toks)), list(dict.fromkeys(pieces)), memo)
        return [memo[p] for p in pieces]

    def spec(self) -> dict:
        """What identifies this tokenizer's output (for the tokenization cache and exports)."""
        return {"name": "SpacyTokenizer", "lang": self.lang, "special_toks": self.special_toks,
                "spacy": spacy_version()}


_WHITESPACE = re.compile(r"(\s+)")  # re's \s is str.isspace(), the test spaCy splits on


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pieces(text: str) -> list[str]:
    """``text`` cut the way spaCy's tokenizer cuts it before splitting affixes: each non-space run, and what is left
    of each whitespace run after the single ``' '`` that ends a word (kept as that word's trailing space)."""
    parts = _WHITESPACE.split(text)
    out = [parts[0]] if parts[0] else []
    for i in range(1, len(parts), 2):
        run = parts[i] if i == 1 and not parts[0] else (parts[i][1:] if parts[i][0] == " " else parts[i])
        if run:
            out.append(run)
        if parts[i + 1]:
            out.append(parts[i + 1])
    return out


def _tokenize_by_span(tokenizer: Any, texts: list[str], memo: dict[str, list[str]]) -> list[list[str]]:
    """spaCy's tokens of ``texts``, each distinct piece tokenized once (see `_tokenize_pieces`)."""
    pieces = [_pieces(t) for t in texts]
    _tokenize_pieces(tokenizer, list(dict.fromkeys(p for ps in pieces for p in ps if p not in memo)), memo)
    return [[t for p in ps for t in memo[p]] for ps in pieces]


def _plain_word(p: str, special: dict) -> bool:
    return p.isalpha() and p.islower() and p.isascii() and p not in special


def _tokenize_pieces(tokenizer: Any, new: list[str], memo: dict[str, list[str]]) -> None:
    """Put the tokens of each piece of ``new`` (distinct, not yet in ``memo``) in ``memo``.

    spaCy splits every whitespace-delimited piece on its own (prefixes, suffixes, infixes, special cases), so each
    piece is tokenized once, as if alone: the new pieces go through spaCy in one call, one per line. A line break
    is a token of its own, so unlike a space it keeps spaCy's special-case matcher from pairing the end of one
    piece with the start of the next (spaCy on a whole text leaves ``abc' ''x''`` as four single quotes around
    ``x``, where ``''x''`` alone is ``''``, ``x``, ``''``): a text tokenizes the same in any batch. A plain word
    (lower-case ASCII letters, not one of the tokenizer's special cases) is one token: no English prefix, suffix
    or infix rule matches letters alone; a plain word and one of ``,.!?;:`` (the piece not a special case) is
    those two tokens. Of the IMDB sample's 277k pieces (32k distinct words after the rules), spaCy so sees 7.7k.
    Whitespace pieces go one by one (they are few).
    """
    engine = isinstance(tokenizer, RuleTokenizer)
    special, words = tokenizer.specials if engine else tokenizer.rules, []
    for p in new:
        if _plain_word(p, special):
            memo[p] = [p]
        elif p[-1] in ",.!?;:" and _plain_word(p[:-1], special) and p not in special:
            memo[p] = [p[:-1], p[-1]]
        elif engine:
            memo[p] = tokenizer(p)
        elif not p[0].isspace():
            words.append(p)
    if engine:
        return
    from spacy.attrs import IDX, LENGTH
    if words:
        joined = "\n".join(words)  # "\n" is a token of its own: no special case can join tokens across it
        starts, lengths = tokenizer(joined).to_array([IDX, LENGTH]).T.tolist()
        k, current = 0, []
        for start, length in zip(starts, lengths):
            token = joined[start:start + length]
            if token == "\n":
                memo[words[k]], k, current = current, k + 1, []
            else:
                current.append(token)
        memo[words[k]] = current
    for p in new:
        if p[0].isspace():
            memo[p] = [tok.text for tok in tokenizer(p)]


WordTokenizer = SpacyTokenizer


class TokenizeWithRules:
    """``tok`` wrapped: the rules on each text, then ``tok``, then the post rules on each token.

    Args:
        tok: a word tokenizer (called with a list of texts, yields lists of tokens).
        rules: the rules (default ``defaults.text_proc_rules``).
        post_rules: per-token rules (default ``defaults.text_postproc_rules``).
    """

    def __init__(self, tok: Any, rules: Sequence[Callable] | None = None, post_rules: Sequence[Callable] | None = None):
        self.tok = tok
        self.rules = list(defaults.text_proc_rules if rules is None else rules)
        self.post_rules = list(defaults.text_postproc_rules if post_rules is None else post_rules)

    def __call__(self, batch: Iterable[str]) -> Iterator[list[str]]:
        texts = [apply_rules(str(t), self.rules) for t in batch]
        done: dict[str, str] = {}  # post rules rewrite one token at a time: each distinct token once
        for tokens in self.tok(texts):
            if not self.post_rules:
                yield list(tokens)
                continue
            for t in tokens:
                if t not in done:
                    done[t] = apply_rules(t, self.post_rules)
            yield [done[t] for t in tokens]


def tokenize1(text: str, tok: Any = None, rules: Sequence[Callable] | None = None,
              post_rules: Sequence[Callable] | None = None) -> list[str]:
    """The tokens of one text (rules, then ``tok`` (default `WordTokenizer`), then post rules)."""
    return next(TokenizeWithRules(tok if tok is not None else WordTokenizer(), rules, post_rules)([text]))


def decode_spec_tokens(tokens: Sequence[str]) -> list[str]:
    """Undo the markers for display: ``xxmaj w`` → ``W``, ``xxup w`` → ``W...``, ``xxrep n c`` → ``c*n``,
    ``xxwrep n w`` → ``w`` n times. A marker without what it needs is dropped.

    Example:
        >>> decode_spec_tokens(['xxmaj', 'hello', 'xxrep', '3', '!'])
        ['Hello', '!!!']
    """
    out: list[str] = []
    rule, count = None, None
    for tok in tokens:
        if tok in (TK_MAJ, TK_UP, TK_REP, TK_WREP):
            rule, count = tok, None
        elif rule is None:
            out.append(tok)
        elif rule in (TK_MAJ, TK_UP):
            out.append(tok[:1].upper() + tok[1:] if rule == TK_MAJ else tok.upper())
            rule = None
        elif count is None:
            if tok.isdigit():
                count = int(tok)
            else:  # a repetition marker without its count: keep the token as it is
                out.append(tok)
                rule = None
        else:
            out.extend([tok * count] if rule == TK_REP else [tok] * count)
            rule, count = None, None
    return out
