"""vision_learner / cnn_learner / unet_learner: heads, param groups, freezing, Normalize, weights, export."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lamina.export import load_learner
from lamina.data.loaders import DataLoaders
from lamina.losses import CrossEntropyLossFlat
from lamina.models.bodies import PretrainedWeightsError, resnet18
from lamina.models.heads import HeadConfig
from lamina.models.layers import SigmoidRange
from lamina.models.unet import DynamicUnet
from lamina.vision.augment import Normalize
from lamina.vision.core import PILImage
from lamina.vision.data import ImageDataLoaders, SegmentationDataLoaders
import lamina.vision.learner as vision_learner_module
from lamina.vision.learner import (cnn_learner, create_vision_model, default_formats, unet_learner,
                                   vision_learner)
from lamina.vision.synth import make_image_folder, make_segmentation_set
from lamina.vision.transforms import Resize

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name torchvision's ResNet18_Weights.IMAGENET1K_V1 expects


@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory):
    """A real torchvision resnet18 state dict (random init), saved once for the module."""
    import torchvision.models as tvm
    torch.manual_seed(0)
    state = tvm.resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / RESNET18_FILE
    torch.save(state, path)
    return state, path


@pytest.fixture
def cached_resnet18(offline_hub, resnet18_state):
    """The hub cache holding resnet18's weights under the exact file name torchvision looks for."""
    state, path = resnet18_state
    (offline_hub / RESNET18_FILE).symlink_to(path)
    assert torch.hub.get_dir() == str(offline_hub.parent)
    return state


def _dls(n_channels=3, n=16, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_channels, size, size, generator=gen)
    y = torch.randint(0, 3, (n,), generator=gen)
    dls = DataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], bs=4, vocab=["a", "b", "c"],
                                   loss_func=CrossEntropyLossFlat())
    for dl in dls.loaders:
        dl.kinds = ("image", "category")
    return dls


def _seg_dls(n=8, size=32, vocab=("sky", "road", "car")):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=gen)
    masks = torch.randint(0, 3, (n, size, size), generator=gen)
    dls = DataLoaders.from_tensors(x[:4], masks[:4], x[4:], masks[4:], bs=4, vocab=vocab,
                                   loss_func=CrossEntropyLossFlat(axis=1))
    for dl in dls.loaders:
        dl.kinds = ("image", "mask")
    return dls


def _normalizers(dls):
    return [[t for t in dl.after_batch if isinstance(t, Normalize)] for dl in dls.loaders]


def test_pretrained_learner_head_groups_freezing_and_normalize(cached_resnet18):
    dls = _dls()
    learn = vision_learner(dls, resnet18)
    body, head = learn.model
    assert torch.equal(body[0].weight, cached_resnet18["conv1.weight"])  # loaded from the hub cache
    assert isinstance(head[-1], nn.Linear) and (head[-1].in_features, head[-1].out_features) == (512, 3)
    assert learn.model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert len(learn.opt.param_lists) == 3
    bn = [p for m in body.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    convs = [m.weight for m in body.modules() if isinstance(m, nn.Conv2d)]
    assert all(p.requires_grad for p in bn) and not any(p.requires_grad for p in convs)
    assert all(p.requires_grad for p in head.parameters())
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())
    (norm,), (norm_valid,) = _normalizers(dls)
    assert norm is norm_valid
    x = dls.valid.tensors[0][:4]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(dls.valid.one_batch()[0], (x - mean[:, None, None]) / std[:, None, None], atol=1e-6)
    assert learn.model_config["factory"] == "create_vision_model"
    assert learn.model_config["kwargs"]["arch"] == "torchvision:resnet18"
    assert learn.model_config["kwargs"]["pretrained"] is False and learn.model_config["kwargs"]["n_out"] == 3


def test_normalize_is_added_once_and_only_when_it_fits(cached_resnet18):
    dls = _dls()
    vision_learner(dls, resnet18)
    vision_learner(dls, resnet18)
    assert [len(n) for n in _normalizers(dls)] == [1, 1]
    for kwargs in ({"pretrained": False}, {"normalize": False}):
        fresh = _dls()
        vision_learner(fresh, resnet18, **kwargs)
        assert _normalizers(fresh) == [[], []]
    own = _dls()
    mine = Normalize.from_stats([0.5] * 3, [0.25] * 3)
    own.add_tfms([mine])
    vision_learner(own, resnet18)
    assert _normalizers(own) == [[mine], [mine]]


def test_one_channel_input_sums_the_pretrained_filters(cached_resnet18):
    dls = _dls(n_channels=1)
    learn = vision_learner(dls, resnet18, n_in=1)
    conv = learn.model[0][0]
    assert conv.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(conv.weight, cached_resnet18["conv1.weight"].sum(1, keepdim=True))
    assert _normalizers(dls) == [[], []]  # RGB statistics do not fit one channel
    assert learn.model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert learn.model_config["kwargs"]["n_in"] == 1
    four = vision_learner(_dls(n_channels=4), resnet18, n_in=4, pretrained=False)
    assert four.model[0][0].in_channels == 4


def test_missing_weights_error_names_file_folder_and_fix(offline_hub):
    with pytest.raises(PretrainedWeightsError) as info:
        vision_learner(_dls(), resnet18)
    message = str(info.value)
    assert RESNET18_FILE in message and str(offline_hub) in message and "pretrained=False" in message
    learn = vision_learner(_dls(), resnet18, pretrained=False)  # the fix works offline
    assert learn.opt is None  # not frozen: nothing pretrained to protect


def test_cnn_learner_warns_and_forwards(offline_hub):
    with pytest.warns(DeprecationWarning, match="renamed to vision_learner"):
        learn = cnn_learner(_dls(), resnet18, pretrained=False, lin_ftrs=[16])
    assert learn.model[1][-1].in_features == 16


def test_n_out_comes_from_the_data_or_must_be_given(offline_hub):
    dls = _dls()
    dls.n_out = None
    with pytest.raises(ValueError, match="pass n_out="):
        vision_learner(dls, resnet18, pretrained=False)
    learn = vision_learner(dls, resnet18, pretrained=False, n_out=7)
    assert learn.model[1][-1].out_features == 7


def test_head_options_custom_head_and_splitter(offline_hub):
    learn = vision_learner(_dls(), resnet18, pretrained=False, y_range=(0, 5), concat_pool=False, ps=0.2)
    head = learn.model[1]
    assert isinstance(head[-1], SigmoidRange) and isinstance(head[0], nn.AdaptiveAvgPool2d)
    assert learn.model_config["kwargs"]["y_range"] == [0, 5]
    custom = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 3))
    learn = vision_learner(_dls(), resnet18, pretrained=False, custom_head=custom)
    assert learn.model[1] is custom and learn.model_config is None  # a module cannot be rebuilt from JSON
    two = lambda m: [list(m[0].parameters()), list(m[1].parameters())]  # noqa: E731
    assert len(vision_learner(_dls(), resnet18, pretrained=False, splitter=two).param_groups()) == 2


def test_arch_is_resolved_once_and_the_head_options_travel_as_one_config(offline_hub, monkeypatch):
    import lamina.models.vision as models_vision
    resolved, heads = [], []
    resolve, build = models_vision.resolve_arch, models_vision.build_vision_model
    monkeypatch.setattr(models_vision, "resolve_arch", lambda arch: resolved.append(arch) or resolve(arch))
    monkeypatch.setattr(vision_learner_module, "build_vision_model",
                        lambda arch, n_out, head, **kw: heads.append(head) or build(arch, n_out, head, **kw))
    learn = vision_learner(_dls(), "torchvision:resnet18", pretrained=False, lin_ftrs=[16], ps=0.1)
    assert resolved == ["torchvision:resnet18"] and heads == [HeadConfig(lin_ftrs=[16], ps=0.1)]
    assert learn.model_config["kwargs"]["lin_ftrs"] == [16] and learn.model[1][-1].in_features == 16
    unet_learner(_seg_dls(), resnet18, pretrained=False, cut=4)
    assert resolved == ["torchvision:resnet18", resnet18]


class _FakeTimmNet(nn.Module):
    num_features = 8
    pretrained_cfg = {"pool_size": (1, 1), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}

    def __init__(self, in_chans):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1)

    def forward_features(self, x):
        return self.conv(x)


def test_string_arch_goes_through_timm(monkeypatch):
    calls = []

    def create_model(name, pretrained, num_classes, in_chans, **kwargs):
        calls.append((name, pretrained, kwargs))
        return _FakeTimmNet(in_chans)

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    dls = _dls()
    learn = vision_learner(dls, "fake_net", drop_rate=0.2)
    assert calls == [("fake_net", True, {"drop_rate": 0.2})]
    (norm,), _ = _normalizers(dls)
    assert torch.allclose(norm.mean.flatten(), torch.tensor([0.5] * 3))
    assert len(learn.opt.param_lists) == 2 and learn.model[1][-1].in_features == 512
    assert learn.model_config["kwargs"]["arch"] == "fake_net" and learn.model_config["kwargs"]["drop_rate"] == 0.2
    rebuilt = create_vision_model(**{**learn.model_config["kwargs"]})
    assert calls[-1] == ("fake_net", False, {"drop_rate": 0.2}) and isinstance(rebuilt, nn.Sequential)
    with pytest.raises(ValueError, match="needs a torchvision architecture"):
        unet_learner(_seg_dls(), "fake_net")


def _cpu_features(monkeypatch, amx, bf16):
    """The learners' view of the CPU: AMX units, bf16 matrix products (AMX or AVX-512 BF16)."""
    import lamina.callbacks.precision as precision
    for module in (vision_learner_module, precision):
        monkeypatch.setattr(module, "cpu_has_amx", lambda: amx)
        monkeypatch.setattr(module, "cpu_has_bf16_matmul", lambda: bf16)


def test_channels_last_when_the_data_is_on_a_gpu(offline_hub, monkeypatch):
    _cpu_features(monkeypatch, amx=False, bf16=False)
    dls = _dls()
    for dl in dls.loaders:
        dl.device = torch.device("cuda")  # only read here; nothing runs on it
    learn = vision_learner(dls, resnet18, pretrained=False)
    assert type(learn.channels_last).__name__ == "ChannelsLast"
    assert not hasattr(vision_learner(_dls(), resnet18, pretrained=False), "channels_last")


@pytest.mark.parametrize("amx", [False, True])
def test_default_formats_by_device_and_image_size(monkeypatch, amx):
    _cpu_features(monkeypatch, amx=amx, bf16=amx)
    cpu, big, mid = torch.device("cpu"), torch.zeros(1, 3, 224, 224), torch.zeros(1, 3, 128, 224)
    assert default_formats(cpu, big) == (True, amx)
    assert default_formats(cpu, mid) == (amx, amx)  # the shorter side decides
    # a U-Net in fp32 stays channels-first (channels-last was slower for it without bf16)
    assert default_formats(cpu, torch.zeros(1, 3, 96, 128), unet=True) == (amx, amx)
    assert default_formats(cpu, torch.zeros(1, 3, 64, 64), unet=True) == (False, False)
    assert default_formats(cpu, None) == (False, False)
    assert default_formats(torch.device("cuda"), None) == (True, False)


def test_default_formats_with_avx512_bf16_but_no_amx(monkeypatch):
    _cpu_features(monkeypatch, amx=False, bf16=True)
    cpu = torch.device("cpu")
    assert default_formats(cpu, torch.zeros(1, 3, 224, 224)) == (True, True)
    assert default_formats(cpu, torch.zeros(1, 3, 96, 128)) == (True, True)
    assert default_formats(cpu, torch.zeros(1, 3, 64, 64)) == (True, False)  # small images stay in fp32
    assert default_formats(cpu, torch.zeros(1, 3, 28, 28)) == (True, False)  # channels-last gains there too
    assert default_formats(cpu, torch.zeros(1, 3, 96, 128), unet=True) == (False, True)  # U-Nets stay channels-first
    assert default_formats(cpu, torch.zeros(1, 3, 64, 64), unet=True) == (False, False)


@pytest.mark.parametrize("amx", [False, True])
def test_large_images_on_the_cpu_train_channels_last_and_bf16_with_amx(monkeypatch, amx):
    _cpu_features(monkeypatch, amx=amx, bf16=amx)
    learn = vision_learner(_dls(size=160, n=14), resnet18, pretrained=False)
    assert type(learn.channels_last).__name__ == "ChannelsLast"
    assert hasattr(learn, "mixed_precision") == amx
    seen = []
    learn.model[0][0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learn.fit(1, 1e-3)
    assert learn.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert set(seen) == {torch.bfloat16 if amx else torch.float32}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    learn.to_fp32()
    assert not hasattr(learn, "mixed_precision")
    small = vision_learner(_dls(size=32), resnet18, pretrained=False)
    assert not hasattr(small, "channels_last") and not hasattr(small, "mixed_precision")


def test_unet_learner_on_a_tiny_segmentation_set(cached_resnet18):
    dls = _seg_dls()
    learn = unet_learner(dls, resnet18)
    assert isinstance(learn.model, DynamicUnet) and learn.model.img_size == (32, 32)
    assert torch.equal(learn.model[0][0].weight, cached_resnet18["conv1.weight"])
    assert len(learn.opt.param_lists) == 3
    assert not learn.model[0][0].weight.requires_grad and learn.model[-1][0].weight.requires_grad
    assert [len(n) for n in _normalizers(dls)] == [1, 1]
    xb, yb = dls.valid.one_batch()
    out = learn.model.eval()(xb)
    assert out.shape == (4, 3, 32, 32) and torch.isfinite(learn.loss_func(out, yb))
    assert learn.model_config["kwargs"] == {"arch": "torchvision:resnet18", "n_out": 3, "img_size": [32, 32],
                                            "pretrained": False}
    valid_loss, = learn.validate()
    assert valid_loss > 0


def test_unet_learner_needs_n_out_without_codes(offline_hub):
    with pytest.raises(ValueError, match="unet_learner could not infer"):
        unet_learner(_seg_dls(vocab=None), resnet18, pretrained=False)
    with pytest.warns(DeprecationWarning, match="`config` is deprecated"):
        learn = unet_learner(_seg_dls(vocab=None), resnet18, pretrained=False, n_out=2, config={"blur": True})
    assert learn.model[-1][0].out_channels == 2 and learn.model_config["kwargs"]["blur"] is True


def _round_trip(learn, tmp_path, offline_hub, x):
    learn.export(tmp_path / "export.pkl")
    for f in offline_hub.iterdir():  # the rebuild must not need (or download) pretrained weights
        f.unlink()
    loaded = load_learner(tmp_path / "export.pkl")
    assert loaded.model_config == learn.model_config
    learn.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), learn.model(x), atol=1e-5)
    return loaded


def test_export_and_load_rebuild_the_vision_model(cached_resnet18, offline_hub, tmp_path):
    learn = vision_learner(_dls(), resnet18, y_range=(-1, 1), lin_ftrs=[32])
    with torch.no_grad():
        learn.model[1][-2].weight.normal_()  # the exported weights, not a fresh init, must come back
    loaded = _round_trip(learn, tmp_path, offline_hub, torch.randn(2, 3, 32, 32))
    assert isinstance(loaded.model[1][-1], SigmoidRange)


def test_export_and_load_rebuild_the_unet(cached_resnet18, offline_hub, tmp_path):
    learn = unet_learner(_seg_dls(), resnet18, cut=6, self_attention=True)  # body up to layer2: a small decoder
    assert learn.model_config["kwargs"]["cut"] == 6 and learn.model_config["kwargs"]["self_attention"] is True
    loaded = _round_trip(learn, tmp_path, offline_hub, torch.randn(1, 3, 32, 32))
    assert isinstance(loaded.model, DynamicUnet) and len(loaded.model[0]) == 6


def test_channel_mismatch_is_reported_at_creation(offline_hub, tmp_path):
    with pytest.raises(ValueError, match=r"vision_learner\(n_in=1\) builds a model for 1-channel images, but the "
                                         r"images of `dls` have 3 channels.*Pass n_in=3 or read colour images as "
                                         r"grayscale"):
        vision_learner(_dls(), resnet18, n_in=1, pretrained=False)
    with pytest.raises(ValueError, match=r"unet_learner\(n_in=3\) .* have 1 channels"):
        unet_learner(_dls(n_channels=1), resnet18, pretrained=False)
    files = make_image_folder(tmp_path / "imgs", n_per_class=2, size=16, classes=("Persian", "pug"))
    dls = ImageDataLoaders.from_name_func(tmp_path, files, label_func=is_cat, valid_pct=0.25, seed=0, bs=2,
                                          num_workers=0)
    with pytest.raises(ValueError, match="have 3 channels"):
        vision_learner(dls, resnet18, n_in=1, pretrained=False)
    own = Normalize()  # statistics from the first batch: the check's one-item probe must not be it
    dls.add_tfms([own])
    vision_learner(dls, resnet18, pretrained=False)
    assert own.mean is None


# --- trained tiny learners: predict on every input type, export and load in a fresh process ------------------


def is_cat(name):
    return name[0].isupper()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier and a U-Net trained one epoch (of one batch) on tiny images, and their image files."""
    torch.manual_seed(0)
    tmp_path = tmp_path_factory.mktemp("trained")
    files = make_image_folder(tmp_path / "pets", n_per_class=6, size=(20, 24), classes=("Persian", "pug"))
    dls = ImageDataLoaders.from_name_func(tmp_path, files, label_func=is_cat, valid_pct=0.25, seed=0,
                                          item_tfms=Resize(16), bs=8, num_workers=0)
    clf = vision_learner(dls, resnet18, pretrained=False)
    seg_files = make_segmentation_set(tmp_path / "camvid", n=6, size=(24, 32), n_codes=3)
    seg_dls = SegmentationDataLoaders.from_label_func(
        tmp_path / "camvid", seg_files, lambda o: o.parent.parent / "labels" / f"{o.stem}_P{o.suffix}",
        codes=["a", "b", "c"], item_tfms=Resize(32), bs=4, num_workers=0, seed=0)
    seg = unet_learner(seg_dls, resnet18, pretrained=False, cut=6)
    for learn in (clf, seg):
        with learn.no_bar():
            learn.fit(1)  # the exported weights and batch-norm statistics are no longer the initial ones
    return clf, files, seg, seg_files


def test_predict_takes_every_input_type(trained):
    learn, files, _, _ = trained
    fn = files[0]
    img = PILImage.create(fn)
    label, idx, probs = learn.predict(fn)
    assert label in ("True", "False") and probs.shape == (2,) and int(idx) == int(probs.argmax())
    inputs = {"str": str(fn), "bytes": fn.read_bytes(), "PIL": Image.open(fn), "PILImage": img,
              "ndarray": np.asarray(img), "tensor": torch.from_numpy(np.array(img)).permute(2, 0, 1)}
    for name, x in inputs.items():
        got_label, got_idx, got_probs = learn.predict(x)
        assert got_label == label and int(got_idx) == int(idx), name
        assert torch.allclose(got_probs, probs, atol=1e-5), name


FRESH = """
import json, sys
from lamina.export import load_learner
out = {}
for key, fname, files in (("clf", sys.argv[1], sys.argv[3].split("|")), ("seg", sys.argv[2], sys.argv[4].split("|"))):
    learn = load_learner(fname)
    out[key] = [[str(r[0]) if key == "clf" else None, r[1].tolist(), r[2].tolist()] for r in map(learn.predict, files)]
print(json.dumps(out))
"""


def test_export_then_load_in_a_fresh_process_predicts_the_same(trained, tmp_path):
    clf, files, seg, seg_files = trained
    clf.export(tmp_path / "clf.pkl")
    seg.export(tmp_path / "seg.pkl")
    probe, seg_probe = files[:3], seg_files[:2]
    args = [str(tmp_path / "clf.pkl"), str(tmp_path / "seg.pkl"), "|".join(map(str, probe)),
            "|".join(map(str, seg_probe))]
    run = subprocess.run([sys.executable, "-c", FRESH, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    fresh = json.loads(run.stdout.strip().splitlines()[-1])
    for (label, idx, probs), fn in zip(fresh["clf"], probe):
        want_label, want_idx, want_probs = clf.predict(fn)
        assert label == want_label and idx == int(want_idx)
        assert torch.allclose(torch.tensor(probs), want_probs, atol=1e-5)
    for (_, mask, probs), fn in zip(fresh["seg"], seg_probe):
        _, want_mask, want_probs = seg.predict(fn)
        assert torch.equal(torch.tensor(mask), want_mask) and want_mask.shape == (32, 32)
        assert torch.allclose(torch.tensor(probs), want_probs, atol=1e-5)
