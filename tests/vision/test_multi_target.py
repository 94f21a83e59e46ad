"""Several targets from one DataBlock (the course's multi-target paddy notebook): one vocabulary and one output
count per target, labels drawn with their own vocabulary, a learner told the total outputs."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from lamina.vision.all import *  # noqa: F403  (what users write)


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    for disease in ("blast", "healthy", "tungro"):
        (tmp_path / disease).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / disease / f"{'ab'[i % 2]}_{i}.jpg")
    return tmp_path


def variety(f):
    return f.name[0]


def test_two_category_targets(folders):
    block = DataBlock(blocks=(ImageBlock, CategoryBlock, CategoryBlock), n_inp=1, get_items=get_image_files,
                      get_y=[parent_label, variety], splitter=RandomSplitter(0.2, seed=42), item_tfms=Resize(16))
    dls = block.dataloaders(folders, bs=4, num_workers=0)
    assert [list(v) for v in dls.vocab] == [["blast", "healthy", "tungro"], ["a", "b"]] and dls.c == [3, 2]
    x, disease, kind = dls.one_batch()
    fig = dls.show_batch(max_n=4)
    titles = [ax.get_title() for ax in fig.axes]
    for i, title in enumerate(titles):
        assert title == f"{dls.vocab[0][int(disease[i])]}; {dls.vocab[1][int(kind[i])]}"
    with pytest.raises(ValueError, match=r"several targets.*\[3, 2\].*n_out="):
        vision_learner(dls, resnet18, pretrained=False)

    def loss(out, disease, kind):
        return F.cross_entropy(out[:, :3], disease) + F.cross_entropy(out[:, 3:], kind)

    def disease_err(out, disease, kind):
        return error_rate(out[:, :3], disease)

    learn = vision_learner(dls, resnet18, pretrained=False, n_out=5, loss_func=loss, metrics=disease_err)
    learn.progress.show_bars = False
    learn.fit(1, 1e-3)
    assert learn.recorder.metric_names[3] == "disease_err" and 0 <= learn.recorder.values[-1][2] <= 1


def test_a_category_and_a_regression_target(folders):
    block = DataBlock(blocks=(ImageBlock, CategoryBlock, RegressionBlock), n_inp=1, get_items=get_image_files,
                      get_y=[parent_label, lambda f: float(f.stem.split("_")[1])],
                      splitter=RandomSplitter(0.2, seed=42), item_tfms=Resize(16))
    dls = block.dataloaders(folders, bs=4, num_workers=0)
    assert list(dls.vocab) == ["blast", "healthy", "tungro"] and dls.c == [3, 1]  # one vocabulary: not a list
    fig = dls.show_batch(max_n=2)
    assert all("; " in ax.get_title() for ax in fig.axes)
    assert torch.is_floating_point(dls.one_batch()[2])
