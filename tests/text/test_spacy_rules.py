"""spaCy's tokenizer run from its extracted rules (lamina.text.spacy_rules): the same tokens as spaCy, no spaCy import
once the rules are kept, and a damaged, stale or unusable rules file never changes a token."""

import json
import random
import re
import subprocess
import sys
import textwrap

import pytest

from lamina.config import lamina_home
from lamina.text import spacy_rules
from lamina.text.core import _build_spacy, defaults
from lamina.text.spacy_rules import RuleTokenizer, rule_tokenizer, rules_from_spacy

from .test_core import TRICKY

pytest.importorskip("spacy")
SPECIAL = tuple(defaults.text_spec_tok)


def _spacy():
    return _build_spacy("en", SPECIAL)


def _engine():
    engine = rule_tokenizer("en", SPECIAL, _spacy)
    assert isinstance(engine, RuleTokenizer)
    return engine


def _rules_files():
    return sorted((lamina_home() / "cache").glob("spacy-rules-en-*.json"))


def _random_pieces(n, seed=0):
    rng = random.Random(seed)
    specials = [k for k in _spacy().rules if not any(c.isspace() for c in k)]
    parts = list("()[]{}'\"`.,;:!?-–—/\\*&%$€£#@+=<>|~^_…0123456789aAzZéß") + [
        "n't", "'s", "'ll", "http://", "www.", ".com", "xxbos", "''", "--", "...", "km", "a.m.", ":)", "°C", "½",
        "日本", "👍", "the", "don't"] + specials
    return ["".join(rng.choice(parts) for _ in range(rng.randint(1, 5))) for _ in range(n)]


def test_rule_tokenizer_gives_spacys_tokens():
    engine, tokenizer = _engine(), _spacy()
    pieces = [p for text in TRICKY for p in re.split(r"(\s+)", text) if p] + _random_pieces(3000)
    pieces = [p for p in pieces if p.isspace() or not re.search(r"\s", p)]
    assert [engine(p) for p in pieces] == [[t.text for t in tokenizer(p)] for p in pieces]
    assert engine("(don't)") == ["(", "do", "n't", ")"] and engine("xxbos") == ["xxbos"]
    assert engine("www.example.com.") == ["www.example.com", "."]  # a URL kept whole


def test_kept_rules_tokenize_in_a_fresh_process_without_importing_spacy(tmp_path):
    _engine()  # extracts and keeps the rules
    [path] = _rules_files()
    assert json.loads(path.read_text())["usable"] is True
    script = textwrap.dedent("""
        import json, sys
        from lamina.text.core import SpacyTokenizer
        toks = list(SpacyTokenizer()(["xxbos (it's) U.S.A. e-mail :) http://x.y/z", "a\\n\\nb"]))
        print(json.dumps([toks, "spacy" in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "LAMINA_HOME": str(lamina_home())}).stdout
    toks, spacy_loaded = json.loads(out)
    tokenizer = _spacy()
    assert toks == [[t.text for t in tokenizer(p)] for p in ("xxbos (it's) U.S.A. e-mail :) http://x.y/z", "a\n\nb")]
    assert not spacy_loaded


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": spacy_rules.RULES_VERSION, "usable": True,
                                                                  "rules": {"flags": "32"}}),
                                     json.dumps({"version": spacy_rules.RULES_VERSION, "usable": True, "rules": {
                                         "flags": 0, "faster_heuristics": True, "specials": {}, "prefix": "(",
                                         "suffix": None, "infix": None, "url": None, "token": None}})])
def test_a_damaged_rules_file_is_extracted_again(content):
    _engine()
    [path] = _rules_files()
    path.write_text(content)
    engine = _engine()
    assert engine("(don't)") == ["(", "do", "n't", ")"]
    assert json.loads(path.read_text())["usable"] is True


def test_an_unusable_record_or_the_switch_leaves_tokenizing_to_spacy(monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(spacy_rules, "_agrees", lambda engine, tokenizer: False)  # a spaCy that tokenizes otherwise
        assert rule_tokenizer("en", SPECIAL, _spacy) is None
    [path] = _rules_files()
    record = json.loads(path.read_text())
    assert record["usable"] is False and "rules" not in record
    assert rule_tokenizer("en", SPECIAL, lambda: pytest.fail("the record is read, spaCy not built")) is None
    path.unlink()
    monkeypatch.setenv("LAMINA_SPACY_RULES", "0")
    assert rule_tokenizer("en", SPECIAL, _spacy) is None and not _rules_files()


def test_the_check_catches_rules_that_tokenize_otherwise():
    tokenizer = _spacy()
    rules = rules_from_spacy(tokenizer)
    assert spacy_rules._agrees(RuleTokenizer(rules), tokenizer)
    del rules["specials"]["don't"]
    assert not spacy_rules._agrees(RuleTokenizer(rules), tokenizer)


def test_tokenizers_the_engine_cannot_reproduce_are_left_to_spacy():
    tokenizer = _spacy()
    tokenizer.prefix_search = lambda s: None  # a function, not a regular expression
    assert rules_from_spacy(tokenizer) is None
    tokenizer = _spacy()
    tokenizer.add_special_case("a b", [{"ORTH": "a b"}])  # a special case with whitespace inside
    assert rules_from_spacy(tokenizer) is None


def test_different_special_tokens_keep_different_rules():
    _engine()
    rule_tokenizer("en", SPECIAL + ("xxcustom",), lambda: _build_spacy("en", SPECIAL + ("xxcustom",)))
    assert len(_rules_files()) == 2
