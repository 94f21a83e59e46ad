"""The tokenization rules, each on its own, the special tokens, and spaCy's tokenizer with the rules."""

import pytest

from lamina.text.core import (BOS, EOS, TEXT_RULES, TK_MAJ, TK_REP, TK_UP, TK_WREP, BaseTokenizer, SpacyTokenizer,
                              decode_spec_tokens, defaults, fix_html, lowercase, replace_all_caps, replace_maj,
                              replace_rep, replace_space, replace_wrep, rm_useless_spaces, rule_name,
                              rules_from_names, spec_add_spaces, tokenize1)


def test_spec_add_spaces():
    assert spec_add_spaces("#fastai") == " # fastai"
    assert spec_add_spaces("/fastai") == " / fastai"
    assert spec_add_spaces("\\fastai") == " \\ fastai"


def test_rm_useless_spaces():
    assert rm_useless_spaces("a  b   c") == "a b c"


def test_replace_rep():
    assert replace_rep("aa") == "aa"
    assert replace_rep("aaaa") == f" {TK_REP} 4 a "
    assert replace_rep("cool!!!") == f"cool {TK_REP} 3 ! "


def test_replace_wrep():
    assert replace_wrep("ah ah") == "ah ah"
    assert replace_wrep("ah ah ah") == f" {TK_WREP} 3 ah "
    assert replace_wrep("ah ah ah ah ") == f" {TK_WREP} 4 ah  "
    assert replace_wrep("ah ah ah ah.") == f" {TK_WREP} 4 ah ."


def test_fix_html():
    assert fix_html("#39;bli#146;") == "'bli'"
    assert fix_html("Sarah amp; Duck...") == "Sarah & Duck …"
    assert fix_html("a nbsp; #36;") == "a   $"
    assert fix_html('\\" <unk>') == f'" {defaults.text_spec_tok[0]}'
    assert fix_html("quot;  @.@  @-@ ") == "' .-"
    assert fix_html("<br />text") == "\ntext"
    assert fix_html("&lt;b&gt;") == "<b>"


def test_replace_all_caps():
    assert replace_all_caps("I'M SHOUTING") == f"{TK_UP} i'm {TK_UP} shouting"
    assert replace_all_caps("I'm speaking normally") == "I'm speaking normally"
    assert replace_all_caps("I am speaking normally") == "i am speaking normally"


def test_replace_maj():
    assert replace_maj("Jeremy Howard") == f"{TK_MAJ} jeremy {TK_MAJ} howard"
    assert replace_maj("I don't think there is any maj here") == "i don't think there is any maj here"


def test_lowercase():
    assert lowercase("  Hello World ") == f"{BOS} hello world"
    assert lowercase("Hi", add_bos=False, add_eos=True) == f"hi {EOS}"


def test_replace_space():
    assert replace_space("new york") == "new▁york"


def test_default_rules_in_order_and_by_name():
    names = [rule_name(r) for r in defaults.text_proc_rules]
    assert names == ["fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces",
                     "replace_all_caps", "replace_maj", "lowercase"]
    assert rules_from_names(names) == defaults.text_proc_rules
    assert rule_name(lambda t: t) is None
    with pytest.raises(ValueError, match="Unknown text rules"):
        rules_from_names(["os.system"])
    assert set(TEXT_RULES) >= set(names)


def test_tokenize_with_spacy_and_the_rules():
    toks = tokenize1("This is a TEST!!! Isn't it? #great")
    assert toks == ["xxbos", "xxmaj", "this", "is", "a", "xxup", "test", "xxrep", "3", "!", "xxmaj", "is", "n't",
                    "it", "?", "#", "great"]


def test_special_tokens_are_kept_whole():
    tok = SpacyTokenizer()
    assert next(tok(["xxbos xxmaj xxunk xxfld 1 word"])) == ["xxbos", "xxmaj", "xxunk", "xxfld", "1", "word"]
    assert next(BaseTokenizer()(["a b  c"])) == ["a", "b", "", "c"]


def test_decode_spec_tokens():
    assert decode_spec_tokens(["xxmaj", "hello", "xxup", "world", "xxrep", "3", "!"]) == ["Hello", "WORLD", "!!!"]
    assert decode_spec_tokens(["xxwrep", "2", "ah", "done"]) == ["ah", "ah", "done"]
    assert decode_spec_tokens(["xxrep", "x", "word"]) == ["x", "word"]  # a marker without its count is dropped


TRICKY = ["", " ", "  a", "a  b", "a\n b", "a \n\nb ", "\tx\t", " (xxbos) xxmaj it's don't U.S.A. e-mail a@b.com",
          "http://x.y/z?q=1 :) 1,000.00 $5 (yes).", "a  ", "x\u00a0y z\u2003w", "  \n  ", "'q' \"dq\" --dash-- ...",
          "xxbos xxmaj hello!!! xxup WOW", "a \u3000b", "can't won't y'all gonna", "end. end. end.",
          # lower-case words spaCy still splits (its special cases) or keeps whole, and letters beyond ASCII
          "dont cannot gonna wanna im ive hes lemme whaddya xxunk xxpad cafe café straße km 10km abc123 ok",
          "etc. inc. a. e.g. dont, ok! why? so; as: end. xxmaj. v. vs. mr. no. it's. Caps, hello,, x.,"]


def test_spacy_tokenizer_equals_plain_spacy_piece_by_piece():
    # lamina tokenizes each distinct whitespace-delimited piece once; the tokens must be exactly spaCy's own
    spacy = pytest.importorskip("spacy")
    from spacy.symbols import ORTH
    nlp = spacy.blank("en")
    for tok in defaults.text_spec_tok:
        nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
    texts = TRICKY + [" ".join(TRICKY), "\n".join(TRICKY)]
    expected = [[t.text for t in doc] for doc in nlp.tokenizer.pipe(texts)]
    assert list(SpacyTokenizer()(texts)) == expected
    assert list(SpacyTokenizer(buf_sz=3)(texts)) == expected  # memo shared across spaCy batches


def test_spacy_tokenizer_tokenizes_each_piece_as_if_alone_whatever_the_batch():
    # spaCy's special-case matcher can pair a quote ending one piece with quotes starting the next ("abc' ''x''"
    # leaves four single quotes); lamina tokenizes each whitespace piece alone, so a text's tokens never depend on
    # its neighbours in a batch
    spacy = pytest.importorskip("spacy")
    from spacy.symbols import ORTH
    nlp = spacy.blank("en")
    for tok in defaults.text_spec_tok:
        nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
    text = "abc' ''x'' like ''gaslight'' (it's) fine"
    alone = [t.text for piece in text.split() for t in nlp.tokenizer(piece)]
    assert alone[:4] == ["abc", "'", "''", "x"]
    assert list(SpacyTokenizer()([text])) == [alone]
    batch = ["quote'", "''start and more'", text, "end''"]
    assert list(SpacyTokenizer()(batch))[2] == alone
