"""The Callback base: events by name, order and run flags, attaching to a learner."""

import pytest

from lamina.callbacks.core import CANCEL_EXCEPTIONS, EVENTS, Callback, snake_name
from lamina.learner import Learner
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp


def tiny_learner(**kwargs):
    dls = synth_classification(n=64, bs=16, valid_pct=0.25)
    return Learner(dls, tiny_mlp(), metrics=accuracy, **kwargs)


def test_snake_name_and_cancel_table():
    assert snake_name("SaveModelCallback") == "save_model" and snake_name("MixedPrecision") == "mixed_precision"
    assert snake_name("Recorder") == "recorder" and snake_name("TerminateOnNaNCallback") == "terminate_on_na_n"
    for part in CANCEL_EXCEPTIONS:  # every part of the loop has its two events
        assert f"after_cancel_{part}" in EVENTS and f"after_{part}" in EVENTS


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
