"""Vision exports written by an earlier lamina still load and predict what they predicted when written.

The fixtures were exported before the vision model builders moved to `lamina.models.vision`: a resnet18
classifier (cut after its stem, 16 px, 2 classes) and a resnet18 U-Net (the same cut, 16 px, 2 codes),
each trained one epoch on synthetic images. Their descriptions name the builders ``create_vision_model``
and ``create_unet_model`` and carry the ``"splitter": null`` field that exports no longer write.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lamina.export import load_learner
from lamina.models.unet import DynamicUnet

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "vision_expected_v1.json").read_text())


def _image(spec: dict) -> np.ndarray:
    """The input image the fixture's predictions were recorded on (random pixels from a fixed seed)."""
    return np.random.default_rng(spec["seed"]).integers(0, 256, size=spec["shape"], dtype=np.uint8)


def _description(fname: str) -> dict:
    blob = (FIXTURES / fname).read_bytes()
    n = int.from_bytes(blob[:8], "little")
    return json.loads(json.loads(blob[8:8 + n])["__metadata__"]["lamina"])


@pytest.mark.parametrize("fname, factory", [("vision_classifier_v1.pkl", "create_vision_model"),
                                            ("unet_v1.pkl", "create_unet_model")])
def test_fixtures_are_old_exports(fname, factory):
    desc = _description(fname)
    assert desc["model"]["factory"] == factory and "splitter" in desc


def test_old_classifier_export_predicts_the_recorded_values():
    expected = EXPECTED["classifier"]
    learn = load_learner(FIXTURES / "vision_classifier_v1.pkl")
    label, idx, probs = learn.predict(_image(expected["input"]))
    assert str(label) == expected["label"] and int(idx) == expected["idx"]
    assert torch.allclose(probs, torch.tensor(expected["probs"]), atol=1e-5)
    assert learn.model[1][-1].out_features == 2 and learn.model[1][-1].in_features == 8


def test_old_unet_export_predicts_the_recorded_values():
    expected = EXPECTED["unet"]
    learn = load_learner(FIXTURES / "unet_v1.pkl")
    assert isinstance(learn.model, DynamicUnet) and learn.model.img_size == (16, 16)
    _, mask, probs = learn.predict(_image(expected["input"]))
    assert torch.equal(mask, torch.tensor(expected["mask"]))
    assert torch.allclose(probs, torch.tensor(expected["probs"]), atol=1e-4)
