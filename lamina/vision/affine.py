"""The fused geometry of batch augmentation: matrices per image, multiplied, then one ``grid_sample``.

Each geometric transform is a 3x3 matrix per image, mapping an output pixel's normalised coordinates
([-1, 1]) to the input point it samples. `AffineCoordTfm` multiplies its pieces' matrices,
``p_in = Crop @ Warp @ A_1 @ ... @ A_n @ p_out`` (A_i: flip/rotate/zoom in list order), builds the grid
(divided by its third coordinate, for the perspective warp) and calls ``F.grid_sample`` once per image member:
one interpolation however many transforms. Masks take the same grid with nearest sampling; points and boxes
(kinds ``'point'``, ``'bbox'``) move by the inverse matrix (`lamina.vision.points.affine_points`).
`RandomPiece` is the base of the random pieces (`lamina.vision.augment`: `Flip`, `Rotate`, `Warp` ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.transforms import BatchTransform, members_of, register_tfm, replace_members
from .draws import check_p, coin, uniform
from .points import affine_boxes, affine_points

__all__ = ["AffineCoordTfm", "RandomPiece", "Geometry", "MODES", "check_choice", "identity_matrices", "pixel_span"]

MODES = ("bilinear", "nearest", "bicubic")
_PAD_MODES = ("zeros", "border", "reflection")


class Geometry(NamedTuple):
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


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value``, checked to be one of ``allowed``.

    Raises:
        ValueError: naming the argument ``name`` and the allowed values.
    """
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; received: {name}={value!r}")
    return value


def identity_matrices(bs: int, device: torch.device) -> Tensor:
    """``bs`` 3x3 identity matrices, [bs, 3, 3]."""
    return torch.eye(3, device=device).repeat(bs, 1, 1)


def _axis(n: int, align_corners: bool, device: torch.device) -> Tensor:
    """Normalised pixel-centre coordinates along one axis, as ``F.grid_sample`` reads them."""
    if align_corners:
        return torch.linspace(-1, 1, n, device=device)
    return (torch.arange(n, device=device) * 2 + 1) / n - 1


def pixel_span(n: int, align_corners: bool) -> int:
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


@register_tfm
class AffineCoordTfm(BatchTransform):
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
    fuse_group = "affine"  # neighbours in a batch_tfms list are fused (`lamina.data.transforms.fuse_tfms`)
    _config_keys = ("tfms", "size", "mode", "pad_mode", "align_corners", "mode_mask")

    def __init__(self, tfms: Sequence["AffineCoordTfm"] = (), size: int | Sequence[int] | None = None,
                 mode: str = "bilinear", pad_mode: str = "reflection", align_corners: bool = True,
                 mode_mask: str = "nearest"):
        self.size, self.align_corners = _size_pair(size), bool(align_corners)
        self.mode, self.mode_mask = check_choice("mode", mode, MODES), check_choice("mode_mask", mode_mask, MODES)
        self.pad_mode = check_choice("pad_mode", pad_mode, _PAD_MODES)
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

    def _matrix(self, geo: Geometry) -> Tensor | None:
        """This piece's [bs, 3, 3] matrices, or None for the identity."""
        return None

    def compose(self, geo: Geometry) -> Tensor | None:
        """The product of the pieces' matrices for one batch (None when all are the identity)."""
        total = None
        for piece in sorted(self.tfms, key=lambda piece: piece.stage):
            matrix = piece._matrix(geo)
            if matrix is not None:
                total = matrix if total is None else total @ matrix
        return total

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        members = members_of(batch, kinds, "image") + members_of(batch, kinds, "mask")
        if not members:
            return batch
        ref = batch[min(members)]
        in_hw = tuple(ref.shape[-2:])
        geo = Geometry(ref, len(ref), ref.device, in_hw, self.size or in_hw, split_idx)
        # float32 throughout, whatever comes in: bf16 matrices or grids misplace pixels on large images
        with torch.autocast(device_type=ref.device.type, enabled=False):
            matrix = self.compose(geo)
            if matrix is None and geo.out_hw == in_hw:
                return batch
            if matrix is None:
                matrix = identity_matrices(geo.bs, geo.device)
            grid = _sampling_grid(matrix, geo.out_hw, self.align_corners)
            updates = {i: self._sample(batch[i], kinds[i], grid) for i in members}
            updates.update(self._move_points(batch, kinds, matrix, geo))
            return replace_members(batch, updates)

    def _move_points(self, batch: tuple, kinds: Sequence[str], matrix: Tensor, geo: Geometry) -> dict:
        """The point and box members moved as the images are (boxes left empty become zeros, their labels 0)."""
        updates: dict = {}
        for i in members_of(batch, kinds, "point"):
            points = batch[i].reshape(geo.bs, -1, 2)
            moved = affine_points(points, matrix, geo.in_hw, geo.out_hw, self.align_corners)
            updates[i] = moved.reshape(batch[i].shape)
        labels = members_of(batch, kinds, "bbox_label")
        for n, i in enumerate(members_of(batch, kinds, "bbox")):
            updates[i], empty = affine_boxes(batch[i], matrix, geo.in_hw, geo.out_hw, self.align_corners)
            if n < len(labels):
                updates[labels[n]] = batch[labels[n]].masked_fill(empty, 0)
        return updates

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


class RandomPiece(AffineCoordTfm):
    """A geometric transform applied to each training image with probability ``p``."""

    _config_keys = ("p", "size", "mode", "pad_mode", "align_corners", "batch")

    def __init__(self, p: float = 0.5, draw: Any = None, size: int | Sequence[int] | None = None,
                 mode: str = "bilinear", pad_mode: str = "reflection", align_corners: bool = True, batch: bool = False):
        super().__init__(size=size, mode=mode, pad_mode=pad_mode, align_corners=align_corners)
        self.p, self.draw, self.batch = check_p(p), draw, batch
        self.tfms = [self]

    def _matrix(self, geo: Geometry) -> Tensor | None:
        if geo.split_idx != 0 or self.p == 0:  # validation, or never applied: the identity
            return None
        return self._random_matrix(geo, self._coin(geo), identity_matrices(geo.bs, geo.device))

    def _random_matrix(self, geo: Geometry, on: Tensor, matrix: Tensor) -> Tensor:
        """The matrices for the images where ``on`` (the identity elsewhere), written into ``matrix``."""
        raise NotImplementedError

    def _coin(self, geo: Geometry) -> Tensor:
        return coin(geo.bs, self.p, geo.device, self.batch)

    def _uniform(self, low: float, high: float, geo: Geometry) -> Tensor:
        return uniform(low, high, geo.bs, geo.device, self.batch)
