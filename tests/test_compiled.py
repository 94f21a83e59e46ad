"""learn.compile: the model compiled in place for training and inference; files written from a compiled (or
torch.compile-wrapped) learner hold the plain model's keys, and files holding wrapper prefixes load.

The tests compile with backend="eager" (dynamo's tracing without code generation): the lamina side is the same
for every backend, and inductor's C++ build would take tens of seconds."""


import numpy as np
import pytest
import torch
from torch import nn

from lamina.compiled import fit_state_keys, is_compiled, plain_model, plain_state_dict, uncompiled
from lamina.export import load_learner
from lamina.learner import Learner
from lamina.testing import body_head_splitter, synth_classification, tiny_mlp

from . import tiny_apps
from .fresh import run_fresh

CONFIG = {"factory": "tiny_mlp", "kwargs": {"n_in": 2, "n_out": 2, "hidden": 8}}
X = torch.tensor([[0.3, -1.2], [1.5, 0.2], [-0.7, 0.9]])


def make_learner(tmp_path, **kwargs):
    torch.manual_seed(0)
    learn = Learner(synth_classification(n=96, bs=16), tiny_mlp(hidden=8), path=tmp_path, **kwargs)
    learn.progress.show_bars, learn.logger = False, lambda *args: None
    learn.model_config = CONFIG
    return learn


def probs(learn, x=X):
    with learn.no_bar():
        return learn.get_preds(dl=learn.dls.test_dl(x))[0]


# --- unwrapping and key matching ---------------------------------------------------------------------------


def test_plain_model_takes_off_compile_and_parallel_wrappers():
    model = nn.Linear(2, 2)
    assert plain_model(model) is model
    assert plain_model(torch.compile(model, backend="eager")) is model
    assert plain_model(nn.DataParallel(torch.compile(model, backend="eager"))) is model
    assert list(plain_state_dict(torch.compile(nn.Sequential(model), backend="eager"))) == ["0.weight", "0.bias"]


def test_plain_state_dict_drops_an_inner_compile_wrapper():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    model[0] = torch.compile(model[0], backend="eager")
    assert list(model.state_dict()) == ["0._orig_mod.weight", "0._orig_mod.bias"]
    assert list(plain_state_dict(model)) == ["0.weight", "0.bias"]


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod.", "_orig_mod.module."])
def test_fit_state_keys_strips_wrapper_prefixes(prefix):
    model = nn.Sequential(nn.Linear(2, 3))
    state = {prefix + k: v for k, v in model.state_dict().items()}
    fitted = fit_state_keys(state, model)
    assert list(fitted) == ["0.weight", "0.bias"]
    assert all(fitted[k] is state[prefix + k] for k in fitted)


def test_fit_state_keys_maps_plain_keys_onto_a_wrapped_model():
    model = torch.compile(nn.Sequential(nn.Linear(2, 3)), backend="eager")
    fitted = fit_state_keys({"0.weight": torch.ones(3, 2), "0.bias": torch.ones(3)}, model)
    assert list(fitted) == ["_orig_mod.0.weight", "_orig_mod.0.bias"]


def test_fit_state_keys_keeps_a_submodule_named_module():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = nn.Linear(2, 2)

    model = Holder()
    state = model.state_dict()
    assert fit_state_keys(state, model) is state
    extra = {**state, "module.extra": torch.zeros(1)}  # unmatched keys stay, for load_state_dict to report
    assert set(fit_state_keys(extra, model)) == {"module.weight", "module.bias", "module.extra"}


# --- learn.compile ---------------------------------------------------------------------------------------


def test_compile_is_in_place_and_trains_as_the_eager_model(tmp_path):
    eager = make_learner(tmp_path)
    eager.fit(1, 1e-2)
    learn = make_learner(tmp_path)
    model = learn.model
    assert learn.compile(backend="eager") is learn
    assert learn.model is model and learn.is_compiled and not eager.is_compiled
    learn.fit(1, 1e-2)
    for (name, want), got in zip(eager.model.state_dict().items(), learn.model.state_dict().values()):
        torch.testing.assert_close(got, want, msg=name)
    assert learn.recorder.values[-1][0] == pytest.approx(eager.recorder.values[-1][0])
    torch.testing.assert_close(probs(learn), probs(eager))
    assert learn.is_compiled  # still compiled after fit and get_preds


def test_uncompile_undoes_compile_and_a_torch_compile_wrapper(tmp_path):
    learn = make_learner(tmp_path).compile(backend="eager")
    assert not learn.uncompile().is_compiled
    model = learn.model
    learn.model = torch.compile(learn.model, backend="eager")
    assert learn.is_compiled
    assert learn.uncompile().model is model and not learn.is_compiled


def test_compile_refuses_unknown_arguments_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"torch.compile's keyword arguments.*unknown: speed"):
        make_learner(tmp_path).compile(backend="eager", speed=3)


def test_inductor_without_a_cxx_compiler_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setattr("lamina.compiled.shutil.which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    learn = make_learner(tmp_path)
    with pytest.raises(RuntimeError, match=r"no C\+\+ compiler.*apt-get install g\+\+.*backend='aot_eager'"):
        learn.compile()
    assert not learn.is_compiled


def test_param_groups_and_freeze_see_through_a_torch_compile_wrapper(tmp_path):
    plain = make_learner(tmp_path, splitter=body_head_splitter)
    plain.freeze()
    learn = make_learner(tmp_path, splitter=body_head_splitter)
    learn.model = torch.compile(learn.model, backend="eager")  # what fastai users write
    learn.freeze()
    body, head = learn.param_groups()
    assert not all(p.requires_grad for p in body) and all(p.requires_grad for p in head)
    assert [p.requires_grad for p in learn.model.parameters()] == [p.requires_grad for p in plain.model.parameters()]


def test_summary_runs_the_plain_model_and_leaves_it_compiled(tmp_path):
    plain = make_learner(tmp_path).summary()
    learn = make_learner(tmp_path).compile(backend="eager")
    assert learn.summary() == plain
    assert learn.is_compiled
    with uncompiled(learn) as model:
        assert not is_compiled(model)
    assert learn.is_compiled


# --- files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["compile", "wrapped"])
def test_save_writes_plain_keys_that_a_plain_learner_loads(tmp_path, how):
    learn = make_learner(tmp_path)
    if how == "compile":
        learn.compile(backend="eager")
    else:
        learn.model = torch.compile(learn.model, backend="eager")
    learn.fit(1, 1e-2)
    path = learn.save("stage1")
    keys = list(torch.load(path, weights_only=True)["model"])
    assert keys == list(tiny_mlp(hidden=8).state_dict())
    fresh = make_learner(tmp_path)
    fresh.load("stage1")
    torch.testing.assert_close(probs(fresh), probs(learn))


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module."])
def test_load_accepts_checkpoints_with_wrapper_prefixes(tmp_path, prefix):
    learn = make_learner(tmp_path)
    learn.fit(1, 1e-2)
    path = tmp_path / "models" / "raw.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": {prefix + k: v for k, v in learn.model.state_dict().items()}}, path)
    fresh = make_learner(tmp_path)
    with pytest.warns(UserWarning, match="no optimizer state"):
        fresh.load("raw")
    torch.testing.assert_close(probs(fresh), probs(learn))
    wrapped = make_learner(tmp_path)  # and a plain checkpoint into a wrapped model
    wrapped.model = torch.compile(wrapped.model, backend="eager")
    wrapped.load(learn.save("plain"))
    torch.testing.assert_close(probs(wrapped), probs(learn))


def test_exports_of_compiled_learners_load_in_a_plain_fresh_process(tmp_path):
    compiled, wrapped = make_learner(tmp_path).compile(backend="eager"), make_learner(tmp_path)
    wrapped.model = torch.compile(wrapped.model, backend="eager")
    paths, want = [], []
    for learn, name in ((compiled, "compiled.pkl"), (wrapped, "wrapped.pkl")):
        learn.fit(1, 1e-2)
        paths.append(str(learn.export(name)))
        label, idx, p = learn.predict(X[0])
        want += [label, str(int(idx)), *(f"{v:.6f}" for v in p.tolist())]
    code = (f"import sys; from lamina.export import load_learner; import torch\n"
            f"for path in {paths!r}:\n"
            f"    learn = load_learner(path)\n"
            f"    label, idx, probs = learn.predict(torch.tensor([0.3, -1.2]))\n"
            f"    assert not learn.is_compiled\n"
            f"    print(label, int(idx), ' '.join(f'{{p:.6f}}' for p in probs.tolist()))\n"
            f"assert 'torch._dynamo' not in sys.modules")
    assert run_fresh(code, tmp_path).split() == want


def test_an_export_holding_orig_mod_keys_loads(tmp_path):
    """Files exported before `learn.compile` existed, from a torch.compile-wrapped model, hold `_orig_mod.` keys."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    learn = make_learner(tmp_path)
    learn.fit(1, 1e-2)
    path = learn.export("plain.pkl")
    with safe_open(str(path), "pt") as f:
        metadata, state = f.metadata(), {"_orig_mod." + k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(state, str(tmp_path / "old.pkl"), metadata=metadata)
    torch.testing.assert_close(probs(load_learner(tmp_path / "old.pkl")), probs(learn))


def test_to_onnx_of_a_compiled_tabular_learner_matches_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    learn, df = tiny_apps.tabular()
    learn.compile(backend="eager")
    path = learn.to_onnx(tmp_path / "tab.onnx")
    assert learn.is_compiled
    dl = learn.dls.test_dl(df.iloc[:7])
    with learn.no_bar():
        want = learn.get_preds(dl=dl)[0]
    cats, conts = (t.numpy() for t in dl.tensors[:2])
    got = onnxruntime.InferenceSession(str(path)).run(None, {"cats": cats, "conts": conts})[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
