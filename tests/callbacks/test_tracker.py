"""Early stopping, best-model saving, lr reduction on plateau, CSV logging."""

import pytest


from lamina.callbacks.logging import CSVLogger
from lamina.callbacks.tracker import EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback
from lamina.learner import Learner
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp


def learner(tmp_path):
    learn = Learner(synth_classification(n=128, bs=16), tiny_mlp(), metrics=accuracy, path=tmp_path)
    learn.progress.show_bars = False
    return learn


def test_early_stopping_stops_when_no_improvement(tmp_path):
    learn = learner(tmp_path)
    learn.fit(10, lr=1e-3, cbs=EarlyStoppingCallback(monitor="accuracy", min_delta=1.0, patience=2))
    assert len(learn.recorder.values) == 3


def test_tracker_rejects_unknown_monitor(tmp_path):
    learn = learner(tmp_path)
    with pytest.raises(ValueError, match="`monitor` must be one of"):
        learn.fit(1, cbs=EarlyStoppingCallback(monitor="valid_acc"))


def test_save_model_reloads_best(tmp_path):
    learn = learner(tmp_path)
    learn.fit(3, 1e-2, cbs=SaveModelCallback(monitor="accuracy"))
    assert (tmp_path / "models" / "model.pth").exists()
    best = max(v[2] for v in learn.recorder.values)
    assert learn.validate()[1] == pytest.approx(best)


def test_reduce_lr_on_plateau(tmp_path):
    learn = learner(tmp_path)
    learn.fit(3, lr=0.0, cbs=ReduceLROnPlateau(patience=1, factor=10, min_lr=0))
    assert learn.opt.hypers[0]["lr"] == 0.0
    learn2 = learner(tmp_path)
    learn2.fit(2, lr=1e-3, cbs=ReduceLROnPlateau(monitor="accuracy", patience=1, min_delta=10.0))
    assert learn2.opt.hypers[0]["lr"] == pytest.approx(1e-4)  # epoch 0 sets the best, epoch 1 does not improve


def test_csv_logger(tmp_path):
    learn = learner(tmp_path)
    logger = CSVLogger()
    learn.fit(2, 1e-2, cbs=logger)
    df = logger.read_log()
    assert list(df.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert df["epoch"].tolist() == [0, 1]
    assert df["valid_loss"].iloc[-1] == pytest.approx(learn.recorder.values[-1][1], abs=1e-6)
    learn.fit(1, cbs=CSVLogger(append=True))
    assert len(CSVLogger.read_log(logger)) == 3
