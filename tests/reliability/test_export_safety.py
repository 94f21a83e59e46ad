"""load_learner reaches only lamina's registered builders, and says clearly when a file is damaged.

Crafted exports are made from a real tiny export by rewriting the JSON in its safetensors metadata.
"""

import importlib
import json
import os
import pickle
import pkgutil
import re
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

import lamina
from lamina.export import ExportError, load_learner, resolve_entry
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp

FIXTURES = Path(__file__).parent / "fixtures"
FIELDS = ("learner", "model.factory", "data.builder")


# --- helpers: a real tiny export, taken apart and put back together ----------------------------------


def tiny_learner(path: Path) -> Learner:
    learn = Learner(synth_classification(n=32, bs=8), tiny_mlp(hidden=4), path=path)
    learn.model_config = {"factory": "tiny_mlp", "kwargs": {"n_in": 2, "n_out": 2, "hidden": 4}}
    return learn


@pytest.fixture(scope="module")
def blob(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("export")
    return tiny_learner(path).export("tiny.pkl").read_bytes()


def split(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data on 8 bytes
    return len(text).to_bytes(8, "little") + text + data


def crafted(tmp_path: Path, blob: bytes, edit, name: str = "crafted.pkl") -> Path:
    """A copy of ``blob`` whose lamina description went through ``edit(desc)`` (in place)."""
    header, data = split(blob)
    desc = json.loads(header["__metadata__"]["lamina"])
    edit(desc)
    header["__metadata__"]["lamina"] = json.dumps(desc)
    path = tmp_path / name
    path.write_bytes(join(header, data))
    return path


def set_field(desc: dict, field: str, value, kwargs=None) -> None:
    section, _, key = field.rpartition(".")
    target = desc[section] if section else desc
    target[key] = value
    if kwargs is not None and section:
        target["kwargs"] = kwargs


@pytest.fixture
def side_effects(monkeypatch) -> list:
    """Records (and blocks) child processes, shell commands, deletions, unpickling and network connections."""
    calls = []

    def recorder(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise OSError(f"{name} blocked by the test")
        return record
    monkeypatch.setattr(os, "system", recorder("os.system"))
    monkeypatch.setattr(subprocess, "Popen", recorder("subprocess.Popen"))
    monkeypatch.setattr(shutil, "rmtree", recorder("shutil.rmtree"))
    monkeypatch.setattr(torch, "load", recorder("torch.load"))
    monkeypatch.setattr(pickle, "loads", recorder("pickle.loads"))
    monkeypatch.setattr(socket.socket, "connect", recorder("socket.connect"))
    return calls


# --- crafted names are refused, and nothing runs --------------------------------------------------------


def crafted_cases(canary: Path) -> list[tuple[str, dict]]:
    return [("lamina.checkpoint:os.system", {"command": f"rm -rf {canary}"}),
            ("lamina.data.archives:shutil.rmtree", {"path": str(canary)}),
            ("lamina.checkpoint:torch.load", {"f": str(canary / "x.pkl"), "weights_only": False}),
            ("lamina.data.external:urllib.request.urlopen", {"url": "http://127.0.0.1:9/"}),
            ("builtins:eval", {"globals": {}}), ("lamina:__import__", {"name": "this"}),
            ("lamina.export:__builtins__", {}), ("lamina.export:importlib.import_module", {"name": "this"}),
            ("this:x", {}), ("lamina.checkpoint:atomic_write", {}), ("lamina.testing:tiny_mlp.__globals__", {}),
            ("tiny_mlp.__globals__", {}), ("Learner.__init__", {}), ("", {}), ("lamina.testing", {})]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("case", range(len(crafted_cases(Path()))))
def test_crafted_names_are_refused_and_leave_no_trace(tmp_path, blob, side_effects, field, case):
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("still here")
    entry, kwargs = crafted_cases(canary)[case]
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, field, entry, kwargs))
    had_this = "this" in sys.modules
    with pytest.raises(ExportError, match=re.escape(f"field {field!r} names {entry!r}")):
        load_learner(path)
    assert (canary / "keep.txt").read_text() == "still here"
    assert side_effects == []
    assert ("this" in sys.modules) == had_this  # nothing imported by a name from the file


def lamina_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(lamina.__path__, "lamina."))


def foreign_globals(module: types.ModuleType) -> list[str]:
    """``'lamina.mod:name'`` for each module, or callable defined outside lamina, that ``module`` holds."""
    def outside(name: str) -> bool:
        return not (name == "lamina" or name.startswith("lamina."))
    found = []
    for name, value in vars(module).items():
        if isinstance(value, types.ModuleType):
            bad = outside(value.__name__)
        else:
            bad = callable(value) and outside(getattr(value, "__module__", None) or "")
        if bad:
            found.append(f"{module.__name__}:{name}")
    return found


@pytest.mark.parametrize("module_name", lamina_modules())
def test_no_import_of_lamina_is_reachable_from_an_export(tmp_path, blob, side_effects, module_name):
    """Every module or foreign callable a lamina module imports is refused in each field, so a new import
    can never make something nameable by a file."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if (e.name or "").startswith("lamina"):
            raise
        pytest.skip(f"{module_name} needs the optional dependency {e.name}")
    header, data = split(blob)
    desc = json.loads(header["__metadata__"]["lamina"])
    for entry in foreign_globals(module):
        for field in FIELDS:
            edited = json.loads(json.dumps(desc))
            set_field(edited, field, entry)
            header["__metadata__"]["lamina"] = json.dumps(edited)
            path = tmp_path / "crafted.pkl"
            path.write_bytes(join(header, data))
            with pytest.raises(ExportError, match=re.escape(f"names {entry!r}")):
                load_learner(path)
    assert side_effects == []


def test_the_walk_sees_the_imports_that_opened_the_hole():
    found = {entry for name in ("lamina.checkpoint", "lamina.atomic", "lamina.data.archives")
             for entry in foreign_globals(importlib.import_module(name))}
    assert {"lamina.atomic:os", "lamina.checkpoint:torch", "lamina.data.archives:shutil"} <= found


@pytest.mark.parametrize("factory", ["create_vision_model", "lamina.vision.learner:create_vision_model"])
@pytest.mark.parametrize("fetch", [{"pretrained": True}, {"weights": "IMAGENET1K_V1"},
                                   {"checkpoint_path": "evil.pkl"}])
def test_builders_are_not_sent_to_fetch_weights(tmp_path, blob, side_effects, factory, fetch):
    """torchvision would download; timm's checkpoint_path would unpickle a file named by the export."""
    kwargs = {"arch": "torchvision:resnet18", "n_out": 2, "pretrained": False, **fetch}
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "model.factory", factory, kwargs))
    with pytest.raises(ExportError, match=re.escape(f"asks create_vision_model to fetch weights ({fetch}")):
        load_learner(path)
    assert side_effects == []


# --- trusted packages: their own top-level builders only ------------------------------------------------


@pytest.fixture
def mypkg(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .models import build\n")
    (pkg / "models.py").write_text(
        "import functools\nimport os\nfrom pathlib import Path\nfrom lamina.testing import TinyMLP, tiny_mlp\n"
        "def build(hidden):\n    return TinyMLP(2, 2, hidden)\n"
        "alias = build\npartial_build = functools.partial(build, 4)\n"
        "def outer():\n    def inner():\n        pass\n    return inner\ninner = outer()\n"
        "from lamina.learner import Learner\nclass MyLearner(Learner):\n    pass\n")
    (tmp_path / "mypkgevil").mkdir()
    (tmp_path / "mypkgevil" / "__init__.py").write_text("def build(hidden):\n    raise SystemExit('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mypkg"
    for name in ("mypkg", "mypkg.models", "mypkgevil"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("entry", ["mypkg.models:os", "mypkg.models:os.system", "mypkg.models:Path",
                                   "mypkg.models:tiny_mlp", "mypkg.models:TinyMLP", "mypkg.models:__builtins__",
                                   "mypkg:models.build", "mypkg.models:alias", "mypkg.models:partial_build",
                                   "mypkg.models:inner", "mypkgevil:build", "mypkg.__init__:build",
                                   "lamina.testing:TinyMLP"])
def test_trusted_package_allows_only_its_own_top_level_definitions(tmp_path, blob, side_effects, mypkg, entry):
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "model.factory", entry, {"hidden": 4}))
    with pytest.raises(ExportError, match=re.escape(f"field 'model.factory' names {entry!r}")):
        load_learner(path, trusted=(mypkg,))
    assert side_effects == []


@pytest.mark.parametrize("entry", ["mypkg.models:build", "mypkg:build"])
def test_trusted_package_builders_load(tmp_path, blob, mypkg, entry):
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "model.factory", entry, {"hidden": 4}))
    assert isinstance(load_learner(path, trusted=mypkg).model, torch.nn.Module)  # a plain string works too


def test_trusted_learner_must_be_a_learner_class(tmp_path, blob, mypkg):
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "learner", "mypkg.models:build"))
    with pytest.raises(ExportError, match="'mypkg.models:build', which is not a Learner class"):
        load_learner(path, trusted=(mypkg,))
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "learner", "mypkg.models:MyLearner"))
    assert type(load_learner(path, trusted=(mypkg,))).__name__ == "MyLearner"


@pytest.mark.parametrize("trusted", [("os",), ("lamina",), ("builtins",), ("my pkg",)])
def test_trusted_refuses_the_standard_library_and_lamina(tmp_path, blob, trusted):
    path = crafted(tmp_path, blob, lambda desc: set_field(desc, "model.factory", f"{trusted[0]}:system"))
    with pytest.raises(ValueError, match="`trusted`"):
        load_learner(path, trusted=trusted)


# --- exports written before plain names still load -------------------------------------------------------


def test_exports_written_with_module_paths_still_load_and_predict():
    expected = json.loads((FIXTURES / "legacy_expected.json").read_text())
    learn = load_learner(FIXTURES / "legacy_tensor.pkl")
    label, _, probs = learn.predict(torch.tensor(expected["tensor"]["x"]))
    assert label == expected["tensor"]["label"]
    assert torch.allclose(probs, torch.tensor(expected["tensor"]["probs"]), atol=1e-5)
    tab = load_learner(FIXTURES / "legacy_tabular.pkl")
    row, _, probs = tab.predict(pd.Series(expected["tabular"]["row"]))
    assert row["y"].iloc[0] == expected["tabular"]["label"]
    assert torch.allclose(probs, torch.tensor(expected["tabular"]["probs"]), atol=1e-5)
    collab = load_learner(FIXTURES / "legacy_collab.pkl")
    pairs = pd.DataFrame(expected["collab"]["pairs"], columns=expected["collab"]["columns"])
    preds = collab.get_preds(dl=collab.dls.test_dl(pairs))[0].flatten()
    assert torch.allclose(preds, torch.tensor(expected["collab"]["preds"]), atol=1e-5)


def test_every_module_path_written_before_maps_to_its_registered_object():
    from lamina.collab.data import collab_inference_dls
    from lamina.collab.learner import CollabLearner
    from lamina.data.loaders import tensor_inference_dls
    from lamina.models.collab import EmbeddingNN, embedding_dot_bias
    from lamina.models.tabular import TabularModel
    from lamina.tabular.data import tabular_inference_dls
    from lamina.tabular.learner import TabularLearner
    from lamina.vision.data import inference_dls
    from lamina.vision.learner import create_unet_model, create_vision_model
    objects = {"learner": [Learner, TabularLearner, CollabLearner],
               "model.factory": [create_vision_model, create_unet_model, TabularModel, EmbeddingNN,
                                 embedding_dot_bias, tiny_mlp],
               "data.builder": [tensor_inference_dls, inference_dls, tabular_inference_dls, collab_inference_dls]}
    for field, objs in objects.items():
        for obj in objs:
            assert resolve_entry(f"{obj.__module__}:{obj.__qualname__}", field) is obj
            assert resolve_entry(obj.__name__, field) is obj


def test_new_exports_write_plain_names(blob):
    header, _ = split(blob)
    desc = json.loads(header["__metadata__"]["lamina"])
    assert (desc["learner"], desc["model"]["factory"], desc["data"]["builder"]) == (
        "Learner", "tiny_mlp", "tensor_inference_dls")


# --- export refuses what load would refuse ----------------------------------------------------------------


@pytest.mark.parametrize("factory", ["lamina.checkpoint:os.system", "no_such_builder", "lamina.export:json",
                                     "lamina.checkpoint:atomic_write"])
def test_export_refuses_names_load_would_refuse(tmp_path, factory):
    learn = tiny_learner(tmp_path)
    learn.model_config = {"factory": factory, "kwargs": {}}
    with pytest.raises(ExportError, match=re.escape(f"field 'model.factory' names {factory!r}")):
        learn.export("out.pkl")
    assert not (tmp_path / "out.pkl").exists()


@pytest.mark.parametrize("value, field", [(torch.ones(2), "model.kwargs.hidden"),
                                          (torch.nn.ReLU(), "model.kwargs.hidden"),
                                          ({1: 2}, "model.kwargs.hidden"), ({"a": {3, 4}}, "model.kwargs.hidden.a"),
                                          (Path("x"), "model.kwargs.hidden")])
def test_export_refuses_arguments_that_are_not_json(tmp_path, value, field):
    learn = tiny_learner(tmp_path)
    learn.model_config = {"factory": "tiny_mlp", "kwargs": {"hidden": value}}
    with pytest.raises(ExportError, match=re.escape(f"field {field!r}")):
        learn.export("out.pkl")
    assert not (tmp_path / "out.pkl").exists()


def test_export_refuses_to_record_a_download(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.model_config = {"factory": "create_vision_model", "kwargs": {"arch": "torchvision:resnet18", "n_out": 2,
                                                                       "pretrained": True}}
    with pytest.raises(ExportError, match="fetch weights"):
        learn.export("out.pkl")
    assert not (tmp_path / "out.pkl").exists()


def test_export_refuses_a_learner_class_no_file_can_name(tmp_path):
    class LocalLearner(Learner):
        pass
    learn = tiny_learner(tmp_path)
    learn.__class__ = LocalLearner
    with pytest.raises(ExportError, match="LocalLearner"):
        learn.export("out.pkl")
    assert not (tmp_path / "out.pkl").exists()


# --- damaged and foreign files ----------------------------------------------------------------------------


def header_end(blob: bytes) -> int:
    return 8 + int.from_bytes(blob[:8], "little")


@pytest.mark.parametrize("where", ["length", "header", "metadata", "data", "last byte"])
def test_truncated_export_says_how_many_bytes_are_present(tmp_path, blob, where):
    end = header_end(blob)
    cut = {"length": 5, "header": 20, "metadata": blob.index(b"tensor_inference_dls"), "data": end + 3,
           "last byte": len(blob) - 1}[where]
    path = tmp_path / "cut.pkl"
    path.write_bytes(blob[:cut])
    expected = len(blob) if cut >= end else (8 if cut < 8 else end)
    at_least = "" if cut >= end else "at least "
    with pytest.raises(ExportError, match=re.escape(f"the file is damaged ({cut} of {at_least}{expected} bytes")):
        load_learner(path)


def test_extra_bytes_and_flipped_header_bytes_are_damage(tmp_path, blob):
    path = tmp_path / "bad.pkl"
    path.write_bytes(blob + b"\0\0\0\0")
    with pytest.raises(ExportError, match=re.escape(f"damaged ({len(blob) + 4} bytes where its header announces")):
        load_learner(path)
    for offset in (0, 8, blob.index(b"data_offsets") + 3, blob.index(b'"lamina"') + 2):
        flipped = bytearray(blob)
        flipped[offset] ^= 0x41
        path.write_bytes(bytes(flipped))
        with pytest.raises(ExportError, match="damaged|is missing|not valid JSON") as info:
            load_learner(path)
        assert "not a safetensors file" not in str(info.value)


def test_damaged_description_names_the_metadata_or_field(tmp_path, blob):
    header, data = split(blob)
    text = header["__metadata__"]["lamina"]
    header["__metadata__"]["lamina"] = text[:-3]
    path = tmp_path / "bad.pkl"
    path.write_bytes(join(header, data))
    with pytest.raises(ExportError, match=r"metadata 'lamina' is not valid JSON at line 1 column \d+"):
        load_learner(path)
    header["__metadata__"] = {"shared": "{}"}
    path.write_bytes(join(header, data))
    with pytest.raises(ExportError, match="not a lamina export"):
        load_learner(path)


def drop(section: str, key: str):
    def edit(desc):
        del (desc[section] if section else desc)[key]
    return edit


@pytest.mark.parametrize("edit, message", [
    (drop("model", "factory"), "field 'model.factory' is missing"),
    (drop("", "model"), "field 'model' is missing"),
    (drop("data", "builder"), "field 'data.builder' is missing"),
    (drop("", "learner"), "field 'learner' is missing"),
    (drop("", "loss"), "field 'loss' is missing"),
    (drop("", "version"), "field 'version' is missing"),
    (lambda d: d.update(version="1"), "field 'version' must be an integer"),
    (lambda d: d.update(model=["tiny_mlp"]), "field 'model' must be a JSON object"),
    (lambda d: d["data"].update(kwargs=[1, 2]), "field 'data.kwargs' must be a JSON object"),
    (lambda d: d["model"].update(factory=["tiny_mlp"]), "field 'model.factory' must be a string"),
    (lambda d: d["model"]["kwargs"].update(hidden="four"), "field 'model' could not be rebuilt"),
    (lambda d: d["model"]["kwargs"].update(bogus=1), "field 'model' could not be rebuilt"),
    (lambda d: d["model"]["kwargs"].update(hidden=5), "weights do not fit the model that field 'model' describes"),
    (lambda d: d["loss"].update(name="NoSuchLoss"), "field 'loss' could not be rebuilt"),
    (lambda d: d["loss"].update(name=["x"]), "field 'loss' could not be rebuilt"),
    (lambda d: d.update(version=99), "newer lamina"),
])
def test_edited_fields_are_named(tmp_path, blob, edit, message):
    path = crafted(tmp_path, blob, edit)
    with pytest.raises(ExportError, match=re.escape(message)) as info:
        load_learner(path)
    assert str(path) in str(info.value)


def test_fastai_pickles_and_torch_files_are_refused_clearly(tmp_path, side_effects):
    pickled = tmp_path / "export.pkl"
    pickled.write_bytes(pickle.dumps({"model": "fastai"}, protocol=4))
    torch_file = tmp_path / "model.pth"
    with open(torch_file, "wb") as f:  # torch.save is patched by `side_effects`: write its zip magic by hand
        f.write(b"PK\x03\x04" + b"\0" * 60)
    for path in (pickled, torch_file):
        with pytest.raises(ExportError, match="pickled fastai/torch file.*re-export the model with lamina"):
            load_learner(path)
    assert side_effects == []
