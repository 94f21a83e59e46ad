"""The ``lamina.text.all`` surface, and the callbacks every text learner carries."""

import subprocess
import sys

import pytest

import lamina.text.all as surface
from lamina.callbacks.core import Callback
from lamina.text.all import (AWD_LSTM, ModelResetter, RNNRegularizer, TextDataLoaders, language_model_learner,
                             set_seed)


def test_surface_names_exist_once_and_importing_is_light():
    assert len(surface.__all__) == len(set(surface.__all__))
    assert all(hasattr(surface, n) for n in surface.__all__)
    for name in ("TextDataLoaders", "TextBlock", "text_classifier_learner", "language_model_learner", "AWD_LSTM",
                 "Perplexity", "accuracy", "untar_data", "URLs", "DataBlock", "RandomSplitter", "get_text_files"):
        assert name in surface.__all__, name
    code = "import sys, lamina.text.all; print('matplotlib' in sys.modules, 'spacy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


class _Probe(Callback):
    order = 5  # after RNNRegularizer

    def __init__(self):
        super().__init__()
        self.extra, self.resets = {True: [], False: []}, 0

    def after_loss(self):
        self.extra[self.learn.training].append(float((self.learn.loss_grad - self.learn.loss).detach()))

    def before_batch(self):
        if self.learn.iter == 0:
            self.resets += self.learn.model[0].hidden is None  # a pass starts from a reset state


def test_text_learners_reset_the_state_and_add_ar_tar_in_training_only(reviews, lm_config):
    set_seed(0)
    dls = TextDataLoaders.from_df(reviews, text_col="text", is_lm=True, bs=4, seq_len=10)
    probe = _Probe()
    learn = language_model_learner(dls, AWD_LSTM, pretrained=False, config=lm_config, cbs=probe)
    assert isinstance(learn.model_resetter, ModelResetter) and isinstance(learn.rnn_regularizer, RNNRegularizer)
    assert (learn.rnn_regularizer.alpha, learn.rnn_regularizer.beta) == (2.0, 1.0)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    assert probe.extra[True] and all(e > 0 for e in probe.extra[True])  # AR + TAR added to the trained loss
    assert probe.extra[False] and all(e == 0 for e in probe.extra[False])  # never to the validation loss
    assert probe.resets == 2  # before training and before validation
    assert learn.model[0].hidden is None  # and after the fit


@pytest.mark.parametrize("learner", ["TextLearner", "Learner"])
def test_a_model_returning_its_rnn_outputs_trains_with_ar_and_tar(learner):
    """The book's chapter-12 LSTM returns (output, raw, dropped): `RNNCallback` keeps the output as the prediction
    and hands the two others to `RNNRegularizer`; a plain `Learner` given `ModelResetter` and `RNNRegularizer`
    alone (as the book writes it) trains the same way."""
    import torch
    from torch import nn

    from lamina.text.all import CrossEntropyLossFlat, DataLoaders, Learner, RNNCallback, TextLearner

    class LSTMModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(10, 8), nn.LSTM(8, 8, batch_first=True), nn.Linear(8, 10)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            raw, _ = self.rnn(self.emb(x))
            dropped = self.drop(raw)
            self.seen = (raw, dropped)
            return self.out(dropped), raw, dropped

        def reset(self):
            pass

    class Check(Callback):
        order = 5

        def after_loss(self):
            raw, dropped = self.learn.model.seen
            assert isinstance(self.learn.pred, torch.Tensor) and self.learn.pred.shape[-1] == 10
            if self.learn.training:
                want = 2.0 * dropped.pow(2).mean() + 1.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
                self.extra.append(float((self.learn.loss_grad - self.learn.loss - want).detach()))

    set_seed(0)
    seqs = [(torch.arange(i, i + 8) % 10, torch.arange(i + 1, i + 9) % 10) for i in range(64)]
    dls = DataLoaders.from_dsets(seqs[:48], seqs[48:], bs=8, shuffle=False, device="cpu")
    check = Check()
    check.extra = []
    if learner == "TextLearner":
        learn = TextLearner(dls, LSTMModel(), loss_func=CrossEntropyLossFlat(), cbs=check)
        assert any(isinstance(cb, RNNCallback) for cb in learn.cbs)
    else:
        learn = Learner(dls, LSTMModel(), loss_func=CrossEntropyLossFlat(),
                        cbs=[ModelResetter, RNNRegularizer(alpha=2, beta=1), check])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    assert len(check.extra) == 6 and max(abs(e) for e in check.extra) < 1e-5
    assert len(learn.get_preds()[0]) == 16
