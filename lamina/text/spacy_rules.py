"""spaCy's rule-based tokenizer, run from its rules without loading spaCy.

Importing spaCy takes 1.2–3 s (it loads its command line and scans the installed packages), more than tokenizing
the IMDB sample once its tokenizer is built. The rule-based tokenizer (``spacy.blank(lang)``) is data: a prefix,
a suffix and an infix regular expression, a URL (and token) pattern, and the special cases (``"don't"`` →
``do``, ``n't``). The first time a process needs it for a spaCy version, language and set of special tokens,
lamina builds spaCy's tokenizer, reads those rules out of it, checks that `RuleTokenizer` gives spaCy's tokens on
about twenty thousand probes (every special case of spaCy's, bare, doubled and wrapped in punctuation, and a text
of URLs, numbers, quotes, emoticons, accents and whitespace), and keeps the rules in ``$LAMINA_HOME/cache/`` as
JSON. Later processes read that file and tokenize with `RuleTokenizer`, which follows spaCy's algorithm step for
step: prefixes and suffixes stripped in turn, a special case or a URL kept whole, infixes split, then the special
cases that the affix rules split apart put back, longest first.

The file holds the patterns, their flags and the special cases: read with ``json``, checked for type and
consistency (each special case's tokens spell it; no flag beyond case, line, dot, Unicode and ASCII), compiled
as regular expressions, never imported or run as code. The file's name holds the language code, so a code that
is not letters alone is left to spaCy. A file that does not read back or fails those checks is extracted
again; delete ``$LAMINA_HOME/cache/spacy-rules-*.json`` to extract them again by hand. A rule set that fails the
probes, a spaCy tokenizer of another kind, or special cases with whitespace inside are recorded as unusable, and
spaCy itself tokenizes; so does every process where ``$LAMINA_HOME`` cannot be written or read. Set
``LAMINA_SPACY_RULES=0`` to always use spaCy.

One deliberate difference: a lone surrogate (text decoded with ``errors="surrogateescape"``) is a character like
any other here, where spaCy raises UnicodeEncodeError.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..config import lamina_home

__all__ = ["RuleTokenizer", "rules_from_spacy", "word_tokenizer", "RULES_VERSION"]

RULES_VERSION = 2  # the file format and the algorithm: a new version extracts the rules again
_PATTERNS = (("prefix", "prefix_search", "search"), ("suffix", "suffix_search", "search"),
             ("infix", "infix_finditer", "finditer"), ("url", "url_match", "match"),
             ("token", "token_match", "match"))
_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE | re.ASCII  # the flags a rules file may set
_NO_SPACY = "Tokenizing text needs spaCy: pip install 'lamina[text]' (or pip install spacy)"
_PROBE_TEXT = (
    "http://x.y/z?q=1 https://www.example.com/a_b-c.html www.a.org a@b.com e-mail 1,000.00 $5 £3 5€ 10km 3.5mm 1/2 "
    "90% 10:30pm 1st 2nd (yes). [no]! {x}? 'q' \"dq\" `bq` --dash-- ... …. a...b a-b-c a--b a/b 3-4 3x4 x=y a+b "
    ":) :-( <3 ;) :p xD ^_^ o.O -_- (: ): :(( U.S.A. e.g. i.e. etc., Mr. Dr. St. vs. a.m. p.m. No. it's don't "
    "can't won't y'all gonna wanna lemme ain't shouldn't've I'm you're he'd we'll 'em 'cause o'clock ma'am "
    "café straße naïve Æsop œuvre ß Ω ½ ¼ ﬁ 日本語 👍👍 ❤️ \u200b\u00a0 \u3000 \t \n \n\n  x\t\ty "
    "xxbos xxmaj xxup xxrep 3 ! xxwrep xxunk xxpad xxfld (xxbos) 'xxmaj' \"hello,\" (it's) \"don't\" 'cause, "
    "((a)) a)) ''x'' abc' ''start'' «quote» „de“ ¿qué? ¡sí! #tag @user C++ C# .NET 3.14e10 -5 +5 ~5 5°C 20°F")
_WRAPS = (("(", ")"), ('"', '"'), ("'", "'"), ("''", "''"), ("", "."), ("", ","), ("", "!"), ("", "?"),
          ("", "..."), ("-", ""), ("", "-"), ("(", "),"), ("[", "]."))


class RuleTokenizer:
    """spaCy's rule-based tokenizer algorithm over extracted rules (see `rules_from_spacy`), on one piece of text
    without whitespace inside (or one run of whitespace) at a time, as lamina calls it.

    Args:
        rules: ``{"prefix", "suffix", "infix", "url", "token": [pattern, flags] or None,
            "specials": {string: [token, ...]}, "faster_heuristics": bool}``.
    """

    def __init__(self, rules: dict[str, Any]):
        # each pattern's search, finditer or match (as spaCy calls it), or None
        self._prefix, self._suffix, self._infix, self._url, self._token = (
            getattr(re.compile(*rules[key]), method) if rules[key] else None for key, _, method in _PATTERNS)
        self.specials: dict[str, list[str]] = {k: list(v) for k, v in rules["specials"].items()}
        # the special cases that the affix rules would split: spaCy puts them back after splitting (its matcher)
        self._patterns: dict[tuple[str, ...], str] = {}
        for s in self.specials:
            if not rules["faster_heuristics"] or self._cut(self._prefix, s) or self._cut(self._suffix, s) \
                    or self._infixes(s) or " " in s:
                self._patterns[tuple(self._affixes(s, False))] = s
        self._longest = max(map(len, self._patterns), default=0)
        self._firsts = {p[0] for p in self._patterns}

    def __call__(self, piece: str) -> list[str]:
        """The tokens of ``piece``."""
        tokens = self._affixes(piece, True)
        return self._put_back_specials(tokens) if len(tokens) > 1 and self._patterns else tokens

    @staticmethod
    def _cut(search: Any, s: str) -> int:
        m = search(s) if search is not None else None
        return m.end() - m.start() if m is not None else 0

    def _infixes(self, s: str) -> list[re.Match]:
        return list(self._infix(s)) if self._infix is not None else []

    def _affixes(self, span: str, with_specials: bool) -> list[str]:
        if with_specials and span in self.specials:
            return list(self.specials[span])
        prefixes, core, suffixes = self._split_affixes(span, self.specials if with_specials else {})
        return prefixes + self._attach(core, with_specials) + suffixes[::-1]

    def _split_affixes(self, s: str, specials: dict) -> tuple[list[str], str, list[str]]:
        """Strip prefixes and suffixes in turn until none is left or what is left is a special case."""
        prefixes: list[str] = []
        suffixes: list[str] = []
        last = 0
        while s and len(s) != last:
            if (self._token is not None and self._token(s)) or s in specials:
                break
            last = len(s)
            pre = self._cut(self._prefix, s)
            if pre and s[pre:] and s[pre:] in specials:
                prefixes.append(s[:pre])
                s = s[pre:]
                break
            suf = self._cut(self._suffix, s[pre:])
            if suf and s[:-suf] and s[:-suf] in specials:
                suffixes.append(s[-suf:])
                s = s[:-suf]
                break
            if pre and suf and pre + suf <= len(s):
                prefixes.append(s[:pre])
                suffixes.append(s[-suf:])
                s = s[pre:-suf]
            elif pre:
                prefixes.append(s[:pre])
                s = s[pre:]
            elif suf:
                suffixes.append(s[-suf:])
                s = s[:-suf]
        return prefixes, s, suffixes

    def _attach(self, s: str, with_specials: bool) -> list[str]:
        """What is left after the affixes: a special case, a URL or token match whole, else split at infixes."""
        if not s:
            return []
        if with_specials and s in self.specials:
            return list(self.specials[s])
        if (self._token is not None and self._token(s)) or (self._url is not None and self._url(s)):
            return [s]
        out, start = [], 0
        for m in self._infixes(s):
            begin, end = m.start(), m.end()
            if begin == 0:  # an infix at the very start is not split off
                continue
            if begin != start:
                out.append(s[start:begin])
            if begin != end:
                out.append(s[begin:end])
            start = end
        if s[start:]:
            out.append(s[start:])
        return out

    def _put_back_specials(self, tokens: list[str]) -> list[str]:
        """Runs of tokens that spell a special case the affix rules split become its tokens: longest runs first,
        then leftmost; a run whose first or last token is already taken is skipped."""
        found = [(i, j) for i in range(len(tokens)) if tokens[i] in self._firsts
                 for j in range(i + 1, min(len(tokens), i + self._longest) + 1) if tuple(tokens[i:j]) in self._patterns]
        if not found:
            return tokens
        found.sort(key=lambda m: (m[0] - m[1], m[0]))
        taken: set[int] = set()
        kept = []
        for i, j in found:
            if i not in taken and j - 1 not in taken:
                kept.append((i, j))
            taken.update(range(i, j))
        out, at = [], 0
        for i, j in sorted(kept):
            out += tokens[at:i] + self.specials["".join(tokens[i:j])]
            at = j
        return out + tokens[at:]


def rules_from_spacy(tokenizer: Any) -> dict[str, Any] | None:
    """The rules of a spaCy ``Tokenizer`` as plain data, or None when `RuleTokenizer` cannot reproduce it (another
    tokenizer class, a rule that is not a regular expression, a special case with whitespace inside)."""
    from spacy.symbols import ORTH
    from spacy.tokenizer import Tokenizer
    if type(tokenizer) is not Tokenizer:
        return None
    rules: dict[str, Any] = {"faster_heuristics": bool(tokenizer.faster_heuristics)}
    for key, attr, method in _PATTERNS:
        fn = getattr(tokenizer, attr)
        owner = getattr(fn, "__self__", None)
        if fn is not None and not (isinstance(owner, re.Pattern) and isinstance(owner.pattern, str)
                                   and getattr(fn, "__name__", "") == method and not owner.flags & ~_FLAGS):
            return None
        rules[key] = [owner.pattern, owner.flags] if fn is not None else None
    specials = {}
    for string, substrings in tokenizer.rules.items():
        specials[string] = [d.get(ORTH, d.get("ORTH")) for d in substrings]
    rules["specials"] = specials
    return rules if _consistent(rules) else None


def _consistent(rules: Any) -> bool:
    """Whether ``rules`` has `rules_from_spacy`'s form: patterns with plain flags, special cases spelt by their
    tokens, none empty, none with whitespace inside."""
    def pattern(v: Any) -> bool:
        return v is None or (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                             and type(v[1]) is int and not v[1] & ~_FLAGS and v[1] >= 0)

    def special(k: Any, v: Any) -> bool:
        return isinstance(k, str) and k != "" and (len(k) == 1 or not any(c.isspace() for c in k)) \
            and isinstance(v, list) and len(v) > 0 and all(isinstance(t, str) and t for t in v) and "".join(v) == k

    return isinstance(rules, dict) and isinstance(rules.get("faster_heuristics"), bool) \
        and all(pattern(rules.get(key, 0)) for key, _, _ in _PATTERNS) and isinstance(rules.get("specials"), dict) \
        and all(special(k, v) for k, v in rules["specials"].items())


def _probes(specials: Sequence[str]) -> list[str]:
    """Pieces as lamina passes them (runs of whitespace, or text without whitespace): the probe text's, and each
    special case bare, doubled and wrapped."""
    pieces = [p for p in re.split(r"(\s+)", _PROBE_TEXT) if p]
    pieces += [w + s + v for s in specials for w, v in (("", ""), *_WRAPS)] + [s + s for s in specials]
    return list(dict.fromkeys(p for p in pieces if p.isspace() or not re.search(r"\s", p)))


def _agrees(engine: RuleTokenizer, tokenizer: Any) -> bool:
    """Whether `RuleTokenizer` gives spaCy's tokens on every probe (spaCy's special cases and the engine's)."""
    specials = list(dict.fromkeys([*tokenizer.rules, *engine.specials]))
    return all(engine(p) == [t.text for t in tokenizer(p)] for p in _probes(specials))


def _rules_file(lang: str, special_toks: Sequence[str], version: str) -> Path:
    key = json.dumps([RULES_VERSION, lang, version, list(special_toks)])
    return lamina_home() / "cache" / f"spacy-rules-{lang}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read_rules(path: Path, lang: str, version: str) -> RuleTokenizer | bool | None:
    """The engine the rules in ``path`` give, False when they are recorded as unusable, None when the file is
    missing, damaged, or not for this version of the rules, of spaCy or ``lang``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or [data.get(k) for k in ("version", "spacy", "lang")] != \
                [RULES_VERSION, version, lang] or not isinstance(data.get("usable"), bool):
            return None
        if not data["usable"]:
            return False
        return RuleTokenizer(data["rules"]) if _consistent(data.get("rules")) else None
    except Exception:  # noqa: BLE001 -- a damaged file (bad JSON, nesting, patterns) is extracted again
        return None


def _build_spacy(lang: str, special_toks: Sequence[str]) -> Any:
    """spaCy's own rule-based tokenizer for ``lang`` with ``special_toks`` kept whole."""
    try:
        import spacy
        from spacy.symbols import ORTH
    except ImportError as e:
        raise ImportError(_NO_SPACY) from e
    nlp = spacy.blank(lang)
    # Only the token texts are used: skip the lexical attributes (shape, like_num, ...) spaCy computes for each new
    # word, which cost more than the splitting itself on a fresh vocabulary
    nlp.vocab.lex_attr_getters = {}
    for tok in special_toks:
        nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
    return nlp.tokenizer


def spacy_version() -> str:
    """The installed spaCy's version, from its package metadata (spaCy is not imported).

    Raises:
        ImportError: when spaCy is not installed, saying how to install it.
    """
    try:
        return metadata.version("spacy")
    except metadata.PackageNotFoundError as e:
        raise ImportError(_NO_SPACY) from e


def word_tokenizer(lang: str, special_toks: Sequence[str]) -> Any:
    """spaCy's rule-based tokenizer for ``lang`` with ``special_toks`` kept whole: a `RuleTokenizer` over its kept
    rules where they give spaCy's tokens, else spaCy's own (see the module's description).

    Raises:
        ImportError: when spaCy is not installed.
    """
    version = spacy_version()
    off = os.environ.get("LAMINA_SPACY_RULES", "1").strip().lower() in ("0", "false", "no", "off")
    if off or not re.fullmatch(r"[A-Za-z_]{1,16}", lang):  # a language code names the file: letters only
        return _build_spacy(lang, special_toks)
    try:
        path = _rules_file(lang, special_toks, version)
    except RuntimeError:  # no home folder to expand ``~`` into
        return _build_spacy(lang, special_toks)
    kept = _read_rules(path, lang, version)
    if kept is False:
        return _build_spacy(lang, special_toks)
    if kept is not None:
        return kept
    tokenizer = _build_spacy(lang, special_toks)
    rules = rules_from_spacy(tokenizer)
    engine = RuleTokenizer(rules) if rules is not None else None
    usable = engine is not None and _agrees(engine, tokenizer)
    record = {"version": RULES_VERSION, "spacy": version, "lang": lang, "usable": usable}
    if usable:
        record["rules"] = rules
    try:
        atomic_write(path, lambda f: f.write(json.dumps(record).encode("utf-8")), what="spaCy tokenizer rules")
    except OSError:
        pass  # a home that cannot be written: the rules are extracted again in the next process
    return engine if usable else tokenizer
