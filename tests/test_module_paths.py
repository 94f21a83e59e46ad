"""fastai's module paths: each imports, and ``from <path> import *`` gives the names fastai users take from it."""

from __future__ import annotations

import importlib

import pytest

# path -> the names fastai code imports from it (the same objects as lamina's homes)
PATHS = {
    "lamina.callback.core": ["Callback", "TrainEvalCallback", "CancelBatchException", "CancelFitException"],
    "lamina.callback.schedule": ["ParamScheduler", "LRFinder", "SchedCos", "combine_scheds", "valley", "steep"],
    "lamina.callback.tracker": ["EarlyStoppingCallback", "SaveModelCallback", "ReduceLROnPlateau",
                                "TrackerCallback", "TerminateOnNaNCallback"],
    "lamina.callback.fp16": ["MixedPrecision"],
    "lamina.callback.hook": ["hook_output", "hook_outputs", "Hook", "Hooks", "HookCallback", "ActivationStats",
                             "model_sizes", "num_features_model", "dummy_eval"],
    "lamina.callback.mixup": ["MixUp", "CutMix", "MixHandler"],
    "lamina.callback.progress": ["ProgressCallback", "CSVLogger"],
    "lamina.callback.training": ["GradientAccumulation", "GradientClip", "BnFreeze", "ShortEpochCallback"],
    "lamina.callback.preds": ["MCDropoutCallback"],
    "lamina.data.external": ["URLs", "untar_data", "download_url"],
    "lamina.data.block": ["DataBlock", "TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock"],
    "lamina.data.transforms": ["get_image_files", "get_files", "RandomSplitter", "GrandparentSplitter",
                               "parent_label", "RegexLabeller", "ColReader", "Categorize", "CategoryMap",
                               "MultiCategorize", "IndexSplitter", "FuncSplitter"],
    "lamina.data.core": ["Datasets", "TfmdLists", "DataLoaders", "show_at"],
    "lamina.vision.core": ["PILImage", "PILImageBW", "PILMask", "image2tensor", "TensorImage", "TensorMask",
                           "TensorPoint", "imagenet_stats"],
    "lamina.vision.data": ["ImageDataLoaders", "SegmentationDataLoaders", "ImageBlock", "MaskBlock"],
    "lamina.vision.augment": ["aug_transforms", "Normalize", "IntToFloatTensor", "Flip", "Rotate", "Zoom", "Warp",
                              "Brightness", "Contrast", "RandomResizedCropGPU"],
    "lamina.vision.learner": ["vision_learner", "cnn_learner", "unet_learner", "create_body", "create_head",
                              "model_meta"],
    "lamina.vision.widgets": ["ImageClassifierCleaner", "widgets"],
    "lamina.tabular.core": ["TabularPandas", "Categorify", "FillMissing", "Normalize", "cont_cat_split",
                            "add_datepart", "df_shrink"],
    "lamina.tabular.data": ["TabularDataLoaders", "TabularPandas"],
    "lamina.tabular.model": ["TabularModel", "tabular_config", "get_emb_sz", "emb_sz_rule"],
    "lamina.tabular.learner": ["tabular_learner", "TabularLearner"],
    "lamina.learner": ["Learner", "load_learner", "Recorder", "AvgMetric", "Metric"],
    "lamina.metrics": ["accuracy", "error_rate", "rmse", "F1Score", "RocAuc"],
    "lamina.losses": ["CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "MSELossFlat", "LabelSmoothingCrossEntropy"],
    "lamina.optimizer": ["Optimizer", "SGD", "Adam", "sgd_step", "ranger", "Lookahead"],
    "lamina.torch_core": ["tensor", "to_np", "one_hot", "TensorBase", "TensorCategory", "first", "noop"],
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_fastai_module_path_star_import_gives_the_users_names(path):
    scope: dict = {}
    exec(f"from {path} import *", scope)
    missing = [name for name in PATHS[path] if name not in scope]
    assert not missing, f"from {path} import * lacks {missing}"
    module = importlib.import_module(path)
    assert all(hasattr(module, name) for name in module.__all__), "__all__ names something the module lacks"


def test_re_exports_are_lamina_s_own_objects():
    from lamina.callback.fp16 import MixedPrecision
    from lamina.callback.hook import hook_output
    from lamina.callbacks import hook, precision
    from lamina.data.files import get_image_files
    from lamina.data.transforms import get_image_files as via_transforms
    from lamina.tabular.model import get_emb_sz
    from lamina.models.embedding_sizes import get_emb_sz as home
    assert MixedPrecision is precision.MixedPrecision and hook_output is hook.hook_output
    assert via_transforms is get_image_files and get_emb_sz is home


def test_mc_dropout_keeps_dropout_on_while_predicting():
    import torch
    from torch import nn

    from lamina.callback.preds import MCDropoutCallback
    from lamina.data.loaders import DataLoaders
    from lamina.learner import Learner
    x = torch.ones(16, 8)
    dls = DataLoaders.from_tensors(x, torch.zeros(16), x, torch.zeros(16), bs=8, device="cpu")
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 1))
    learn = Learner(dls, model, loss_func=lambda p, t: (p.squeeze(1) - t).pow(2).mean())
    plain, _ = learn.get_preds()
    assert torch.equal(plain[:8], plain[8:])  # eval mode: identical inputs, identical outputs
    sampled, _ = learn.get_preds(cbs=[MCDropoutCallback()])
    assert not torch.equal(sampled[:8], sampled[8:])
    assert not model[0].training  # back to eval after the pass
