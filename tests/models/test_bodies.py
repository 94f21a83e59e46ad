"""Bodies: contract tests over the registry's architectures, create_body, num_features_model and timm."""

import sys
import types

import pytest
import torch
from torch import nn

from lamina.models.archs import ARCHS
from lamina.models.bodies import TimmBody, create_body, in_channels, num_features_model, timm_body
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
    built = create_body(ARCHS["resnet18"], pretrained=False, cut=-2)  # an architecture, as the fastai book writes
    assert len(built) == 8 and built[0].weight.shape == (64, 3, 7, 7)
    with pytest.raises(TypeError, match="a model or an architecture"):
        create_body("resnet18", pretrained=False)


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
