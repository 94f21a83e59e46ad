"""The text learners end to end: fastbook chapter 1 (IMDB classifier, from a DataFrame) and chapter 10 (ULMFiT:
language model, save_encoder, generation, classifier with load_encoder and gradual unfreezing), export and load
in a fresh process, pretrained weights from a cache written here, and files that must not be unpickled."""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from lamina.text.all import *  # noqa: F403  (what users write)

FAKE_VOCAB = defaults.text_spec_tok + ["xxfake", "the", "film", "was", "great", "oldword"]


def _quiet(learn):
    learn.progress.show_bars = False
    return learn


def test_chapter_1_classifier_from_a_dataframe(reviews, clas_config):
    set_seed(0)
    dls = TextDataLoaders.from_df(reviews, text_col="text", label_col="label", valid_col="is_valid", bs=16)
    assert dls.vocab[1] == ["negative", "positive"] and dls.c == 2 and isinstance(dls.vocab[0][0], str)
    learn = _quiet(text_classifier_learner(dls, AWD_LSTM, drop_mult=0.1, metrics=accuracy, pretrained=False,
                                           config=clas_config))
    learn.fine_tune(4, 1e-2)  # the book's line; from scratch (no pretrained encoder) it needs more, below
    learn.fit_one_cycle(6, 2e-2)
    assert learn.validate()[1] >= 0.9
    label, idx, probs = learn.predict("The film was wonderful and the acting superb.")
    assert label == "positive" and int(idx) == 1 and probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5
    assert learn.predict("The plot was dreadful and boring.")[0] == "negative"
    preds, targs = learn.get_preds()
    assert torch.equal(targs, torch.stack([dls.valid_ds[k][1] for k in range(len(dls.valid_ds))]))  # dataset order
    assert (preds.argmax(1) == targs).float().mean() >= 0.9


def test_chapter_10_ulmfit(tmp_path, lm_config, clas_config, capsys):
    set_seed(0)
    path = synth_review_folder(tmp_path / "imdb", n=120, unsup=40)
    get_imdb = partial(get_text_files, folders=["train", "test", "unsup"])
    dls_lm = DataBlock(blocks=TextBlock.from_folder(path, is_lm=True), get_items=get_imdb,
                       splitter=RandomSplitter(0.1)).dataloaders(path, path=path, bs=8, seq_len=16)
    x, y = dls_lm.one_batch()
    assert x.shape == (8, 16) and torch.equal(x[:, 1:], y[:, :-1])
    dls_lm.show_batch(max_n=2)
    assert "text_" in capsys.readouterr().out
    learn = _quiet(language_model_learner(dls_lm, AWD_LSTM, drop_mult=0.3, metrics=[accuracy, Perplexity()],
                                          pretrained=False, config=lm_config))
    learn.fit_one_cycle(2, 2e-2)
    loss, acc, ppl = learn.validate()
    assert ppl == pytest.approx(float(torch.tensor(loss).exp()), rel=1e-4) and ppl < len(dls_lm.vocab) / 2
    assert len({x.shape[1] for x, _ in dls_lm.valid}) == 2  # the last validation batch has shorter sequences
    preds, targs, decoded = learn.get_preds(with_decoded=True)  # so the items come back as lists, in order
    assert isinstance(preds, list) and len(preds) == len(targs) == len(decoded) == sum(len(x) for x, _ in dls_lm.valid)
    assert all(torch.equal(d, p.argmax(-1)) for d, p in zip(decoded, preds))
    hits = sum(int((d == t).sum()) for d, t in zip(decoded, targs))
    assert hits / sum(t.numel() for t in targs) == pytest.approx(acc, abs=0.01)
    learn.save_encoder("finetuned")
    assert (path / "models" / "finetuned.pth").exists()
    text = learn.predict("The film was", 8, temperature=0.75)
    assert text.startswith("The film was") and len(text.split()) > 3

    dblock = DataBlock(blocks=(TextBlock.from_folder(path, vocab=dls_lm.vocab), CategoryBlock), get_y=parent_label,
                       get_items=partial(get_text_files, folders=["train", "test"]),
                       splitter=GrandparentSplitter(valid_name="test"))
    dls_clas = dblock.dataloaders(path, path=path, bs=16, seq_len=16)
    assert dls_clas.vocab[0] == dls_lm.vocab
    clas = _quiet(text_classifier_learner(dls_clas, AWD_LSTM, drop_mult=0.5, metrics=accuracy, pretrained=False,
                                          config=clas_config)).load_encoder("finetuned")
    enc = clas.model[0].module
    assert torch.equal(enc.encoder.weight, learn.model[0].encoder.weight.to(enc.encoder.weight.device))
    trainable = [any(p.requires_grad for p in g) for g in clas.param_groups()]
    assert trainable == [False, False, False, True]  # load_encoder freezes: the head trains first
    clas.fit_one_cycle(1, 2e-2)
    clas.freeze_to(-2)
    assert [any(p.requires_grad for p in g) for g in clas.param_groups()] == [False, False, True, True]
    lr = 1e-2
    clas.fit_one_cycle(1, slice(lr / (2.6 ** 4), lr))
    assert [g["lr"] for g in clas.opt.param_groups][-1] < lr  # the schedule ran on the per-group lrs
    assert clas.lr_per_group(slice(lr / (2.6 ** 4), lr)) == pytest.approx([lr / 2.6 ** 4 * (2.6 ** (4 / 3)) ** i
                                                                            for i in range(4)])
    clas.unfreeze()
    clas.fit_one_cycle(1, slice(lr / 2 / (2.6 ** 4), lr / 2))
    label, _, _ = clas.predict("The story was great.")
    assert label in ("neg", "pos")
    clas.show_results(max_n=2)
    assert "category_" in capsys.readouterr().out


def test_export_and_load_in_a_fresh_process(tmp_path, reviews, clas_config, lm_config):
    set_seed(0)
    dls = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", label_col="label", valid_col="is_valid",
                                  bs=16)
    clas = _quiet(text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=clas_config))
    clas.fit_one_cycle(1, 1e-2)
    dls_lm = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", is_lm=True, bs=4, seq_len=10)
    lm = _quiet(language_model_learner(dls_lm, AWD_LSTM, pretrained=False, config=lm_config))
    lm.fit(1, 1e-2)
    texts = ["The film was wonderful.", "The plot was dull and the acting painful!!!"]
    expected = [clas.predict(t)[2].tolist() for t in texts]
    set_seed(1)
    generated = lm.predict("The film", 6)
    paths = {"clas": str(clas.export("clas.pkl")), "lm": str(lm.export("lm.pkl"))}
    desc = json.loads(json.loads(open(paths["clas"], "rb").read(8 + int.from_bytes(
        open(paths["clas"], "rb").read(8), "little"))[8:])["__metadata__"]["lamina"])
    assert desc["data"]["kwargs"]["tokenizer"]["rules"][0] == "fix_html" and desc["learner"] == "TextLearner"
    code = f"""
import json, sys
from lamina.text.all import *
clas = load_learner({paths['clas']!r})
lm = load_learner({paths['lm']!r})
set_seed(1)
out = {{"probs": [clas.predict(t)[2].tolist() for t in {texts!r}], "label": clas.predict({texts[0]!r})[0],
       "gen": lm.predict("The film", 6), "classes": [type(clas).__name__, type(lm).__name__]}}
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert torch.allclose(torch.tensor(got["probs"]), torch.tensor(expected), atol=1e-5)
    assert got["label"] == clas.predict(texts[0])[0]
    assert got["gen"] == generated
    assert got["classes"] == ["TextLearner", "LMLearner"]


def test_export_refuses_a_custom_rule(tmp_path, reviews, clas_config):
    tok = Tokenizer.from_df("text", rules=[*defaults.text_proc_rules, str.strip])
    dls = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", label_col="label", valid_col="is_valid",
                                  tok_tfm=tok)
    learn = text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=clas_config)
    with pytest.raises(Exception, match="not lamina's rules"):
        learn.export("x.pkl")


def _write_fake_wt103(home, lm_config, fastai_names=True, vocab_as="pkl"):
    """A pretrained model written the way fastai's archive is laid out (state dict + pickled list of str)."""
    folder = home / "models" / "wt103-fwd"
    folder.mkdir(parents=True)
    torch.manual_seed(5)
    model = get_language_model(AWD_LSTM, len(FAKE_VOCAB), config=lm_config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if fastai_names:  # fastai keeps the weight-dropped matrix as `<layer>_raw` beside the module
        for i in range(lm_config["n_layers"]):
            state[f"0.rnns.{i}.weight_hh_l0_raw"] = state.pop(f"0.rnns.{i}.module.weight_hh_l0")
    torch.save({"model": state}, folder / "lstm_fwd.pth")
    if vocab_as == "pkl":
        (folder / "itos_wt103.pkl").write_bytes(pickle.dumps(FAKE_VOCAB))
    else:
        (folder / "vocab.json").write_text(json.dumps(FAKE_VOCAB))
    return model


def test_pretrained_weights_from_the_cache_are_matched_to_the_vocabulary(_isolated_home, reviews, lm_config,
                                                                         clas_config):
    old = _write_fake_wt103(_isolated_home, lm_config)
    dls = TextDataLoaders.from_df(reviews, text_col="text", is_lm=True, bs=4, seq_len=10)
    learn = language_model_learner(dls, AWD_LSTM, config=lm_config)  # pretrained=True by default
    new_vocab, emb = dls.vocab, learn.model[0].encoder.weight.detach()
    old_emb = old[0].encoder.weight.detach()
    for token in ("xxbos", "the", "film", "was"):
        assert torch.equal(emb[new_vocab.index(token)], old_emb[FAKE_VOCAB.index(token)])
    new_token = next(t for t in new_vocab if t not in FAKE_VOCAB)
    assert torch.allclose(emb[new_vocab.index(new_token)], old_emb.mean(0))  # new tokens: the mean embedding
    assert learn.model[1].decoder.weight is learn.model[0].encoder.weight
    assert torch.equal(learn.model[0].rnns[1].module.weight_hh_l0, old[0].rnns[1].module.weight_hh_l0)
    assert [any(p.requires_grad for p in g) for g in learn.param_groups()] == [False, False, True]  # frozen
    dls_clas = TextDataLoaders.from_df(reviews, text_col="text", label_col="label", valid_col="is_valid",
                                       text_vocab=dls.vocab)
    clas = text_classifier_learner(dls_clas, AWD_LSTM, config=clas_config)
    assert torch.equal(clas.model[0].module.rnns[0].module.weight_ih_l0, old[0].rnns[0].module.weight_ih_l0)
    assert torch.equal(clas.model[0].module.encoder.weight, emb)


def test_pretrained_vocab_as_json_and_a_size_mismatch(_isolated_home, reviews, lm_config):
    _write_fake_wt103(_isolated_home, lm_config, fastai_names=False, vocab_as="json")
    dls = TextDataLoaders.from_df(reviews, text_col="text", is_lm=True, bs=4, seq_len=10)
    assert language_model_learner(dls, AWD_LSTM, config=lm_config) is not None
    with pytest.raises(ValueError, match="do not fit this model"):
        language_model_learner(dls, AWD_LSTM, config={**lm_config, "n_hid": 24})


def test_missing_pretrained_weights_say_where_to_put_them(_isolated_home, monkeypatch, reviews, lm_config):
    monkeypatch.setenv("LAMINA_DATA_URL", (_isolated_home / "no-mirror").as_uri())  # offline: nothing to fetch
    dls = TextDataLoaders.from_df(reviews, text_col="text", is_lm=True, bs=4, seq_len=10)
    folder = _isolated_home / "models" / "wt103-fwd"
    with pytest.raises(PretrainedWeightsError, match="pretrained=False") as err:
        language_model_learner(dls, AWD_LSTM, config=lm_config)
    assert str(folder) in str(err.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_the_vocab_reader_refuses_a_crafted_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crafted = tmp_path / "itos.pkl"
    crafted.write_bytes(pickle.dumps(["xxunk", _Evil()]))
    with pytest.raises(ValueError, match="refused to load the global"):
        read_vocab(crafted)
    assert not (tmp_path / "pwned.txt").exists()
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a list of strings"):
        read_vocab(tmp_path / "dict.pkl")
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(["xxunk", "the"]))
    assert read_vocab(tmp_path / "ok.pkl") == ["xxunk", "the"]


def test_weights_and_encoders_are_read_without_unpickling_code(tmp_path, monkeypatch, reviews, clas_config):
    monkeypatch.chdir(tmp_path)
    dls = TextDataLoaders.from_df(reviews, path=tmp_path, text_col="text", label_col="label", valid_col="is_valid")
    learn = text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=clas_config)
    (tmp_path / "models").mkdir()
    torch.save({"w": _Evil()}, tmp_path / "models" / "evil.pth")
    with pytest.raises(ValueError, match="safely"):
        learn.load_encoder("evil")
    assert not (tmp_path / "pwned.txt").exists()
    with pytest.raises(FileNotFoundError, match="save_encoder"):
        learn.load_encoder("missing")


@pytest.mark.parametrize("bf16_cpu", [False, True])
def test_text_learners_train_in_bf16_on_bf16_cpus_and_evaluate_in_fp32(monkeypatch, reviews, clas_config, bf16_cpu):
    import lamina.text.learner as text_learner_module
    monkeypatch.setattr(text_learner_module, "cpu_has_bf16_matmul", lambda: bf16_cpu)
    dls = TextDataLoaders.from_df(reviews, text_col="text", label_col="label", valid_col="is_valid", bs=16)
    learn = _quiet(text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=clas_config))
    assert hasattr(learn, "mixed_precision") == bf16_cpu
    seen = {True: set(), False: set()}
    def record(module, inputs, output):
        seen[learn.model.training].add(torch.is_autocast_enabled("cpu"))
    learn.model[0].register_forward_hook(record)
    learn.fit(1, 1e-3)
    assert seen[True] == {bf16_cpu}  # training batches under bf16 autocast on bf16 CPUs
    assert seen[False] == {False}  # validation: full precision, as the exported model predicts
    preds = learn.get_preds()[0]
    learn.to_fp32()
    assert torch.allclose(learn.get_preds()[0], preds)
