"""Decode JPEGs where the batches go (nvJPEG on a CUDA device), not in the loading workers.

On a fast GPU, decoding JPEGs on the CPU workers is what sets the pace: with 15 workers on 16 cores, a
resnet34 in bf16 at bs 256 trains at 49% of the speed of the model alone. With `decode_on_device` the workers
only read each file's bytes and draw where the item transform's window goes (the same `plan` as on the CPU,
so the same random crops for the same seed); the first batch transform, `DecodeImages`, decodes the batch in
one call of torchvision's ``decode_jpeg(..., device=...)`` and resamples every window to the item size there.

What stays on the CPU, item by item in the workers: files that are not JPEGs, JPEGs that are not RGB or
grayscale (CMYK), and items that are not files (a PIL image given to ``predict``). They go through the usual
reader and item transforms, and join the batch already decoded.

Limits (checked by `decode_on_device`, which says what to change): one image input, no masks, points or
boxes, and item transforms that are one window-drawing transform (`Resize`, `RandomResizedCrop`) plus
`ToTensor`.

Example:
    >>> dls = ImageDataLoaders.from_name_func(path, files, label_func=is_cat, item_tfms=Resize(224),
    ...                                       batch_tfms=aug_transforms(), decode="device")
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate

from ..data.datasets import Datasets
from ..data.dataloader import DataLoader
from ..data.transforms import BatchTransform, members_of, replace_members
from .core import ImageReader, PILImage, load_image
from .transforms import RandomResizedCrop, Resize, ToTensor

__all__ = ["decode_on_device", "can_decode_on_device", "choose_decode", "DecodeImages", "EncodedImage", "EncodedImages",
           "DeviceDecodeDatasets", "collate_encoded", "resample_window"]

JPEG_MAGIC = b"\xff\xd8\xff"
WINDOW_TFMS = (Resize, RandomResizedCrop)  # item transforms whose plan is a window (left, top, right, bottom)
_TORCH_PAD = {"reflection": "reflect", "zeros": "constant", "border": "replicate"}


@dataclass
class EncodedImage:
    """One image as the workers leave it: the file's bytes (``data``) or, when it was decoded on the CPU, the
    final uint8 CxHxW tensor (``decoded``); ``window`` in the file's pixels, ``name`` for error messages."""

    data: torch.Tensor | None
    decoded: torch.Tensor | None
    window: tuple[float, float, float, float]
    name: str


class EncodedImages:
    """A batch member of `EncodedImage`\\ s (what `collate_encoded` makes), decoded by `DecodeImages`.

    Not a tensor, so the loader's move to the device leaves it as it is: ``decode_jpeg`` uploads the bytes.
    """

    def __init__(self, images: Sequence[EncodedImage]):
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n = sum(im.data is not None for im in self.images)
        return f"EncodedImages({len(self)} images, {n} to decode)"


def can_decode_on_device(dls: Any) -> str | None:
    """None when `decode_on_device` can take ``dls``, else why not (what to change)."""
    for dl in dls.loaders:
        ds = dl.dataset
        if not isinstance(ds, Datasets) or not isinstance(dl, DataLoader):
            return "the loaders are not lamina DataLoaders over Datasets (built by a DataBlock or a factory)"
        kinds = tuple(ds.kinds)
        if kinds.count("image") != 1 or kinds[0] != "image" or {"mask", "point", "bbox"} & set(kinds):
            return (f"decoding on the device takes one image input and no masks, points or boxes; these data are "
                    f"{kinds}")
        reader = ds.lazy_steps[0][0] if ds.lazy_steps[0] else None
        if type(reader) is not ImageReader or reader.cls is not PILImage or len(ds.lazy_steps[0]) != 1:
            return "decoding on the device reads RGB images (ImageBlock(PILImage)) and nothing after the reader"
        windows = [t for t in ds.item_tfms if isinstance(t, WINDOW_TFMS)]
        others = [t for t in ds.item_tfms if not isinstance(t, (*WINDOW_TFMS, ToTensor))]
        if len(windows) != 1 or others:
            return ("decoding on the device needs item_tfms of one Resize or RandomResizedCrop (plus ToTensor); "
                    f"these are {[type(t).__name__ for t in ds.item_tfms]}")
    return None


def decode_on_device(dls: Any) -> Any:
    """Make ``dls`` read JPEG bytes in its workers and decode and resize them on its device (in place).

    Returns:
        ``dls``, for chaining.

    Raises:
        ValueError: naming what these data have that device decoding does not take (see `can_decode_on_device`).
    """
    why = can_decode_on_device(dls)
    if why is not None:
        raise ValueError(f"Cannot decode these images on the device: {why}. Build them with decode='cpu' "
                         "(the default), or change the transforms")
    for dl in dls.loaders:
        if not isinstance(dl.dataset, DeviceDecodeDatasets):
            view = dl.dataset._view()
            view.__class__ = DeviceDecodeDatasets
            dl.dataset = view
        dl.collate_fn = collate_encoded
        window_tfm = next(t for t in dl.dataset.item_tfms if isinstance(t, WINDOW_TFMS))
        dl.after_batch[:] = [t for t in dl.after_batch if not isinstance(t, DecodeImages)]
        dl.after_batch.insert(0, DecodeImages(window_tfm.size, getattr(window_tfm, "pad_mode", "reflection")))
        dl._torch_dl = None  # persistent workers must restart with the new dataset
    return dls


DECODE_CHOICES = ("cpu", "device", "auto")


def choose_decode(dls: Any, decode: str) -> Any:
    """``dls`` decoding where ``decode`` says: ``'cpu'`` (as built), ``'device'`` (`decode_on_device`, or its
    error), ``'auto'`` (on the device when it is CUDA and the data allow it).

    Raises:
        ValueError: for another ``decode``, or ``'device'`` for data that cannot be decoded on the device.
    """
    if decode not in DECODE_CHOICES:
        raise ValueError(f"`decode` must be one of {DECODE_CHOICES}; received: decode={decode!r}")
    if decode == "device" or (decode == "auto" and dls.device.type == "cuda" and can_decode_on_device(dls) is None):
        return decode_on_device(dls)
    return dls


class DeviceDecodeDatasets(Datasets):
    """A `Datasets` whose image member is read as JPEG bytes and a window (see `decode_on_device`)."""

    def __getitem__(self, k: int) -> tuple:
        i = self.idxs[k]
        source = self._values[i][0]
        window_tfm = next(t for t in self.item_tfms if isinstance(t, WINDOW_TFMS))
        encoded = _read_jpeg(source, window_tfm, train=self.split_idx != 1)
        if encoded is None:  # not a JPEG file this path takes: the usual reader and transforms, on the CPU
            sample = super().__getitem__(k)
            encoded = EncodedImage(None, sample[0], (0.0, 0.0, 0.0, 0.0), _name(source))
            return (encoded, *sample[1:])
        rest = []
        for j in range(1, len(self.lazy_steps)):
            x = self._values[i][j]
            for step in self.lazy_steps[j]:
                x = self._run(step, x, i, j)
            rest.append(x)
        return (encoded, *rest)


def _name(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"a {type(source).__name__}"


def _read_jpeg(source: Any, window_tfm: Any, train: bool) -> EncodedImage | None:
    """The bytes and window of a JPEG file in a mode nvJPEG decodes to RGB; None for anything else."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        with open(source, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)  # read once, into the buffer the tensor will share
            del data[f.readinto(data):]  # in place: a file that shrank since fstat
    except OSError:
        return None  # the CPU reader raises its own error, naming the file
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            size, mode = im.size, im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        load_image(source)  # raises lamina's error for a corrupt image, naming the file
        return None
    if mode not in ("RGB", "L"):
        return None
    window = tuple(float(v) for v in window_tfm.plan(size, train=train))
    return EncodedImage(torch.frombuffer(data, dtype=torch.uint8), None, window, str(source))


def collate_encoded(samples: Sequence[tuple]) -> tuple:
    """A batch whose first member is `EncodedImages` and the others collated as torch does."""
    first = [s[0] for s in samples]
    rest = [default_collate([s[j] for s in samples]) for j in range(1, len(samples[0]))]
    return (EncodedImages(first), *rest)


class DecodeImages(BatchTransform):
    """Decode the `EncodedImages` member of a batch where the batch is, and resample each window to the item size.

    It runs first (``order = -10``). Batches of tensors (the CPU path, a ``predict`` on a PIL image) pass
    through. Not exported: a loaded learner decodes on the CPU.

    Raises:
        OSError: naming the file when a JPEG cannot be decoded (lamina's message for a corrupt image).
    """

    order = -10
    exported = False

    def __init__(self, size: tuple[int, int], pad_mode: str = "reflection"):
        self.size, self.pad_mode = tuple(size), pad_mode

    def encodes(self, batch: tuple, kinds: Sequence[str], split_idx: int) -> tuple:
        updates = {}
        for i in members_of(batch, kinds, "image"):
            if isinstance(batch[i], EncodedImages):
                updates[i] = self.decode(batch[i], _device_of(batch))
        return replace_members(batch, updates) if updates else batch

    def decode(self, encoded: EncodedImages, device: torch.device) -> torch.Tensor:
        """The uint8 NxCxHxW batch of ``encoded`` on ``device``."""
        todo = [im for im in encoded.images if im.data is not None]
        decoded = iter(_decode_all(todo, device))
        out = []
        for im in encoded.images:
            if im.data is None:
                out.append(im.decoded.to(device, non_blocking=True))
            else:
                out.append(resample_window(next(decoded), im.window, self.size, self.pad_mode))
        return torch.stack(out)


def _device_of(batch: tuple) -> torch.device:
    return next((t.device for t in batch if isinstance(t, torch.Tensor)), torch.device("cpu"))


def _decode_all(images: Sequence[EncodedImage], device: torch.device) -> list[torch.Tensor]:
    """One batched ``decode_jpeg`` call; on failure, image by image to name the file that fails."""
    if not images:
        return []
    from torchvision.io import ImageReadMode, decode_jpeg
    try:
        return decode_jpeg([im.data for im in images], mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        out = []
        for im in images:
            try:
                out.append(decode_jpeg(im.data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as e:
                raise OSError(f"Could not read the image {im.name}: {e}. The file is corrupt, truncated or not an "
                              "image; find such files with verify_images(files) and remove them") from e
        return out


def resample_window(image: torch.Tensor, window: Sequence[float], size: tuple[int, int],
                    pad_mode: str = "reflection") -> torch.Tensor:
    """The ``window`` (left, top, right, bottom, in pixels; may reach outside) of a uint8 CxHxW ``image``,
    resampled to ``size`` (h, w) with antialiased bilinear interpolation, as uint8.

    The window is taken to whole pixels (outward), and the part outside the image is padded per ``pad_mode``.
    """
    _, height, width = image.shape
    left, top = math.floor(window[0] + 1e-6), math.floor(window[1] + 1e-6)
    right, bottom = math.ceil(window[2] - 1e-6), math.ceil(window[3] - 1e-6)
    x = image.unsqueeze(0).float()
    pads = (max(0, -left), max(0, right - width), max(0, -top), max(0, bottom - height))
    if any(pads):
        mode = _TORCH_PAD[pad_mode]
        if mode == "reflect" and (max(pads[:2]) >= width or max(pads[2:]) >= height):
            mode = "replicate"  # reflection cannot pad more than the image is wide
        x = F.pad(x, pads, mode=mode)
        left, right, top, bottom = left + pads[0], right + pads[0], top + pads[2], bottom + pads[2]
    x = x[..., top:bottom, left:right]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)[0]
