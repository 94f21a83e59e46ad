"""spaCy's tokenizer run from its extracted rules (lamina.text.spacy_rules): spaCy's tokens, no spaCy import once
the rules are kept, and a damaged, stale, unusable or unwritable rules file never changes a token."""

import json
import os
import random
import re
import subprocess
import sys
import textwrap

import pytest

from lamina.config import lamina_home
from lamina.text import spacy_rules
from lamina.text.core import SpacyTokenizer, _spacy_tokenizer, defaults
from lamina.text.spacy_rules import RuleTokenizer, rules_from_spacy, word_tokenizer

from .test_core import TRICKY

pytest.importorskip("spacy")
SPECIAL = tuple(defaults.text_spec_tok)


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    _spacy_tokenizer.cache_clear()  # SpacyTokenizer builds its tokenizer again, under this test's LAMINA_HOME
    yield
    _spacy_tokenizer.cache_clear()


@pytest.fixture
def quick_check(monkeypatch):
    """Check extracted rules on the probe text and the bare special cases only (the full check is its own test)."""
    monkeypatch.setattr(spacy_rules, "_WRAPS", ())


def _spacy(special=SPECIAL):
    return spacy_rules._build_spacy("en", special)


def _engine():
    engine = word_tokenizer("en", SPECIAL)
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
    assert engine("(\ud800)") == ["(", "\ud800", ")"]  # a lone surrogate is a character (spaCy raises)


def test_kept_rules_tokenize_in_a_fresh_process_without_importing_spacy():
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
                         env={**os.environ, "LAMINA_HOME": str(lamina_home())}).stdout
    toks, spacy_loaded = json.loads(out)
    tokenizer = _spacy()
    assert toks == [[t.text for t in tokenizer(p)] for p in ("xxbos (it's) U.S.A. e-mail :) http://x.y/z", "a\n\nb")]
    assert not spacy_loaded


def _edit_rules(record, change):
    rules = record["rules"]
    if change == "empty special":
        rules["specials"][""] = []
    elif change == "altered special":
        rules["specials"]["don't"] = ["do", "not"]
    elif change == "dropped token":
        rules["specials"]["xxbos"] = []
    elif change == "huge flags":
        rules["prefix"][1] = 2 ** 70
    elif change == "verbose flag":
        rules["prefix"][1] |= re.VERBOSE
    elif change == "bad pattern":
        rules["prefix"][0] = "("
    elif change == "old spaCy":
        record["spacy"] = "0.1"
    return json.dumps(record)


@pytest.mark.parametrize("change", ["not json", "deep nesting", "empty special", "altered special", "dropped token",
                                    "huge flags", "verbose flag", "bad pattern", "old spaCy"])
def test_a_damaged_or_stale_rules_file_is_extracted_again(change, quick_check):
    _engine()
    [path] = _rules_files()
    good = path.read_text()
    text = {"not json": "{not json", "deep nesting": "[" * 100_000 + "]" * 100_000}.get(change) or \
        _edit_rules(json.loads(good), change)
    path.write_text(text)
    engine = _engine()
    assert engine("(don't)") == ["(", "do", "n't", ")"] and engine("xxbos") == ["xxbos"]
    assert json.loads(path.read_text()) == json.loads(good)  # extracted again and rewritten


def test_another_spacy_version_keeps_its_own_rules(monkeypatch, quick_check):
    _engine()
    monkeypatch.setattr(spacy_rules.metadata, "version", lambda name: "99.0.0")
    _engine()
    assert len(_rules_files()) == 2


def test_an_unusable_record_or_the_switch_leaves_tokenizing_to_spacy(monkeypatch, quick_check):
    from spacy.tokenizer import Tokenizer
    builds = []
    real_build = spacy_rules._build_spacy
    monkeypatch.setattr(spacy_rules, "_build_spacy", lambda *a: builds.append(a) or real_build(*a))
    with monkeypatch.context() as m:
        m.setattr(spacy_rules, "_agrees", lambda engine, tokenizer: False)  # a spaCy that tokenizes otherwise
        assert type(word_tokenizer("en", SPECIAL)) is Tokenizer
    assert len(builds) == 1  # spaCy built once, its tokenizer used
    [path] = _rules_files()
    record = json.loads(path.read_text())
    assert record["usable"] is False and "rules" not in record
    assert type(word_tokenizer("en", SPECIAL)) is Tokenizer and len(builds) == 2  # the record is read: no check
    path.unlink()
    monkeypatch.setenv("LAMINA_SPACY_RULES", "0")
    assert type(word_tokenizer("en", SPECIAL)) is Tokenizer and not _rules_files()


@pytest.mark.parametrize("home", ["a file", "under a file"])
def test_a_home_that_cannot_be_written_still_tokenizes(tmp_path, monkeypatch, home, quick_check):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "f" if home == "a file" else tmp_path / "f" / "home"))
    assert list(SpacyTokenizer()(["(don't) xxbos"])) == [["(", "do", "n't", ")", "xxbos"]]


def test_the_check_catches_rules_that_tokenize_otherwise():
    tokenizer = _spacy()
    rules = rules_from_spacy(tokenizer)
    assert spacy_rules._agrees(RuleTokenizer(rules), tokenizer)
    assert "Apr." not in spacy_rules._PROBE_TEXT
    del rules["specials"]["Apr."]  # a special case only spaCy's own list has
    assert not spacy_rules._agrees(RuleTokenizer(rules), tokenizer)


def test_tokenizers_the_engine_cannot_reproduce_are_left_to_spacy():
    tokenizer = _spacy()
    tokenizer.prefix_search = lambda s: None  # a function, not a regular expression
    assert rules_from_spacy(tokenizer) is None
    tokenizer = _spacy()
    tokenizer.suffix_search = re.compile(r"x$", re.VERBOSE).search  # a flag a rules file may not set
    assert rules_from_spacy(tokenizer) is None
    tokenizer = _spacy()
    tokenizer.add_special_case("a b", [{"ORTH": "a b"}])  # a special case with whitespace inside
    assert rules_from_spacy(tokenizer) is None
    assert rules_from_spacy(object()) is None  # another tokenizer class


def test_different_special_tokens_keep_different_rules(quick_check):
    _engine()
    word_tokenizer("en", SPECIAL + ("xxcustom",))
    assert len(_rules_files()) == 2


def test_a_language_code_that_is_not_letters_never_names_a_file(monkeypatch):
    built = object()  # stands for spaCy's tokenizer, so no error stops the rules path before it writes
    monkeypatch.setattr(spacy_rules, "_build_spacy", lambda lang, toks: built)
    assert word_tokenizer("../../x", SPECIAL) is built
    assert not [p for p in lamina_home().rglob("*") if p.is_file()]
    word_tokenizer("en", SPECIAL)  # a plain code keeps its record (here: unusable, the stand-in is no tokenizer)
    assert len(_rules_files()) == 1
