"""Evaluation and prediction: `validate`, `get_preds`, `predict`, `GatherPredsCallback`, `show_results`."""

import pytest
import torch
from torch import nn

from lamina.callbacks.core import Callback
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat, MSELossFlat
from lamina.metrics import accuracy
from lamina.predict import GatherPredsCallback, _cat
from lamina.testing import synth_classification, synth_regression, tiny_mlp


def tiny_learner(**kwargs):
    dls = synth_classification(n=64, bs=16, valid_pct=0.25)
    return Learner(dls, tiny_mlp(), metrics=accuracy, **kwargs)


def test_get_preds_and_predict():
    learn = tiny_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    preds, targs, decoded, losses = learn.get_preds(with_decoded=True, with_loss=True)
    assert preds.shape == (16, 2) and torch.allclose(preds.sum(1), torch.ones(16))
    assert torch.equal(decoded, preds.argmax(1)) and losses.shape == (16,)
    expected = nn.functional.cross_entropy(torch.log(preds), targs, reduction="none")
    assert torch.allclose(losses, expected, atol=1e-5)
    x = learn.dls.valid.tensors[0][0]
    label, idx, probs = learn.predict(x)
    assert label == learn.dls.vocab[int(idx)] and torch.allclose(probs, preds[0], atol=1e-6)


def test_validate_matches_manual_computation():
    learn = tiny_learner()
    loss, acc = learn.validate()
    x, y = learn.dls.valid.tensors
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x)
    assert loss == pytest.approx(CrossEntropyLossFlat()(out, y).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == y).float().mean().item())


def test_get_preds_rejects_unknown_kwargs_and_predict_with_input():
    learn = tiny_learner()
    with pytest.raises(TypeError, match="save_preds"):
        learn.get_preds(save_preds="x")
    x = learn.dls.valid.tensors[0][0]
    inp, label, idx, probs = learn.predict(x, with_input=True)
    assert torch.equal(inp, x) and label in learn.dls.vocab


def test_get_preds_keeps_the_dataset_order_on_a_shuffled_loader():
    learn = tiny_learner()
    x, y = learn.dls.train.tensors
    assert learn.dls.train.shuffle
    preds, targs = learn.get_preds(ds_idx=0)
    assert torch.equal(targs, y) and preds.shape == (len(y), 2)  # every row once (no drop_last), in order
    learn.model.eval()
    with torch.no_grad():
        expected = torch.softmax(learn.model(x), 1)
    assert torch.allclose(preds, expected, atol=1e-6)


def test_get_preds_with_input_act_and_unlabelled_data():
    learn = tiny_learner()
    x = learn.dls.valid.tensors[0]
    inputs, preds, targs = learn.get_preds(dl=learn.dls.test_dl(x), with_input=True, act=lambda t: t * 0 + 7)
    assert torch.equal(inputs, x) and targs is None  # no labels: no targets
    assert torch.equal(preds, torch.full((len(x), 2), 7.0))


def test_get_preds_of_a_regression_has_no_activation():
    learn = Learner(synth_regression(n=64, bs=16), nn.Linear(1, 1), loss_func=MSELossFlat())
    preds, targs, decoded = learn.get_preds(with_decoded=True)
    learn.model.eval()
    with torch.no_grad():
        assert torch.allclose(preds, learn.model(learn.dls.valid.tensors[0]))
    assert torch.equal(decoded, preds) and targs.shape == preds.shape


def test_get_preds_on_an_empty_loader_is_an_error():
    learn = tiny_learner()
    empty = learn.dls.test_dl(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="found no batches"):
        learn.get_preds(dl=empty)


def test_validate_outside_a_fit_adds_no_row_and_sets_final_record():
    learn = tiny_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    rows = [list(r) for r in learn.recorder.values]
    values = learn.validate()
    assert learn.recorder.values == rows and learn.final_record == values
    assert learn.dl is None and learn.pred is None  # the loop state is cleared after the pass


def test_evaluation_passes_fire_validation_events_only():
    class Log(Callback):
        def __init__(self):
            self.events, self.grad = [], []

        def before_validate(self):
            self.events.append("before_validate")

        def after_pred(self):
            self.grad.append(torch.is_grad_enabled())

        def before_train(self):
            self.events.append("before_train")

    learn = tiny_learner()
    log = Log()
    learn.get_preds(cbs=[log])
    assert log.events == ["before_validate"] and log.grad == [False]
    assert "log" not in vars(learn) and log not in learn.cbs  # the extra callbacks were for this pass only


def test_gather_preds_callback_collects_on_the_cpu_with_per_item_losses():
    learn = tiny_learner()
    gather = GatherPredsCallback(with_input=True, with_loss=True)
    learn.get_preds(cbs=[gather])
    x, y = learn.dls.valid.tensors
    assert len(gather.preds) == 1 and gather.preds[0].device.type == "cpu"
    assert torch.equal(gather.inputs[0][0], x) and torch.equal(gather.targets[0][0], y)
    expected = CrossEntropyLossFlat(reduction="none")(gather.preds[0], y)
    assert torch.allclose(gather.losses[0], expected, atol=1e-6)


def test_show_results_on_plain_tensors_says_what_to_build_instead():
    with pytest.raises(NotImplementedError, match="plain tensors"):
        tiny_learner().show_results()


def test_decode_prediction_uses_the_vocab():
    learn = tiny_learner()
    assert learn.decode_prediction(torch.tensor(1)) == "c1"
    assert learn.decode_prediction(torch.tensor([True, True])) == ["c0", "c1"]
    assert torch.equal(learn.decode_prediction(torch.tensor([0.5])), torch.tensor([0.5]))


def test_batches_of_different_item_shapes_come_back_as_a_list_of_items():
    full, short = torch.randn(4, 16, 5), torch.randn(2, 14, 5)  # a language model's shorter last sequence
    items = _cat([full, short])
    assert isinstance(items, list) and len(items) == 6
    assert torch.equal(items[1], full[1]) and torch.equal(items[5], short[1])
    assert _cat([full, full]).shape == (8, 16, 5)
    pairs = _cat([(full, full[..., 0]), (short, short[..., 0])])  # tuples are merged member by member
    assert isinstance(pairs[0], list) and isinstance(pairs[1], list) and len(pairs[1]) == 6
