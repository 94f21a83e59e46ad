"""ImageDataLoaders / SegmentationDataLoaders: every factory, the predict path, workers, errors, inference export."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lamina.data.block import Categorize, CategoryBlock, DataBlock, Datasets
from lamina.models.bodies import resnet18
from lamina.data.datasets import default_num_workers
from lamina.data.splitters import FuncSplitter, RandomSplitter, RegexLabeller, using_attr
from lamina.export import resolve_entry
from lamina.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from lamina.vision.augment import IntToFloatTensor, Normalize, aug_transforms
from lamina.vision.core import PILImage, PILMask, imagenet_stats
from lamina.vision.data import ImageBlock, ImageDataLoaders, MaskBlock, SegmentationDataLoaders, inference_dls
from lamina.vision.learner import vision_learner
from lamina.vision.synth import make_image_folder, make_segmentation_set, mask_from_pixels
from lamina.vision.transforms import AddMaskCodes, FlipItem, RandomResizedCrop, Resize, ToTensor

BREEDS = ("Persian", "Siamese", "pug", "beagle")
BREED_RE = r"([^/]+)_\d+\.jpg$"


def is_cat(x: str) -> bool:
    return x[0].isupper()


@pytest.fixture
def pets(tmp_path):
    return make_image_folder(tmp_path / "images", n_per_class=4, size=(24, 32), classes=BREEDS)


@pytest.fixture
def camvid(tmp_path):
    path = tmp_path / "camvid"
    files = make_segmentation_set(path, n=6, size=(24, 32), n_codes=3)
    return path, files


def label_func_for(path):
    return lambda o: path / "labels" / f"{o.stem}_P{o.suffix}"


def chapter_one(files, **kwargs):
    return ImageDataLoaders.from_name_func(files[0].parent, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                           item_tfms=Resize(16), **{"bs": 4, "num_workers": 0, **kwargs})


# --- factories ------------------------------------------------------------------------------------------


def test_from_name_func_like_chapter_one(pets):
    dls = chapter_one(pets)
    assert isinstance(dls, ImageDataLoaders) and dls.vocab == [False, True] and dls.c == 2
    assert isinstance(dls.loss_func, CrossEntropyLossFlat) and dls.n_inp == 1
    assert dls.train.kinds == ("image", "category")
    train_idx, valid_idx = RandomSplitter(0.2, seed=42)(pets)
    assert [dls.valid_ds.items[i] for i in dls.valid_ds.idxs] == [pets[i] for i in valid_idx]
    xb, yb = next(iter(dls.valid))
    assert xb.shape == (3, 3, 16, 16) and xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
    assert yb.tolist() == [int(is_cat(pets[i].name)) for i in valid_idx]
    assert dls.valid_ds.lazy_steps[0][0].draft == (16, 16)  # JPEGs may be decoded at reduced size
    assert dls.decode_prediction(torch.tensor(1)) == "True"


def test_factory_defaults(pets):
    dls = ImageDataLoaders.from_name_func(pets[0].parent, pets, label_func=is_cat, item_tfms=Resize(16))
    assert dls.bs == 64 and dls.valid.bs == 64 and dls.train.shuffle and dls.train.drop_last
    assert dls.train.num_workers == default_num_workers() and len(dls.valid_ds) == 3


def test_from_folder(tmp_path):
    make_image_folder(tmp_path, n_per_class=8, size=(24, 32), classes=("cat", "dog"), pets_style=False)
    dls = ImageDataLoaders.from_folder(tmp_path, item_tfms=Resize(16), bs=4, num_workers=0)
    assert dls.vocab == ["cat", "dog"] and len(dls.train_ds) == 12 and len(dls.valid_ds) == 4
    assert all(p.parent.parent.name == "valid" for p in (dls.valid_ds.items[i] for i in dls.valid_ds.idxs))
    random_split = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.5, seed=0, item_tfms=Resize(16), bs=4,
                                                num_workers=0)
    assert len(random_split.valid_ds) == 8
    xb, yb = random_split.one_batch()
    assert xb.shape[1:] == (3, 16, 16)


def test_from_path_func_and_regex_factories(pets):
    path = pets[0].parent
    kw = {"item_tfms": Resize(16), "bs": 4, "num_workers": 0}
    by_path = ImageDataLoaders.from_path_func(path, pets, lambda p: p.name.split("_")[0], **kw)
    by_path_re = ImageDataLoaders.from_path_re(path, pets, BREED_RE, **kw)
    by_name_re = ImageDataLoaders.from_name_re(path, pets, r"^(.+)_\d+\.jpg$", **kw)
    for dls in (by_path, by_path_re, by_name_re):
        assert dls.vocab == sorted(BREEDS) and dls.c == 4
        assert dls.one_batch()[0].shape[1:] == (3, 16, 16)


def test_from_df_single_multi_and_valid_col(pets, tmp_path):
    names = [p.name for p in pets]
    df = pd.DataFrame({"fname": names, "label": [n.split("_")[0] for n in names],
                       "tags": [("cat fluffy" if is_cat(n) else "dog") for n in names],
                       "is_valid": [i % 4 == 0 for i in range(len(names))]})
    single = ImageDataLoaders.from_df(df, path=tmp_path, folder="images", item_tfms=Resize(16), num_workers=0)
    assert single.vocab == sorted(BREEDS) and len(single.valid_ds) == 3
    multi = ImageDataLoaders.from_df(df, path=tmp_path, folder="images", label_col="tags", label_delim=" ",
                                     valid_col="is_valid", item_tfms=Resize(16), bs=4, num_workers=0)
    assert multi.vocab == ["cat", "dog", "fluffy"] and multi.train.kinds == ("image", "multicategory")
    assert isinstance(multi.loss_func, BCEWithLogitsLossFlat) and len(multi.valid_ds) == 4
    xb, yb = next(iter(multi.valid))
    assert yb.shape == (4, 3) and yb.dtype == torch.float32
    assert multi.decode_prediction(torch.tensor([True, False, True])) == ["cat", "fluffy"]


def test_from_csv(pets, tmp_path):
    pd.DataFrame({"name": [p.name for p in pets], "breed": [p.name.split("_")[0] for p in pets]}).to_csv(
        tmp_path / "labels.csv", index=False)
    dls = ImageDataLoaders.from_csv(tmp_path, folder="images", item_tfms=Resize(16), seed=1, bs=4, num_workers=0)
    assert dls.vocab == sorted(BREEDS) and dls.one_batch()[0].shape[1:] == (3, 16, 16)


def test_from_lists(pets):
    path = pets[0].parent
    cats = ImageDataLoaders.from_lists(path, pets, [is_cat(p.name) for p in pets], item_tfms=Resize(16), num_workers=0)
    assert cats.vocab == [False, True] and cats.train.kinds[1] == "category"
    multi = ImageDataLoaders.from_lists(path, pets, [["a", "b"] if i % 2 else ["a"] for i in range(len(pets))],
                                        item_tfms=Resize(16), num_workers=0)
    assert multi.train.kinds[1] == "multicategory" and multi.vocab == ["a", "b"]
    reg = ImageDataLoaders.from_lists(path, pets, [float(i) for i in range(len(pets))], item_tfms=Resize(16),
                                      num_workers=0, bs=4)
    assert reg.train.kinds[1] == "regression" and isinstance(reg.loss_func, MSELossFlat) and reg.n_out == 1
    assert reg.one_batch()[1].dtype == torch.float32
    with pytest.raises(ValueError, match="same length"):
        ImageDataLoaders.from_lists(path, pets, [1.0])


def test_segmentation_from_label_func_keeps_masks_and_images_together(camvid):
    path, files = camvid
    codes = np.loadtxt(path / "codes.txt", dtype=str)
    nearest = (Image.Resampling.NEAREST, Image.Resampling.NEAREST)
    random.seed(0)
    dls = SegmentationDataLoaders.from_label_func(
        path, files, label_func_for(path), codes=codes, bs=2, num_workers=0,
        item_tfms=[RandomResizedCrop(16, min_scale=0.5, resamples=nearest), FlipItem()])
    assert dls.vocab == ["code0", "code1", "code2"] and dls.n_out == 3
    assert isinstance(dls.loss_func, CrossEntropyLossFlat) and dls.loss_func.axis == 1
    assert dls.train.kinds == ("image", "mask") and dls.valid_ds.lazy_steps[0][0].draft is None
    for xb, yb in [*dls.train, *dls.valid]:
        assert xb.shape[1:] == (3, 16, 16) and yb.shape[1:] == (16, 16) and yb.dtype == torch.int64
        pixels = (xb * 255).round().byte().permute(0, 2, 3, 1).numpy()
        assert np.array_equal(mask_from_pixels(pixels), yb.numpy())
    decoded = torch.zeros(16, 16, dtype=torch.long)
    assert dls.decode_prediction(decoded) is decoded


def test_fastai_style_datasets_load_lazily(pets):
    dsets = Datasets(pets, [[PILImage.create], [using_attr(is_cat, "name"), Categorize]],
                     splits=RandomSplitter(seed=0)(pets))
    assert dsets.kinds == ("image", "category") and dsets.vocab == [False, True]
    assert all(isinstance(v[0], type(pets[0])) for v in dsets._values)  # paths stored, images read on access
    img, label = dsets.train[0]
    assert type(img) is PILImage and label.dtype == torch.int64
    dls = dsets.dataloaders(bs=4, after_item=[Resize(16), ToTensor], after_batch=[IntToFloatTensor], num_workers=0)
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 16, 16) and xb.dtype == torch.float32 and dls.n_out == 2


def test_datasets_built_by_hand_give_image_dataloaders_with_loss_and_show(pets):
    """fastbook chapter 11: Datasets + dataloaders(after_item, after_batch), then a vision learner."""
    import matplotlib
    matplotlib.use("Agg")
    dsets = Datasets(pets, [[PILImage.create], [using_attr(is_cat, "name"), Categorize]],
                     splits=RandomSplitter(seed=0)(pets))
    ax = dsets.show(dsets.train[0])
    assert ax.get_title() in ("True", "False") and len(ax.images) == 1
    dls = dsets.dataloaders(bs=4, after_item=[Resize(16), ToTensor], num_workers=0, timeout=5, dl_type=None,
                            after_batch=[IntToFloatTensor, *aug_transforms(), Normalize.from_stats(*imagenet_stats)])
    assert isinstance(dls, ImageDataLoaders) and isinstance(dls.loss_func, CrossEntropyLossFlat)
    assert dls.loss_config == {"name": "CrossEntropyLossFlat", "kwargs": {}}
    assert len(dls.show_batch(max_n=2).axes) == 2
    assert [type(t).__name__ for t in dls.valid.after_batch] == [
        "IntToFloatTensor", "AffineCoordTfm", "LightingTfm", "Normalize"]  # sorted, fused
    learn = vision_learner(dls, resnet18, pretrained=False)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)
    first = dsets.dataloaders(bs=2, n=6, after_item=[Resize(16), ToTensor], after_batch=[IntToFloatTensor],
                              num_workers=0, val_shuffle=True, dl_kwargs=[{"seed": 3}, {}])
    assert len(first.train_ds) == 6 and first.valid.shuffle and first.train.seed == 3
    with pytest.raises(ValueError, match=r"`n` must be between 1 and the number of training items \(13\)"):
        dsets.dataloaders(n=100)
    with pytest.raises(TypeError, match="lamina has one loader class"):
        dsets.dataloaders(dl_type=list)


# --- prediction path ------------------------------------------------------------------------------------


def test_test_set_accepts_every_input_type(pets):
    dls = chapter_one(pets)
    fn = pets[0]
    img = PILImage.create(fn)
    inputs = [fn, str(fn), fn.read_bytes(), Image.open(fn), img, np.asarray(img),
              torch.from_numpy(np.array(img)).permute(2, 0, 1)]
    (xb,) = dls.test_dl(inputs, bs=8, num_workers=0).one_batch()
    assert xb.shape == (len(inputs), 3, 16, 16)
    for row in xb[1:]:
        assert torch.equal(row, xb[0])
    labelled = dls.test_dl(pets[:2], with_labels=True, num_workers=0).one_batch()
    assert labelled[1].tolist() == [int(is_cat(p.name)) for p in pets[:2]]


def test_two_workers_load_every_item(pets):
    dls = ImageDataLoaders.from_name_func(pets[0].parent, pets, valid_pct=0.25, seed=0,
                                          label_func=lambda name: name[0].isupper(), item_tfms=Resize(16), bs=3,
                                          num_workers=2)
    assert sum(len(xb) for xb, _ in dls.train) == 12 and sum(len(xb) for xb, _ in dls.valid) == 4
    # what a worker receives pickles even with a lambda label function ('spawn' start method, macOS/Windows)
    copy = pickle.loads(pickle.dumps(dls.valid_ds))
    assert torch.equal(copy[0][0], dls.valid_ds[0][0])


# --- errors ---------------------------------------------------------------------------------------------


def test_corrupt_image_names_the_file(pets):
    bad = pets[0].parent / "Persian_99.jpg"
    bad.write_bytes(b"not a jpeg")
    dls = ImageDataLoaders.from_name_func(bad.parent, pets + [bad], valid_pct=0.0, label_func=is_cat,
                                          item_tfms=Resize(16), bs=len(pets) + 1, num_workers=0)
    with pytest.raises(OSError, match=r"Could not read the image .*Persian_99\.jpg"):
        list(dls.train.new(shuffle=False, drop_last=False))


def test_images_of_different_sizes_without_resize_say_how_to_fix(tmp_path):
    files = make_image_folder(tmp_path, n_per_class=2, classes=("Persian", "pug"), sizes=[(24, 32), (20, 20)])
    dls = ImageDataLoaders.from_name_func(tmp_path, files, valid_pct=0.0, label_func=is_cat, bs=4, num_workers=0)
    with pytest.raises(ValueError, match=r"Cannot batch the 'image' of these items: '.*_\d\.jpg' gives shape "
                                         r"\(3, \d+, \d+\) but '.*_\d\.jpg' gives shape .*item_tfms=Resize\(224\)"):
        dls.one_batch()


def test_label_function_that_raises_names_the_item(pets):
    def fussy(name):
        if name == "pug_2.jpg":
            raise ValueError("cannot label this one")
        return name[0].isupper()

    with pytest.raises(ValueError, match=r"step `fussy \(on \.name\)` .*failed on item '.*pug_2\.jpg'.*cannot label"):
        ImageDataLoaders.from_name_func(pets[0].parent, pets, label_func=fussy, num_workers=0)


def test_unseen_validation_label_is_named(pets):
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=RegexLabeller(BREED_RE),
                       splitter=FuncSplitter(lambda o: o.name.startswith("beagle")), item_tfms=Resize(16))
    with pytest.raises(KeyError, match=r"item '.*beagle_0\.jpg' \(validation set\).*Label 'beagle' was not "
                                       r"included in the training dataset"):
        dblock.dataloaders(pets, num_workers=0)


def test_mask_size_mismatch_names_both_files(camvid):
    path, files = camvid
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(path / "labels" / "img0_P.png")
    dls = SegmentationDataLoaders.from_label_func(path, files, label_func_for(path), valid_pct=0.0,
                                                  item_tfms=Resize(16), bs=6, num_workers=0)
    with pytest.raises(ValueError, match=r"The mask '.*img0_P\.png' is 10x10 \(width x height\) but its image "
                                         r"'.*img0\.png' is 32x24"):
        list(dls.train.new(shuffle=False))


def test_mask_value_out_of_codes_names_file_and_value(camvid):
    path, files = camvid
    dls = SegmentationDataLoaders.from_label_func(path, files, label_func_for(path), codes=["a", "b"], valid_pct=0.0,
                                                  item_tfms=Resize(16), bs=6, num_workers=0)
    with pytest.raises(ValueError, match=r"The mask .*img\d_P\.png contains the value 2, but there are only 2 codes"):
        list(dls.train.new(shuffle=False))


def test_label_function_returning_a_missing_path_names_it(camvid):
    path, files = camvid
    with pytest.raises(FileNotFoundError, match=r"The mask file '.*img\d_mask\.png' does not exist"):
        SegmentationDataLoaders.from_label_func(path, files, lambda o: path / "labels" / f"{o.stem}_mask.png",
                                                num_workers=0)


# --- export description ---------------------------------------------------------------------------------


def test_inference_round_trip_with_normalize(pets):
    dls = chapter_one(pets)
    dls.add_tfms([Normalize.from_stats(*imagenet_stats)])
    description = json.loads(json.dumps(dls.inference))
    assert description["builder"] == "inference_dls"
    assert [c["name"] for c in description["kwargs"]["batch_tfms"]] == ["IntToFloatTensor", "Normalize"]
    rebuilt = resolve_entry(description["builder"], "data.builder")(**description["kwargs"])
    assert isinstance(rebuilt, ImageDataLoaders) and rebuilt.vocab == [False, True] and rebuilt.n_out == 2
    assert isinstance(rebuilt.loss_func, CrossEntropyLossFlat)
    expected = dls.test_dl(pets[:3], num_workers=0).one_batch()[0]
    got = rebuilt.test_dl([str(p) for p in pets[:3]]).one_batch()[0]
    assert torch.allclose(got, expected) and got.min() < 0  # normalised
    assert rebuilt.decode_prediction(torch.tensor(0)) == "False"
    assert json.loads(json.dumps(rebuilt.inference))["kwargs"] == description["kwargs"]


def test_segmentation_inference(camvid):
    path, files = camvid
    dls = SegmentationDataLoaders.from_label_func(path, files, label_func_for(path), codes=["a", "b", "c"],
                                                  item_tfms=Resize(16), num_workers=0)
    rebuilt = inference_dls(**json.loads(json.dumps(dls.inference["kwargs"])))
    assert rebuilt.vocab == ["a", "b", "c"] and rebuilt.loss_func.axis == 1
    assert torch.equal(rebuilt.test_dl(files[:2], num_workers=0).one_batch()[0],
                       dls.test_dl(files[:2], num_workers=0).one_batch()[0])


def test_loaded_pipeline_uses_workers_and_refuses_labels(pets):
    rebuilt = resolve_entry("inference_dls", "data.builder")(**chapter_one(pets).inference["kwargs"])
    assert rebuilt.valid.num_workers == default_num_workers()  # test_dl loads like training loaders do
    assert rebuilt.test_dl(pets[:2]).num_workers == default_num_workers()
    with pytest.raises(ValueError, match=r"with_labels=True\) needs the label function, and a loaded learner has none"):
        rebuilt.test_dl(pets[:2], with_labels=True)


def test_mask_block_with_a_void_value(camvid):
    path, files = camvid
    for fn in (path / "labels").iterdir():  # a void border, as CamVid-style data marks unlabelled pixels
        mask = np.array(Image.open(fn))
        mask[0] = 255
        Image.fromarray(mask).save(fn)
    dblock = DataBlock(blocks=(ImageBlock, MaskBlock(codes=["a", "b", "c"], ignore_index=255)),
                       get_y=label_func_for(path), splitter=RandomSplitter(seed=0), item_tfms=Resize(16))
    dls = dblock.dataloaders(files, bs=2, num_workers=0)
    assert dls.loss_func.ignore_index == 255 and dls.loss_config["kwargs"] == {"axis": 1, "ignore_index": 255}
    xb, yb = dls.valid.one_batch()
    assert (yb == 255).any() and yb[yb != 255].max() <= 2
    logits = torch.randn(len(yb), 3, 16, 16)
    assert torch.isfinite(dls.loss_func(logits, yb))
    rebuilt = inference_dls(**json.loads(json.dumps(dls.inference["kwargs"])))
    assert rebuilt.loss_func.ignore_index == 255
    plain = DataBlock(blocks=(ImageBlock, MaskBlock(codes=["a", "b", "c"])), get_y=label_func_for(path),
                      item_tfms=Resize(16)).dataloaders(files, bs=2, num_workers=0)
    with pytest.raises(ValueError, match=r"contains the value 255.*MaskBlock\(codes, ignore_index=...\)"):
        plain.one_batch()


def test_inference_names_a_validation_transform_it_cannot_describe(pets):
    class Custom:
        order = 3

        def __call__(self, sample, split_idx=None):
            return sample

    dls = ImageDataLoaders.from_name_func(pets[0].parent, pets, label_func=is_cat, num_workers=0,
                                          item_tfms=[Resize(16), Custom()])
    with pytest.raises(ValueError, match="Cannot export the item transform .*Custom.* no to_config"):
        dls.inference  # noqa: B018

    class TrainOnly(Custom):
        split_idx = 0  # augmentation: irrelevant for inference, so it need not be described

    dls = ImageDataLoaders.from_name_func(pets[0].parent, pets, label_func=is_cat, num_workers=0,
                                          item_tfms=[Resize(16), TrainOnly(), FlipItem()])
    assert [c["name"] for c in dls.inference["kwargs"]["item_tfms"]] == ["Resize", "ToTensor"]


def test_summary_with_images(pets, capsys):
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=RegexLabeller(BREED_RE), item_tfms=Resize(16),
                       splitter=RandomSplitter(seed=0))
    dblock.summary(pets, bs=2)
    out = capsys.readouterr().out
    for expected in ("applying ImageReader gives", "PILImage mode=RGB size=32x24", "applying Resize gives",
                     "PILImage mode=RGB size=16x16", "applying ToTensor gives", "applying IntToFloatTensor gives",
                     "Tensor of shape (2, 3, 16, 16), dtype float32"):
        assert expected in out, expected


def test_segmentation_datasets_by_hand_with_add_mask_codes(camvid):
    path, files = camvid
    dsets = Datasets(files, [[PILImage.create], [label_func_for(path), PILMask.create]],
                     splits=RandomSplitter(seed=0)(files))
    dls = dsets.dataloaders(bs=2, after_item=[AddMaskCodes(["a", "b", "c"]), Resize(16), ToTensor],
                            after_batch=[IntToFloatTensor], num_workers=0)
    assert isinstance(dls, ImageDataLoaders) and dls.vocab == ["a", "b", "c"] and dls.n_out == 3
    assert dls.loss_func.axis == 1 and dls.train.kinds == ("image", "mask")
    rebuilt = inference_dls(**json.loads(json.dumps(dls.inference["kwargs"])))
    assert rebuilt.vocab == ["a", "b", "c"]


def test_inference_refuses_a_transform_whose_class_is_not_registered(pets):
    class Unregistered(Resize):  # a subclass inherits to_config, but a loaded learner could not rebuild it
        pass

    dls = ImageDataLoaders.from_name_func(pets[0].parent, pets, label_func=is_cat, num_workers=0,
                                          item_tfms=Unregistered(16))
    with pytest.raises(ValueError, match="Cannot export the item transform Unregistered.*not registered.*register_tfm"):
        dls.inference  # noqa: B018
