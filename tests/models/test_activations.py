"""The activation registry shared by the tabular and collab models: exact JSON round trips, named refusals."""

import json

import pytest
from torch import nn

from lamina.models.activations import ACTIVATIONS, activation_config, make_activation


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.5, inplace=True), nn.ELU(alpha=0.3), nn.GELU(approximate="tanh"),
                                 nn.Softplus(beta=2.0, threshold=10.0), nn.ReLU(), nn.Tanh(), nn.Hardswish()])
def test_settings_survive_json(act):
    spec = json.loads(json.dumps(activation_config(act)))
    rebuilt = make_activation(spec)
    assert type(rebuilt) is type(act) and spec["name"] == type(act).__name__
    assert {k: getattr(rebuilt, k) for k in ACTIVATIONS[spec["name"]][1]} == \
        {k: getattr(act, k) for k in ACTIVATIONS[spec["name"]][1]}
    assert repr(rebuilt) == repr(act)


def test_names_classes_and_none_build_fastai_defaults():
    relu = make_activation("ReLU")
    assert isinstance(relu, nn.ReLU) and relu.inplace  # fastai's nn.ReLU(inplace=True)
    assert isinstance(make_activation(None), nn.ReLU) and isinstance(make_activation(nn.GELU), nn.GELU)
    assert activation_config("LeakyReLU") == {"name": "LeakyReLU", "kwargs": {"negative_slope": 0.01, "inplace": True}}
    module = nn.SiLU()
    assert make_activation(module) is module


def test_activations_that_cannot_be_described_are_refused_by_name():
    class Swishy(nn.Module):
        def forward(self, x):
            return x

    class MyReLU(nn.ReLU):  # a subclass may behave differently: not rebuilt as a ReLU
        pass

    with pytest.raises(ValueError, match=r"The activation Swishy\(\) .*Swishy\) cannot be described for export"):
        activation_config(Swishy())
    with pytest.raises(ValueError, match=r"MyReLU\(\) .*cannot be described"):
        activation_config(MyReLU())
    with pytest.raises(ValueError, match="`act_cls` name must name one of the activations"):
        make_activation("Swish9")
    with pytest.raises(ValueError, match="`act_cls` description must name one of"):
        make_activation({"name": "Nope", "kwargs": {}})
    with pytest.raises(ValueError, match="must name one of"):
        make_activation(MyReLU)
