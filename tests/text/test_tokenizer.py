"""Tokenizer (folder and DataFrame modes), the disk cache and its invalidation, parallel tokenization,
Numericalize's vocabulary."""

from collections import Counter

import numpy as np
import pytest
import torch

from lamina.text import corpus as corpus_module
from lamina.text.core import BaseTokenizer, SpacyTokenizer, defaults
from lamina.text.corpus import TokenTable, Tokens, tokenize_corpus
from lamina.text.synth import synth_review_folder
from lamina.text.tokenizer import Tokenizer, join_texts
from lamina.text.vocab import FAKE, Numericalize, make_vocab


def _count_tokenizations(monkeypatch):
    calls = []
    real = corpus_module.tokenize_corpus

    def counting(texts, *args, **kwargs):
        calls.append(len(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr("lamina.text.tokenizer.tokenize_corpus", counting)
    return calls


def test_folder_tokens_are_cached_beside_the_folder_and_reused(tmp_path, monkeypatch):
    path = synth_review_folder(tmp_path / "imdb", n=20)
    calls = _count_tokenizations(monkeypatch)
    first = Tokenizer.from_folder(path)
    assert calls == [20]
    cache = tmp_path / "imdb_tok"
    assert len(list(cache.glob("tokens-*.npz"))) == 1
    second = Tokenizer.from_folder(path)
    assert calls == [20]  # read from the cache, not tokenized again
    some = sorted(path.rglob("*.txt"))[3]
    assert list(second(some)) == list(first(some)) == first._one(some.read_text())
    assert list(first(some))[0] == "xxbos"


def test_folder_cache_is_invalidated_when_a_text_or_the_rules_change(tmp_path, monkeypatch):
    path = synth_review_folder(tmp_path / "imdb", n=20)
    calls = _count_tokenizations(monkeypatch)
    Tokenizer.from_folder(path)
    some = sorted(path.rglob("*.txt"))[0]
    some.write_text("A brand new review about zebras.")
    tok = Tokenizer.from_folder(path)
    assert calls == [20, 20]
    assert "zebras" in list(tok(some))
    Tokenizer.from_folder(path, rules=defaults.text_proc_rules[:-1])  # other rules: other tokens
    assert calls == [20, 20, 20]
    (path / "train" / "pos" / "extra.txt").write_text("one more")  # a new file
    Tokenizer.from_folder(path)
    assert calls == [20, 20, 20, 21]
    assert len(list((tmp_path / "imdb_tok").glob("tokens-*.npz"))) <= 3  # stale entries are pruned


def test_a_damaged_cache_is_ignored(tmp_path, monkeypatch):
    path = synth_review_folder(tmp_path / "imdb", n=10)
    Tokenizer.from_folder(path)
    cached = next((tmp_path / "imdb_tok").glob("tokens-*.npz"))
    cached.write_bytes(b"not a zip file")
    calls = _count_tokenizations(monkeypatch)
    with pytest.warns(UserWarning, match="unreadable tokenization cache"):
        tok = Tokenizer.from_folder(path)
    assert calls == [10]
    assert len(tok(sorted(path.rglob("*.txt"))[0])) > 3


def test_from_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        Tokenizer.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\['.txt'\\] files"):
        Tokenizer.from_folder(tmp_path / "empty")


def test_df_mode_tokenizes_in_one_batch_and_caches_with_cache_dir(tmp_path, monkeypatch, reviews):
    calls = _count_tokenizations(monkeypatch)
    tok = Tokenizer.from_df("text", cache_dir=tmp_path / "cache")
    texts = reviews.text.tolist()
    tok.setup(texts)
    assert calls == [len(set(texts))]
    assert tok(texts[0]) is tok(texts[0])  # remembered
    again = Tokenizer.from_df("text", cache_dir=tmp_path / "cache")
    again.setup(texts)
    assert calls == [len(set(texts))]  # the second run reads the cache
    assert list(again(texts[5])) == list(tok(texts[5]))


def test_several_text_columns_are_joined_with_field_markers(reviews):
    df = reviews.assign(title="Title")
    assert join_texts(df, ["title", "text"], mark_fields=True)[0] == f"xxfld 1 Title xxfld 2 {df.text[0]}"
    tok = Tokenizer.from_df(["title", "text"])
    assert tok.mark_fields
    toks = list(tok(["Title", "A film."]))
    assert toks[:5] == ["xxbos", "xxfld", "1", "xxmaj", "title"]
    with pytest.raises(KeyError, match="not in the DataFrame"):
        join_texts(df, ["nope"])


def test_lists_of_tokens_pass_through_and_non_text_becomes_text():
    tok = Tokenizer(BaseTokenizer())
    assert list(tok(["already", "tokens"])) == ["already", "tokens"]
    assert list(tok(float("nan"))) == ["xxbos", "nan"]


def test_parallel_tokenization_matches_serial(monkeypatch):
    pools = []
    real_map = corpus_module.ProcessPoolExecutor.map
    monkeypatch.setattr(corpus_module.ProcessPoolExecutor, "map",
                        lambda self, *a: pools.append(1) or real_map(self, *a))
    texts = [f"Review {i}: The FILM was great!!! Really really really good." for i in range(40)]
    rules, post = defaults.text_proc_rules, defaults.text_postproc_rules
    serial = tokenize_corpus(texts, SpacyTokenizer(), rules, post, n_workers=0)
    parallel = tokenize_corpus(texts, SpacyTokenizer(), rules, post, n_workers=2, min_chars=0)
    assert [list(serial.doc(i)) for i in range(40)] == [list(parallel.doc(i)) for i in range(40)]
    assert np.array_equal(serial.offsets, parallel.offsets)
    assert pools == [1]  # the second call did go through worker processes
    odd = ["", "a  b", "   ", "x. y,", "abc' ''x''", "Hello World"] * 3  # no pieces, space runs, no rules
    serial, parallel = (tokenize_corpus(odd, SpacyTokenizer(), [], [], n_workers=n, min_chars=0) for n in (0, 2))
    assert [list(serial.doc(i)) for i in range(len(odd))] == [list(parallel.doc(i)) for i in range(len(odd))]
    assert list(serial.doc(0)) == [] and list(serial.doc(2)) == ["   "]
    with pytest.warns(UserWarning, match="cannot be sent to worker processes"):
        tokenize_corpus(texts, BaseTokenizer(), [lambda t: t], [], n_workers=2, min_chars=0)


def test_tokens_read_like_a_list():
    table = TokenTable()
    toks = Tokens(np.asarray(table.ids(["a", "b", "a"]), dtype=np.int32), table)
    assert len(toks) == 3 and toks[2] == "a" and toks[1:] == ["b", "a"] and toks == ["a", "b", "a"]
    assert len(table) == 2


def test_make_vocab_orders_by_count_and_pads_to_a_multiple_of_8():
    count = Counter({"the": 5, "film": 3, "zebra": 1, "xxbos": 4, "good": 3})
    vocab = make_vocab(count, min_freq=2)
    assert vocab[:9] == defaults.text_spec_tok
    assert vocab[9:12] == ["the", "film", "good"]  # by count, ties in first-seen order; zebra is too rare
    assert len(vocab) % 8 == 0 and set(vocab[12:]) == {FAKE}
    assert len(make_vocab(count, min_freq=1, max_vocab=10)) == 16  # 10 kept, then padded


def test_numericalize_from_tokens_matches_the_counter_rule():
    table = TokenTable()
    docs = [Tokens(np.asarray(table.ids(d), dtype=np.int32), table)
            for d in (["xxbos", "b", "a", "a"], ["xxbos", "c", "b", "a"], ["xxbos", "b", "d"])]
    num = Numericalize(min_freq=2)
    num.setup(docs)
    assert num.vocab == make_vocab(Counter(t for d in docs for t in d), min_freq=2)
    assert num.vocab[9:11] == ["b", "a"]  # b: 3, a: 3, b seen first
    ids = num(docs[1])
    assert ids.dtype == torch.long and ids.tolist() == [2, 0, 9, 10]  # 'c' is unknown -> xxunk (0)
    assert num(["a", "zzz"]).tolist() == [10, 0]
    assert num.decode(ids) == ["xxbos", "xxunk", "b", "a"]
    assert num.pad_idx == 1


def test_numericalize_with_a_given_vocab_keeps_it():
    vocab = defaults.text_spec_tok + ["hello", "world"]
    num = Numericalize(vocab=vocab)
    num.setup([["other", "words"]])
    assert num.vocab == vocab
    assert num(["hello", "world", "xxfake"]).tolist() == [9, 10, 0]
    with pytest.raises(RuntimeError, match="no vocabulary"):
        Numericalize()(["a"])


def test_an_unwritable_cache_folder_only_warns(tmp_path, reviews):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    tok = Tokenizer.from_df("text", cache_dir=blocker / "sub")
    with pytest.warns(UserWarning, match="Could not write the tokenization cache"):
        tok.setup(reviews.text.tolist()[:5])
    assert list(tok(reviews.text[0]))[0] == "xxbos"
