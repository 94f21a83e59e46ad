"""The architecture registry: every entry matches torchvision, cuts and splits, and its weights load or say why not."""

import pytest
import torch
from torch import nn

from lamina.models import archs, bodies
from lamina.models.archs import (ARCHS, Arch, BodySplit, PretrainedWeightsError, arch_meta, build_arch, default_split,
                                 model_meta, weights_file)


def test_registry_matches_torchvision():
    import torchvision.models as tvm
    for name, arch in ARCHS.items():
        assert arch.name == name and getattr(archs, name) is arch
        assert getattr(bodies, name) is arch and name in bodies.__all__  # the old import path
        assert tvm.get_model_weights(name).__name__ == arch.weights_enum
        assert model_meta[arch] == {"cut": arch.cut, "split": arch.split, "stats": arch.stats}
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169",
            "densenet201", "densenet161", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "alexnet",
            "squeezenet1_0", "squeezenet1_1"} <= set(ARCHS)


def test_arch_meta_for_torchvision_builders_and_unknown_callables():
    import torchvision.models as tvm
    assert arch_meta(tvm.resnet34) is model_meta[ARCHS["resnet34"]]
    unknown = arch_meta(lambda: nn.Conv2d(3, 3, 1))
    assert unknown["cut"] is None and unknown["split"] is default_split and unknown["stats"] is None
    assert arch_meta([])["split"] is default_split  # unhashable


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
