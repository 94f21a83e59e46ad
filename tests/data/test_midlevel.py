"""The mid-level data API with the book's chapter-11 call shapes, on tiny images made here."""

from __future__ import annotations

import random
import re

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lamina.vision.all import *  # noqa: E402,F403  (the book's code runs after this import)


@pytest.fixture
def pets(tmp_path):
    """12 tiny images named ``<breed>_<n>.png`` in class folders (dark 'cat', bright 'dog')."""
    rng = np.random.default_rng(0)
    for breed, label, level in [("Abyssinian", "cat", 40), ("beagle", "dog", 200), ("Bengal", "cat", 60)]:
        (tmp_path / label).mkdir(exist_ok=True)
        for k in range(4):
            pixels = np.clip(rng.normal(level, 5, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{breed}_{k}.png")
    return get_image_files(tmp_path).sorted()


# --- Transform and Pipeline -------------------------------------------------------------------------------
def test_transform_as_a_decorator_is_restricted_to_the_annotated_type():
    @Transform
    def f(x: int):
        return x + 1
    assert f(2) == 3 and f(2.0) == 2.0
    assert f((1, 2.0, 3)) == (2, 2.0, 4)  # a tuple: each member
    tfm = Transform(lambda x: x * 10)
    assert tfm(3) == 30 and tfm("a") == "a" * 10


def test_subclass_with_setups_encodes_decodes():
    class NormalizeMean(Transform):
        def setups(self, items):
            self.mean = sum(items) / len(items)

        def encodes(self, x):
            return x - self.mean

        def decodes(self, x):
            return x + self.mean
    nm = NormalizeMean()
    nm.setup([1, 2, 3, 4, 5])
    assert nm.mean == 3.0
    y = nm(2)
    assert (y, nm.decode(y)) == (-1.0, 2.0)


def test_split_idx_and_order():
    class TrainOnly(Transform):
        split_idx, order = 0, 5

        def encodes(self, x: float):
            return x * 100
    double = Transform(lambda x: x * 2, order=1)
    pipe = Pipeline([TrainOnly(), double])
    assert [type(t).__name__ for t in pipe.fs] == ["Transform", "TrainOnly"]  # sorted by order
    assert pipe(1.5, split_idx=0) == 300.0 and pipe(1.5, split_idx=1) == 3.0 and pipe(4) == 8  # int: not float


def test_pipeline_sets_up_each_step_on_what_the_steps_before_give_it(pets):
    pipe = Pipeline([parent_label, Categorize()])
    pipe.setup(pets)
    assert list(pipe.fs[1].vocab) == ["cat", "dog"]
    assert int(pipe(pets[0])) == 0 and pipe.decode(pipe(pets[-1])) == "dog"
    ax = pipe.show(pipe(pets[-1]))
    assert ax.get_title() == "dog"
    plt.close("all")


# --- TfmdLists and Datasets -------------------------------------------------------------------------------
def test_tfmdlists_splits_decode_and_show(pets):
    splits = [[0, 1, 2, 3, 4, 5, 8, 9], [6, 7, 10, 11]]
    tls = TfmdLists(pets, [parent_label, Categorize()], splits=splits)
    assert len(tls.train) == 8 and len(tls.valid) == 4 and len(tls) == 12
    assert isinstance(tls[0], torch.Tensor) and tls.decode(tls.valid[2]) == "dog"
    assert list(tls.vocab) == ["cat", "dog"]
    assert show_at(tls.valid, 0).get_title() == "cat"
    plt.close("all")


def test_datasets_of_chapter_11_to_dataloaders_decode_and_show(pets):
    tfms = [[PILImage.create], [parent_label, Categorize]]
    splits = RandomSplitter(seed=42)(pets)
    dsets = Datasets(pets, tfms, splits=splits)
    x, y = dsets.valid[0]
    assert isinstance(x, PILImage) and dsets.decode((x, y))[1] in ("cat", "dog")
    dls = dsets.dataloaders(bs=4, after_item=[Resize(16), ToTensor],
                            after_batch=[IntToFloatTensor, Normalize.from_stats(*imagenet_stats)],
                            num_workers=0, device="cpu")
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 16, 16) and xb.dtype == torch.float32 and xb.mean() < -0.5  # normalised
    decoded = dls.decode((xb, yb))
    assert 0 <= float(decoded[0].min()) and float(decoded[0].max()) <= 1  # the normalisation is undone
    samples = dls.decode_batch((xb, yb), max_n=3)
    assert len(samples) == 3 and samples[0][0].shape == (3, 16, 16)
    assert [s[1] for s in samples] == [dls.vocab[int(t)] for t in yb[:3]]
    dls.show_batch(max_n=2)
    plt.close("all")


def test_a_transform_in_a_member_list_and_after_batch(pets):
    class Brighter(Transform):
        order = 20  # after IntToFloatTensor (10), as in fastai

        def encodes(self, x: TensorImage):  # in a batch: the members of kind 'image'
            return x + 0.25

        def decodes(self, x: TensorImage):
            return x - 0.25

    upper = Transform(lambda label: label.upper())
    dsets = Datasets(pets, [[PILImage.create], [parent_label, upper, Categorize]],
                     splits=[[0, 1, 2, 3, 4, 5, 8, 9], [6, 7, 10, 11]])
    assert list(dsets.vocab) == ["CAT", "DOG"]
    dls = dsets.dataloaders(bs=4, after_item=[Resize(8), ToTensor],
                            after_batch=[IntToFloatTensor, Brighter], num_workers=0, device="cpu")
    xb, yb = dls.valid.one_batch()
    plain = dsets.dataloaders(bs=4, after_item=[Resize(8), ToTensor], after_batch=[IntToFloatTensor],
                              num_workers=0, device="cpu").valid.one_batch()[0]
    assert torch.allclose(xb, plain + 0.25) and torch.allclose(dls.decode((xb, yb))[0], plain)
    assert yb.dtype == torch.int64 and yb.tolist() == [0, 0, 1, 1]  # the target is not an image: untouched


# --- the Siamese example -------------------------------------------------------------------------------------
class SiameseImage(fastuple):
    def show(self, ctx=None, **kwargs):
        img1, img2, same_breed = self
        if not isinstance(img1, Tensor):
            if img2.size != img1.size:
                img2 = img2.resize(img1.size)
            t1, t2 = tensor(img1), tensor(img2)
            t1, t2 = t1.permute(2, 0, 1), t2.permute(2, 0, 1)
        else:
            t1, t2 = img1, img2
        line = t1.new_zeros(t1.shape[0], t1.shape[1], 10)
        return show_image(torch.cat([t1, line, t2], dim=2), title=same_breed, ctx=ctx)


def label_func(fname):
    return re.match(r"^(.*)_\d+.png$", fname.name).groups()[0]


class SiameseTransform(Transform):
    def __init__(self, files, label_func, splits):
        self.labels = files.map(label_func).unique()
        self.lbl2files = {lbl: L(f for f in files if label_func(f) == lbl) for lbl in self.labels}
        self.label_func = label_func
        self.valid = {f: self._draw(f) for f in files[splits[1]]}

    def encodes(self, f):
        f2, t = self.valid.get(f, self._draw(f))
        img1, img2 = PILImage.create(f), PILImage.create(f2)
        return SiameseImage(img1, img2, t)

    def _draw(self, f):
        same = random.random() < 0.5
        cls = self.label_func(f)
        if not same:
            cls = random.choice(L(lbl for lbl in self.labels if lbl != cls))
        return random.choice(self.lbl2files[cls]), same


def test_the_siamese_example(pets):
    random.seed(0)
    img = PILImage.create(pets[0])
    s1 = SiameseImage(img, PILImage.create(pets[5]), False)
    s2 = Resize(12)(s1)
    assert isinstance(s2, SiameseImage) and s2[0].size == (12, 12) and s2[2] is False
    assert s2.show().get_title() == "False"
    splits = RandomSplitter(seed=1)(pets)
    tfm = SiameseTransform(pets, label_func, splits)
    assert isinstance(tfm(pets[0]), SiameseImage)
    tls = TfmdLists(pets, tfm, splits=splits)
    first_valid = tls.valid[0]
    again = tls.valid[0]  # validation pairs are drawn once: the same second image and label every time
    assert np.array_equal(np.asarray(first_valid[1]), np.asarray(again[1])) and first_valid[2] == again[2]
    show_at(tls.valid, 0)
    dls = tls.dataloaders(bs=3, after_item=[Resize(16), ToTensor],
                          after_batch=[IntToFloatTensor, Normalize.from_stats(*imagenet_stats)],
                          num_workers=0, device="cpu")
    b = dls.one_batch()
    assert len(b) == 3 and b[0].shape == b[1].shape == (3, 3, 16, 16) and b[0].dtype == torch.float32
    assert b[2].dtype == torch.bool and dls.train.kinds == ("image", "image", "raw") and dls.n_inp == 2
    plt.close("all")


def test_a_failing_step_is_named_with_its_item(pets):
    def broken(x):
        raise ValueError("no label here")
    tls = TfmdLists(pets, [Transform(broken)], do_setup=False)
    with pytest.raises(ValueError, match=r"step `broken` of the TfmdLists pipeline failed on item .*Abyssinian_0"
                                         r".*no label here"):
        tls[0]
    with pytest.raises(TypeError, match="Transform\\(enc\\) takes a function"):
        Transform(3)
