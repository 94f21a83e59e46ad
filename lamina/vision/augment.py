"""Batch augmentation on the device: geometry fused into one interpolation, and `aug_transforms`.

Each geometric transform (`Flip`, `Dihedral`, `Rotate`, `Zoom`, `Warp`, `RandomResizedCropGPU`) is a 3x3 matrix
per image, mapping an output pixel's normalised coordinates ([-1, 1]) to the input point it samples.
`AffineCoordTfm` multiplies its pieces' matrices, ``p_in = Crop @ Warp @ A_1 @ ... @ A_n @ p_out`` (A_i:
flip/rotate/zoom in list order), builds the grid (divided by its third coordinate, for the perspective warp)
and calls ``F.grid_sample`` once per image member: one interpolation however many transforms. Masks take the
same grid with nearest sampling. Validation is only resized to ``size`` (`RandomResizedCropGPU`: centre crop).
The pixel-value transforms live in `lamina.vision.lighting` and are re-exported here.

Example:
    >>> batch_tfms = [*aug_transforms(size=224, min_scale=0.75), Normalize.from_stats(*imagenet_stats)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.loaders import BatchTransform
from .lighting import (Brightness, ConfigTransform, Contrast, Hue, IntToFloatTensor, LightingTfm, Normalize,
                       RandomErasing, Saturation, _check_p, _coin, _drawn, _members, _replace, _uniform)

__all__ = ["AffineCoordTfm", "Flip", "Dihedral", "Rotate", "Zoom", "Warp", "RandomResizedCropGPU",
           "aug_transforms", "setup_aug_tfms", "BATCH_TFMS", "batch_tfm_from_config",
           "IntToFloatTensor", "Normalize", "LightingTfm", "Brightness", "Contrast", "Saturation", "Hue",
           "RandomErasing"]

_MODES = ("bilinear", "nearest", "bicubic")
_PAD_MODES = ("zeros", "border", "reflection")


class _Geometry(NamedTuple):
    """What a piece needs to draw its matrices for one batch."""

    ref: Tensor  # the first image (or mask) member, given to ``draw`` functions
    bs: int
    device: torch.device
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    split_idx: int


def _size_pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` as (height, width); an int means a square."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(n, int) and n > 0 for n in pair):
        raise ValueError(f"`size` must be a positive int or a (height, width) pair of ints; received: size={size!r}")
    return pair


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; received: {name}={value!r}")
    return value


def _identity(bs: int, device: torch.device) -> Tensor:
    return torch.eye(3, device=device).repeat(bs, 1, 1)


def _axis(n: int, align_corners: bool, device: torch.device) -> Tensor:
    """Normalised pixel-centre coordinates along one axis, as ``F.grid_sample`` reads them."""
    if align_corners:
        return torch.linspace(-1, 1, n, device=device)
    return (torch.arange(n, device=device) * 2 + 1) / n - 1


def _span(n: int, align_corners: bool) -> int:
    """Pixel steps across the normalised range [-1, 1] of an axis of ``n`` pixels."""
    return max(n - 1 if align_corners else n, 1)


def _sampling_grid(matrix: Tensor, out_hw: tuple[int, int], align_corners: bool) -> Tensor:
    """The [bs, h, w, 2] grid of input coordinates ``matrix @ (x, y, 1)`` (projective division included)."""
    height, width = out_hw
    xs = _axis(width, align_corners, matrix.device).view(1, 1, width)
    ys = _axis(height, align_corners, matrix.device).view(1, height, 1)
    m = matrix.view(-1, 9, 1, 1)
    # element-wise rather than a matmul (exact for flips, immune to TF32 and autocast); each row is the sum
    # of a [bs, 1, w] and a [bs, h, 1] part, written straight into the grid: few full-size temporaries
    grid = torch.empty(len(matrix), height, width, 2, device=matrix.device)
    torch.add(m[:, 0] * xs + m[:, 2], m[:, 1] * ys, out=grid[..., 0])
    torch.add(m[:, 3] * xs + m[:, 5], m[:, 4] * ys, out=grid[..., 1])
    return grid.div_((m[:, 6] * xs + m[:, 8] + m[:, 7] * ys)[..., None])


class AffineCoordTfm(ConfigTransform):
    """Geometric transforms fused into one matrix per image, applied with one ``grid_sample`` (order 30).

    On the training split each piece draws its random matrices; on validation they are the identity (a
    `RandomResizedCropGPU` takes its centre crop), so only the resizing to ``size`` remains.

    Args:
        tfms: geometric transforms to fuse (their own ``size``/``mode``/... are ignored, these apply).
        size: the output (height, width), or an int for a square; None keeps the input size.
        mode, mode_mask: image and mask interpolation, ``'bilinear'``, ``'nearest'`` or ``'bicubic'``.
        pad_mode: what is sampled outside the image, ``'reflection'``, ``'border'`` or ``'zeros'``; masks use
            the same, so that their padding agrees with the image's (any of them keeps codes valid).
        align_corners: as in ``F.grid_sample``.
    """

    order = 30
    stage = 2  # where the piece's matrix goes in the product: 0 crop, 1 warp, 2 flip/rotate/zoom
    fuse_group = "affine"  # neighbours in a batch_tfms list are fused (`lamina.data.datasets.fuse_tfms`)
    _config_keys = ("tfms", "size", "mode", "pad_mode", "align_corners", "mode_mask")

    def __init__(self, tfms: Sequence["AffineCoordTfm"] = (), size: int | Sequence[int] | None = None,
                 mode: str = "bilinear", pad_mode: str = "reflection", align_corners: bool = True,
                 mode_mask: str = "nearest"):
        self.size, self.align_corners = _size_pair(size), bool(align_corners)
        self.mode, self.mode_mask = _check_choice("mode", mode, _MODES), _check_choice("mode_mask", mode_mask, _MODES)
        self.pad_mode = _check_choice("pad_mode", pad_mode, _PAD_MODES)
        self.tfms: list[AffineCoordTfm] = [piece for tfm in tfms for piece in tfm.tfms]  # flattened

    @classmethod
    def fuse(cls, tfms: Sequence["AffineCoordTfm"]) -> list["AffineCoordTfm"]:
        """Geometric transforms as one `AffineCoordTfm` (``mode``, ``pad_mode``... of the first; the one ``size``
        they name). Raises a ValueError when two ask for different sizes."""
        sizes = {t.size for t in tfms if t.size is not None}
        if len(sizes) > 1:
            raise ValueError(f"Geometric batch transforms ask for different output sizes {sorted(sizes)}; give "
                             "`size` to one of them only (or the same size to all)")
        first = tfms[0]
        return [AffineCoordTfm(tfms, size=sizes.pop() if sizes else None, mode=first.mode, pad_mode=first.pad_mode,
                               align_corners=first.align_corners, mode_mask=first.mode_mask)]

    def _matrix(self, geo: _Geometry) -> Tensor | None:
        """This piece's [bs, 3, 3] matrices, or None for the identity."""
        return None

    def compose(self, geo: _Geometry) -> Tensor | None:
        """The product of the pieces' matrices for one batch (None when all are the identity)."""
        total = None
        for piece in sorted(self.tfms, key=lambda piece: piece.stage):
            matrix = piece._matrix(geo)
            if matrix is not None:
                total = matrix if total is None else total @ matrix
        return total

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        members = _members(batch, kinds, "image") + _members(batch, kinds, "mask")
        if not members:
            return batch
        ref = batch[min(members)]
        in_hw = tuple(ref.shape[-2:])
        geo = _Geometry(ref, len(ref), ref.device, in_hw, self.size or in_hw, split_idx)
        # float32 throughout, whatever comes in: bf16 matrices or grids misplace pixels on large images
        with torch.autocast(device_type=ref.device.type, enabled=False):
            matrix = self.compose(geo)
            if matrix is None and geo.out_hw == in_hw:
                return batch
            if matrix is None:
                matrix = _identity(geo.bs, geo.device)
            grid = _sampling_grid(matrix, geo.out_hw, self.align_corners)
            return _replace(batch, {i: self._sample(batch[i], kinds[i], grid) for i in members})

    def _sample(self, x: Tensor, kind: str, grid: Tensor) -> Tensor:
        if kind == "mask":
            codes = F.grid_sample(x[:, None].float(), grid, mode=self.mode_mask, padding_mode=self.pad_mode,
                                  align_corners=self.align_corners)
            return codes[:, 0].round().to(x.dtype)
        out = F.grid_sample(x.float(), grid, mode=self.mode, padding_mode=self.pad_mode,
                            align_corners=self.align_corners)
        if x.is_floating_point():
            return out.to(x.dtype)
        return out.round().clamp(torch.iinfo(x.dtype).min, torch.iinfo(x.dtype).max).to(x.dtype)


class _RandomPiece(AffineCoordTfm):
    """A geometric transform applied to each training image with probability ``p``."""

    _config_keys = ("p", "size", "mode", "pad_mode", "align_corners", "batch")

    def __init__(self, p: float = 0.5, draw: Any = None, size: int | Sequence[int] | None = None,
                 mode: str = "bilinear", pad_mode: str = "reflection", align_corners: bool = True, batch: bool = False):
        super().__init__(size=size, mode=mode, pad_mode=pad_mode, align_corners=align_corners)
        self.p, self.draw, self.batch = _check_p(p), draw, batch
        self.tfms = [self]

    def _matrix(self, geo: _Geometry) -> Tensor | None:
        if geo.split_idx != 0 or self.p == 0:  # validation, or never applied: the identity
            return None
        return self._random_matrix(geo, self._coin(geo), _identity(geo.bs, geo.device))

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        """The matrices for the images where ``on`` (the identity elsewhere), written into ``matrix``."""
        raise NotImplementedError

    def _coin(self, geo: _Geometry) -> Tensor:
        return _coin(geo.bs, self.p, geo.device, self.batch)

    def _uniform(self, low: float, high: float, geo: _Geometry) -> Tensor:
        return _uniform(low, high, geo.bs, geo.device, self.batch)


class Flip(_RandomPiece):
    """Horizontal flip with probability ``p`` (training only).

    Args:
        p: the probability of flipping an image.
        draw: fixed flips instead of random ones (1 flip / 0 keep: a number, one per image, or a function
            of the batch); ``p`` still applies.
        size, mode, pad_mode, align_corners: as `AffineCoordTfm`.
        batch: one draw for the whole batch.
    """

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        flip = on & (_drawn(self.draw, geo.ref, torch.ones(geo.bs, device=geo.device)) != 0)
        matrix[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        return matrix


class Dihedral(_RandomPiece):
    """One of the 8 symmetries of the square (flips, quarter turns, transposes) with probability ``p``.

    The symmetry k in 0..7 is drawn uniformly: bit 0 flips x, bit 1 flips y, bit 2 swaps x and y.

    Args: as `Flip`; ``draw`` fixes k.
    """

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        default = torch.randint(0, 8, (1 if self.batch else geo.bs,), device=geo.device).expand(geo.bs)
        k = torch.where(on, _drawn(self.draw, geo.ref, default.float()).long(), 0)
        flip_x, flip_y = 1 - 2 * (k % 2).float(), 1 - 2 * (k // 2 % 2).float()
        swap = (k // 4 % 2).float()
        matrix[:, 0, 0], matrix[:, 0, 1] = flip_x * (1 - swap), flip_x * swap
        matrix[:, 1, 0], matrix[:, 1, 1] = flip_y * swap, flip_y * (1 - swap)
        return matrix


class Rotate(_RandomPiece):
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

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        degrees = _drawn(self.draw, geo.ref, self._uniform(-self.max_deg, self.max_deg, geo))
        theta = torch.where(on, degrees, 0.0) * (math.pi / 180)
        span_h, span_w = (_span(n, self.align_corners) for n in geo.out_hw)
        cos, sin = torch.cos(theta), torch.sin(theta)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, -sin * (span_h / span_w)
        matrix[:, 1, 0], matrix[:, 1, 1] = sin * (span_w / span_h), cos
        return matrix


class Zoom(_RandomPiece):
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

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        scale = _drawn(self.draw, geo.ref, self._uniform(self.min_zoom, self.max_zoom, geo))
        shrink = 1 / torch.where(on, scale, 1.0)
        centre_x = _drawn(self.draw_x, geo.ref, self._uniform(0, 1, geo), "draw_x")
        centre_y = _drawn(self.draw_y, geo.ref, self._uniform(0, 1, geo), "draw_y")
        matrix[:, 0, 0], matrix[:, 1, 1] = shrink, shrink
        matrix[:, 0, 2] = (1 - shrink) * (2 * centre_x - 1)
        matrix[:, 1, 2] = (1 - shrink) * (2 * centre_y - 1)
        return matrix


class Warp(_RandomPiece):
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

    def _random_matrix(self, geo: _Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        mag = self.magnitude
        tilt_x = torch.where(on, _drawn(self.draw_x, geo.ref, self._uniform(-mag, mag, geo), "draw_x"), 0.0)
        tilt_y = torch.where(on, _drawn(self.draw_y, geo.ref, self._uniform(-mag, mag, geo), "draw_y"), 0.0)
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


class RandomResizedCropGPU(_RandomPiece):
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
        self.mode_mask = _check_choice("mode_mask", mode_mask, _MODES)
        self.min_scale, self.max_scale = min_scale, max_scale
        self.ratio, self.valid_scale = tuple(ratio), valid_scale

    def _matrix(self, geo: _Geometry) -> Tensor:
        # sizes in pixel steps between the extreme sample points, so that ratio=(1, 1) crops square pixels
        (in_h, in_w), (out_h, out_w) = ((_span(h, self.align_corners), _span(w, self.align_corners))
                                        for h, w in (geo.in_hw, geo.out_hw))
        matrix = _identity(geo.bs, geo.device)
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
# The standard recipe, fusion, and rebuilding from JSON


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
    lighting transforms, else appended.

    Returns:
        ``[geometry, lighting, *other xtra_tfms]`` (absent parts left out), for ``batch_tfms=``.
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
    """Fuse the geometric transforms of ``tfms`` into one `AffineCoordTfm` and the lighting ones into one
    `LightingTfm` (their ``fuse``: a ValueError for conflicting sizes); others follow unchanged."""
    geometric = [t for t in tfms if isinstance(t, AffineCoordTfm)]
    lighting = [t for t in tfms if isinstance(t, LightingTfm)]
    others = [t for t in tfms if not isinstance(t, (AffineCoordTfm, LightingTfm))]
    fused = AffineCoordTfm.fuse(geometric) if geometric else []
    return fused + (LightingTfm.fuse(lighting) if lighting else []) + others


# The transforms an export may name; register your own with BATCH_TFMS["MyTfm"] = MyTfm.
BATCH_TFMS: dict[str, Callable[..., BatchTransform]] = {cls.__name__: cls for cls in (
    IntToFloatTensor, Normalize, AffineCoordTfm, Flip, Dihedral, Rotate, Zoom, Warp, RandomResizedCropGPU,
    LightingTfm, Brightness, Contrast, Saturation, Hue, RandomErasing)}


def batch_tfm_from_config(cfg: Mapping[str, Any]) -> BatchTransform:
    """Rebuild a batch transform from the dict its ``to_config()`` returned.

    Args:
        cfg: ``{"name": <a key of BATCH_TFMS>, "kwargs": {...}}`` (fused transforms: pieces under "tfms").
    Raises:
        ValueError: if ``cfg`` is malformed or names a transform that is not in `BATCH_TFMS`.
    """
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError("`cfg` must be a dict like {'name': 'Normalize', 'kwargs': {...}} as returned by "
                         f"`tfm.to_config()`; received: cfg={cfg!r}")
    name = cfg["name"]
    if name not in BATCH_TFMS:
        raise ValueError(f"unknown batch transform {name!r}; known: {', '.join(sorted(BATCH_TFMS))}. "
                         f"Register a custom one with `BATCH_TFMS[{name!r}] = YourTransform`.")
    kwargs = dict(cfg.get("kwargs") or {})
    if "tfms" in kwargs:
        kwargs["tfms"] = [batch_tfm_from_config(piece) for piece in kwargs["tfms"]]
    return BATCH_TFMS[name](**kwargs)
