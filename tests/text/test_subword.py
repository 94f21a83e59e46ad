"""SubwordTokenizer (SentencePiece): learning the pieces, special tokens, the cached model, workers, exports."""

import pickle
import subprocess
import sys

import pytest
import torch

from lamina.text.all import *  # noqa: F403  (what users write)
from lamina.text.core import apply_rules
from lamina.text.corpus import tokenize_corpus
from lamina.text.subword import SPACE, subword_vocab_size


@pytest.fixture
def texts(reviews):
    return list(reviews["text"])


def _quiet(learn):
    learn.progress.show_bars = False
    return learn


def test_pieces_spell_the_text_and_special_tokens_stay_whole(texts):
    sp = SubwordTokenizer(vocab_sz=60)
    assert sp.setup(texts, defaults.text_proc_rules) == {"sp_model": None}
    assert SubwordTokenizer is SentencePieceTokenizer and sp.trained
    ruled = [apply_rules(t, defaults.text_proc_rules) for t in texts[:20]]
    for text, pieces in zip(ruled, sp(ruled)):
        assert sp.decode(pieces) == " ".join(text.split())  # nothing lost: the pieces spell the text
        assert pieces[:2] == [SPACE + "xxbos", SPACE + "xxmaj"]  # special tokens are single pieces
        assert all(" " not in p for p in pieces)
    n_pieces = sp._sp.GetPieceSize()
    assert n_pieces <= 60
    # a smaller vocabulary splits words into more pieces
    small = SubwordTokenizer(vocab_sz=40)
    small.setup(texts, defaults.text_proc_rules)
    assert sum(map(len, small(ruled))) > sum(map(len, sp(ruled)))


def test_default_vocab_size_follows_the_word_count():
    assert subword_vocab_size(["a b c"]) == 29  # at least 29
    words = " ".join(f"w{i}" for i in range(1000))
    assert subword_vocab_size([words]) == 256  # 1000 // 4 = 250, up to a multiple of 8
    assert subword_vocab_size([words], max_vocab_sz=100) == 100


def test_clear_errors(tmp_path, texts):
    with pytest.raises(RuntimeError, match=r"setup\(texts\)"):
        list(SubwordTokenizer()(["some text"]))
    with pytest.raises(ValueError, match="texts are empty"):
        SubwordTokenizer().setup(["", "   "])
    with pytest.raises(ValueError, match="could not learn 20 pieces.*larger vocab_sz"):
        SubwordTokenizer(vocab_sz=20).setup(texts)
    tiny = SubwordTokenizer()  # the default size covers every character, however few the texts
    tiny.setup(["The quick brown fox jumps over the lazy dog!"])
    assert tiny.decode(next(tiny(["The lazy dog"]))) == "The lazy dog"
    with pytest.raises(ValueError, match="model_type"):
        SubwordTokenizer(model_type="wordpiece")
    with pytest.raises(FileNotFoundError, match="missing.model"):
        SubwordTokenizer(sp_model=tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="do not hold a SentencePiece model"):
        SubwordTokenizer(sp_model=bad)
    with pytest.raises(ValueError, match="no model to export"):
        SubwordTokenizer().to_config()


def test_a_saved_model_file_pickles_and_worker_processes_give_the_same_pieces(tmp_path, texts):
    sp = SubwordTokenizer(vocab_sz=50, cache_dir=tmp_path / "spm")
    path = sp.setup(texts)["sp_model"]
    assert path.parent == tmp_path / "spm" and path.suffix == ".model"
    loaded = SubwordTokenizer(sp_model=path)
    again = pickle.loads(pickle.dumps(sp))
    assert list(loaded(texts)) == list(sp(texts)) == list(again(texts))
    rules, post = defaults.text_proc_rules, defaults.text_postproc_rules
    serial = tokenize_corpus(texts, sp, rules, post, n_workers=0)
    parallel = tokenize_corpus(texts, sp, rules, post, n_workers=2, min_chars=0)
    assert [list(serial.doc(i)) for i in range(len(texts))] == [list(parallel.doc(i)) for i in range(len(texts))]


def test_a_folder_tokenizer_learns_once_and_keeps_the_model_beside_its_tokens(tmp_path, monkeypatch):
    path = synth_review_folder(tmp_path / "imdb", n=30)
    trained = []
    real_train = SentencePieceTokenizer._train
    monkeypatch.setattr(SentencePieceTokenizer, "_train",
                        lambda self, lines: trained.append(len(lines)) or real_train(self, lines))
    first = Tokenizer.from_folder(path, tok=SubwordTokenizer(vocab_sz=50))
    models = list((tmp_path / "imdb_tok").glob("spm-*.model"))
    assert len(trained) == 1 and len(models) == 1
    second = Tokenizer.from_folder(path, tok=SubwordTokenizer(vocab_sz=50))
    assert len(trained) == 1  # the model was read back, not learned again
    some = sorted(path.rglob("*.txt"))[4]
    assert list(second(some)) == list(first(some))
    assert second.decode(list(second(some))) == " ".join(
        apply_rules(some.read_text(), defaults.text_proc_rules).split())
    models[0].write_bytes(b"damaged")  # a damaged model file is learned again and replaced
    Tokenizer.from_folder(path, tok=SubwordTokenizer(vocab_sz=50))
    assert len(trained) == 2 and models[0].stat().st_size > 100
    Tokenizer.from_folder(path, tok=SubwordTokenizer(vocab_sz=40))  # other settings: another model
    assert len(trained) == 3 and len(list((tmp_path / "imdb_tok").glob("spm-*.model"))) == 2
    for size in (45, 55):
        Tokenizer.from_folder(path, tok=SubwordTokenizer(vocab_sz=size))
    assert len(list((tmp_path / "imdb_tok").glob("spm-*.model"))) == 3  # the newest models only


def test_classifier_and_language_model_export_the_model_inside_the_file(tmp_path, reviews, clas_config, lm_config):
    set_seed(0)
    tok = Tokenizer.from_df("text", tok=SubwordTokenizer(vocab_sz=60))
    dls = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", label_col="label", valid_col="is_valid",
                                  tok_tfm=tok, bs=16)
    assert any(t.startswith(SPACE) for t in dls.text_vocab)
    x, _ = dls.one_batch()
    assert x.dtype == torch.long and x.max() < len(dls.text_vocab)
    clas = _quiet(text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=clas_config))
    clas.fit(1, 1e-2)
    text = "The acting was superb and the ending moving."
    label, idx, probs = clas.predict(text)
    exported = clas.export(tmp_path / "clas.pkl")
    loaded = load_learner(exported)
    label2, idx2, probs2 = loaded.predict(text)
    assert (label2, int(idx2)) == (label, int(idx)) and torch.allclose(probs2, probs, atol=1e-6)
    assert loaded.dls.tokenizer.tok.spec() == tok.tok.spec()  # the same learned model, read from the export
    dls_lm = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", is_lm=True, bs=4, seq_len=10,
                                     tok_tfm=Tokenizer.from_df("text", tok=SubwordTokenizer(vocab_sz=60)))
    lm = _quiet(language_model_learner(dls_lm, AWD_LSTM, pretrained=False, config=lm_config))
    lm.fit(1, 1e-2)
    set_seed(1)
    generated = lm.predict("The film", 5)
    assert generated.startswith("The film") and SPACE not in generated and "xxbos" not in generated
    lm_loaded = load_learner(lm.export(tmp_path / "lm.pkl"))
    set_seed(1)
    assert lm_loaded.predict("The film", 5) == generated


def test_special_tokens_from_the_vocabulary_decode_as_words(texts):
    sp = SubwordTokenizer(vocab_sz=60)
    sp.setup(texts, defaults.text_proc_rules)
    assert sp.decode([SPACE + "the", "xxunk", SPACE + "film", "xxpad", "s"]) == "the xxunk film xxpads"
    tok = Tokenizer(sp)
    assert tok.words([SPACE + "xxbos", SPACE + "gr", "eat", "xxunk"]) == ["xxbos", "great", "xxunk"]


def test_an_export_names_no_file_and_holds_a_model(texts, tmp_path):
    sp = SubwordTokenizer(vocab_sz=60)
    sp.setup(texts)
    good = Tokenizer(sp).to_config()
    assert Tokenizer.from_config(good).tok.spec() == sp.spec()
    bad_configs = {
        "unexpected fields": {"sp_model": str(tmp_path / "x.model")},
        "sp_model_proto must hold": {"sp_model_proto": None},
        "must hold the model": {"sp_model_proto": 800_000_000},
        "special_toks must be": {"special_toks": "xxbos"},
        "not base64": {"sp_model_proto": "not base64!"},
        "do not hold a SentencePiece model": {"sp_model_proto": "AAAA"},
    }
    for message, change in bad_configs.items():
        cfg = {**good, "tok_kwargs": {**good["tok_kwargs"], **change}}
        with pytest.raises(ValueError, match=message):
            Tokenizer.from_config(cfg)


def test_crafted_models_are_refused_cleanly(texts, tmp_path):
    """A model with an enormous piece or a damaged character map is refused with an error, in a separate process
    so that a crash would show as one."""
    sp = SubwordTokenizer(vocab_sz=60)
    sp.setup(texts)
    (tmp_path / "model").write_bytes(sp._proto)
    code = f"""
from pathlib import Path
from sentencepiece import sentencepiece_model_pb2 as pb
from lamina.text.subword import SubwordTokenizer
raw = Path({str(tmp_path / 'model')!r}).read_bytes()
long, charsmap = pb.ModelProto(), pb.ModelProto()
long.ParseFromString(raw); charsmap.ParseFromString(raw)
long.pieces[20].piece = "a" * 400000
charsmap.normalizer_spec.precompiled_charsmap = b"\\xff\\xff\\xff\\x7f" + b"\\x00" * 64
for model in (long, charsmap):
    try:
        SubwordTokenizer(sp_model_proto=model.SerializeToString())
        print("loaded")
    except ValueError:
        print("refused")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["refused", "refused"]


def test_a_datablock_learns_the_pieces_from_its_training_texts(reviews, monkeypatch):
    seen = []
    real_setup = SentencePieceTokenizer.setup
    monkeypatch.setattr(SentencePieceTokenizer, "setup",
                        lambda self, items, rules=None: seen.append(list(items)) or real_setup(self, items, rules))
    block = DataBlock(blocks=(TextBlock.from_df("text", tok=SubwordTokenizer(vocab_sz=60)), CategoryBlock),
                      get_x=ColReader("text"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"))
    dls = block.dataloaders(reviews, bs=16)
    train_texts = set(reviews.loc[~reviews.is_valid, "text"])
    assert len(seen) == 1 and set(seen[0]) == train_texts  # learned once, from the training texts only
    x, _ = dls.one_batch()
    assert x.shape[0] == 16 and any(t.startswith(SPACE) for t in dls.vocab[0])
