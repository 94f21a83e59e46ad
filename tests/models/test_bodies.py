"""The architecture registry and bodies: contract tests over the registry, create_body, weights and timm."""

import sys
import types

import pytest
import torch
from torch import nn

from lamina.models import bodies
from lamina.models.bodies import (ARCHS, Arch, BodySplit, PretrainedWeightsError, TimmBody, arch_meta, build_arch,
                                  create_body, default_split, in_channels, model_meta, num_features_model, timm_body,
                                  weights_file)
from lamina.models.heads import create_head

# Small enough to build, run forward and backward on the CPU in well under a second each.
SMALL = ["resnet18", "squeezenet1_1", "mobilenet_v3_small", "regnet_x_400mf"]
# One per family of cut/split (regnets share one cut and split: regnet_x_400mf above covers them).
FAMILIES = ["resnet50", "densenet121", "efficientnet_b0", "vgg16_bn", "alexnet", "squeezenet1_0", "convnext_tiny",
            "efficientnet_v2_s", "mobilenet_v2", "mobilenet_v3_large"]
REST = [n for n in ARCHS if n not in SMALL + FAMILIES and not n.startswith("regnet")]


def _params(groups):
    return [id(p) for g in groups for p in g]


def _check_split(arch, model):
    groups = arch.split(model)
    assert len(groups) == 3 and all(len(g) for g in groups)
    ids = _params(groups)
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}


def test_registry_matches_torchvision():
    import torchvision.models as tvm
    for name, arch in ARCHS.items():
        assert arch.name == name and getattr(bodies, name) is arch and name in bodies.__all__
        assert tvm.get_model_weights(name).__name__ == arch.weights_enum
        assert model_meta[arch] == {"cut": arch.cut, "split": arch.split, "stats": arch.stats}
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169",
            "densenet201", "densenet161", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "alexnet",
            "squeezenet1_0", "squeezenet1_1"} <= set(ARCHS)


@pytest.mark.parametrize("name", SMALL)
def test_contract_forward_backward_split_and_head_reset(name):
    arch = ARCHS[name]
    body = create_body(arch(), pretrained=False, cut=arch.cut)
    nf = num_features_model(body)
    model = nn.Sequential(body, create_head(nf, 3))
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 3)
    out.pow(2).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    _check_split(arch, model)
    model[1] = create_head(nf, 5)
    assert model.eval()(x).shape == (2, 5)


def _meta_model(name):
    arch = ARCHS[name]
    with torch.device("meta"):
        body = create_body(arch(), pretrained=False, cut=arch.cut)
        nf = num_features_model(body)
        return arch, nf, nn.Sequential(body, create_head(nf, 3))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_cuts_and_splits(name):
    arch, nf, model = _meta_model(name)
    assert nf in (256, 512, 768, 960, 1024, 1280, 2048)
    _check_split(arch, model)


@pytest.mark.slow
@pytest.mark.parametrize("name", REST)
def test_big_architectures_cut_and_split(name):
    arch, _, model = _meta_model(name)
    _check_split(arch, model)


def test_arch_meta_for_torchvision_builders_and_unknown_callables():
    import torchvision.models as tvm
    assert arch_meta(tvm.resnet34) is model_meta[ARCHS["resnet34"]]
    unknown = arch_meta(lambda: nn.Conv2d(3, 3, 1))
    assert unknown["cut"] is None and unknown["split"] is default_split and unknown["stats"] is None
    assert arch_meta([])["split"] is default_split  # unhashable


def test_create_body_cuts():
    model = ARCHS["resnet18"]()
    by_index = create_body(model, pretrained=False, cut=-2)
    assert [type(m).__name__ for m in by_index][-2:] == ["Sequential", "Sequential"] and len(by_index) == 8
    auto = create_body(ARCHS["resnet18"](), pretrained=False)  # cut before the last child with a pooling layer
    assert len(auto) == 8
    picked = create_body(model, pretrained=False, cut=lambda m: nn.Sequential(m.conv1, m.bn1))
    assert len(picked) == 2
    with pytest.raises(TypeError, match="`cut` must be an int"):
        create_body(model, pretrained=False, cut="layer4")
    with pytest.raises(ValueError, match="no child has a pooling layer"):
        create_body(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), pretrained=False)


@pytest.mark.parametrize("n_in", [1, 2, 4])
def test_first_conv_adapts_pretrained_weights(n_in):
    model = ARCHS["resnet18"]()
    old = model.conv1.weight.detach().clone()
    body = create_body(model, n_in=n_in, pretrained=True, cut=-2)
    new = body[0].weight
    assert new.shape == (64, n_in, 7, 7) and in_channels(body) == n_in
    if n_in == 1:
        assert torch.allclose(new, old.sum(1, keepdim=True))
    elif n_in == 2:
        assert torch.allclose(new, old[:, :2] * 1.5)
    else:
        assert torch.equal(new[:, :3], old) and torch.all(new[:, 3:] == 0)
    assert body.eval()(torch.randn(1, n_in, 32, 32)).shape == (1, 512, 1, 1)


def test_first_conv_nested_and_random_when_not_pretrained():
    body = create_body(ARCHS["mobilenet_v3_small"](), n_in=1, pretrained=False, cut=-2)
    conv = body[0][0][0]
    assert conv.in_channels == 1 and conv.stride == (2, 2)
    assert num_features_model(body) == 576
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        create_body(nn.Sequential(nn.Linear(3, 3), nn.AdaptiveAvgPool1d(1)), n_in=1)


def test_num_features_grows_the_dummy_image_when_needed():
    arch = ARCHS["alexnet"]
    with torch.device("meta"):
        body = create_body(arch(), pretrained=False, cut=arch.cut)
    assert num_features_model(body) == 256
    body.train()
    num_features_model(body)
    assert all(m.training for m in body.modules())  # the dummy pass restores the training mode


def test_body_split_within_a_child():
    body = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)), nn.Conv2d(3, 3, 1))
    model = nn.Sequential(body, nn.Linear(3, 2))
    early, late, head = BodySplit(1, within=1)(model)
    assert [p.shape for p in early] == [torch.Size([3, 3, 1, 1]), torch.Size([3])] * 2
    assert len(late) == 4 and len(head) == 2
    assert "index=1" in repr(BodySplit(1, within=1))


def test_build_arch_calls_your_own_callables_as_they_ask():
    seen = {}

    def with_weights(weights=None):
        seen["weights"] = weights
        return nn.Linear(1, 1)

    def with_pretrained(pretrained=False):
        seen["pretrained"] = pretrained
        return nn.Linear(1, 1)

    build_arch(with_weights, pretrained=True)
    build_arch(with_pretrained, pretrained=False)
    assert seen == {"weights": "DEFAULT", "pretrained": False}
    assert isinstance(build_arch(lambda: nn.ReLU(), pretrained=True), nn.ReLU)


def test_pretrained_weights_load_from_the_hub_cache(offline_hub):
    weights = ARCHS["resnet18"].weights_enum
    import torchvision.models as tvm
    path = weights_file(getattr(tvm, weights).DEFAULT)
    assert path == offline_hub / "resnet18-f37072fd.pth"
    state = tvm.resnet18().state_dict()
    torch.save(state, path)
    model = ARCHS["resnet18"](pretrained=True)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    model = build_arch(ARCHS["resnet18"], weights="IMAGENET1K_V1")
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_missing_weights_say_where_to_put_them(offline_hub):
    with pytest.raises(PretrainedWeightsError) as info:
        ARCHS["resnet18"](weights="DEFAULT")
    message = str(info.value)
    for part in ("resnet18-f37072fd.pth", str(offline_hub), "could not be downloaded", "pretrained=False",
                 "https://download.pytorch.org/models/resnet18-f37072fd.pth"):
        assert part in message


def test_broken_cached_weights_are_named(offline_hub):
    (offline_hub / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="delete it"):
        ARCHS["resnet18"](weights="DEFAULT")


def test_unknown_weights_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"`weights` must be None, 'DEFAULT' or one of \['IMAGENET1K_V1'\]"):
        ARCHS["resnet18"](weights="IMAGENET22K")


def test_arch_is_a_readable_callable():
    assert repr(ARCHS["resnet34"]) == "Arch('resnet34')" and isinstance(ARCHS["resnet34"], Arch)


class _FakeTimmNet(nn.Module):
    num_features = 8
    pretrained_cfg = {"pool_size": (1, 1), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}

    def __init__(self, in_chans):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x):
        return self.conv(x)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


def _fake_timm(calls):
    def create_model(name, pretrained, num_classes, in_chans, **kwargs):
        calls.append((name, pretrained, num_classes, in_chans, kwargs))
        return _FakeTimmNet(in_chans)
    return types.SimpleNamespace(create_model=create_model)


def test_timm_body_uses_forward_features(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(calls))
    body, cfg = timm_body("fake_net", pretrained=False, n_in=2, drop_rate=0.1)
    assert calls == [("fake_net", False, 0, 2, {"drop_rate": 0.1})]
    assert isinstance(body, TimmBody) and body.needs_pool and cfg["mean"] == (0.5, 0.5, 0.5)
    assert body(torch.randn(1, 2, 5, 5)).shape == (1, 8, 5, 5)


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(ImportError, match=r"pip install 'lamina\[timm\]'"):
        timm_body("convnext_tiny")
