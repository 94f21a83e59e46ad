"""fastai's transform classes that users subclass: RandTransform (random, training only), DisplayedTransform, and
ItemTransform with fastai's one-argument encodes (the whole sample, as the albumentations tutorial writes it)."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from lamina.vision.all import *  # noqa: F403  (what users write)
from lamina.vision.synth import make_image_folder, make_segmentation_set


class FlipH(RandTransform):
    order = 2

    def encodes(self, img: PILImage):
        return PILImage.create(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def test_rand_transform_applies_with_probability_p_on_training_only():
    img = PILImage.create(np.arange(36, dtype=np.uint8).reshape(3, 4, 3))
    flipped = np.asarray(img)[:, ::-1]
    random.seed(0)
    tfm = FlipH(p=0.3)
    done = [np.array_equal(np.asarray(tfm(img, split_idx=0)), flipped) for _ in range(400)]
    assert 0.2 < np.mean(done) < 0.4
    assert np.array_equal(np.asarray(FlipH()(img, split_idx=1)), np.asarray(img))  # validation: untouched
    assert np.array_equal(np.asarray(FlipH()(img, split_idx=0)), flipped)  # p=1: always
    assert FlipH()(7, split_idx=0) == 7  # not an image: passes through
    assert FlipH(nm="flip").name == "flip" and "p': 1.0" in repr(FlipH())
    with pytest.raises(ValueError, match="probability"):
        FlipH(p=2)


def test_rand_transform_with_its_own_random_values_in_a_datablock(tmp_path):
    make_image_folder(tmp_path / "imgs", size=24)

    class Shift(RandTransform):
        order = 2

        def before_call(self, x, split_idx):
            super().before_call(x, split_idx)
            self.k = random.randint(1, 3)

        def encodes(self, img: PILImage):
            return PILImage.create(np.roll(np.asarray(img), self.k, axis=1))

    def label(f):
        return f.name[0].isupper()

    def dls(tfms):
        return DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=label,
                         item_tfms=tfms, splitter=RandomSplitter(seed=0)).dataloaders(tmp_path / "imgs", bs=4,
                                                                                       num_workers=0, shuffle=False)
    plain, shifted = dls([Resize(16)]), dls([Resize(16), Shift()])
    assert not torch.equal(plain.train.one_batch()[0], shifted.train.one_batch()[0])
    assert torch.equal(plain.valid.one_batch()[0], shifted.valid.one_batch()[0])  # training only


class SwapAndTag(ItemTransform):
    """fastai's form: the whole sample, unpacked as the albumentations tutorial does."""
    split_idx = 0

    def encodes(self, x):
        img, mask = x
        return PILImage.create(np.asarray(img)[::-1].copy()), PILMask.create(np.asarray(mask)[::-1].copy())


def test_item_transform_in_fastai_form_gets_the_whole_sample(tmp_path):
    img = PILImage.create(np.arange(36, dtype=np.uint8).reshape(3, 4, 3))
    mask = PILMask.create((np.arange(12, dtype=np.uint8) % 3).reshape(3, 4))
    out_img, out_mask = SwapAndTag()((img, mask), split_idx=0)
    assert np.array_equal(np.asarray(out_img), np.asarray(img)[::-1])
    assert np.array_equal(np.asarray(out_mask), np.asarray(mask)[::-1])
    assert SwapAndTag()((img, mask), split_idx=1) == (img, mask)  # split_idx=0: not on validation
    files = make_segmentation_set(tmp_path / "seg", n=8)
    codes = ["a", "b", "c"]
    labels = tmp_path / "seg" / "labels"
    block = DataBlock(blocks=(ImageBlock, MaskBlock(codes)), get_y=lambda f: labels / f"{f.stem}_P.png",
                      item_tfms=[SwapAndTag()], splitter=RandomSplitter(seed=0))
    x, y = block.dataloaders(files, bs=2, num_workers=0).train.one_batch()
    assert x.shape[0] == y.shape[0] == 2 and y.dtype == torch.long


def test_transforms_have_fastais_name():
    """The course's ensemble loop prints item.name for each Resize."""
    name = Resize(96, method="squish").name
    assert name.startswith("Resize -- {") and "'method': 'squish'" in name and "96" in name


def test_a_rand_transform_subclass_may_skip_super_init():
    class Always(RandTransform):
        def __init__(self, k):
            self.k = k

        def encodes(self, x: int):
            return x + self.k

    assert Always(2)(1, split_idx=0) == 3 and Always(2).name == "Always" and Always(2)(1, split_idx=1) == 1
