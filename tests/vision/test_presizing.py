"""The book's presizing and progressive resizing (chapters 5 and 7), at tiny sizes: ``item_tfms=Resize(64)`` with
``batch_tfms=aug_transforms(size=32, min_scale=0.75)``, and a learner whose ``dls`` is replaced by larger images
between fits, keeping its optimizer and the optimizer's state."""

import pytest
import torch

from lamina.vision.all import (
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    GrandparentSplitter,
    ImageBlock,
    Learner,
    Normalize,
    Resize,
    accuracy,
    aug_transforms,
    get_image_files,
    imagenet_stats,
    parent_label,
    xresnet18,
)
from lamina.vision.synth import make_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("presize")
    make_image_folder(path, n_per_class=8, size=(72, 80), pets_style=False)
    return path


def get_dls(folder, bs, size, presize=None):
    """The book's ``get_dls(bs, size)``: items resized large, then one augmentation crops them to ``size``."""
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                       splitter=GrandparentSplitter(), item_tfms=Resize(presize or 2 * size),
                       batch_tfms=[*aug_transforms(size=size, min_scale=0.75), Normalize.from_stats(*imagenet_stats)])
    return dblock.dataloaders(folder, bs=bs, num_workers=0)


def test_presizing_makes_large_items_and_augments_them_down_to_the_final_size(folder):
    dls = get_dls(folder, bs=4, size=32, presize=64)
    image, _ = dls.train.dataset[0]
    assert tuple(image.shape) == (3, 64, 64) and image.dtype == torch.uint8  # the item transform: Resize(64)
    for dl in (dls.train, dls.valid):  # random crops in training, the centre crop in validation: both 32 px
        xb = dl.one_batch()[0]
        assert tuple(xb.shape) == (4, 3, 32, 32) and xb.dtype == torch.float32
    # training batches are augmented (two draws differ); validation batches are the same every time
    assert not torch.allclose(dls.train.one_batch()[0], dls.train.one_batch()[0])
    assert torch.equal(dls.valid.one_batch()[0], dls.valid.one_batch()[0])


def _adam_state(learn):
    """``{parameter: (state dict, copies of its tensors)}`` of the learner's optimizer."""
    state = learn.opt.opt.state
    return {p: (state[p], {k: v.clone() for k, v in state[p].items() if torch.is_tensor(v)}) for p in state}


def test_progressive_resizing_keeps_the_optimizer_and_its_state(folder):
    torch.manual_seed(0)
    learn = Learner(get_dls(folder, bs=4, size=16), xresnet18(n_out=2, widen=0.25), loss_func=CrossEntropyLossFlat(),
                    metrics=accuracy)
    learn.logger = lambda *args: None
    learn.fit_one_cycle(1, 3e-3)
    opt, before = learn.opt, _adam_state(learn)
    first_steps = len(learn.dls.train)
    assert before and all(float(state["step"]) == first_steps for state, _ in before.values())

    learn.dls = get_dls(folder, bs=4, size=32)  # larger images: nothing about the optimizer changes
    assert learn.opt is opt
    for p, (state, copies) in before.items():
        assert learn.opt.opt.state[p] is state
        assert all(torch.equal(state[k], v) for k, v in copies.items())

    learn.fit_one_cycle(1, 1e-3)  # continues from that state: same tensors, updated in place, steps counted on
    assert learn.opt is opt
    assert learn.dls.train.one_batch()[0].shape[-1] == 32
    moved = 0
    for p, (state, copies) in before.items():
        now = learn.opt.opt.state[p]
        assert now["exp_avg"] is state["exp_avg"] and now["exp_avg_sq"] is state["exp_avg_sq"]
        assert float(now["step"]) == first_steps + len(learn.dls.train)
        moved += not torch.equal(now["exp_avg"], copies["exp_avg"])
    assert moved == len(before)
    assert learn.recorder.values[-1][0] > 0  # the epoch at 32 px was trained and recorded


def test_the_model_predicts_at_the_new_size(folder):
    torch.manual_seed(0)
    learn = Learner(get_dls(folder, bs=4, size=16), xresnet18(n_out=2, widen=0.25), loss_func=CrossEntropyLossFlat())
    learn.logger = lambda *args: None
    small, _ = learn.get_preds()
    learn.dls = get_dls(folder, bs=4, size=32)
    large, targs = learn.get_preds()
    assert small.shape == large.shape == (len(learn.dls.valid.dataset), 2)
    assert len(targs) == len(learn.dls.valid.dataset)
