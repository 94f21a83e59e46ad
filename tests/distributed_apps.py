"""The four chapter-1 workloads on tiny synthetic data, large enough that each of two processes gets a batch:
a pets-style image classifier, a U-Net segmenter, an Adult-like tabular classifier and a collab model.
Written as single-process code; under torchrun the same code trains data-parallel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from lamina.collab import CollabDataLoaders, collab_learner, synth_ratings
from lamina.tabular.all import Categorify, FillMissing, TabularDataLoaders, tabular_learner
from lamina.tabular.all import Normalize as TabularNormalize
from lamina.tabular.synth import adult_like
from lamina.vision.all import (ImageDataLoaders, Resize, SegmentationDataLoaders, error_rate, resnet18, unet_learner,
                               vision_learner)
from lamina.vision.synth import make_image_folder, make_segmentation_set


def is_cat(name: str) -> bool:
    return name[0].isupper()


def label_of(o: Path) -> Path:
    return o.parent.parent / "labels" / f"{o.stem}_P{o.suffix}"


def build_all(folder: Path) -> list:
    """``[(name, learner, an item to predict), ...]``, each learner quiet and built from seed 0."""
    torch.manual_seed(0)
    files = make_image_folder(folder / "pets", n_per_class=12, size=(20, 24), classes=("Persian", "pug"))
    dls = ImageDataLoaders.from_name_func(folder, files, label_func=is_cat, valid_pct=0.25, seed=0, bs=4,
                                          num_workers=0, item_tfms=Resize(16))
    pets = vision_learner(dls, resnet18, pretrained=False, cut=6, metrics=error_rate)
    torch.manual_seed(0)
    seg_files = make_segmentation_set(folder / "camvid", n=12, size=(24, 32), n_codes=3)
    seg_dls = SegmentationDataLoaders.from_label_func(folder / "camvid", seg_files, label_of,
                                                      codes=["sky", "road", "car"], item_tfms=Resize(32), bs=2,
                                                      num_workers=0, seed=0)
    camvid = unet_learner(seg_dls, resnet18, pretrained=False, cut=6)
    torch.manual_seed(0)
    raw = adult_like(200, seed=0)
    df = raw.apply(lambda col: col.str.strip() if pd.api.types.is_string_dtype(col) else col)
    tab_dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=["workclass", "education"],
                                         cont_names=["age", "education-num"],
                                         procs=[Categorify, FillMissing, TabularNormalize], bs=32, seed=0, device="cpu")
    adult = tabular_learner(tab_dls, layers=[8, 4], metrics=error_rate)
    torch.manual_seed(0)
    ratings = synth_ratings(n_users=20, n_items=15, n=300, seed=0)
    movies = collab_learner(CollabDataLoaders.from_df(ratings, seed=0, bs=32, device="cpu"), n_factors=4,
                            y_range=(0, 5.5))
    learners = [("pets", pets, files[0]), ("camvid", camvid, seg_files[0]), ("adult", adult, df.iloc[0]),
                ("collab", movies, ratings.iloc[0])]
    for _, learn, _ in learners:
        learn.logger = lambda *args: None
    return learners
