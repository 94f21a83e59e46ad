"""The star-import surface ``lamina.vision.all``: the names fastai code (fastbook) uses are there."""

import subprocess
import sys

import lamina.vision.all as surface


def test_fastai_names_are_exported():
    names = set(surface.__all__)
    for name in ("plt", "TrainTestSplitter", "AddMaskCodes", "OneHotEncode", "EncodedMultiCategorize", "get_c",
                 "Category", "ImageDataLoaders", "DataBlock", "Datasets", "vision_learner", "resnet34", "np", "torch"):
        assert name in names and hasattr(surface, name), name
    assert all(hasattr(surface, name) for name in names)
    assert surface.plt.__name__ == "matplotlib.pyplot"


def test_star_import_does_not_load_torchvision():
    code = "import sys; from lamina.vision.all import *; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_training_features_of_the_book_are_exported():
    import lamina.basics as basics
    names = set(surface.__all__)
    for name in ("xresnet50", "xresnet18_deep", "xse_resnext50", "XResNet", "SEModule", "SimpleSelfAttention",
                 "MixUp", "CutMix", "hook_output", "hook_outputs", "Hooks", "ActivationStats", "model_sizes",
                 "num_features_model", "dummy_eval"):
        assert name in names and hasattr(surface, name), name
    for name in ("MixUp", "CutMix", "Hook", "HookCallback", "ActivationStats", "hook_output"):
        assert name in basics.__all__ and getattr(basics, name) is getattr(surface, name), name
    assert len(surface.__all__) == len(names)  # no name listed twice

