"""Checkpoints: round trip, atomic writes, exact resume of an interrupted fit."""

import pytest
import torch

from lamina.callbacks.core import Callback, CancelFitException
from lamina.callbacks.tracker import SaveModelCallback
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
