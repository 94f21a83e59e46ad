"""Item transforms: run on each sample (in DataLoader workers), on Pillow images and masks together.

An item transform receives the whole sample tuple, draws its random parameters once from the first
image, and applies the same geometry to every image and mask in it (masks with nearest-neighbour
resampling, so class indices are never blended); other members (labels) pass through. On the training
split (``split_idx=0``, or None outside a split) positions are random; on validation (1) they are centred.

Every transform has ``to_config()``; `item_tfm_from_config` rebuilds it from `ITEM_TFMS` (both in
`lamina.data.transforms`, re-exported here), so an export can recreate the validation pipeline without
pickling code.

Example:
    >>> Resize(224)(img, split_idx=1)                  # centre crop to 224x224
    >>> RandomResizedCrop(128, min_scale=0.35)((img, mask), split_idx=0)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.transforms import ITEM_TFMS, ItemTransform, item_tfm_from_config, register_tfm
from .core import PILBase, PILMask, image2tensor
from .points import TRANSPOSE_COORDS, TensorPoint, move_points

__all__ = ["Resize", "RandomResizedCrop", "RandomCrop", "CropPad", "RatioResize", "FlipItem", "DihedralItem",
           "ToTensor", "AddMaskCodes", "ResizeMethod", "PadMode", "clamp_box",
           # re-exported from their home, lamina.data.transforms, for older imports
           "ItemTransform", "ITEM_TFMS", "item_tfm_from_config"]

BILINEAR, NEAREST = Image.Resampling.BILINEAR, Image.Resampling.NEAREST


class ResizeMethod:
    """How `Resize` reaches the target aspect: crop the excess, squish, or pad."""

    Squish, Crop, Pad = "squish", "crop", "pad"


class PadMode:
    """How padding is filled: zeros, the border pixels repeated, or a mirror image."""

    Zeros, Border, Reflection = "zeros", "border", "reflection"


_NUMPY_PAD = {"zeros": "constant", "border": "edge", "reflection": "reflect"}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An int means a square; a pair is (height, width)."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"`size` must be an int or a (height, width) pair; received: size={size!r}")


def _check_choice(name: str, value: str, choices: dict | tuple) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received: {name}={value!r}")


def _is_image(x: Any) -> bool:
    return isinstance(x, Image.Image)


def _pad(img: Image.Image, pads: tuple[int, int, int, int], pad_mode: str) -> Image.Image:
    """Pad (left, top, right, bottom) pixels, filled per ``pad_mode``."""
    left, top, right, bottom = pads
    a = np.asarray(img)
    widths = ((top, bottom), (left, right)) + (((0, 0),) if a.ndim == 3 else ())
    return Image.fromarray(np.pad(a, widths, mode=_NUMPY_PAD[pad_mode]))


def resample_box(img: Image.Image, box: tuple[float, float, float, float], out_size: tuple[int, int],
                 resample: int, pad_mode: str = "zeros") -> Image.Image:
    """The region ``box`` (left, top, right, bottom; may reach outside the image) resampled to ``out_size`` (w, h).

    One resampling whatever the box; the outside is padded first, filled per ``pad_mode``.
    """
    width, height = img.size
    left, top, right, bottom = box
    eps = 1e-6  # float boxes that touch an edge must not add a padding row
    pads = (max(0, math.ceil(-left - eps)), max(0, math.ceil(-top - eps)),
            max(0, math.ceil(right - width - eps)), max(0, math.ceil(bottom - height - eps)))
    if any(pads):
        img = _pad(img, pads, pad_mode)
        left, right, top, bottom = left + pads[0], right + pads[0], top + pads[1], bottom + pads[1]
    return img.resize(out_size, resample, box=clamp_box((left, top, right, bottom), img.size))


def clamp_box(box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` (left, top, right, bottom) kept inside an image of ``size`` (w, h).

    Float arithmetic puts a window that touches an edge a hair outside it (a top of -1e-14 for a 300x225
    image cropped to a square), which Pillow refuses; the padding above has already covered any real overhang.
    """
    width, height = size
    left, top = min(max(0.0, box[0]), width - 1.0), min(max(0.0, box[1]), height - 1.0)
    return left, top, min(max(box[2], left + 1e-3), float(width)), min(max(box[3], top + 1e-3), float(height))


class _Geometric(ItemTransform):
    """Draws a plan from the first image's size, then applies it to every image and mask of the sample."""

    order = 1
    resamples: tuple[int, int] = (BILINEAR, NEAREST)
    random_on_train = True

    def encodes(self, sample: tuple, split_idx: int | None) -> tuple:
        first = next((x for x in sample if _is_image(x)), None)
        if first is None:
            return sample
        plan = self.plan(first.size, train=split_idx != 1)
        out = tuple(self._apply_one(x, plan) if _is_image(x) else x for x in sample)
        if not any(isinstance(x, TensorPoint) for x in out):
            return out
        size, new_size = first.size, next(x for x in out if _is_image(x)).size

        def fn(xy: Any) -> Any:
            return self.coords(xy, plan, size)
        return tuple(move_points(x, fn, (new_size[1], new_size[0])) if isinstance(x, TensorPoint) else x
                     for x in out)

    def coords(self, xy: Tensor, plan: Any, size: tuple[int, int]) -> Tensor:
        """Where pixel positions ``xy`` (n, 2; x, y) of an image of ``size`` (w, h) go: by default ``plan`` is
        the box (left, top, right, bottom) that is resampled to ``self.size``."""
        left, top, right, bottom = plan
        height, width = self.size
        scale = torch.tensor([width / (right - left), height / (bottom - top)])
        return (xy - torch.tensor([float(left), float(top)])) * scale

    def _apply_one(self, img: Image.Image, plan: Any) -> Image.Image:
        is_mask = isinstance(img, PILMask)
        out = self.apply(img, plan, self.resamples[1] if is_mask else self.resamples[0])
        return type(img).from_pil(out) if isinstance(img, PILBase) else out

    def plan(self, size: tuple[int, int], train: bool) -> Any:
        raise NotImplementedError

    def apply(self, img: Image.Image, plan: Any, resample: int) -> Image.Image:
        raise NotImplementedError


@register_tfm
class Resize(_Geometric):
    """Resize to ``size`` by cropping, squishing or padding (random window on training, centred on validation).

    Args:
        size: an int (square) or (height, width).
        method: ``'crop'`` (fill the target, crop the excess), ``'squish'`` (ignore the aspect) or
            ``'pad'`` (fit inside the target, pad the rest).
        pad_mode: ``'reflection'``, ``'zeros'`` or ``'border'`` (for ``'pad'``).
        resamples: Pillow filters for images and for masks.
    """

    _config_keys = ("size", "method", "pad_mode", "resamples")

    def __init__(self, size: int | Sequence[int], method: str = "crop", pad_mode: str = "reflection",
                 resamples: Sequence[int] = (BILINEAR, NEAREST), **kwargs: Any):
        _check_choice("method", method, ("crop", "squish", "pad"))
        _check_choice("pad_mode", pad_mode, _NUMPY_PAD)
        self.size, self.method, self.pad_mode = _pair(size), method, pad_mode
        self.resamples = (int(resamples[0]), int(resamples[1]))

    @property
    def random_on_train(self) -> bool:
        return self.method != "squish"

    def plan(self, size: tuple[int, int], train: bool) -> tuple[float, float, float, float]:
        (width, height), (h, w) = size, self.size
        if self.method == "squish":
            return 0.0, 0.0, float(width), float(height)
        scale = min(width / w, height / h) if self.method == "crop" else max(width / w, height / h)
        win_w, win_h = w * scale, h * scale
        fx, fy = (random.random(), random.random()) if train else (0.5, 0.5)
        left, top = (width - win_w) * fx, (height - win_h) * fy  # negative when padding
        return left, top, left + win_w, top + win_h

    def apply(self, img: Image.Image, box: Any, resample: int) -> Image.Image:
        return resample_box(img, box, (self.size[1], self.size[0]), resample, self.pad_mode)

    def draft_size(self) -> tuple[int, int]:
        """A JPEG decoded at least this big (h, w) loses nothing: the output is that size."""
        return self.size


@register_tfm
class RandomResizedCrop(_Geometric):
    """A random crop of random area and aspect, resized to ``size`` (training); squish then centre-crop (validation).

    Training: up to 10 draws of an area fraction in U(min_scale, max_scale) and a log-uniform aspect
    in ``ratio``; the first that fits is placed at random; otherwise a centred crop with the aspect
    clamped to ``ratio``. Validation: the whole image squished to ``size + xtra`` with
    ``xtra = ceil(max(size) * val_xtra / 8) * 8``, then the centre ``size`` kept.
    """

    _config_keys = ("size", "min_scale", "ratio", "resamples", "val_xtra", "max_scale")

    def __init__(self, size: int | Sequence[int], min_scale: float = 0.08, ratio: Sequence[float] = (3 / 4, 4 / 3),
                 resamples: Sequence[int] = (BILINEAR, NEAREST), val_xtra: float = 0.14, max_scale: float = 1.0,
                 **kwargs: Any):
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError("`min_scale` and `max_scale` must satisfy 0 < min_scale <= max_scale <= 1; "
                             f"received: min_scale={min_scale!r}, max_scale={max_scale!r}")
        self.size, self.min_scale, self.max_scale = _pair(size), min_scale, max_scale
        self.ratio, self.val_xtra = (float(ratio[0]), float(ratio[1])), val_xtra
        self.resamples = (int(resamples[0]), int(resamples[1]))

    def plan(self, size: tuple[int, int], train: bool) -> tuple[float, float, float, float]:
        width, height = size
        if not train:
            h, w = self.size
            xtra = math.ceil(max(self.size) * self.val_xtra / 8) * 8
            sx, sy = width / (w + xtra), height / (h + xtra)
            return xtra / 2 * sx, xtra / 2 * sy, (xtra / 2 + w) * sx, (xtra / 2 + h) * sy
        for _ in range(10):
            area = random.uniform(self.min_scale, self.max_scale) * width * height
            aspect = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            crop_w, crop_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                left, top = random.randint(0, width - crop_w), random.randint(0, height - crop_h)
                return left, top, left + crop_w, top + crop_h
        crop_w, crop_h = width, height
        if width / height < self.ratio[0]:
            crop_h = round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            crop_w = round(height * self.ratio[1])
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        return left, top, left + crop_w, top + crop_h

    def apply(self, img: Image.Image, box: Any, resample: int) -> Image.Image:
        return resample_box(img, box, (self.size[1], self.size[0]), resample)

    def draft_size(self) -> tuple[int, int]:
        # the smallest crop (area min_scale, extreme aspect) is scaled up to `size`: decode big enough for it
        factor = 1 / math.sqrt(self.min_scale * self.ratio[0] / self.ratio[1])
        return math.ceil(self.size[0] * factor), math.ceil(self.size[1] * factor)


@register_tfm
class RandomCrop(_Geometric):
    """Crop ``size`` at a random position (training) or the centre (validation); smaller images are zero-padded."""

    _config_keys = ("size",)

    def __init__(self, size: int | Sequence[int], **kwargs: Any):
        self.size = _pair(size)

    def plan(self, size: tuple[int, int], train: bool) -> tuple[int, int, int, int]:
        (width, height), (h, w) = size, self.size
        if train:
            left = random.randint(min(0, width - w), max(0, width - w))
            top = random.randint(min(0, height - h), max(0, height - h))
        else:
            left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def apply(self, img: Image.Image, box: Any, resample: int) -> Image.Image:
        return img.crop(box)  # exact pixels; Pillow fills outside the image with zeros


@register_tfm
class CropPad(_Geometric):
    """Centre crop or pad to ``size`` on both splits (no resampling); padding filled per ``pad_mode``."""

    random_on_train = False
    _config_keys = ("size", "pad_mode")

    def __init__(self, size: int | Sequence[int], pad_mode: str = "zeros", **kwargs: Any):
        _check_choice("pad_mode", pad_mode, _NUMPY_PAD)
        self.size, self.pad_mode = _pair(size), pad_mode

    def plan(self, size: tuple[int, int], train: bool) -> tuple[int, int, int, int]:
        (width, height), (h, w) = size, self.size
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def apply(self, img: Image.Image, box: Any, resample: int) -> Image.Image:
        if self.pad_mode == "zeros":
            return img.crop(box)
        return resample_box(img, box, (self.size[1], self.size[0]), Image.Resampling.NEAREST, self.pad_mode)


@register_tfm
class RatioResize(_Geometric):
    """Resize so that the longer side is ``max_sz``, keeping the aspect."""

    random_on_train = False
    _config_keys = ("max_sz", "resamples")

    def __init__(self, max_sz: int, resamples: Sequence[int] = (BILINEAR, NEAREST), **kwargs: Any):
        self.max_sz, self.resamples = int(max_sz), (int(resamples[0]), int(resamples[1]))

    def plan(self, size: tuple[int, int], train: bool) -> tuple[int, int]:
        width, height = size
        scale = self.max_sz / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def apply(self, img: Image.Image, out_size: Any, resample: int) -> Image.Image:
        return img.resize(out_size, resample)

    def coords(self, xy: Tensor, out_size: Any, size: tuple[int, int]) -> Tensor:
        return xy * torch.tensor([out_size[0] / size[0], out_size[1] / size[1]])

    def draft_size(self) -> tuple[int, int]:
        return self.max_sz, self.max_sz


@register_tfm
class FlipItem(_Geometric):
    """Flip left-right with probability ``p`` (training only)."""

    order, split_idx = 2, 0
    _config_keys = ("p",)

    def __init__(self, p: float = 0.5):
        self.p = p

    def plan(self, size: tuple[int, int], train: bool) -> bool:
        return random.random() < self.p

    def apply(self, img: Image.Image, flip: Any, resample: int) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img

    def coords(self, xy: Tensor, flip: Any, size: tuple[int, int]) -> Tensor:
        return torch.stack((size[0] - xy[:, 0], xy[:, 1]), dim=1) if flip else xy


_DIHEDRAL = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
             Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
             Image.Transpose.TRANSVERSE)


@register_tfm
class DihedralItem(_Geometric):
    """With probability ``p``, one of the 8 flips/rotations by multiples of 90° (training only)."""

    order, split_idx = 2, 0
    _config_keys = ("p",)

    def __init__(self, p: float = 1.0):
        self.p = p

    def plan(self, size: tuple[int, int], train: bool) -> Any:
        return _DIHEDRAL[random.randint(0, 7)] if random.random() < self.p else None

    def apply(self, img: Image.Image, op: Any, resample: int) -> Image.Image:
        return img if op is None else img.transpose(op)

    def coords(self, xy: Tensor, op: Any, size: tuple[int, int]) -> Tensor:
        if op is None:
            return xy
        (width, height), x, y = size, xy[:, 0], xy[:, 1]
        return torch.stack(TRANSPOSE_COORDS[op](x, y, width, height), dim=1)


@register_tfm
class ToTensor(ItemTransform):
    """Pillow images → uint8 tensors: images CxHxW (grayscale 1xHxW), masks HxW.

    Masks stay uint8 (a quarter of the bytes of int64 to collate and copy); the batch transform
    ``IntToFloatTensor`` makes them int64 on the device.
    """

    order = 5

    def encodes(self, sample: tuple, split_idx: int | None) -> tuple:
        return tuple(image2tensor(x) if _is_image(x) else x for x in sample)


@register_tfm
class AddMaskCodes(ItemTransform):
    """Names the classes of segmentation masks for a `Datasets` built by hand (``after_item=[AddMaskCodes(codes),
    ...]``): it sets the DataLoaders' ``vocab`` and ``n_out``; samples pass unchanged. (`MaskBlock` takes the
    codes itself.)"""

    _config_keys = ("codes",)

    def __init__(self, codes: Sequence | None = None):
        self.codes = None if codes is None else [str(c) if isinstance(c, np.str_) else c for c in codes]

    @property
    def vocab(self) -> list | None:
        return self.codes

    @property
    def c(self) -> int | None:
        return None if self.codes is None else len(self.codes)
