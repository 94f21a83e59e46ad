"""`Learner.tta` (lamina/tta.py): training transforms on the validation items, blended with the plain pass."""

import pytest
import torch

from lamina.core import set_seed
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.testing import tiny_mlp
from lamina.tta import augmented_loader, blend_tta
from lamina.vision.all import (
    ImageDataLoaders,
    IntToFloatTensor,
    RandomResizedCrop,
    Resize,
    aug_transforms,
    resnet18,
    vision_learner,
)
from lamina.vision.augment import Flip
from lamina.vision.synth import make_image_folder

N_VALID = 6  # make_image_folder puts every fourth image of a class in valid/: 3 of 12, for 2 classes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tta")
    make_image_folder(path, n_per_class=12, size=(36, 40), pets_style=False)
    return path


@pytest.fixture(scope="module")
def learn(folder):
    """One learner for the tests that only predict (tta changes neither the model nor the loaders)."""
    return _learner(folder)


def _learner(folder, **tfms):
    tfms = tfms or {"item_tfms": Resize(32), "batch_tfms": aug_transforms(size=24, min_scale=0.75)}
    dls = ImageDataLoaders.from_folder(folder, bs=4, num_workers=0, **tfms)
    learn = vision_learner(dls, resnet18, pretrained=False, cut=6)
    learn.logger = lambda *args: None
    return learn


def test_tta_returns_one_blended_prediction_per_validation_item(learn):
    preds, targs = learn.tta()
    assert preds.shape == (N_VALID, 2) and targs.shape == (N_VALID,)
    assert torch.allclose(preds.sum(1), torch.ones(N_VALID), atol=1e-5)  # softmax outputs, blended
    assert torch.equal(targs, learn.get_preds()[1])


def test_augmented_passes_differ_from_the_plain_one_which_is_get_preds(learn):
    (augmented, plain), _ = learn.tta(beta=None)
    assert torch.allclose(plain, learn.get_preds()[0])
    assert (augmented - plain).abs().max() > 1e-4
    # the validation loader itself is left as it was: centre crops, the same predictions again
    assert learn.dls.valid.split_idx == 1 and learn.dls.valid.dataset.split_idx == 1
    assert torch.allclose(learn.get_preds()[0], plain)


def test_item_transforms_also_draw_as_in_training(folder):
    # no batch augmentation: only the item transform (a random crop in training, a centre crop otherwise) varies
    learn = _learner(folder, item_tfms=RandomResizedCrop(24, min_scale=0.3))
    (augmented, plain), _ = learn.tta(beta=None)
    assert (augmented - plain).abs().max() > 1e-4
    # without any random transform, the augmented passes are the plain one
    learn = _learner(folder, item_tfms=Resize(24, method="squish"))
    (augmented, plain), _ = learn.tta(beta=None, n=2)
    assert torch.allclose(augmented, plain, atol=1e-6)


def test_beta_blends_the_mean_of_the_passes_with_the_plain_predictions(learn):
    set_seed(3)
    (augmented, plain), _ = learn.tta(beta=None, n=3)
    set_seed(3)
    blended, _ = learn.tta(beta=0.25, n=3)
    assert torch.allclose(blended, 0.75 * augmented + 0.25 * plain, atol=1e-6)
    set_seed(3)
    assert torch.allclose(learn.tta(beta=1.0, n=3)[0], plain, atol=1e-6)


def test_blend_arithmetic():
    passes = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]])  # two passes over one item
    plain = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(blend_tta(passes, plain, beta=0.25), torch.tensor([[0.55, 0.45]]))  # 0.75*mean+0.25*plain
    mean, same = blend_tta(passes, plain, beta=None)
    assert torch.allclose(mean, torch.tensor([[0.4, 0.6]])) and same is plain
    assert torch.equal(blend_tta(passes, plain, use_max=True), torch.tensor([[1.0, 0.8]]))


def test_tta_repeats_under_a_seed_and_varies_without(learn):
    set_seed(7)
    first = learn.tta(n=2)[0]
    set_seed(7)
    again = learn.tta(n=2)[0]
    assert torch.equal(first, again)
    set_seed(8)
    assert not torch.equal(learn.tta(n=2)[0], first)


def test_use_max_is_at_least_every_pass(learn):
    set_seed(1)
    top = learn.tta(n=2, use_max=True)[0]
    set_seed(1)
    (augmented, plain), _ = learn.tta(n=2, beta=None)
    assert (top >= plain - 1e-6).all() and (top >= augmented - 1e-6).all()


def test_batch_tfms_replace_the_loaders_own(folder):
    learn = _learner(folder, item_tfms=Resize(24, method="squish"))
    flipped = augmented_loader(learn.dls.valid, batch_tfms=[IntToFloatTensor(), Flip(p=1.0)])
    x_flipped, x_plain = flipped.one_batch()[0], learn.dls.valid.one_batch()[0]
    assert torch.allclose(x_flipped, x_plain.flip(-1), atol=1e-5)
    (augmented, _), _ = learn.tta(n=1, beta=None, batch_tfms=[IntToFloatTensor(), Flip(p=1.0)])
    assert torch.allclose(augmented, learn.get_preds(dl=flipped)[0], atol=1e-6)


def test_tta_works_on_tensor_data_without_transforms():
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    dls = DataLoaders.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=8)
    learn = Learner(dls, tiny_mlp(), loss_func=CrossEntropyLossFlat())
    preds, targs = learn.tta(n=2)
    assert preds.shape == (8, 2) and torch.equal(targs, y[32:])
    assert torch.allclose(preds, learn.get_preds()[0], atol=1e-6)  # nothing random: every pass is the plain one


@pytest.mark.parametrize("kwargs, match", [({"n": 0}, "`n`"), ({"n": 2.5}, "`n`"), ({"beta": 1.5}, "`beta`"),
                                           ({"beta": "0.2"}, "`beta`")])
def test_bad_arguments_are_named(kwargs, match):
    x = torch.randn(16, 2)
    dls = DataLoaders.from_tensors(x[:8], (x[:8, 0] > 0).long(), x[8:], (x[8:, 0] > 0).long(), bs=4)
    learn = Learner(dls, tiny_mlp(), loss_func=CrossEntropyLossFlat())
    with pytest.raises(ValueError, match=match):
        learn.tta(**kwargs)
