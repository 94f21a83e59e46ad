"""The Learner's loop: event order, callbacks, fitting, freezing, errors."""

import pytest
import torch
from torch import nn

from lamina.callbacks.core import EVENTS, Callback, CancelBatchException, CancelEpochException, CancelFitException
from lamina.learner import Learner
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


# --- the loop's shape and its override points ----------------------------------------------------
class FrameCounter(nn.Module):
    """A model whose forward counts the lamina frames between it and `fit` (its own frame excluded)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.frames = []

    def forward(self, x):
        import inspect
        import os

        import lamina
        root = os.path.dirname(lamina.__file__) + os.sep
        stack = [f for f in inspect.stack()[1:] if f.filename.startswith(root)]
        self.frames.append([f.function for f in stack])
        return self.lin(x)


def test_fit_reaches_the_model_within_four_lamina_frames():
    model = FrameCounter()
    learn = Learner(synth_classification(n=64, bs=16), model)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert len(model.frames) == 4  # 3 training batches, 1 validation batch
    for frames in model.frames:  # fit -> _one_pass -> one_batch -> train_step -> model
        assert frames[-1] == "fit" and frames[0] == "train_step" and len(frames) <= 4, frames


def test_compute_loss_is_the_override_point_for_the_loss():
    class PenalisedLearner(Learner):
        def compute_loss(self, pred, *yb):
            self.calls = getattr(self, "calls", 0) + 1
            return self.loss_func(pred, *yb) + 100.0  # a constant: same gradients, a visibly higher loss

    dls = synth_classification(n=64, bs=16)
    dls.train.shuffle = False  # both fits see the batches in the same order
    plain, penalised = Learner(dls, tiny_mlp()), PenalisedLearner(dls, tiny_mlp())
    penalised.model.load_state_dict(plain.model.state_dict())
    for learn in (plain, penalised):
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-2)
    assert penalised.calls == 4
    assert penalised.recorder.values[0][1] == pytest.approx(plain.recorder.values[0][1] + 100.0, abs=1e-4)
    for p, q in zip(plain.model.parameters(), penalised.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_train_step_override_keeps_callbacks_working():
    class NoStepLearner(Learner):  # forward and loss only: a learner that never changes its weights
        def train_step(self):
            self.pred = self.model(*self.xb)
            self("after_pred")
            self.loss_grad = self.compute_loss(self.pred, *self.yb)
            self.loss = self.loss_grad.detach()
            self("after_loss")

    learn = NoStepLearner(synth_classification(n=64, bs=16), tiny_mlp(), metrics=accuracy)
    learn.model.body[1] = nn.Identity()  # no batch-norm statistics: the weights are all that could change
    before = [p.detach().clone() for p in learn.model.parameters()]
    log = EventLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=log)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert "before_step" not in log.events and log.events.count("after_loss") == 4
    assert len(learn.recorder.values) == 1 and len(learn.recorder.losses) == 3


def test_events_block_turns_its_cancel_into_after_cancel_and_always_fires_after():
    learn = tiny_learner()
    log = EventLog()
    learn.add_cb(log)
    ran = []
    with learn.events("batch"):
        learn("before_batch")
        raise CancelBatchException()
    with learn.events("step"):
        ran.append("step")
    with pytest.raises(CancelEpochException):  # another part's cancel goes on up, without after_batch
        with learn.events("batch"):
            raise CancelEpochException()
    with pytest.raises(ValueError, match="boom"):
        with learn.events("batch"):
            raise ValueError("boom")
    assert log.events == ["before_batch", "after_cancel_batch", "after_batch", "after_step"]
    assert ran == ["step"]


def test_x_and_y_are_the_batch_detuplified():
    learn = tiny_learner()
    learn.xb, learn.yb = (torch.ones(2),), (torch.zeros(2), torch.ones(2))
    assert learn.x is learn.xb[0] and learn.y is learn.yb
