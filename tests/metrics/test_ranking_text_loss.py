"""Average precision (binary and multi-label), multi-label Matthews correlation, corpus BLEU and loss-part
metrics: hand-computed examples, scikit-learn's and fastai's values on the same inputs, and a real fit."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lamina.learner import Learner
from lamina.metrics import (APScoreBinary, APScoreMulti, CorpusBLEUMetric, LossMetric, LossMetrics,
                            MatthewsCorrCoefMulti)
from lamina.testing import synth_regression
from tests.metrics.helpers import fake_learn, run_metric

MULTI_TARG = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
MULTI_PROBS = torch.tensor([[.9, .2, .4], [.3, .8, .7], [.2, .4, .1], [.6, .5, .9], [.5, .6, .3]])


def _binary_logits(scores):
    return torch.stack([torch.zeros(len(scores)), torch.logit(torch.tensor(scores))], dim=1)


def test_average_precision_binary():
    targ = torch.tensor([0, 1, 1, 0, 1])
    # ranked .9(+) .8(-) .4(+) .35(+) .1(-): recall gains of 1/3 at precisions 1, 2/3, 3/4
    logits = _binary_logits([.1, .4, .35, .8, .9])
    assert run_metric(APScoreBinary(), logits, targ, [2, 3]) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # tied scores form one threshold: 1/3 at precision 1, then 2/3 at precision 3/4
    assert run_metric(APScoreBinary(), _binary_logits([.1, .4, .4, .8, .9]), targ) == pytest.approx(1 / 3 + 1 / 2)
    weighted = APScoreBinary(sample_weight=[1, 2, 1, 0.5, 1])
    assert run_metric(weighted, logits, targ) == pytest.approx(0.9007936507936507)  # scikit-learn's value
    # class 0 as the positive one, same scores: .9(-) .8(+) .4(-) .35(-) .1(+): gains 1/2 at 1/2 and 1/2 at 2/5
    assert run_metric(APScoreBinary(pos_label=0), logits, targ) == pytest.approx(0.5 * 0.5 + 0.5 * 0.4)
    assert APScoreBinary().name == "average_precision_score"
    with pytest.warns(UserWarning, match="no positive target"):  # as scikit-learn: 0, and training goes on
        assert run_metric(APScoreBinary(), logits, torch.zeros(5, dtype=torch.long)) == 0.0


def test_average_precision_multilabel_matches_scikit_learn():
    expected = {"macro": 0.8351851851851851, "micro": 0.8245535714285714, "weighted": 0.8458333333333333}
    for average, value in expected.items():
        metric = APScoreMulti(sigmoid=False, average=average)
        assert run_metric(metric, MULTI_PROBS, MULTI_TARG, [3, 2]) == pytest.approx(value)
    logits = torch.logit(MULTI_PROBS)
    assert run_metric(APScoreMulti(), logits, MULTI_TARG) == pytest.approx(expected["macro"])
    with pytest.raises(ValueError, match="average"):
        APScoreMulti(average="samples")
    # a label with no positive in the epoch scores 0 (macro) and weighs nothing (weighted), as scikit-learn
    probs, targ = torch.tensor([[.9, .2], [.3, .8], [.6, .1]]), torch.tensor([[1, 0], [0, 0], [1, 0]])
    with pytest.warns(UserWarning, match="no positive target"):
        assert run_metric(APScoreMulti(sigmoid=False), probs, targ) == pytest.approx(0.5)
    with pytest.warns(UserWarning, match="no positive target"):
        assert run_metric(APScoreMulti(sigmoid=False, average="weighted"), probs, targ) == pytest.approx(1.0)


def test_matthews_multilabel_over_every_decision():
    metric = MatthewsCorrCoefMulti(sigmoid=False)
    # 15 decisions at probability >= 0.5: tp=5, fp=3, fn=3, tn=4
    tp, fp, fn, tn = 5, 3, 3, 4
    mcc = (tp * tn - fp * fn) / ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    assert run_metric(metric, MULTI_PROBS, MULTI_TARG, [2, 3]) == pytest.approx(mcc)
    # a higher threshold: the 0.5 of the last row becomes a miss (scikit-learn's value on these decisions)
    assert run_metric(MatthewsCorrCoefMulti(thresh=0.55, sigmoid=False), MULTI_PROBS, MULTI_TARG) == pytest.approx(
        0.21821789023599236)
    assert metric.name == "matthews_corrcoef"


def _one_hot_logits(seqs, vocab=10):
    out = torch.zeros(len(seqs), len(seqs[0]), vocab)
    for i, seq in enumerate(seqs):
        out[i, torch.arange(len(seq)), torch.tensor(seq)] = 5.0
    return out


def test_corpus_bleu_counts_clipped_ngrams_over_the_corpus():
    preds, targs = [[1, 2, 3, 4, 5, 6], [2, 2, 3, 4, 7, 8]], torch.tensor([[1, 2, 3, 4, 5, 9], [2, 3, 3, 4, 7, 8]])
    metric = CorpusBLEUMetric()
    # 1-grams: 5 + 5 of 12 (the second target has one 2: the second 2 is not matched); 2-grams 4 + 4 of 10;
    # 3-grams 3 + 2 of 8; 4-grams 2 + 1 of 6; same lengths, so no penalty
    expected = (10 / 12 * 8 / 10 * 5 / 8 * 3 / 6) ** 0.25
    assert run_metric(metric, _one_hot_logits(preds), targs, [1, 1]) == pytest.approx(expected)
    assert expected == pytest.approx(0.6756000774035172)  # fastai's value on the same batch
    # the first 4 tokens: 4 + 3 of 8, 3 + 2 of 6, 2 + 0 of 4, 1 + 0 of 2; the second sequence has no 3- or 4-gram
    # match, which counts 1/2 and then 1/4; 8 tokens predicted for 12: a penalty of exp(1 - 12/8)
    short = run_metric(metric, _one_hot_logits(preds)[:, :4], targs)
    assert short == pytest.approx(math.exp(1 - 12 / 8) * (7 / 8 * 5 / 6 * 2.5 / 4 * 1.25 / 2) ** 0.25)
    assert short == pytest.approx(0.4430976731990375)  # fastai's value
    none = run_metric(metric, _one_hot_logits([[9, 9, 9, 9]]), targs[:1])  # one 9 matches, then 1/2, 1/4, 1/8
    assert none == pytest.approx(math.exp(1 - 6 / 4) * (1 / 4 * 0.5 / 3 * 0.25 / 2 * 0.125 / 1) ** 0.25)
    assert run_metric(metric, _one_hot_logits([[1, 2]]), targs[:1, :2]) == 0.0  # no 4-gram at all
    assert metric.name == "corpus_bleu"
    with pytest.raises(ValueError, match="3 predicted sequences for 2 targets"):
        metric.accumulate(fake_learn(_one_hot_logits(preds + preds[:1]), targs))


class TwoPartLoss(nn.Module):
    def forward(self, pred, targ):
        self.mse, self.l1 = F.mse_loss(pred, targ), F.l1_loss(pred, targ)
        return self.mse + self.l1


def test_loss_metrics_show_each_part_of_the_loss():
    dls = synth_regression(n=96, bs=16)
    learn = Learner(dls, nn.Linear(dls.train.dataset[0][0].shape[-1], 1), loss_func=TwoPartLoss(),
                    metrics=LossMetrics("mse, l1", "mse_part,l1_part"))
    learn.progress.show_bars = False
    learn.fit(1, 1e-2)
    assert learn.recorder.metric_names[3:5] == ["mse_part", "l1_part"]
    valid_loss, mse_part, l1_part = learn.validate()
    assert valid_loss == pytest.approx(mse_part + l1_part, rel=1e-5)
    assert list(LossMetrics(["a", "b"]).attrgot("name")) == ["a", "b"]
    with pytest.raises(ValueError, match="one name per attribute"):
        LossMetrics("a,b", "x")
    missing = Learner(dls, nn.Linear(dls.train.dataset[0][0].shape[-1], 1), loss_func=TwoPartLoss(),
                      metrics=LossMetric("bce"))
    with pytest.raises(AttributeError, match="has no attribute 'bce'"):
        missing.validate()
