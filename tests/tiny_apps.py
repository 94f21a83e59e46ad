"""Tiny learners of the four applications (image classifier, U-Net, tabular, collab) for the shipping tests
(ONNX, `lamina predict`, `lamina serve`): built with lamina's factories on synthetic data, pretrained=False.
The resnet18 bodies are cut after their second stage (cut=6): 0.7M weights instead of 11M keep building,
exporting and loading them quick."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from lamina.collab import CollabDataLoaders, collab_learner, synth_ratings
from lamina.tabular.all import Categorify, FillMissing, TabularDataLoaders, tabular_learner
from lamina.tabular.all import Normalize as TabularNormalize
from lamina.tabular.synth import adult_like
from lamina.vision.all import (ImageDataLoaders, Normalize, Resize, SegmentationDataLoaders, aug_transforms,
                               imagenet_stats, resnet18, unet_learner, vision_learner)
from lamina.vision.synth import make_image_folder, make_segmentation_set

CODES = ["sky", "road", "car"]


def is_cat(name: str) -> bool:
    return name[0].isupper()


def settled(learn):
    """The learner, quiet, with batch-norm statistics moved off their initial values (as training would), so
    that a graph exported in training mode, or without them, gives other outputs."""
    learn.logger = lambda *args: None
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in learn.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return learn


def image_classifier(folder: Path, augment: bool = False):
    """A resnet18 cat/dog classifier on 16-px images; ``augment`` adds aug_transforms (size 16, centre crop on
    validation from 24 px items) and ImageNet Normalize, which the ONNX graph must reproduce."""
    torch.manual_seed(0)
    files = make_image_folder(folder / "pets", n_per_class=6, size=(20, 24), classes=("Persian", "pug"))
    extra = dict(item_tfms=Resize(24), batch_tfms=[*aug_transforms(size=16, min_scale=0.75),
                                                   Normalize.from_stats(*imagenet_stats)]) if augment else \
        dict(item_tfms=Resize(16))
    dls = ImageDataLoaders.from_name_func(folder, files, label_func=is_cat, valid_pct=0.25, seed=0, bs=8,
                                          num_workers=0, **extra)
    return settled(vision_learner(dls, resnet18, pretrained=False, cut=6)), files


def segmenter(folder: Path):
    """A resnet18 U-Net on 32-px images of three codes."""
    torch.manual_seed(0)
    files = make_segmentation_set(folder / "camvid", n=6, size=(24, 32), n_codes=3)
    dls = SegmentationDataLoaders.from_label_func(
        folder / "camvid", files, lambda o: o.parent.parent / "labels" / f"{o.stem}_P{o.suffix}", codes=CODES,
        item_tfms=Resize(32), bs=4, num_workers=0, seed=0)
    return settled(unet_learner(dls, resnet18, pretrained=False, cut=6)), files


def tabular():
    """An Adult-like salary classifier (two categorical columns, two continuous ones with gaps)."""
    torch.manual_seed(0)
    raw = adult_like(200, seed=0)  # its text has the Adult CSV's leading spaces, which read_csv(skipinitialspace) drops
    df = raw.apply(lambda col: col.str.strip() if pd.api.types.is_string_dtype(col) else col)
    dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=["workclass", "education"],
                                     cont_names=["age", "education-num"],
                                     procs=[Categorify, FillMissing, TabularNormalize], bs=32, seed=0, device="cpu")
    return settled(tabular_learner(dls, layers=[8, 4])), df


def collab():
    """A dot-product model of planted ratings."""
    torch.manual_seed(0)
    ratings = synth_ratings(n_users=20, n_items=15, n=300, seed=0)
    dls = CollabDataLoaders.from_df(ratings, seed=0, bs=32, device="cpu")
    return settled(collab_learner(dls, n_factors=4, y_range=(0, 5.5))), ratings
