"""Vision models from an architecture: VisionArch resolution, classifiers, timm, U-Nets, export names."""

import sys
import types

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from lamina.export import resolve_entry
from lamina.models.bodies import IMAGENET_STATS, default_split, resnet18
from lamina.models.heads import HeadConfig
from lamina.models.layers import SigmoidRange
from lamina.models.unet import DynamicUnet
from lamina.models.vision import (VisionArch, add_head, build_vision_model, create_timm_model, create_unet_model,
                                  create_vision_model)


def _own_arch(weights=None):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def _shapes(model):
    return [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("arch", [resnet18, "torchvision:resnet18", tvm.resnet18])
def test_torchvision_archs_resolve_to_the_registry_entry(arch):
    spec = VisionArch.of(arch)
    assert (spec.name, spec.cut, spec.split, spec.stats) == ("torchvision:resnet18", -2, resnet18.split,
                                                            IMAGENET_STATS)
    assert not spec.is_timm and VisionArch.of(spec) is spec  # resolved once: a resolved arch passes through


def test_timm_names_and_own_callables_resolve_without_a_registry_entry():
    timm = VisionArch.of("convnext_nano")
    assert timm.is_timm and (timm.name, timm.cut, timm.split, timm.stats) == ("convnext_nano", None, default_split,
                                                                              None)
    own = VisionArch.of(_own_arch)
    assert own.arch is _own_arch and own.name is None and own.split is default_split
    assert own.export_config("create_vision_model", {"n_out": 2}) is None  # no name: cannot be rebuilt
    with pytest.raises(ValueError, match="torchvision has no classification model named 'nope'"):
        VisionArch.of("torchvision:nope")


def test_export_config_is_json_and_never_fetches_weights():
    spec = VisionArch.of(resnet18)
    config = spec.export_config("create_vision_model", {"n_out": 2, "y_range": (0, 1), "pretrained": True})
    assert config == {"factory": "create_vision_model",
                      "kwargs": {"arch": "torchvision:resnet18", "n_out": 2, "y_range": [0, 1], "pretrained": False}}
    assert spec.export_config("create_vision_model", {"custom_head": nn.Linear(2, 2)}) is None


def test_flat_head_options_and_a_head_config_build_the_same_classifier():
    torch.manual_seed(0)
    flat = create_vision_model(resnet18, 3, pretrained=False, cut=4, lin_ftrs=[8], ps=0.2, y_range=(0, 1))
    torch.manual_seed(0)
    model, stats = build_vision_model(VisionArch.of(resnet18), 3, HeadConfig(lin_ftrs=[8], ps=0.2, y_range=(0, 1)),
                                      pretrained=False, cut=4)
    assert stats == IMAGENET_STATS and _shapes(flat) == _shapes(model)
    assert all(torch.equal(a, b) for a, b in zip(flat.state_dict().values(), model.state_dict().values()))
    assert isinstance(model[1][-1], SigmoidRange) and model[1][-2].in_features == 8
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_own_callable_builds_with_no_statistics():
    model, stats = build_vision_model(_own_arch, 2, HeadConfig(lin_ftrs=[4]), pretrained=False)
    assert stats is None and (model[1][-1].in_features, model[1][-1].out_features) == (4, 2)
    with pytest.raises(TypeError, match=r"head=HeadConfig\(lin_ftrs=...\)"):  # not sent on to the builder
        build_vision_model(_own_arch, 2, pretrained=False, lin_ftrs=[4])


def test_add_head_takes_a_config_and_refuses_unknown_options():
    body = nn.Sequential(nn.Conv2d(3, 4, 3))
    model = add_head(body, 4, 2, config=HeadConfig(concat_pool=False), lin_ftrs=[5])
    assert isinstance(model[1][0], nn.AdaptiveAvgPool2d) and model[1][-1].in_features == 5
    with pytest.raises(TypeError, match="lin_ftr"):
        add_head(body, 4, 2, lin_ftr=[5])


class _FakeTimmNet(nn.Module):
    num_features = 8
    pretrained_cfg = {"pool_size": None, "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}

    def __init__(self, in_chans):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))  # already pooled: the head must not pool again


def test_timm_models_take_head_options_and_give_their_statistics(monkeypatch):
    calls = []

    def create_model(name, pretrained, num_classes, in_chans, **kwargs):
        calls.append((name, pretrained, kwargs))
        return _FakeTimmNet(in_chans)

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    model, stats = build_vision_model("fake_net", 2, HeadConfig(lin_ftrs=[4]), pretrained=False, drop_rate=0.1)
    assert stats == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)) and calls[-1] == ("fake_net", False, {"drop_rate": 0.1})
    assert not isinstance(model[1][0], nn.AdaptiveAvgPool2d) and model[1][-1].in_features == 4
    assert model.eval()(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    model, cfg = create_timm_model("fake_net", 3, pretrained=False, lin_ftrs=[6], drop_rate=0.2)
    assert calls[-1] == ("fake_net", False, {"drop_rate": 0.2}) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert (model[1][-1].in_features, model[1][-1].out_features) == (6, 3)
    with pytest.raises(ValueError, match="needs a torchvision architecture"):
        create_unet_model("fake_net", 2, (16, 16), pretrained=False)


def test_unet_from_a_resolved_arch():
    unet = create_unet_model(VisionArch.of("torchvision:resnet18"), 2, (16, 16), pretrained=False, cut=4)
    assert isinstance(unet, DynamicUnet) and len(unet[0]) == 4
    assert unet.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 2, 16, 16)


def test_old_homes_and_export_names_reach_the_moved_builders():
    import lamina.vision.all as vision_all
    import lamina.vision.learner as vision_learner
    for name in ("create_vision_model", "create_unet_model", "create_timm_model", "add_head", "resolve_arch",
                 "arch_name"):
        moved = getattr(sys.modules["lamina.models.vision"], name)
        assert getattr(vision_learner, name) is moved
        assert name not in vision_all.__all__ or getattr(vision_all, name) is moved
    for builder in (create_vision_model, create_unet_model):
        for entry in (builder.__name__, f"lamina.vision.learner:{builder.__name__}",
                      f"lamina.models.vision:{builder.__name__}"):
            assert resolve_entry(entry, "model.factory") is builder
