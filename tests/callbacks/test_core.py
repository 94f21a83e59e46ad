"""The Callback base: events by name, order and run flags, attaching to a learner, reading the loop's state
by fastai's names, state for checkpoints."""

import math

import pytest
import torch

from lamina.callbacks.core import (CANCEL_EXCEPTIONS, EVENTS, LEARNER_ATTRS, Callback, CancelFitException,
                                   snake_name)
from lamina.callbacks.recorder import Recorder
from lamina.learner import Learner
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp


def tiny_learner(**kwargs):
    dls = synth_classification(n=64, bs=16, valid_pct=0.25)
    return Learner(dls, tiny_mlp(), metrics=accuracy, **kwargs)


def quiet_fit(learn, *args, **kwargs):
    with learn.no_bar(), learn.no_logging():
        learn.fit(*args, **kwargs)


def test_snake_name_and_cancel_table():
    assert snake_name("SaveModelCallback") == "save_model" and snake_name("MixedPrecision") == "mixed_precision"
    assert snake_name("Recorder") == "recorder" and snake_name("TerminateOnNaNCallback") == "terminate_on_na_n"
    for part in CANCEL_EXCEPTIONS:  # every part of the loop has its two events
        assert f"after_cancel_{part}" in EVENTS and f"after_{part}" in EVENTS


# --- fastai-style reading of the loop's state -------------------------------------------------
class TerminateOnNaN(Callback):
    """As fastai's book writes it: reads ``self.loss`` and stops the fit."""

    def after_batch(self):
        if torch.isinf(self.loss) or torch.isnan(self.loss):
            raise CancelFitException


def test_a_book_style_nan_guard_runs_unchanged():
    from lamina.optim import SGD
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp(), lr=1e30, opt_func=SGD)
    seen = []
    quiet_fit(learn, 3, cbs=[TerminateOnNaN(), Callback(after_cancel_fit=lambda l: seen.append(l.iter))])
    assert len(learn.recorder.values) == 0 and seen  # stopped within the first epoch


def test_before_batch_reads_training_iter_and_the_batch():
    class Spy(Callback):
        def __init__(self):
            self.seen = []

        def before_batch(self):
            self.seen.append((self.training, self.iter, self.n_iter, self.epoch, self.n_epoch, len(self.x),
                              self.y is self.yb[0], self.model is self.learn.model, self.dl is self.dls.train
                              or self.dl is self.dls.valid))

        def after_batch(self):
            assert self.pred is self.learn.pred and self.loss is self.learn.loss and self.opt is self.learn.opt

    learn = tiny_learner()
    spy = Spy()
    quiet_fit(learn, 2, cbs=spy)
    # 48 train rows / bs 16 = 3 batches, 16 valid rows = 1 batch, for each of 2 epochs
    one_epoch = [(True, 0, 3), (True, 1, 3), (True, 2, 3), (False, 0, 1)]  # (training, iter, n_iter)
    assert [s[:5] for s in spy.seen] == [(*row, epoch, 2) for epoch in (0, 1) for row in one_epoch]
    assert all(s[5] == 16 and all(s[6:]) for s in spy.seen)


def test_the_forwarded_names_are_one_explicit_list():
    learn = tiny_learner()
    cb = Callback()
    learn.add_cb(cb)
    for name in LEARNER_ATTRS:  # every listed name answers the learner's value outside a fit too
        assert getattr(cb, name) is getattr(learn, name), name
    with pytest.raises(AttributeError, match="use self.learn.moms"):
        cb.moms  # a learner attribute, but not a listed one: no open-ended forwarding
    detached = Callback()
    with pytest.raises(AttributeError, match="not attached to a learner"):
        detached.loss


def test_assigning_a_forwarded_name_says_to_assign_through_the_learner():
    class Shadow(Callback):
        def after_pred(self):
            self.pred = self.pred * 2  # fastai warns and shadows the learner's pred

    learn = tiny_learner()
    with pytest.raises(AttributeError, match=r"assign self\.learn\.pred = "):
        quiet_fit(learn, 1, cbs=Shadow())


def test_a_callbacks_own_attribute_of_a_forwarded_name_wins():
    class OwnEpoch(Callback):
        model = "a class attribute of the callback"

        def __init__(self):
            self.epoch = 100  # its own counter, set before it joins a learner

        def after_epoch(self):
            self.epoch += 1  # reads and writes its own value

    cb = OwnEpoch()
    learn = tiny_learner()
    quiet_fit(learn, 2, cbs=cb)
    assert cb.epoch == 102 and learn.epoch == 1
    assert cb.model == "a class attribute of the callback"
    rec = learn.recorder  # the Recorder keeps its own `loss` and `smooth_loss` meters the same way
    assert isinstance(rec, Recorder) and rec.loss is not learn.loss and rec.smooth_loss is not learn.smooth_loss


# --- state for checkpoints ----------------------------------------------------------------------
def test_state_dict_is_empty_by_default_and_load_is_a_no_op():
    cb = Callback()
    assert cb.state_dict() == {}
    cb.load_state_dict({"anything": 1})
    assert cb.state_dict() == {}


def test_callbacks_with_state_report_it():
    from lamina.callbacks.tracker import EarlyStoppingCallback
    learn = tiny_learner(cbs=EarlyStoppingCallback(monitor="accuracy", patience=5))
    assert learn.early_stopping.state_dict() == {}  # nothing tracked before a fit
    quiet_fit(learn, 2)
    state = learn.early_stopping.state_dict()
    assert set(state) == {"best", "wait"} and not math.isinf(state["best"])
    count, val = learn.recorder.state_dict()["smooth_loss"]
    assert count == 6 and val == pytest.approx(float(learn.recorder.smooth_loss.val))


# --- attaching, order, run flags (moved here with the callback list handling) -------------------
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


def test_show_training_loop_lists_recorder(capsys):
    tiny_learner().show_training_loop()
    out = capsys.readouterr().out
    assert "before_fit" in out and "Recorder" in out and "after_fit" in out


def test_callback_without_super_init_and_helpful_attribute_error():
    class Counter(Callback):
        def __init__(self, k):
            self.k = k
            self.n = 0

        def after_batch(self):
            self.n += 1

        def after_epoch(self):
            self.prediction  # not a name of the learner's loop state (those are in LEARNER_ATTRS)

    learn = tiny_learner()
    cb = Counter(2)
    with pytest.raises(AttributeError, match="use self.learn.prediction"):
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


def test_ordered_cbs_and_to_detach():
    learn = tiny_learner()
    after_batch = learn.ordered_cbs("after_batch")
    assert [cb.order for cb in after_batch] == sorted(cb.order for cb in after_batch)
    assert learn.recorder in after_batch and all(hasattr(cb, "after_batch") for cb in after_batch)
    x = torch.ones(3, requires_grad=True) * 2
    out = learn.to_detach({"a": (x, [x]), "b": 5})
    assert not out["a"][0].requires_grad and out["a"][1][0].device.type == "cpu" and out["b"] == 5
    assert torch.equal(out["a"][0], torch.full((3,), 2.0))
