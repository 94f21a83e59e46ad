"""Export without pickles: one safetensors file with a JSON description, loaded in a fresh process."""

import json
import pickle
import subprocess
import sys

import pytest
import torch

from lamina.export import ExportError, load_learner, resolve_entry
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp


def trained(tmp_path):
    learn = Learner(synth_classification(n=128, bs=16), tiny_mlp(hidden=8), path=tmp_path)
    learn.progress.show_bars = False
    learn.fit(1, 1e-2)
    learn.model_config = {"factory": "tiny_mlp", "kwargs": {"n_in": 2, "n_out": 2, "hidden": 8}}
    return learn


def test_export_then_predict_in_a_fresh_process(tmp_path):
    learn = trained(tmp_path)
    path = learn.export("model.pkl")
    assert path == tmp_path / "model.pkl"
    x = torch.tensor([0.3, -1.2])
    label, idx, probs = learn.predict(x)
    code = (f"from lamina.export import load_learner; import torch\n"
            f"learn = load_learner({str(path)!r})\n"
            f"label, idx, probs = learn.predict(torch.tensor([0.3, -1.2]))\n"
            f"print(label, int(idx), ' '.join(f'{{p:.6f}}' for p in probs.tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [label, str(int(idx)), *(f"{p:.6f}" for p in probs.tolist())]


def test_export_file_is_safetensors_with_json_description(tmp_path):
    from safetensors import safe_open
    path = trained(tmp_path).export()
    with safe_open(str(path), framework="pt") as f:
        desc = json.loads(f.metadata()["lamina"])
    assert desc["format"] == "lamina-export" and desc["model"]["factory"] == "tiny_mlp"
    assert desc["loss"]["name"] == "CrossEntropyLossFlat"
    assert "splitter" not in desc  # never filled in: exports no longer write it
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(path.read_bytes())


def test_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    learn = trained(tmp_path)
    path = learn.export()
    good = path.read_bytes()
    learn.model_config = None
    with pytest.raises(ExportError, match="model_config"):
        learn.export()
    assert path.read_bytes() == good


def test_load_rejects_pickles_and_foreign_callables(tmp_path):
    fake = tmp_path / "fastai_export.pkl"
    fake.write_bytes(pickle.dumps({"not": "lamina"}))
    with pytest.raises(ExportError, match="not a lamina export"):
        load_learner(fake)
    with pytest.raises(ExportError, match="'os:system', which is not something an export may name"):
        resolve_entry("os:system", "model.factory")
    with pytest.raises(FileNotFoundError, match="No exported learner"):
        load_learner(tmp_path / "missing.pkl")


def test_trusted_package_for_a_custom_model(tmp_path, monkeypatch):
    pkg = tmp_path / "mymodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from lamina.testing import TinyMLP\n"
                                     "def build(hidden):\n    return TinyMLP(2, 2, hidden)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    learn = trained(tmp_path)
    learn.model_config = {"factory": "mymodels:build", "kwargs": {"hidden": 8}}
    path = learn.export("custom.pkl")
    with pytest.raises(ExportError, match="trusted=\\('mypkg',\\)"):
        load_learner(path)
    loaded = load_learner(path, trusted=("mymodels",))
    x = torch.tensor([0.5, 0.5])
    assert torch.allclose(loaded.predict(x)[2], learn.predict(x)[2], atol=1e-6)


def test_files_with_the_old_splitter_field_still_load(tmp_path):
    learn = trained(tmp_path)
    blob = learn.export().read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    desc = json.loads(header["__metadata__"]["lamina"])
    header["__metadata__"]["lamina"] = json.dumps({**desc, "splitter": None})  # as exports used to write it
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    old = tmp_path / "old.pkl"
    old.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n:])
    x = torch.tensor([0.5, -0.5])
    assert torch.allclose(load_learner(old).predict(x)[2], learn.predict(x)[2], atol=1e-6)
