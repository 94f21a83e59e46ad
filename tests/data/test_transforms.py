"""lamina.data.transforms: the step protocol, the base classes, the export tables (every registered transform
round-trips through JSON and behaves the same), applying and fusing, and the loss each target kind implies."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

import lamina.vision.all  # noqa: F401  (fills ITEM_TFMS and BATCH_TFMS: the image transforms register there)
from lamina.data.block import CategoryBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from lamina.data.transforms import (BATCH_TFMS, ITEM_TFMS, TARGET_LOSSES, BatchTransform, Categorize,
                                    ItemTransform, MultiCategorize, PipelineStep, RegressionSetup, TypeTransform,
                                    apply_batch_tfms, apply_item_tfms, batch_tfm_from_config, fuse_tfms,
                                    item_tfm_from_config, merge_tfms, register_tfm, sort_tfms, step_hook,
                                    target_loss_config, undo_batch_tfms)
from lamina.losses import LOSSES, loss_from_config
from lamina.vision.augment import (AffineCoordTfm, Brightness, Contrast, Dihedral, Flip, Hue, IntToFloatTensor,
                                   LightingTfm, Normalize, RandomErasing, RandomResizedCropGPU, Rotate, Saturation,
                                   Warp, Zoom, setup_aug_tfms)
from lamina.vision.core import PILImage, PILMask
from lamina.vision.data import MaskBlock
from lamina.vision.points import PointScaler
from lamina.vision.transforms import (AddMaskCodes, CropPad, DihedralItem, FlipItem, RandomCrop, RandomResizedCrop,
                                      RatioResize, Resize, ToTensor)

# --- every registered transform: to_config -> JSON -> from_config gives the same transform ----------------

# One example per registered name, with arguments away from the defaults where the class has some, so that a
# forgotten `_config_keys` entry shows as a difference. The coverage test below fails for a name without one.
BATCH_EXAMPLES = {
    "IntToFloatTensor": lambda: IntToFloatTensor(div=127.5, div_mask=2),
    "Normalize": lambda: Normalize.from_stats([0.1, 0.2, 0.3], [0.4, 0.5, 0.6]),
    "AffineCoordTfm": lambda: AffineCoordTfm([Flip(p=1.0), Rotate(max_deg=20, p=1.0)], size=(6, 10), mode="nearest",
                                             pad_mode="zeros", align_corners=False, mode_mask="nearest"),
    "Flip": lambda: Flip(p=1.0, size=6, mode="bicubic", pad_mode="border", batch=True),
    "Dihedral": lambda: Dihedral(p=0.9, align_corners=False),
    "Rotate": lambda: Rotate(max_deg=30, p=1.0, size=(6, 8)),
    "Zoom": lambda: Zoom(min_zoom=0.8, max_zoom=1.4, p=1.0, batch=True),
    "Warp": lambda: Warp(magnitude=0.3, p=1.0, pad_mode="zeros"),
    "RandomResizedCropGPU": lambda: RandomResizedCropGPU((6, 8), min_scale=0.3, ratio=(0.5, 2.0), valid_scale=0.9,
                                                         max_scale=0.8, pad_mode="border", batch=True),
    "LightingTfm": lambda: LightingTfm([Brightness(0.3, p=1.0), Contrast(0.4, p=1.0), Hue(0.2, p=1.0)]),
    "Brightness": lambda: Brightness(max_lighting=0.5, p=1.0, batch=True),
    "Contrast": lambda: Contrast(max_lighting=0.4, p=1.0),
    "Saturation": lambda: Saturation(max_lighting=0.3, p=1.0),
    "Hue": lambda: Hue(max_hue=0.3, p=1.0),
    "RandomErasing": lambda: RandomErasing(p=1.0, sl=0.1, sh=0.4, min_aspect=0.5, max_count=3),
}
ITEM_EXAMPLES = {
    "Resize": lambda: Resize((10, 14), method="pad", pad_mode="zeros"),
    "RandomResizedCrop": lambda: RandomResizedCrop(12, min_scale=0.3, ratio=(0.5, 2.0), val_xtra=0.9, max_scale=0.9),
    "RandomCrop": lambda: RandomCrop((8, 10)),
    "CropPad": lambda: CropPad(30, pad_mode="reflection"),
    "RatioResize": lambda: RatioResize(17),
    "FlipItem": lambda: FlipItem(p=0.7),
    "DihedralItem": lambda: DihedralItem(p=0.6),
    "ToTensor": lambda: ToTensor(),
    "AddMaskCodes": lambda: AddMaskCodes(["sky", "road", "car"]),
    "PointScaler": lambda: PointScaler(do_scale=False, y_first=True),
}


def test_every_registered_transform_has_an_example():
    assert set(BATCH_EXAMPLES) == set(BATCH_TFMS)
    assert set(ITEM_EXAMPLES) == set(ITEM_TFMS)


def image_batch() -> tuple:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(2, 3, 12, 16, generator=gen), torch.randint(0, 3, (2, 12, 16), generator=gen),
            torch.tensor([0, 1]))


KINDS = ("image", "mask", "category")


@pytest.mark.parametrize("name", sorted(BATCH_EXAMPLES))
@pytest.mark.parametrize("split_idx", [0, 1])
def test_batch_transforms_round_trip_and_behave_the_same(name, split_idx):
    tfm = BATCH_EXAMPLES[name]()
    config = json.loads(json.dumps(tfm.to_config()))
    rebuilt = batch_tfm_from_config(config)
    assert type(rebuilt) is type(tfm) and rebuilt.to_config() == config
    assert (rebuilt.order, rebuilt.split_idx) == (tfm.order, tfm.split_idx)
    batch = image_batch()
    if name == "IntToFloatTensor":
        batch = ((batch[0] * 255).to(torch.uint8), *batch[1:])
    outputs = []
    for t in (tfm, rebuilt):
        torch.manual_seed(5)  # the same random draws for both
        outputs.append(t(batch, KINDS, split_idx))
    for original, copy in zip(*outputs):
        torch.testing.assert_close(copy, original)


def sample() -> tuple:
    rng = np.random.default_rng(2)
    image = PILImage.create(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    return image, PILMask.create(rng.integers(0, 3, (20, 28), dtype=np.uint8)), 1


def as_arrays(sample: tuple) -> list:
    return [np.asarray(x) if isinstance(x, Image.Image) else x for x in sample]


@pytest.mark.parametrize("name", sorted(ITEM_EXAMPLES))
@pytest.mark.parametrize("split_idx", [0, 1])
def test_item_transforms_round_trip_and_behave_the_same(name, split_idx):
    tfm = ITEM_EXAMPLES[name]()
    config = json.loads(json.dumps(tfm.to_config()))
    rebuilt = item_tfm_from_config(config)
    assert type(rebuilt) is type(tfm) and rebuilt.to_config() == config
    assert (rebuilt.order, rebuilt.split_idx) == (tfm.order, tfm.split_idx)
    outputs = []
    for t in (tfm, rebuilt):
        random.seed(3)  # the item transforms draw from Python's generator
        outputs.append(as_arrays(apply_item_tfms(sample(), [t], split_idx)))
    for original, copy in zip(*outputs):
        if isinstance(original, np.ndarray):
            np.testing.assert_array_equal(copy, original)
        elif isinstance(original, torch.Tensor):
            assert torch.equal(copy, original)
        else:
            assert copy == original


def test_from_config_names_the_problem():
    with pytest.raises(ValueError, match="Unknown item transform 'Blur'.*register_tfm"):
        item_tfm_from_config({"name": "Blur", "kwargs": {}})
    with pytest.raises(ValueError, match="unknown batch transform 'Sharpen'.*register_tfm"):
        batch_tfm_from_config({"name": "Sharpen"})
    with pytest.raises(ValueError, match="`cfg` must be a dict like"):
        batch_tfm_from_config(["Flip"])


# --- the to_config convention and register_tfm --------------------------------------------------------------


class Scale(BatchTransform):
    """A test batch transform: images times ``factor``; undone by ``decodes``."""

    order = 50
    _config_keys = ("factor", "shape")

    def __init__(self, factor: float = 2.0, shape: tuple = (1, 2)):
        self.factor, self.shape = factor, shape

    def encodes(self, batch, kinds, split_idx):
        return tuple(x * self.factor if kind == "image" else x for x, kind in zip(batch, kinds))

    def decodes(self, batch, kinds):
        return tuple(x / self.factor if kind == "image" else x for x, kind in zip(batch, kinds))


def test_register_tfm_makes_a_custom_transform_rebuildable(monkeypatch):
    monkeypatch.setitem(BATCH_TFMS, "Scale", Scale)  # the table is restored after the test
    del BATCH_TFMS["Scale"]
    assert register_tfm(Scale) is Scale and BATCH_TFMS["Scale"] is Scale
    assert register_tfm(Scale) is Scale  # the same class again (a reloaded module) is fine
    config = Scale(3.0, shape=(4, 5)).to_config()
    assert config == {"name": "Scale", "kwargs": {"factor": 3.0, "shape": [4, 5]}}  # tuples become JSON lists
    assert repr(Scale(3.0)) == "Scale(factor=3.0, shape=(1, 2))"
    rebuilt = batch_tfm_from_config(config)
    assert isinstance(rebuilt, Scale) and rebuilt.factor == 3.0
    other = type("Scale", (BatchTransform,), {"__module__": "elsewhere"})
    with pytest.raises(ValueError, match="'Scale' is already registered"):
        register_tfm(other)
    with pytest.raises(TypeError, match="ItemTransform or BatchTransform subclass"):
        register_tfm(Categorize)


def test_base_transforms_apply_split_idx():
    class TrainOnly(Scale):
        split_idx = 0

    x = torch.ones(1, 3, 2, 2)
    assert TrainOnly()((x,), ("image",), 0)[0].eq(2).all() and TrainOnly()((x,), ("image",), 1)[0].eq(1).all()

    class Tag(ItemTransform):
        split_idx = 1

        def encodes(self, sample, split_idx):
            return tuple(f"{s}!" for s in sample)

    assert Tag()("a", split_idx=1) == "a!" and Tag()("a", split_idx=0) == "a"
    assert Tag()(("a", "b"), None) == ("a!", "b!")  # outside a split: applied
    assert not Tag().is_random(0) and Resize(8).is_random(0) and not Resize(8).is_random(1)


# --- applying, undoing, merging, fusing -----------------------------------------------------------------------


def test_apply_sorts_batch_transforms_and_undo_runs_backwards():
    def add_one(batch, kinds, split_idx):  # a plain function: order 0, no decodes
        return tuple(x + 1 for x in batch)

    x = torch.zeros(1)
    assert apply_batch_tfms((x,), [Scale(), add_one], ("image",), 0)[0].item() == 2.0  # add_one first, then scale
    assert undo_batch_tfms((torch.full((1,), 4.0),), [add_one, Scale()], ("image",))[0].item() == 2.0
    assert [type(t).__name__ for t in sort_tfms([Normalize(), IntToFloatTensor(), add_one])] == \
        ["function", "IntToFloatTensor", "Normalize"]


def test_apply_item_tfms_gives_whole_samples_to_transforms_and_members_to_functions():
    seen = []

    class Whole:
        order = 3

        def __call__(self, sample, split_idx=None):
            seen.append((sample, split_idx))
            return sample

    out = apply_item_tfms((1, 2), [Whole(), lambda v: v * 10], split_idx=1)
    assert out == (10, 20) and seen == [((1, 2), 1)]


def test_merge_keeps_one_per_class_with_the_users_instance():
    default, mine = Resize(8), Resize(16)
    merged = merge_tfms([ToTensor(), default], [mine, FlipItem])
    assert [type(t) for t in merged] == [Resize, FlipItem, ToTensor] and merged[0] is mine
    assert merge_tfms([ToTensor()], None)[0].__class__ is ToTensor


def test_setup_aug_tfms_is_fuse_tfms_after_gathering_each_group():
    class SameOrder(BatchTransform):
        order = 30  # between two geometric transforms in the list, same order as theirs

    flip, odd, rotate = Flip(p=1.0), SameOrder(), Rotate(p=1.0)
    bright, contrast = Brightness(p=1.0), Contrast(p=1.0)
    assert [type(t) for t in fuse_tfms([flip, odd, rotate])] == [Flip, SameOrder, Rotate]  # neighbours only
    gathered = setup_aug_tfms([flip, bright, odd, rotate, RandomErasing(), contrast])
    assert [type(t) for t in gathered] == [AffineCoordTfm, SameOrder, LightingTfm, RandomErasing]
    assert gathered[0].tfms == [flip, rotate] and gathered[2].tfms == [bright, contrast]
    assert setup_aug_tfms([IntToFloatTensor(), flip])[1] is flip  # a group of one is kept as it is


# --- the pipeline step protocol --------------------------------------------------------------------------------


def test_every_hook_of_the_protocol_has_a_default_on_the_base_class():
    hooks = set(PipelineStep.__annotations__)
    assert hooks == {"lazy", "kind", "setup", "check", "decode", "vocab", "c", "accepts", "show", "loss_kwargs"}
    assert all(hasattr(TypeTransform, hook) for hook in hooks)


def test_step_hook_reads_own_hooks_else_the_defaults():
    def parent(x):
        return x

    assert step_hook(parent, "lazy") is False and step_hook(parent, "kind") is None
    assert step_hook(parent, "setup") is None and dict(step_hook(parent, "loss_kwargs")) == {}
    cat = Categorize()
    assert step_hook(cat, "kind") == "category" and step_hook(cat, "setup") == cat.setup
    with pytest.raises(AttributeError, match="'draw' is not a pipeline step hook"):
        step_hook(cat, "draw")

    class Upper(TypeTransform):
        kind = "category"

        def __call__(self, label):
            return label.upper()

    assert Upper()("a") == "A" and Upper().decode is None and Upper().loss_config == TARGET_LOSSES["category"]


# --- the loss each target kind implies ---------------------------------------------------------------------


def test_target_losses_build_and_are_what_blocks_and_encoders_imply():
    for kind, config in TARGET_LOSSES.items():
        assert config["name"] in LOSSES and type(loss_from_config(config)).__name__ == config["name"], kind
    assert CategoryBlock().loss_func == Categorize().loss_config == TARGET_LOSSES["category"]
    assert MultiCategoryBlock().loss_func == MultiCategorize().loss_config == TARGET_LOSSES["multicategory"]
    assert RegressionBlock().loss_func == RegressionSetup().loss_config == TARGET_LOSSES["regression"]
    assert MaskBlock(["a", "b"]).loss_func == {"name": "CrossEntropyLossFlat", "kwargs": {"axis": 1}}
    voided = MaskBlock(["a", "b"], ignore_index=255).loss_func
    assert voided == {"name": "CrossEntropyLossFlat", "kwargs": {"axis": 1, "ignore_index": 255}}
    assert loss_from_config(voided).ignore_index == 255 and loss_from_config(voided).axis == 1
    assert TransformBlock().loss_func is None and target_loss_config("image") is None
    assert TransformBlock(loss_func={"name": "L1LossFlat"}).loss_func == {"name": "L1LossFlat"}  # given wins
    assert target_loss_config("regression", axis=1) == {"name": "MSELossFlat", "kwargs": {"axis": 1}}
    assert TARGET_LOSSES["regression"]["kwargs"] == {}  # the table itself is not changed by the call
