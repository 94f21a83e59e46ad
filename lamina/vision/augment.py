"""Batch augmentation on the device: the random geometric pieces, and `aug_transforms`, the standard recipe.

Each geometric transform (`Flip`, `Dihedral`, `Rotate`, `Zoom`, `Warp`, `RandomResizedCropGPU`) is a 3x3 matrix
per image; neighbours in a list of batch transforms are fused into one `AffineCoordTfm`
(`lamina.vision.affine`), which multiplies the matrices and interpolates once. Masks take the same grid with
nearest sampling. Validation is only resized to ``size`` (`RandomResizedCropGPU`: centre crop). The
pixel-value transforms live in `lamina.vision.lighting` and are re-exported here.

Example:
    >>> batch_tfms = [*aug_transforms(size=224, min_scale=0.75), Normalize.from_stats(*imagenet_stats)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.transforms import BATCH_TFMS, BatchTransform, batch_tfm_from_config, fuse_tfms, register_tfm, tfm_hook
from .affine import MODES, AffineCoordTfm, Geometry, RandomPiece, check_choice, identity_matrices, pixel_span
from .draws import drawn
from .lighting import (Brightness, Contrast, Hue, IntToFloatTensor, LightingTfm, Normalize, RandomErasing,
                       Saturation)

__all__ = ["AffineCoordTfm", "Flip", "Dihedral", "Rotate", "Zoom", "Warp", "RandomResizedCropGPU",
           "aug_transforms", "setup_aug_tfms",
           # re-exported from their homes (lamina.data.transforms, lamina.vision.lighting) for older imports
           "BATCH_TFMS", "batch_tfm_from_config", "IntToFloatTensor", "Normalize", "LightingTfm", "Brightness",
           "Contrast", "Saturation", "Hue", "RandomErasing"]


@register_tfm
class Flip(RandomPiece):
    """Horizontal flip with probability ``p`` (training only).

    Args:
        p: the probability of flipping an image.
        draw: fixed flips instead of random ones (1 flip / 0 keep: a number, one per image, or a function
            of the batch); ``p`` still applies.
        size, mode, pad_mode, align_corners: as `AffineCoordTfm`.
        batch: one draw for the whole batch.
    """

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        flip = on & (drawn(self.draw, geo.ref, torch.ones(geo.bs, device=geo.device)) != 0)
        matrix[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        return matrix


@register_tfm
class Dihedral(RandomPiece):
    """One of the 8 symmetries of the square (flips, quarter turns, transposes) with probability ``p``.

    The symmetry k in 0..7 is drawn uniformly: bit 0 flips x, bit 1 flips y, bit 2 swaps x and y.

    Args: as `Flip`; ``draw`` fixes k.
    """

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        default = torch.randint(0, 8, (1 if self.batch else geo.bs,), device=geo.device).expand(geo.bs)
        k = torch.where(on, drawn(self.draw, geo.ref, default.float()).long(), 0)
        flip_x, flip_y = 1 - 2 * (k % 2).float(), 1 - 2 * (k // 2 % 2).float()
        swap = (k // 4 % 2).float()
        matrix[:, 0, 0], matrix[:, 0, 1] = flip_x * (1 - swap), flip_x * swap
        matrix[:, 1, 0], matrix[:, 1, 1] = flip_y * swap, flip_y * (1 - swap)
        return matrix


@register_tfm
class Rotate(RandomPiece):
    """Rotation by an angle ~ U(-max_deg, max_deg) degrees with probability ``p`` (training only).

    The rotation is true in output pixels, also for non-square outputs (the normalised coordinates are
    rescaled by the aspect ratio). A positive angle turns the picture counter-clockwise on screen
    (90 degrees equals ``torch.rot90(x, 1, dims=(2, 3))``).

    Args:
        max_deg: the largest angle in degrees.
        p, size, mode, pad_mode, align_corners, batch: as `Flip`; ``draw`` fixes the angle in degrees.
    """

    _config_keys = ("max_deg", "p", "size", "mode", "pad_mode", "align_corners", "batch")

    def __init__(self, max_deg: float = 10, p: float = 0.5, draw: Any = None, size: Any = None,
                 mode: str = "bilinear", pad_mode: str = "reflection", align_corners: bool = True, batch: bool = False):
        super().__init__(p, draw, size, mode, pad_mode, align_corners, batch)
        self.max_deg = max_deg

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        degrees = drawn(self.draw, geo.ref, self._uniform(-self.max_deg, self.max_deg, geo))
        theta = torch.where(on, degrees, 0.0) * (math.pi / 180)
        span_h, span_w = (pixel_span(n, self.align_corners) for n in geo.out_hw)
        cos, sin = torch.cos(theta), torch.sin(theta)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, -sin * (span_h / span_w)
        matrix[:, 1, 0], matrix[:, 1, 1] = sin * (span_w / span_h), cos
        return matrix


@register_tfm
class Zoom(RandomPiece):
    """Zoom by a scale ~ U(min_zoom, max_zoom) about a random centre, with probability ``p`` (training only).

    A scale above 1 zooms in (the sampled window is 1/scale of the image, kept inside it); below 1 zooms out.

    Args:
        min_zoom, max_zoom: the range of the scale.
        p, size, mode, pad_mode, align_corners, batch: as `Flip`; ``draw`` fixes the scale, ``draw_x`` and
            ``draw_y`` the centre (in [0, 1] along each axis).
    """

    _config_keys = ("min_zoom", "max_zoom", "p", "size", "mode", "pad_mode", "align_corners", "batch")

    def __init__(self, min_zoom: float = 1., max_zoom: float = 1.1, p: float = 0.5, draw: Any = None,
                 draw_x: Any = None, draw_y: Any = None, size: Any = None, mode: str = "bilinear",
                 pad_mode: str = "reflection", batch: bool = False, align_corners: bool = True):
        if not 0 < min_zoom <= max_zoom:
            raise ValueError(f"Zoom needs 0 < min_zoom <= max_zoom; received: {min_zoom=!r}, {max_zoom=!r}")
        super().__init__(p, draw, size, mode, pad_mode, align_corners, batch)
        self.min_zoom, self.max_zoom, self.draw_x, self.draw_y = min_zoom, max_zoom, draw_x, draw_y

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        scale = drawn(self.draw, geo.ref, self._uniform(self.min_zoom, self.max_zoom, geo))
        shrink = 1 / torch.where(on, scale, 1.0)
        centre_x = drawn(self.draw_x, geo.ref, self._uniform(0, 1, geo), "draw_x")
        centre_y = drawn(self.draw_y, geo.ref, self._uniform(0, 1, geo), "draw_y")
        matrix[:, 0, 0], matrix[:, 1, 1] = shrink, shrink
        matrix[:, 0, 2] = (1 - shrink) * (2 * centre_x - 1)
        matrix[:, 1, 2] = (1 - shrink) * (2 * centre_y - 1)
        return matrix


@register_tfm
class Warp(RandomPiece):
    """Perspective warp (a tilt of the picture plane) with probability ``p`` (training only).

    The sampled corners move by up to ``magnitude`` (the image spans [-1, 1]): a tilt t_x ~ U(-mag, mag) moves
    the left corners' y outwards by t_x and the right corners' inwards; a tilt t_y likewise in x.

    Args:
        magnitude: the largest tilt.
        p, size, mode, pad_mode, align_corners, batch: as `Flip`; ``draw_x``/``draw_y`` fix the tilts.
    """

    stage = 1
    _config_keys = ("magnitude", "p", "size", "mode", "pad_mode", "align_corners", "batch")

    def __init__(self, magnitude: float = 0.2, p: float = 0.5, draw_x: Any = None, draw_y: Any = None,
                 size: Any = None, mode: str = "bilinear", pad_mode: str = "reflection", batch: bool = False,
                 align_corners: bool = True):
        super().__init__(p, None, size, mode, pad_mode, align_corners, batch)
        self.magnitude, self.draw_x, self.draw_y = magnitude, draw_x, draw_y

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        mag = self.magnitude
        tilt_x = torch.where(on, drawn(self.draw_x, geo.ref, self._uniform(-mag, mag, geo), "draw_x"), 0.0)
        tilt_y = torch.where(on, drawn(self.draw_y, geo.ref, self._uniform(-mag, mag, geo), "draw_y"), 0.0)
        # where the corners (-1,-1), (1,-1), (1,1), (-1,1) of the output sample from
        xs = torch.stack((-1 - tilt_y, 1 + tilt_y, 1 - tilt_y, -1 + tilt_y), dim=1)
        ys = torch.stack((-1 - tilt_x, -1 + tilt_x, 1 - tilt_x, 1 + tilt_x), dim=1)
        return _square_to_quad(xs, ys)


def _square_to_quad(xs: Tensor, ys: Tensor) -> Tensor:
    """The homographies taking the corners (-1,-1), (1,-1), (1,1), (-1,1) to ([bs, 4] ``xs``, ``ys``).

    Closed form for the unit square (Heckbert, 1989), then composed with [-1, 1] -> [0, 1]: no linear solve.
    """
    (x0, x1, x2, x3), (y0, y1, y2, y3) = xs.unbind(1), ys.unbind(1)
    sum_x, sum_y = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    det = dx1 * dy2 - dx2 * dy1
    g, h = (sum_x * dy2 - sum_y * dx2) / det, (dx1 * sum_y - dy1 * sum_x) / det
    a, b, d, e = x1 - x0 + g * x1, x3 - x0 + h * x3, y1 - y0 + g * y1, y3 - y0 + h * y3
    # times [[.5, 0, .5], [0, .5, .5], [0, 0, 1]] (from [-1, 1] to [0, 1]), written out: no constant to copy
    rows = ((a, b, x0), (d, e, y0), (g, h, torch.ones_like(g)))
    entries = [value for row in rows for value in (row[0] / 2, row[1] / 2, (row[0] + row[1]) / 2 + row[2])]
    return torch.stack(entries, dim=1).view(-1, 3, 3)


@register_tfm
class RandomResizedCropGPU(RandomPiece):
    """A random crop of the input, resized to ``size`` (training); the centre crop on validation.

    Training: a fraction U(min_scale, max_scale) of the area, log-uniform pixel aspect ratio in ``ratio``,
    random position (10 vectorised tries per image, else the centre crop with the aspect clamped to ``ratio``).
    Validation: the largest centre window with the output's aspect, scaled by ``valid_scale``. Fused with
    other geometric transforms, the crop comes first: rotations fill their corners from real pixels.

    Args:
        size: the output (height, width), or an int for a square.
        min_scale, max_scale: the range of the fraction of the area kept.
        ratio: the range of the crop's width/height.
        valid_scale: the validation crop's size relative to the largest centre window.
        mode, mode_mask, pad_mode, align_corners: as `AffineCoordTfm`.
        batch: one crop for the whole batch.
    """

    stage = 0
    _config_keys = ("size", "min_scale", "ratio", "mode", "valid_scale", "max_scale", "mode_mask", "pad_mode",
                    "align_corners", "batch")
    _tries = 10

    def __init__(self, size: int | Sequence[int], min_scale: float = 0.08, ratio: Sequence[float] = (3 / 4, 4 / 3),
                 mode: str = "bilinear", valid_scale: float = 1., max_scale: float = 1., mode_mask: str = "nearest",
                 pad_mode: str = "reflection", align_corners: bool = True, batch: bool = False):
        if size is None:
            raise ValueError("RandomResizedCropGPU needs the output `size` (an int or a (height, width) pair)")
        if not (0 < min_scale <= max_scale <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ValueError("RandomResizedCropGPU needs 0 < min_scale <= max_scale <= 1 and 0 < ratio[0] <= ratio[1]; "
                             f"received: min_scale={min_scale!r}, max_scale={max_scale!r}, ratio={ratio!r}")
        super().__init__(1.0, None, size, mode, pad_mode, align_corners, batch)
        self.mode_mask = check_choice("mode_mask", mode_mask, MODES)
        self.min_scale, self.max_scale = min_scale, max_scale
        self.ratio, self.valid_scale = tuple(ratio), valid_scale

    def _matrix(self, geo: Geometry) -> Tensor:
        # sizes in pixel steps between the extreme sample points, so that ratio=(1, 1) crops square pixels
        (in_h, in_w), (out_h, out_w) = ((pixel_span(h, self.align_corners), pixel_span(w, self.align_corners))
                                        for h, w in (geo.in_hw, geo.out_hw))
        matrix = identity_matrices(geo.bs, geo.device)
        if geo.split_idx != 0:
            width, height = _window(out_w / out_h, in_h, in_w)
            matrix[:, 0, 0], matrix[:, 1, 1] = width * self.valid_scale, height * self.valid_scale
            return matrix
        n = 1 if self.batch else geo.bs
        area = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(n, self._tries, device=geo.device)
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(n, self._tries, device=geo.device))
        width, height = torch.sqrt(area * aspect * in_h / in_w), torch.sqrt(area / aspect * in_w / in_h)
        fits = (width <= 1) & (height <= 1)
        first = fits.int().argmax(dim=1, keepdim=True)  # the first try that fits (0 when none does)
        fallback_w, fallback_h = _window(min(max(in_w / in_h, self.ratio[0]), self.ratio[1]), in_h, in_w)
        found = fits.any(dim=1)
        width = torch.where(found, width.gather(1, first)[:, 0], fallback_w).expand(geo.bs)
        height = torch.where(found, height.gather(1, first)[:, 0], fallback_h).expand(geo.bs)
        matrix[:, 0, 0], matrix[:, 1, 1] = width, height
        matrix[:, 0, 2] = (1 - width) * (2 * self._uniform(0, 1, geo) - 1)
        matrix[:, 1, 2] = (1 - height) * (2 * self._uniform(0, 1, geo) - 1)
        return matrix


def _window(aspect: float, in_h: int, in_w: int) -> tuple[float, float]:
    """The largest centred window of pixel aspect ``aspect`` (width/height), as fractions of (width, height)."""
    return min(1.0, aspect * in_h / in_w), min(1.0, in_w / (aspect * in_h))


# ------------------------------------------------------------------------------------------------------------
# The standard recipe, and fusion


def aug_transforms(mult: float = 1.0, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.,
                   min_zoom: float = 1., max_zoom: float = 1.1, max_lighting: float = 0.2, max_warp: float = 0.2,
                   p_affine: float = 0.75, p_lighting: float = 0.75, xtra_tfms: Sequence[BatchTransform] | None = None,
                   size: int | Sequence[int] | None = None, mode: str = "bilinear", pad_mode: str = "reflection",
                   align_corners: bool = True, batch: bool = False, min_scale: float = 1.) -> list[BatchTransform]:
    """The standard batch augmentations, fused: one geometric transform and one lighting transform.

    Flip (or `Dihedral` with ``flip_vert``), `Warp`, `Rotate` and `Zoom` (and `RandomResizedCropGPU` to
    ``size`` when ``min_scale != 1``) become one `AffineCoordTfm` (one interpolation); `Brightness` and
    `Contrast` one `LightingTfm`. ``max_rotate``, ``max_lighting`` and ``max_warp`` are multiplied by
    ``mult``; a zero turns the transform off. ``xtra_tfms`` are fused in too when they are geometric or
    lighting transforms, else added (`setup_aug_tfms`).

    Returns:
        ``[geometry, lighting]`` with any other xtra_tfms, sorted by ``order`` (absent parts left out), for
        ``batch_tfms=``.
    Raises:
        ValueError: if ``min_scale != 1`` without a ``size`` to crop to.

    Example:
        >>> dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(460),
        ...                                    batch_tfms=aug_transforms(size=224, min_scale=0.75))
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    if min_scale != 1. and size is None:
        raise ValueError(f"aug_transforms with min_scale={min_scale!r} crops to `size`, which is None: pass size=...")
    geo = dict(size=size if min_scale == 1. else None, mode=mode, pad_mode=pad_mode, batch=batch,
               align_corners=align_corners)
    tfms: list[BatchTransform] = []
    if do_flip:
        tfms.append(Dihedral(p=0.5, **geo) if flip_vert else Flip(p=0.5, **geo))
    if max_warp:
        tfms.append(Warp(magnitude=max_warp, p=p_affine, **geo))
    if max_rotate:
        tfms.append(Rotate(max_deg=max_rotate, p=p_affine, **geo))
    if min_zoom < 1 or max_zoom > 1:
        tfms.append(Zoom(min_zoom=min_zoom, max_zoom=max_zoom, p=p_affine, **geo))
    if max_lighting:
        tfms += [Brightness(max_lighting, p=p_lighting, batch=batch), Contrast(max_lighting, p=p_lighting, batch=batch)]
    xtra = list(xtra_tfms or [])
    if min_scale != 1.:
        xtra.insert(0, RandomResizedCropGPU(size, min_scale=min_scale, ratio=(1, 1), mode=mode, pad_mode=pad_mode,
                                            align_corners=align_corners, batch=batch))
    tfms += xtra
    if size is not None and not any(isinstance(t, AffineCoordTfm) for t in tfms):
        tfms.append(AffineCoordTfm(size=size, mode=mode, pad_mode=pad_mode, align_corners=align_corners))
    return setup_aug_tfms(tfms)


def setup_aug_tfms(tfms: Sequence[BatchTransform]) -> list[BatchTransform]:
    """fastai's name for fusing augmentations: the members of each fuse group (the geometric transforms, the
    lighting ones) are gathered where their group first appears, then `fuse_tfms` makes each group one
    transform (one `AffineCoordTfm`, one `LightingTfm`; a ValueError for conflicting sizes). The result is
    sorted by ``order``, as the loaders run it; a group of one transform is kept as it is."""
    groups = list(dict.fromkeys(tfm_hook(t, "fuse_group") for t in tfms if tfm_hook(t, "fuse_group") is not None))
    rank = {group: i for i, group in enumerate(groups)}
    return fuse_tfms(sorted(tfms, key=lambda t: rank.get(tfm_hook(t, "fuse_group"), len(groups))))
