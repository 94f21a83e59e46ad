"""Pixel-value batch transforms, run on the device after the transfer.

* `IntToFloatTensor` (order 10): uint8 images to float in [0, 1], masks to int64.
* Lighting, training only (order 40): `Brightness`, `Contrast`, `Saturation`, `Hue`. Each one is an affine
  map of a pixel's channel logits, ``l -> A @ l + b`` with a per-image matrix ``A`` (C x C) and bias ``b``, so
  any number of them compose into one matrix and one bias: `LightingTfm` applies the composition with one
  ``logit``, one batched matmul and one ``sigmoid`` (``x = sigmoid(f(logit(x)))``), whatever the count.
* `Normalize` (order 99): ``(x - mean) / std`` on images, undone by ``decodes`` for showing (defined in
  `lamina.data.normalize`, as it is also the tabular proc of that name).
* `RandomErasing` (order 100, after `Normalize`, training only): rectangles of Gaussian noise.

The geometric transforms and `aug_transforms` are in `lamina.vision.augment`, which re-exports these.
Random draws come from torch's generator of the batch's device (``torch.manual_seed`` makes them repeat),
one per image (``batch=True``: one for the whole batch), with no host-device synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.normalize import Normalize  # shared with the tabular procs: one class for both
from ..data.transforms import BatchTransform, members_of, register_tfm, replace_members
from .draws import check_p, coin, drawn, uniform

__all__ = ["IntToFloatTensor", "Normalize", "LightingTfm", "Brightness", "Contrast", "Saturation", "Hue",
           "RandomErasing"]

# The older name of the base class of exportable batch transforms: every `BatchTransform` describes itself now.
ConfigTransform = BatchTransform

_LOGIT_EPS = 1e-6  # pixels are clamped to [eps, 1 - eps] before the logit, so 0 and 1 stay finite
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights: the grey that Saturation moves towards


# ------------------------------------------------------------------------------------------------------------
# Conversion and normalisation


@register_tfm
class IntToFloatTensor(BatchTransform):
    """Integer images to float32 divided by ``div``; masks to int64 (divided by ``div_mask``).

    Images that are already floating point pass through (they are taken as scaled). ``decodes`` clamps
    images to [0, 1] and keeps them float, the range that showing expects (fastai multiplies back instead).

    Args:
        div: what image values are divided by (255 for uint8).
        div_mask: what mask codes are (integer-)divided by, e.g. 255 for masks stored as 0/255.
    """

    order = 10
    _config_keys = ("div", "div_mask")

    def __init__(self, div: float = 255., div_mask: int = 1):
        self.div, self.div_mask = div, div_mask

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        updates = {i: batch[i].float().div_(self.div) for i in members_of(batch, kinds, "image")
                   if not batch[i].is_floating_point()}
        for i in members_of(batch, kinds, "mask"):
            mask = batch[i].long()
            updates[i] = mask if self.div_mask == 1 else torch.div(mask, int(self.div_mask), rounding_mode="floor")
        return replace_members(batch, updates)

    def decodes(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        return replace_members(batch, {i: batch[i].float().clamp(0, 1) for i in members_of(batch, kinds, "image")})


# ------------------------------------------------------------------------------------------------------------
# Lighting: composed affine maps of the channel logits


@register_tfm
class LightingTfm(BatchTransform):
    """Lighting transforms fused into one: ``x = sigmoid(A @ logit(x) + b)`` per image (training only).

    Each piece contributes a matrix and a bias (identity and zero for the images it skips); they are
    composed in list order, then applied at once. Images that no piece touched are returned bit-exact.

    Args:
        tfms: lighting transforms (`Brightness`, `Contrast`, `Saturation`, `Hue`, or fused ones) to fuse.
    """

    order = 40
    split_idx = 0
    fuse_group = "lighting"  # neighbours in a batch_tfms list are fused (`lamina.data.transforms.fuse_tfms`)
    _config_keys = ("tfms",)

    def __init__(self, tfms: Sequence["LightingTfm"] = ()):
        self.tfms: list[LightingTfm] = [piece for tfm in tfms for piece in tfm.tfms]  # flattened

    @classmethod
    def fuse(cls, tfms: Sequence["LightingTfm"]) -> list["LightingTfm"]:
        """Lighting transforms as one `LightingTfm` (one logit, one matmul, one sigmoid)."""
        return [LightingTfm(tfms)]

    def _logit_map(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """This piece's (matrix [bs, C, C], bias [bs, C], applied [bs]) for images ``x``."""
        raise NotImplementedError(f"{type(self).__name__} has no lighting map of its own")

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        pieces = [piece for piece in self.tfms if piece.p > 0]
        if not pieces:
            return batch
        return replace_members(batch, {i: self._light(batch[i], pieces) for i in members_of(batch, kinds, "image")})

    @staticmethod
    def _light(x: Tensor, pieces: Sequence["LightingTfm"]) -> Tensor:
        bs, channels = x.shape[:2]
        # float32 and no autocast: logits of pixels near 0 or 1 are large and bf16 would band them
        with torch.autocast(device_type=x.device.type, enabled=False):
            matrix = _eye(bs, channels, x.device)
            bias = torch.zeros(bs, channels, 1, device=x.device)
            applied = torch.zeros(bs, dtype=torch.bool, device=x.device)
            for piece in pieces:  # (A2, b2) after (A1, b1) is (A2 A1, A2 b1 + b2)
                piece_matrix, piece_bias, on = piece._logit_map(x)
                matrix, bias = piece_matrix @ matrix, piece_matrix @ bias + piece_bias[..., None]
                applied = applied | on
            logits = torch.logit(x.float(), eps=_LOGIT_EPS).flatten(2)
            lit = torch.baddbmm(bias, matrix.contiguous(), logits).sigmoid_().view(x.shape).to(x.dtype)
        return torch.where(applied.view(bs, 1, 1, 1), lit, x)


def _eye(bs: int, channels: int, device: torch.device) -> Tensor:
    return torch.eye(channels, device=device).expand(bs, channels, channels)


def _check_lighting(max_lighting: float, name: str = "max_lighting") -> float:
    if not 0 <= max_lighting < 1:
        raise ValueError(f"`{name}` must be in [0, 1) (the default is 0.2); received: {name}={max_lighting!r}")
    return float(max_lighting)


def _log_uniform_factor(max_lighting: float, bs: int, device: torch.device, batch: bool) -> Tensor:
    """exp(U(log(1 - L), -log(1 - L))): a factor in [1 - L, 1 / (1 - L)], as likely to shrink as to grow."""
    bound = -math.log(1 - max_lighting)
    return torch.exp(uniform(-bound, bound, bs, device, batch))


class _LightingPiece(LightingTfm):
    """One lighting transform: its draw and probability; subclasses give the map."""

    _config_keys = ("max_lighting", "p", "batch")

    def __init__(self, max_lighting: float, p: float, draw: Any, batch: bool):
        self.max_lighting, self.p = _check_lighting(max_lighting), check_p(p)
        self.draw, self.batch = draw, batch
        self.tfms = [self]

    def _value(self, x: Tensor, default: Tensor, neutral: float) -> tuple[Tensor, Tensor]:
        on = coin(len(x), self.p, x.device, self.batch)
        return torch.where(on, drawn(self.draw, x, default), neutral), on


@register_tfm
class Brightness(_LightingPiece):
    """Brightness change: adds ``logit(t)`` to every logit, with the target ``t`` ~ U(0.5(1-L), 0.5(1+L)).

    Args:
        max_lighting: L, in [0, 1).
        p: the probability of changing an image.
        draw: a fixed ``t`` (number, one per image, or a function of the batch) instead of a random one.
        batch: one draw for the whole batch.
    """

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75, draw: Any = None, batch: bool = False):
        super().__init__(max_lighting, p, draw, batch)

    def _logit_map(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bs, channels = x.shape[:2]
        low, high = 0.5 * (1 - self.max_lighting), 0.5 * (1 + self.max_lighting)
        target, on = self._value(x, uniform(low, high, bs, x.device, self.batch), 0.5)
        shift = torch.logit(target, eps=_LOGIT_EPS)
        return _eye(bs, channels, x.device), shift[:, None].expand(bs, channels), on


@register_tfm
class Contrast(_LightingPiece):
    """Contrast change: multiplies the logits by a factor ~ exp(U(log(1-L), -log(1-L))).

    Args: as `Brightness`; ``draw`` fixes the factor.
    """

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75, draw: Any = None, batch: bool = False):
        super().__init__(max_lighting, p, draw, batch)

    def _logit_map(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bs, channels = x.shape[:2]
        factor, on = self._value(x, _log_uniform_factor(self.max_lighting, bs, x.device, self.batch), 1.0)
        return factor[:, None, None] * _eye(bs, channels, x.device), x.new_zeros(bs, channels, dtype=torch.float32), on


@register_tfm
class Saturation(_LightingPiece):
    """Saturation change: moves the logits away from (factor > 1) or towards (< 1) their luma grey.

    The factor is drawn like `Contrast`'s. Images without 3 channels are left unchanged.

    Args: as `Brightness`; ``draw`` fixes the factor.
    """

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75, draw: Any = None, batch: bool = False):
        super().__init__(max_lighting, p, draw, batch)

    def _logit_map(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bs, channels = x.shape[:2]
        factor, on = self._value(x, _log_uniform_factor(self.max_lighting, bs, x.device, self.batch), 1.0)
        zeros = x.new_zeros(bs, channels, dtype=torch.float32)
        if channels != 3:
            return _eye(bs, channels, x.device), zeros, torch.zeros_like(on)
        # factor I + (1 - factor) [grey weights in every row], entry by entry (no constant to copy to the device)
        entries = [factor * (i == j) + (1 - factor) * _LUMA[j] for i in range(3) for j in range(3)]
        return torch.stack(entries, dim=1).view(bs, 3, 3), zeros, on


@register_tfm
class Hue(_LightingPiece):
    """Hue change: turns the logit vector about the grey axis (1, 1, 1) by ``h`` of a full turn.

    ``h`` ~ U(-max_hue, max_hue). A turn about the grey axis keeps brightness and saturation and cycles the
    hues (1/3 of a turn maps red to green). Images without 3 channels are left unchanged.

    Args:
        max_hue: the largest shift, as a fraction of a full turn.
        p: the probability of changing an image.
        draw: a fixed ``h`` (number, one per image, or a function of the batch).
        batch: one draw for the whole batch.
    """

    _config_keys = ("max_hue", "p", "batch")

    def __init__(self, max_hue: float = 0.1, p: float = 0.75, draw: Any = None, batch: bool = False):
        super().__init__(0.0, p, draw, batch)
        self.max_hue = float(max_hue)

    def _logit_map(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bs, channels = x.shape[:2]
        shift, on = self._value(x, uniform(-self.max_hue, self.max_hue, bs, x.device, self.batch), 0.0)
        zeros = x.new_zeros(bs, channels, dtype=torch.float32)
        if channels != 3:
            return _eye(bs, channels, x.device), zeros, torch.zeros_like(on)
        # Rodrigues' rotation about k = (1, 1, 1)/sqrt(3), cos I + sin [k]x + (1 - cos) k k^T, is circulant
        angle = 2 * math.pi * shift
        cos, sin = torch.cos(angle), torch.sin(angle)
        a, b, c = cos + (1 - cos) / 3, (1 - cos) / 3 - sin / math.sqrt(3), (1 - cos) / 3 + sin / math.sqrt(3)
        return torch.stack((a, b, c, c, a, b, b, c, a), dim=1).view(bs, 3, 3), zeros, on


# ------------------------------------------------------------------------------------------------------------
# Random erasing


@register_tfm
class RandomErasing(BatchTransform):
    """Replace random rectangles of the (normalised) images with Gaussian noise (training only).

    Each chosen image gets 1 to ``max_count`` rectangles; each covers a fraction U(sl, sh) of the image,
    with a log-uniform aspect ratio in [min_aspect, 1/min_aspect]. Runs after `Normalize` (order 100), so
    the noise has the data's scale.

    Args:
        p: the probability of erasing in an image.
        sl: the smallest erased fraction of the area.
        sh: the largest erased fraction of the area.
        min_aspect: the most elongated aspect ratio allowed.
        max_count: the most rectangles per image.
    """

    order = 100
    split_idx = 0
    _config_keys = ("p", "sl", "sh", "min_aspect", "max_count")

    def __init__(self, p: float = 0.5, sl: float = 0., sh: float = 0.3, min_aspect: float = 0.3, max_count: int = 1):
        if not (0 <= sl <= sh <= 1 and 0 < min_aspect <= 1 and max_count >= 1):
            raise ValueError("RandomErasing needs 0 <= sl <= sh <= 1, 0 < min_aspect <= 1 and max_count >= 1; "
                             f"received: sl={sl!r}, sh={sh!r}, min_aspect={min_aspect!r}, max_count={max_count!r}")
        self.p, self.sl, self.sh = check_p(p), sl, sh
        self.min_aspect, self.max_count = min_aspect, int(max_count)

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        if self.p == 0:
            return batch
        return replace_members(batch, {i: self._erase(batch[i]) for i in members_of(batch, kinds, "image")})

    def _erase(self, x: Tensor) -> Tensor:
        bs, _, height, width = x.shape
        dev = x.device
        count = torch.randint(1, self.max_count + 1, (bs,), device=dev)
        chosen = coin(bs, self.p, dev, False)
        rows = torch.arange(height, device=dev).view(1, height, 1)
        cols = torch.arange(width, device=dev).view(1, 1, width)
        erase = torch.zeros(bs, height, width, dtype=torch.bool, device=dev)
        bound = -math.log(self.min_aspect)
        for k in range(self.max_count):  # a loop over rectangles; every image is handled at once
            area = uniform(self.sl, self.sh, bs, dev, False) * height * width
            aspect = torch.exp(uniform(-bound, bound, bs, dev, False))
            size_h = torch.sqrt(area * aspect).round().clamp(max=height)
            size_w = torch.sqrt(area / aspect).round().clamp(max=width)
            top = (torch.rand(bs, device=dev) * (height - size_h + 1)).floor()
            left = (torch.rand(bs, device=dev) * (width - size_w + 1)).floor()
            inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + size_h).view(-1, 1, 1))
                      & (cols >= left.view(-1, 1, 1)) & (cols < (left + size_w).view(-1, 1, 1)))
            erase |= inside & (chosen & (count > k)).view(-1, 1, 1)
        return torch.where(erase[:, None], torch.randn_like(x), x)
