"""Experiment tracking: TensorBoard, W&B (offline) and MLflow (local stores), each read back with the library's
own reader: what a fit writes is what the Recorder saw."""

import glob
import os
import struct
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from lamina.callbacks.core import Callback
from lamina.callbacks.mlflow import MLFlowCallback
from lamina.callbacks.tensorboard import TensorBoardCallback
from lamina.callbacks.wandb import WandbCallback
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import accuracy
from lamina.testing import synth_classification, tiny_mlp

N_BATCHES = 6  # 96 training items / bs 16


def learner(tmp_path, exportable=False):
    learn = Learner(synth_classification(n=128, bs=16), tiny_mlp(hidden=8), metrics=accuracy, path=tmp_path)
    learn.progress.show_bars = False
    if exportable:
        learn.model_config = {"factory": "tiny_mlp", "kwargs": {"n_in": 2, "n_out": 2, "hidden": 8}}
    return learn


def image_learner(tmp_path):
    """3×8×8 'images' in [0, 1]: bright ones are 'dog'."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 8, 8, generator=gen)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    dls = DataLoaders.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=8, device="cpu", vocab=["cat", "dog"],
                                   loss_func=CrossEntropyLossFlat())
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    learn = Learner(dls, model, metrics=accuracy, path=tmp_path)
    learn.progress.show_bars = False
    return learn


# --- TensorBoard -----------------------------------------------------------------------------------------
def read_tensorboard(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_scalars_hparams_and_text_predictions(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2
    learn = learner(tmp_path)
    learn.fit_one_cycle(2, 1e-2, cbs=TensorBoardCallback(tmp_path / "tb", log_preds=True, n_preds=4))
    events = read_tensorboard(tmp_path / "tb")
    losses = events.Scalars("train_loss")
    assert [e.step for e in losses] == list(range(1, 2 * N_BATCHES + 1))
    assert losses[-1].value == pytest.approx(learn.recorder.losses[-1], rel=1e-5)
    assert max(e.value for e in events.Scalars("lr_0")) == pytest.approx(1e-2, rel=1e-3)
    assert {"mom_0", "wd_0"} <= set(events.Tags()["scalars"])
    valid = events.Scalars("valid_loss")
    assert [e.step for e in valid] == [N_BATCHES, 2 * N_BATCHES]
    assert [e.value for e in valid] == pytest.approx([v[1] for v in learn.recorder.values], rel=1e-5)
    assert [e.value for e in events.Scalars("accuracy")] == pytest.approx([v[2] for v in learn.recorder.values])
    assert "Sample results/text_summary" in events.Tags()["tensors"]
    assert events.Scalars("hparam/valid_loss")[-1].value == pytest.approx(learn.recorder.values[-1][1], rel=1e-5)
    start = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in events.PluginTagToContent("hparams").values()]
    hparams = next(d.session_start_info.hparams for d in start if d.HasField("session_start_info"))
    assert hparams["lr"].number_value == pytest.approx(1e-2, rel=1e-3)
    assert (hparams["bs"].number_value, hparams["epochs"].number_value) == (16, 2)
    assert hparams["opt"].string_value == "Adam"


def test_tensorboard_graph_images_projector(tmp_path):
    learn = image_learner(tmp_path)
    learn.fit(1, 1e-2, cbs=TensorBoardCallback(tmp_path / "tb", trace_model=True, log_preds=True, n_preds=4,
                                               projector=True))
    events = read_tensorboard(tmp_path / "tb")
    assert events.Tags()["graph"]
    assert len(events.Images("Sample results")) == 1
    assert (tmp_path / "tb" / "projector_config.pbtxt").exists()
    metadata = glob.glob(str(tmp_path / "tb" / "*" / "features" / "metadata.tsv"))
    labels = open(metadata[0]).read().split()
    assert len(labels) == 16 and set(labels) <= {"cat", "dog"}


def test_tensorboard_keeps_one_step_count_across_fits_in_one_folder(tmp_path):
    learn, cb = learner(tmp_path), TensorBoardCallback(tmp_path / "tb")
    learn.fit(1, 1e-3, cbs=cb)
    learn.fit(1, 1e-3, cbs=cb)
    steps = [e.step for e in read_tensorboard(tmp_path / "tb").Scalars("valid_loss")]
    assert steps == [N_BATCHES, 2 * N_BATCHES]


def test_trackers_stay_silent_in_lr_find_validate_and_other_ranks(tmp_path, monkeypatch):
    learn = learner(tmp_path)
    learn.add_cb(TensorBoardCallback(tmp_path / "tb"))
    learn.lr_find(num_it=10, show_plot=False)
    learn.validate()
    learn.get_preds()
    assert not (tmp_path / "tb").exists()
    monkeypatch.setenv("RANK", "1")
    learn.fit(1)
    assert not (tmp_path / "tb").exists()


# --- W&B (offline) ---------------------------------------------------------------------------------------
@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    (tmp_path / "wandb_home").mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    import wandb
    wandb.teardown()  # wandb reads its settings (WANDB_DIR ...) once per process set-up: start afresh
    yield wandb
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def read_wandb(home):
    """The records of the one offline run under ``home``: the ``.wandb`` file is a LevelDB-style log of
    wandb's own protobuf ``Record`` messages (a 7-byte header, then 32 KiB blocks of chunks)."""
    (path,) = glob.glob(str(home / "wandb" / "offline-run-*" / "*.wandb"))
    for _ in range(300):  # wandb's service may still be writing after finish(): its last record is `exit`
        kinds = _wandb_records(open(path, "rb").read())
        if "exit" in kinds:
            return kinds
        time.sleep(0.1)
    raise AssertionError(f"{path} has no `exit` record: the run was not finished")


def _wandb_records(data):
    from wandb.proto import wandb_internal_pb2
    pos, pending, records = 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        pending = (pending if kind in (3, 4) else b"") + data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
    kinds = {}
    for record in records:
        kinds.setdefault(record.WhichOneof("record_type"), []).append(record)
    return kinds


def history(records):
    """``{step: {key: value}}`` of the run's logged rows."""
    import json
    return {r.history.step.num: {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records.get("history", [])}


def test_wandb_offline_run_config_history_predictions_model(tmp_path, wandb_offline):
    learn = learner(tmp_path, exportable=True)
    learn.fit(2, 1e-2, cbs=WandbCallback(log_model=True, n_preds=5, log_freq=1))
    assert wandb_offline.run is None  # the run it started is finished
    records = read_wandb(tmp_path / "wandb_home")
    updates = [*(r.run.config for r in records["run"]), *(r.config for r in records.get("config", []))]
    config = {i.key: i.value_json for c in updates for i in c.update}
    assert (config["lr"], config["bs"], config["epochs"], config["opt"]) == ("0.01", "16", "2", '"Adam"')
    rows = history(records)  # a fresh run's steps start at 0
    assert sorted(rows) == list(range(13))
    assert all(rows[s]["train_loss"] > 0 and rows[s]["lr_0"] == pytest.approx(1e-2) for s in range(12))
    assert all(any(key.startswith("gradients/head.weight") for key in rows[s]) for s in range(12))
    assert [rows[s]["valid_loss"] for s in (5, 11)] == pytest.approx([v[1] for v in learn.recorder.values])
    assert [rows[s]["epoch"] for s in (5, 11)] == [1, 2]
    assert rows[12]["predictions/nrows"] == 5  # logged after the fit, in the next row
    models = [r.artifact for r in records["artifact"] if r.artifact.type == "model"]
    assert [m.path for m in models[0].manifest.contents] == ["export.pkl"]


def test_wandb_joins_the_active_run_and_leaves_it_open(tmp_path, wandb_offline):
    run = wandb_offline.init(project="lamina-tests")
    learn, cb = image_learner(tmp_path), WandbCallback(log=None, log_preds_every_epoch=True, n_preds=3)
    learn.fit(1, 1e-3, cbs=cb)
    learn.fit(1, 1e-3, cbs=cb)
    assert wandb_offline.run is run
    run.finish()
    rows = history(read_wandb(tmp_path / "wandb_home"))  # 4 batches per epoch; the second fit goes on after
    assert [s for s in sorted(rows) if "valid_loss" in rows[s]] == [3, 8]
    tables = [rows[s] for s in sorted(rows) if "predictions/nrows" in rows[s]]
    assert [(t["predictions/nrows"], t["predictions/ncols"]) for t in tables] == [(3, 3), (3, 3)]  # image column


# --- MLflow ----------------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_clean(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    import mlflow
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_mlflow_default_local_store_params_metrics_model(tmp_path, mlflow_clean):
    from lamina.export import load_learner
    learn = learner(tmp_path, exportable=True)
    learn.fit_one_cycle(2, 1e-2, cbs=MLFlowCallback(run_name="first"))
    client = mlflow_clean.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lamina").experiment_id])
    assert (run.info.run_name, run.info.status) == ("first", "FINISHED")
    params = run.data.params
    assert (float(params["lr"]), params["bs"], params["epochs"], params["opt"]) == (pytest.approx(1e-2), "16", "2",
                                                                                      "Adam")
    valid = client.get_metric_history(run.info.run_id, "valid_loss")
    assert [m.step for m in valid] == [0, 1]
    assert [m.value for m in valid] == pytest.approx([v[1] for v in learn.recorder.values])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/export.pkl"]
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())
    loaded = load_learner(client.download_artifacts(run.info.run_id, "model/export.pkl", str(tmp_path)))
    x = learn.dls.valid.one_batch()[0]
    assert torch.allclose(loaded.model.eval()(x), learn.model.eval()(x), atol=1e-6)


def test_mlflow_active_run_on_a_file_store(tmp_path, monkeypatch, mlflow_clean):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    learn, cb = learner(tmp_path), MLFlowCallback(log_model=False)
    with mlflow_clean.start_run() as active:
        learn.fit(1, 1e-3, cbs=cb)
        with pytest.warns(UserWarning, match=r"\['epochs'\]"):
            learn.fit(2, 1e-3, cbs=cb)
        assert mlflow_clean.active_run().info.run_id == active.info.run_id
    client = mlflow_clean.MlflowClient((tmp_path / "mlruns").as_uri())
    run = client.get_run(active.info.run_id)
    assert run.data.params["epochs"] == "1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "accuracy")] == [0, 1, 2]


def test_mlflow_failed_fit_ends_run_failed(tmp_path, mlflow_clean):
    def boom(learn):
        if learn.train_iter == 3:
            raise RuntimeError("boom")

    learn = learner(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=[MLFlowCallback(log_model=False), Callback(after_batch=boom)])
    client = mlflow_clean.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lamina").experiment_id])
    assert run.info.status == "FAILED"


# --- errors and import surfaces ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, module, extra", [(TensorBoardCallback, "tensorboard", "tensorboard"),
                                                 (WandbCallback, "wandb", "wandb"),
                                                 (MLFlowCallback, "mlflow", "mlflow")])
def test_missing_library_names_the_extra(cls, module, extra, tmp_path, monkeypatch):
    cb = cls()
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    if module == "tensorboard":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=rf"pip install 'lamina\[{extra}\]'"):
        cls()
    with pytest.raises(ImportError, match=rf"pip install 'lamina\[{extra}\]'"):
        learner(tmp_path).fit(1, cbs=cb)


def test_bad_arguments_fail_early(tmp_path, mlflow_clean):
    with pytest.raises(ValueError, match="`log` must be one of"):
        WandbCallback(log="grads")
    with pytest.raises(ValueError, match="`n_preds` must be a positive integer"):
        TensorBoardCallback(n_preds=0)
    with pytest.raises(ValueError, match="log_model=False"):
        learner(tmp_path).fit(1, cbs=MLFlowCallback(log_model=True))


def test_star_imports_offer_the_trackers_without_importing_their_libraries():
    code = ("import sys\n"
            "from lamina.vision.all import *\nfrom lamina.tabular.all import *\nfrom lamina.collab import *\n"
            "import lamina.vision.all, lamina.tabular.all, lamina.collab, lamina.basics\n"
            "names = ['TensorBoardCallback', 'WandbCallback', 'MLFlowCallback']\n"
            "for surface in (lamina.vision.all, lamina.tabular.all, lamina.collab, lamina.basics):\n"
            "    assert set(names) <= set(surface.__all__), surface\n"
            "print(sorted(m for m in ('tensorboard', 'wandb', 'mlflow', 'torch.utils.tensorboard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
