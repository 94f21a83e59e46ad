"""The Learner's loop: event order, callbacks, fitting, freezing, errors."""

import pytest
import torch
from torch import nn

from lamina.callbacks.core import EVENTS, Callback, CancelBatchException, CancelEpochException, CancelFitException
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import accuracy
from lamina.testing import body_head_splitter, synth_classification, tiny_mlp


class EventLog(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def __getattribute__(self, name):
        if name in EVENTS:
            return lambda: self.events.append(name)
        return super().__getattribute__(name)


def tiny_learner(**kwargs):
    dls = synth_classification(n=64, bs=16, valid_pct=0.25)
    return Learner(dls, tiny_mlp(), metrics=accuracy, **kwargs)


BATCH_TRAIN = ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step",
               "after_step", "after_batch"]
BATCH_VALID = ["before_batch", "after_pred", "after_loss", "after_batch"]


def test_event_order_matches_golden_list():
    learn = tiny_learner()
    log = EventLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=log)
    # 48 train rows / bs 16 = 3 batches (drop_last); 16 valid rows = 1 batch
    golden = (["before_fit", "before_epoch", "before_train"] + BATCH_TRAIN * 3 +
              ["after_train", "before_validate"] + BATCH_VALID + ["after_validate", "after_epoch", "after_fit"])
    assert log.events == golden


def test_cancel_exceptions_fire_after_cancel_then_after():
    class StopAtSecondBatch(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.iter == 1:
                raise CancelFitException()

    learn = tiny_learner()
    log = EventLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit(3, cbs=[log, StopAtSecondBatch()])
    assert log.events[-3:] == ["after_batch", "after_cancel_fit", "after_fit"]
    assert log.events.count("before_batch") == 2
    assert "after_cancel_fit" in EVENTS


def test_cancel_batch_skips_step_but_after_batch_runs():
    class SkipStep(Callback):
        def before_step(self):
            raise CancelBatchException()

    learn = tiny_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    log = EventLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=[SkipStep(), log])
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, learn.model.parameters()))
    assert log.events.count("after_cancel_batch") == 3 and log.events.count("after_step") == 0


def test_cancel_epoch():
    class SkipFirst(Callback):
        def before_epoch(self):
            if self.learn.epoch == 0:
                raise CancelEpochException()

    learn = tiny_learner()
    log = EventLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, cbs=[SkipFirst(), log])
    assert log.events.count("after_cancel_epoch") == 1
    assert log.events.count("before_train") == 1


def test_loss_falls_on_separable_data():
    dls = synth_classification(n=512, bs=32)
    learn = Learner(dls, tiny_mlp(), metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        first = learn.validate()[0]
        learn.fit_one_cycle(4, 1e-2)
    loss, acc = learn.validate()
    assert loss < first / 2
    assert acc > 0.9


def test_callbacks_reachable_by_snake_name_and_removed_after_fit():
    class MyThingCallback(Callback):
        pass

    learn = tiny_learner()
    assert learn.recorder is learn.cbs[1] and learn.progress is not None and learn.train_eval is not None
    seen = []
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=[MyThingCallback(), Callback(after_fit=lambda l: seen.append(hasattr(l, "my_thing")))])
    assert seen == [True]
    assert not hasattr(learn, "my_thing")


def test_callback_order_respected():
    calls = []

    class Late(Callback):
        order = 100

        def before_fit(self):
            calls.append("late")

    class Early(Callback):
        order = -100

        def before_fit(self):
            calls.append("early")

    learn = tiny_learner(cbs=[Late(), Early()])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert calls == ["early", "late"]


def test_run_valid_false_hides_validation_batches():
    class TrainOnly(Callback):
        run_valid = False

        def __init__(self):
            super().__init__()
            self.n = 0

        def after_batch(self):
            self.n += 1

    learn = tiny_learner()
    cb = TrainOnly()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=cb)
    assert cb.n == 3


def test_callback_errors_name_the_callback():
    class Broken(Callback):
        def after_pred(self):
            raise RuntimeError("boom")

    learn = tiny_learner()
    with pytest.raises(RuntimeError, match="boom") as info:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, cbs=Broken())
    assert any("Broken" in note for note in getattr(info.value, "__notes__", []))


def test_unknown_event_in_function_callback():
    with pytest.raises(ValueError, match="Unknown event 'before_lunch'"):
        Callback(before_lunch=print)


def test_missing_loss_is_a_clear_error():
    dls = synth_classification(n=32)
    dls.loss_func = None
    with pytest.raises(ValueError, match="pass `loss_func=`"):
        Learner(dls, tiny_mlp())


def test_bad_n_epoch():
    learn = tiny_learner()
    with pytest.raises(ValueError, match="n_epoch"):
        learn.fit(1.5)


def test_freeze_keeps_batchnorm_trainable_and_unfreeze_restores():
    learn = tiny_learner(splitter=body_head_splitter)
    learn.freeze()
    body_linear = learn.model.body[0]
    bn = learn.model.body[1]
    assert not body_linear.weight.requires_grad
    assert bn.weight.requires_grad  # train_bn
    assert all(p.requires_grad for p in learn.model.head.parameters())
    learn.unfreeze()
    assert body_linear.weight.requires_grad


def test_frozen_params_do_not_change():
    learn = tiny_learner(splitter=body_head_splitter)
    learn.freeze()
    w = learn.model.body[0].weight.detach().clone()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    assert torch.equal(w, learn.model.body[0].weight.detach())


def test_no_weight_decay_on_norm_and_bias():
    learn = tiny_learner(wd=0.5)
    learn.create_opt()
    no_decay = {id(learn.model.head.bias), id(learn.model.body[1].weight), id(learn.model.body[1].bias),
                id(learn.model.body[0].bias)}
    decayed = {id(p) for group in learn.opt.decayed for p in group}
    assert decayed == {id(learn.model.body[0].weight), id(learn.model.head.weight)}
    assert not decayed & no_decay
    learn2 = tiny_learner(wd_bn_bias=True)
    learn2.create_opt()
    assert {id(p) for group in learn2.opt.decayed for p in group} == {id(p) for p in learn2.model.parameters()}


def test_lr_per_group_slices():
    learn = tiny_learner(splitter=lambda m: [m.body[0], m.body[1:], m.head])
    learn.create_opt()
    assert learn.lr_per_group(slice(2e-3)) == pytest.approx([2e-4, 2e-4, 2e-3])
    assert learn.lr_per_group(slice(1e-5, 1e-3)) == pytest.approx([1e-5, 1e-4, 1e-3])
    with pytest.raises(ValueError, match="one value per param group"):
        learn.lr_per_group([1e-3, 1e-2])


def test_show_training_loop_lists_recorder(capsys):
    tiny_learner().show_training_loop()
    out = capsys.readouterr().out
    assert "before_fit" in out and "Recorder" in out and "after_fit" in out


def test_epoch_table_printed(capsys):
    learn = tiny_learner()
    with learn.no_bar():
        learn.fit(2)
    err_out = capsys.readouterr()
    text = err_out.out + err_out.err
    assert "train_loss" in text and "valid_loss" in text and "accuracy" in text
    assert learn.recorder.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(learn.recorder.values) == 2


def test_no_logging_silences_table(capsys):
    learn = tiny_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    captured = capsys.readouterr()
    assert "train_loss" not in captured.out + captured.err


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


def test_tracker_runs_again_after_lr_find():
    from lamina.callbacks.tracker import EarlyStoppingCallback
    learn = Learner(synth_classification(n=256, bs=16), tiny_mlp(),
                    cbs=EarlyStoppingCallback(monitor="valid_loss", min_delta=10.0))
    learn.progress.show_bars = False
    learn.lr_find(num_it=10, show_plot=False)
    learn.fit(4)
    assert len(learn.recorder.values) == 2  # epoch 0 sets the best; min_delta 10: epoch 1 does not improve


def test_failed_fit_releases_autocast():
    class Boom(Callback):
        def after_pred(self):
            raise RuntimeError("boom")

    learn = tiny_learner()
    learn.to_bf16()
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=Boom())
    assert not torch.is_autocast_enabled("cpu")
    assert learn.logger is print


def test_callback_without_super_init_and_helpful_attribute_error():
    class Counter(Callback):
        def __init__(self, k):
            self.k = k
            self.n = 0

        def after_batch(self):
            self.n += 1

        def after_epoch(self):
            self.pred  # fastai callbacks read learner state this way

    learn = tiny_learner()
    cb = Counter(2)
    with pytest.raises(AttributeError, match="use self.learn.pred"):
        learn.fit(1, cbs=cb)
    assert cb.n == 4


def test_same_name_callbacks_coexist_for_one_fit(tmp_path):
    from lamina.callbacks.logging import CSVLogger
    learn = tiny_learner(path=tmp_path)
    mine = CSVLogger("a.csv")
    learn.add_cb(mine)
    learn.progress.show_bars = False
    learn.fit(1, cbs=CSVLogger("b.csv"))
    assert learn.csv_logger is mine and mine in learn.cbs


def test_torch_optimizer_class_as_opt_func():
    learn = tiny_learner(opt_func=torch.optim.AdamW)
    learn.progress.show_bars = False
    learn.fit(1, 1e-2)
    assert type(learn.opt.opt) is torch.optim.AdamW


def test_empty_training_loader_is_an_error():
    dls = synth_classification(n=40, bs=64)
    learn = Learner(dls, tiny_mlp())
    with pytest.raises(ValueError, match="no batches: 30 training items with bs=64"):
        learn.fit(1)


def test_get_preds_rejects_unknown_kwargs_and_predict_with_input():
    learn = tiny_learner()
    with pytest.raises(TypeError, match="save_preds"):
        learn.get_preds(save_preds="x")
    x = learn.dls.valid.tensors[0][0]
    inp, label, idx, probs = learn.predict(x, with_input=True)
    assert torch.equal(inp, x) and label in learn.dls.vocab
