"""Keypoints: `TensorPoint`, `PointBlock`, `PointScaler`, and moving points with the image's geometry.

A point target is a list of (x, y) positions in the pixels of its image. Through the item transforms
(in the workers) it stays in pixels, as a `TensorPoint`, and every geometric item transform moves it with the
image (`move_points`). `PointScaler` then scales it to [-1, 1] over the image (``x * 2 / width - 1``: -1 is
the left edge, 1 the right edge, as fastai), and it becomes a plain float tensor of kind ``'point'``, which
the batch transforms move with the image too (`affine_points`: the inverse of the sampling matrix).
Models predict the scaled values (``vision_learner(dls, resnet18, y_range=(-1, 1))``); `unscale_points`
turns them back into pixels. Boxes (`lamina.vision.bboxes`) are moved by their corners with the same helpers.

Example:
    >>> dblock = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files, get_y=get_ctr,
    ...                    splitter=FuncSplitter(lambda o: o.parent.name == '13'),
    ...                    batch_tfms=aug_transforms(size=(240, 320)))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.block import TransformBlock
from ..data.transforms import ItemTransform, TypeTransform, register_tfm
from ..torch_core import TensorBase

__all__ = ["TensorPoint", "PointBlock", "PointScaler", "PointSetup", "move_points", "affine_points", "affine_boxes",
           "scale_points", "unscale_points", "image_hw", "show_points", "TRANSPOSE_COORDS"]


class TensorPoint(TensorBase):
    """Points in the pixels of their image, one ``(x, y)`` row per point (shape ``(n, 2)``), before scaling.

    Only the item stage uses this type (so that item transforms know the member is points); `PointScaler`
    turns it into a plain tensor in [-1, 1].
    """

    n_cols = 2

    @classmethod
    def create(cls, o: Any, img_size: Any = None) -> TensorPoint:
        """Points from a list of pairs, an array or a tensor (anything with 2 values per point).

        Args:
            o: the coordinates, ``x`` first.
            img_size: accepted for fastai compatibility (the size comes from the image of the sample).

        Raises:
            ValueError: when the number of values is not a multiple of ``n_cols``.
        """
        t = o.detach().float() if isinstance(o, Tensor) else torch.as_tensor(np.asarray(o, dtype=np.float32))
        if t.numel() % cls.n_cols:
            raise ValueError(f"{cls.__name__}.create needs {cls.n_cols} values per row; received {t.numel()} values "
                             f"(shape {tuple(t.shape)}). Return the coordinates as pairs (x, y) from get_y")
        return t.reshape(-1, cls.n_cols).clone().as_subclass(cls)

    def show(self, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw the points (pixel coordinates) on the axis ``ctx``, a new one if None; returns the axis."""
        return show_points(self, ctx=ctx, **kwargs)


class PointSetup(TypeTransform):
    """The type step of `PointBlock`: what ``get_y`` returns → a `TensorPoint`; ``c`` (model outputs) is the
    number of coordinates of the first training item (2 per point)."""

    kind = "point"

    def __init__(self, c: int | None = None):
        self.c = c

    def setup(self, values: Sequence) -> None:
        if self.c is None and len(values):
            self.c = TensorPoint.create(values[0]).numel()

    def __call__(self, o: Any) -> TensorPoint:
        return o if isinstance(o, TensorPoint) else TensorPoint.create(o)

    def show(self, x: Any, ctx: Any = None, **kwargs: Any) -> Any:
        return show_points(x, ctx=ctx, **kwargs)


def image_hw(x: Any) -> tuple[int, int] | None:
    """(height, width) of an image member: a Pillow image or a CxHxW tensor; None for anything else."""
    if isinstance(x, Image.Image):
        return x.size[1], x.size[0]
    if isinstance(x, Tensor) and not isinstance(x, TensorPoint) and x.ndim == 3:
        return int(x.shape[-2]), int(x.shape[-1])
    return None


def scale_points(xy: Tensor, hw: tuple[int, int]) -> Tensor:
    """Pixel coordinates (last axis x, y, x, y ...) → [-1, 1] over an image of ``hw``: ``v * 2 / size - 1``."""
    size = _sizes(xy, hw)
    return xy.as_subclass(Tensor) * 2 / size - 1


def unscale_points(p: Tensor, hw: tuple[int, int]) -> Tensor:
    """The inverse of `scale_points`: [-1, 1] → pixel coordinates of an image of ``hw``."""
    return (p.as_subclass(Tensor) + 1) * _sizes(p, hw) / 2


def _sizes(t: Tensor, hw: Sequence[int]) -> Tensor:
    """(w, h, w, h, ...) to match the last axis of ``t``."""
    pair = torch.tensor([float(hw[1]), float(hw[0])], device=t.device)
    return pair.repeat(t.shape[-1] // 2)


@register_tfm
class PointScaler(ItemTransform):
    """Scales the sample's points and boxes to [-1, 1] over its image (order 6: after the geometric item
    transforms and `ToTensor`), as plain float tensors; boxes are clipped to the image.

    Args:
        do_scale: False keeps pixel coordinates (they are still made plain tensors).
        y_first: the points are given as (y, x): they are swapped to (x, y) first.

    Raises:
        ValueError: (when called) for points in a sample without an image to scale them by.
    """

    order = 6
    _config_keys = ("do_scale", "y_first")

    def __init__(self, do_scale: bool = True, y_first: bool = False):
        self.do_scale, self.y_first = do_scale, y_first

    def encodes(self, sample: tuple, split_idx: int | None) -> tuple:
        if not any(isinstance(x, TensorPoint) for x in sample):
            return sample
        hw = next((image_hw(x) for x in sample if image_hw(x) is not None), None)
        if hw is None and self.do_scale:
            raise ValueError("PointScaler scales points by the size of their image, and this sample has none: "
                             "put an ImageBlock before the PointBlock (or pass PointScaler(do_scale=False))")
        return tuple(self._scale(x, hw) if isinstance(x, TensorPoint) else x for x in sample)

    def _scale(self, x: TensorPoint, hw: tuple[int, int] | None) -> Tensor:
        t = x.as_subclass(Tensor)
        if self.y_first:
            t = t.reshape(-1, 2).flip(-1).reshape(t.shape)
        if not self.do_scale:
            return t
        out = scale_points(t, hw)
        return out.clamp(-1, 1) if x.n_cols == 4 else out


class PointBlock(TransformBlock):
    """Keypoint targets: ``get_y`` returns (x, y) pixel positions; the loss is ``MSELossFlat()`` and the model
    has 2 outputs per point (use ``y_range=(-1, 1)``)."""

    def __init__(self) -> None:
        super().__init__(type_tfms=PointSetup(), item_tfms=PointScaler(), kind="point")


# --- moving points with the geometry ---------------------------------------------------------------------


def move_points(x: TensorPoint, fn: Callable[[Tensor], Tensor], out_hw: tuple[int, int]) -> TensorPoint:
    """``x`` (points, or boxes by their four corners) mapped by ``fn`` (pixel (x, y) rows → new rows).

    Boxes stay axis-aligned: the new box holds the four moved corners, clipped to an image of ``out_hw``.
    """
    t = x.as_subclass(Tensor).reshape(-1, x.n_cols)
    if x.n_cols == 2:
        return fn(t).as_subclass(type(x))
    corners = _corners(t)
    moved = fn(corners.reshape(-1, 2)).reshape(-1, 4, 2)
    boxes = torch.cat((moved.amin(1), moved.amax(1)), dim=1)
    height, width = out_hw
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), limits).as_subclass(type(x))


# Where Pillow's transposes send a position (x, y) of a width x height image (pixel edges at integers).
TRANSPOSE_COORDS = {
    Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y, w, h: (w - x, y),
    Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y, w, h: (x, h - y),
    Image.Transpose.ROTATE_90: lambda x, y, w, h: (y, w - x),  # counter-clockwise
    Image.Transpose.ROTATE_180: lambda x, y, w, h: (w - x, h - y),
    Image.Transpose.ROTATE_270: lambda x, y, w, h: (h - y, x),
    Image.Transpose.TRANSPOSE: lambda x, y, w, h: (y, x),
    Image.Transpose.TRANSVERSE: lambda x, y, w, h: (h - y, w - x),
}


def _corners(boxes: Tensor) -> Tensor:
    """The four corners (..., 4, 2) of boxes (..., 4) given as (left, top, right, bottom)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((torch.stack((x0, y0), -1), torch.stack((x1, y0), -1), torch.stack((x1, y1), -1),
                        torch.stack((x0, y1), -1)), dim=-2)


def _to_grid(p: Tensor, hw: tuple[int, int], align_corners: bool) -> Tensor:
    """Scaled points (edges at ±1) → ``grid_sample`` coordinates of an image of ``hw``."""
    if not align_corners:
        return p  # both put the image's edges at ±1
    size = _sizes(p, hw)
    pixel = (p + 1) * size / 2 - 0.5  # pixel-centre coordinates: the first centre is 0
    return pixel * 2 / (size - 1).clamp(min=1) - 1


def _from_grid(g: Tensor, hw: tuple[int, int], align_corners: bool) -> Tensor:
    if not align_corners:
        return g
    size = _sizes(g, hw)
    pixel = (g + 1) * (size - 1).clamp(min=1) / 2
    return (pixel + 0.5) * 2 / size - 1


def affine_points(p: Tensor, matrix: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int],
                  align_corners: bool) -> Tensor:
    """Scaled points (bs, n, 2) moved as their image is by sampling with ``matrix`` (bs, 3, 3), which maps
    output coordinates to input ones: points go the other way, by its inverse (with the projective division)."""
    g = _to_grid(p.float(), in_hw, align_corners)
    homogeneous = torch.cat((g, torch.ones_like(g[..., :1])), dim=-1)
    out = homogeneous @ torch.linalg.inv(matrix.float()).transpose(1, 2)
    return _from_grid(out[..., :2] / out[..., 2:], out_hw, align_corners).to(p.dtype)


def affine_boxes(boxes: Tensor, matrix: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int],
                 align_corners: bool) -> tuple[Tensor, Tensor]:
    """Scaled boxes (bs, n, 4) moved by their corners (see `affine_points`), clipped to [-1, 1]; returns the
    boxes, with the ones left empty set to zeros, and the mask of those empty ones."""
    bs, n = boxes.shape[:2]
    corners = affine_points(_corners(boxes.float()).reshape(bs, n * 4, 2), matrix, in_hw, out_hw, align_corners)
    corners = corners.reshape(bs, n, 4, 2)
    out = torch.cat((corners.amin(2), corners.amax(2)), dim=-1).clamp(-1, 1)
    empty = (out[..., 2] <= out[..., 0]) | (out[..., 3] <= out[..., 1])
    return out.masked_fill(empty[..., None], 0.0).to(boxes.dtype), empty


# --- showing ---------------------------------------------------------------------------------------------


def show_points(points: Any, ctx: Any = None, hw: tuple[int, int] | None = None, color: str = "magenta",
                marker: str = "x", **kwargs: Any) -> Any:
    """Draw points on the axis ``ctx`` (over its image): pixel coordinates, or scaled ones with ``hw``."""
    import matplotlib.pyplot as plt
    if ctx is None:
        _, ctx = plt.subplots()
    t = torch.as_tensor(points).detach().cpu().float().as_subclass(Tensor).reshape(-1, 2)
    if hw is not None:
        t = unscale_points(t, hw)
    t = t - 0.5  # imshow puts pixel centres at integer coordinates, where pixel edges are at integers here
    ctx.scatter(t[:, 0].numpy(), t[:, 1].numpy(), s=30, c=color, marker=marker, **kwargs)
    return ctx
