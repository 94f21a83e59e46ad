"""Checkpoints: round trip, atomic writes, exact resume of an interrupted fit."""

import pytest
import torch

from lamina.callbacks.core import Callback, CancelFitException
from lamina.callbacks.tracker import EarlyStoppingCallback, SaveModelCallback
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp


def make_learner(tmp_path, seed=0):
    torch.manual_seed(seed)
    dls = synth_classification(n=256, bs=16, noise=0.1, seed=1)
    learn = Learner(dls, tiny_mlp(hidden=8), path=tmp_path)
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def test_save_load_round_trip(tmp_path):
    learn = make_learner(tmp_path)
    learn.fit_one_cycle(1, 1e-2)
    path = learn.save("stage1")
    assert path == tmp_path / "models" / "stage1.pth" and path.exists()
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_state = learn.opt.state_dict()
    other = make_learner(tmp_path, seed=5)
    other.load("stage1")
    assert all(torch.equal(weights[k], v) for k, v in other.model.state_dict().items())
    loaded = other.opt.state_dict()
    assert loaded["hypers"] == opt_state["hypers"]
    first = next(iter(opt_state["opt"]["state"].values()))
    assert torch.equal(next(iter(loaded["opt"]["state"].values()))["exp_avg"], first["exp_avg"])
    assert not hasattr(other, "epochs_done")  # a plain load leaves the training position alone
    other.load("stage1", resume=True)
    assert other.epochs_done == 1


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    learn = make_learner(tmp_path)
    path = learn.save("ckpt")
    good = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        learn.save("ckpt")
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temporary file left behind


def test_load_missing_checkpoint_names_the_path(tmp_path):
    learn = make_learner(tmp_path)
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*nope.pth"):
        learn.load("nope")


class Crash(Callback):
    """Simulates a crash at the start of an epoch."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def before_epoch(self):
        if self.learn.epoch == self.at_epoch:
            raise CancelFitException()


def test_interrupted_fit_one_cycle_resumes_exactly(tmp_path):
    full = make_learner(tmp_path / "a")
    full.fit_one_cycle(4, 1e-2)
    expected = full.recorder.values
    expected_weights = full.model.state_dict()

    crashed = make_learner(tmp_path / "b")
    crashed.fit_one_cycle(4, 1e-2, cbs=[SaveModelCallback(every_epoch=True, with_opt=True), Crash(at_epoch=2)])
    assert len(crashed.recorder.values) == 2

    resumed = make_learner(tmp_path / "b", seed=123)  # a fresh process would start from other weights
    resumed.load("model_1", resume=True)
    assert resumed.epochs_done == 2
    resumed.fit_one_cycle(4, 1e-2, start_epoch=resumed.epochs_done)
    for got, want in zip(resumed.recorder.values, expected[2:], strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    assert all(torch.allclose(expected_weights[k], v, atol=1e-6) for k, v in resumed.model.state_dict().items())


def test_load_does_not_rewind_random_state_unless_resuming(tmp_path):
    learn = make_learner(tmp_path)
    learn.save("ckpt")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    learn.load("ckpt")
    assert torch.equal(torch.rand(3), expected)


def test_load_into_another_model_is_a_clear_error_and_changes_nothing(tmp_path):
    learn = make_learner(tmp_path)
    learn.save("ckpt")
    other = Learner(learn.dls, tiny_mlp(hidden=4), path=tmp_path)
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit this learner"):
        other.load("ckpt")
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())


def test_checkpoint_is_readable_like_other_files(tmp_path):
    import os
    path = make_learner(tmp_path).save("ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --- callbacks keep their own state in checkpoints ---------------------------------------------
class Probe(Callback):
    """Records the early-stopping tracker's (best, wait) at the start and end of every epoch (the end of
    the epoch that stops the fit is not seen: the tracker raises first)."""

    order = 70  # after the trackers

    def __init__(self):
        self.starts, self.ends = {}, {}

    def before_epoch(self):
        self.starts[self.epoch] = (self.learn.early_stopping.best, self.learn.early_stopping.wait)

    def after_epoch(self):
        self.ends[self.epoch] = (self.learn.early_stopping.best, self.learn.early_stopping.wait)


def test_a_resumed_early_stopping_keeps_best_and_wait_and_stops_where_it_would_have(tmp_path):
    def stopper():  # epoch 0 sets the best; with min_delta 10 nothing improves after: stop after epoch 3
        return EarlyStoppingCallback(monitor="valid_loss", min_delta=10.0, patience=3)

    full = make_learner(tmp_path / "a")
    full_probe = Probe()
    full.fit_one_cycle(8, 1e-2, cbs=[stopper(), full_probe])
    assert len(full.recorder.values) == 4

    crashed = make_learner(tmp_path / "b")
    # the checkpoint of epoch 1 is written (order 61) before early stopping (order 63) counts epoch 1
    crashed.fit_one_cycle(8, 1e-2, cbs=[SaveModelCallback(every_epoch=True, with_opt=True), stopper(),
                                        Crash(at_epoch=2)])
    resumed = make_learner(tmp_path / "b", seed=123)
    resumed.load("model_1", resume=True)
    probe = Probe()
    resumed.fit_one_cycle(8, 1e-2, start_epoch=resumed.epochs_done, cbs=[stopper(), probe])
    assert probe.starts[2] == full_probe.ends[1]  # (best after epoch 0, waited 1 epoch)
    assert list(probe.starts) == [2, 3]  # stopped after epoch 3, as the uninterrupted fit did
    for got, want in zip(resumed.recorder.values, full.recorder.values[2:], strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_a_resumed_save_model_keeps_its_best_and_saves_only_improvements(tmp_path):
    def best_saver():  # epoch 0 is the best; with min_delta 10 no later epoch improves on it
        return SaveModelCallback(monitor="valid_loss", min_delta=10.0, fname="best", with_opt=True)

    crashed = make_learner(tmp_path)
    checkpoints = SaveModelCallback(every_epoch=True, with_opt=True, fname="epoch")
    checkpoints.name = "checkpoints"  # two savers on one learner: each under its own name
    crashed.fit_one_cycle(4, 1e-2, cbs=[best_saver(), checkpoints, Crash(at_epoch=2)])
    best_file = tmp_path / "models" / "best.pth"
    written = best_file.stat().st_mtime_ns
    best_weights = {k: v.clone() for k, v in crashed.model.state_dict().items()}  # reloaded at the fit's end

    resumed = make_learner(tmp_path, seed=123)
    resumed.load("epoch_1", resume=True)
    saver = best_saver()
    resumed.fit_one_cycle(4, 1e-2, start_epoch=resumed.epochs_done, cbs=saver)
    assert saver.best == pytest.approx(crashed.recorder.values[0][1])  # the best of epoch 0, restored
    assert best_file.stat().st_mtime_ns == written  # epochs 2 and 3 did not beat it: nothing overwritten
    assert all(torch.equal(best_weights[k], v) for k, v in resumed.model.state_dict().items())


def test_checkpoints_hold_callback_states_by_name(tmp_path):
    learn = make_learner(tmp_path)
    learn.add_cb(EarlyStoppingCallback(patience=5))
    learn.fit(2, 1e-2)
    state = torch.load(learn.save("ckpt"), weights_only=True)
    assert set(state["callbacks"]) == {"recorder", "early_stopping"}  # callbacks without state are left out
    assert state["callbacks"]["early_stopping"] == learn.early_stopping.state_dict()
    assert "smooth_loss" not in state and "scaler" not in state


def test_a_checkpoint_written_before_callback_states_still_resumes(tmp_path):
    learn = make_learner(tmp_path)
    learn.fit(1, 1e-2)
    state = torch.load(learn.save("ckpt"), weights_only=True)
    count, val = state.pop("callbacks")["recorder"]["smooth_loss"]
    state["smooth_loss"] = [count, val]  # the earlier layout: the Recorder's average at the top level
    torch.save(state, tmp_path / "models" / "old.pth")
    resumed = make_learner(tmp_path, seed=3)
    resumed.load("old", resume=True)
    seen = []
    resumed.fit(2, 1e-2, start_epoch=1,
                cbs=Callback(before_epoch=lambda l: seen.append((l.recorder.smooth_loss.count,
                                                                  float(l.recorder.smooth_loss.val)))))
    assert seen == [(count, pytest.approx(val))]


def test_save_model_and_load_model_outside_a_learner(tmp_path):
    from lamina.checkpoint import load_model, save_model

    learn = make_learner(tmp_path)
    learn.fit(1, 1e-2)
    path = save_model(tmp_path / "plain.pth", learn.model, learn.opt)
    other = make_learner(tmp_path, seed=5)
    other.create_opt()
    load_model(path, other.model, other.opt)
    assert all(torch.equal(a, b) for a, b in zip(learn.model.state_dict().values(),
                                                   other.model.state_dict().values()))
    saved, loaded = learn.opt.state_dict()["opt"]["state"], other.opt.state_dict()["opt"]["state"]
    assert saved.keys() == loaded.keys() and all(
        torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)
    fresh = make_learner(tmp_path, seed=6)  # learn.save's files load too
    load_model(learn.save("stage"), fresh.model)
    assert all(torch.equal(a, b) for a, b in zip(learn.model.state_dict().values(), fresh.model.state_dict().values()))
    wrong = torch.nn.Linear(3, 1)
    before = wrong.weight.detach().clone()
    with pytest.raises(ValueError, match="plain.pth does not fit this model"):
        load_model(path, wrong)
    assert torch.equal(wrong.weight, before)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_model(tmp_path / "missing.pth", wrong)
