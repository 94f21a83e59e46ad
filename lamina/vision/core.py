"""Image types and image reading: `PILImage`, `PILImageBW`, `PILMask`, normalisation statistics.

The image types are Pillow images (every Pillow method works on them) that know how to be created from
anything a user has at hand, how to show themselves, and which class they are after a transform (a mask
stays a mask, so item transforms resample it with nearest-neighbour interpolation).

JPEGs can be decoded at a reduced size (Pillow's draft mode: the decoder scales by 1/2, 1/4 or 1/8 while
decoding, several times faster) when the item transforms will shrink the image anyway; `ImageReader`
carries the smallest size the transforms need (``draft``), set by the `DataBlock`.

Greyscale files deeper than 8 bits (16-bit PNG or TIFF: Pillow modes ``I;16``, ``I;16B`` ...; 32-bit
integer ``I``; float ``F``) are scaled to 8 bits for images (Pillow's own conversion clips them, so a
16-bit photo comes out almost white), and keep their exact values as masks, where they are class codes.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.loaders import DLS_TYPES
from ..data.transforms import TypeTransform, jsonable
from .pil_patch import image_aspect, image_n_px, image_shape, to_thumb
from .tensors import TensorImage, TensorImageBW, TensorMask, TensorPoint
from .upload import upload_bytes

__all__ = ["PILBase", "PILImage", "PILImageBW", "PILMask", "imagenet_stats", "cifar_stats", "mnist_stats",
           "load_image", "image2tensor", "image_class", "ImageReader", "MaskReader",
           # re-exported from their homes (lamina.data.transforms, lamina.vision.tensors): fastai's vision.core has them
           "jsonable", "TensorImage", "TensorImageBW", "TensorMask", "TensorPoint"]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
cifar_stats = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
mnist_stats = ([0.131], [0.308])

ImageSource = Any  # Path | str | bytes | PIL.Image | np.ndarray | torch.Tensor


def load_image(fn: str | os.PathLike | bytes, mode: str | None = None,
               draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully decode an image file (or its bytes), converted to ``mode``.

    Args:
        fn: a file path, or the bytes of an encoded image.
        mode: a Pillow mode (``'RGB'``, ``'L'``); None keeps the file's.
        draft: ``(height, width)``: a JPEG may be decoded at a reduced size no smaller than this.

    Raises:
        FileNotFoundError: naming a missing file.
        OSError: naming a file that is corrupt, truncated or not an image, with the fix.
    """
    name = "the image bytes" if isinstance(fn, (bytes, bytearray)) else str(fn)
    if not isinstance(fn, (bytes, bytearray)) and not os.path.exists(fn):
        raise FileNotFoundError(f"Image file not found: {fn}")
    try:
        with Image.open(io.BytesIO(fn) if isinstance(fn, (bytes, bytearray)) else fn) as im:
            if draft is not None and im.format == "JPEG":
                im.draft(mode or im.mode, (int(draft[1]), int(draft[0])))
            im.load()  # open() reads the header only; decoding here finds truncated and corrupt data
            if mode and _is_deep(im):
                return _deep_to_8bit(im).convert(mode)
            return im.convert(mode) if mode and im.mode != mode else im.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise OSError(f"Could not read the image {name}: {e}. The file is corrupt, truncated or not an image; "
                      "find such files with verify_images(files) and remove them") from e


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Float arrays with values in [0, 1] are scaled to [0, 255]; everything is clipped and cast to uint8."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
        a = np.rint(a)
    return np.clip(a, 0, 255).astype(np.uint8)


def _is_deep(img: Image.Image) -> bool:
    """Whether ``img`` is a greyscale image of more than 8 bits per pixel (``I;16*``, ``I``, ``F``)."""
    return img.mode.startswith("I") or img.mode == "F"


def _deep_to_8bit(img: Image.Image) -> Image.Image:
    """A deep greyscale image (see `_is_deep`) as an 8-bit ``'L'`` image, scaled rather than clipped.

    * 16-bit (``I;16``, ``I;16B`` ...): value / 257, so 65535 → 255 and every image of a data set is
      scaled alike (brightness stays comparable between images).
    * 32-bit integers (``I``, no fixed range): value · 255 / max(255, the image's maximum), negatives → 0.
      Values that fit 8 bits stay as they are; a wider range is stretched so that its maximum is 255
      (the file does not say how many of the 32 bits are used, and clipping would make it white).
    * floats (``F``): as float arrays in `PILImage.create`: values in [0, 1] times 255, others clipped.
    """
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        a = (a.astype(np.uint32) + 128) // 257  # rounded: 128 of 257 is half a step
    elif img.mode == "I":
        a = np.clip(a, 0, None).astype(np.float64)
        a = np.rint(a * (255.0 / max(255.0, float(a.max(initial=0)))))
    else:
        return Image.fromarray(_to_uint8(a.astype(np.float32)))
    return Image.fromarray(a.astype(np.uint8))


# The widest code a mask holds: masks are 8-bit ('L') images, so codes go from 0 to 255.
MAX_MASK_CODE = 255


def _mask_codes(a: np.ndarray, name: str) -> np.ndarray:
    """The class codes of a mask as uint8, unchanged.

    Raises:
        ValueError: naming ``name`` when a value is not an integer from 0 to `MAX_MASK_CODE`.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and np.issubdtype(a.dtype, np.floating) and not np.array_equal(a, np.round(a)):
        raise ValueError(f"The mask {name} holds non-integer values (e.g. {a[a != np.round(a)].flat[0]}); mask "
                         "pixels are class codes: save the mask with integer values")
    low, high = (a.min(), a.max()) if a.size else (0, 0)
    if low < 0 or high > MAX_MASK_CODE:
        bad = low if low < 0 else high
        raise ValueError(f"The mask {name} holds the code {bad:g}, but masks are read as 8-bit images with codes 0 "
                         f"to {MAX_MASK_CODE}: renumber the classes from 0 (e.g. replace each code by its index in "
                         "`codes`) and save the masks again")
    return a.astype(np.uint8)


def _array_to_pil(a: np.ndarray, scale: bool, name: str = "given as an array") -> Image.Image:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # CHW → HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"An image array must be HxW, HxWxC or CxHxW; received shape {a.shape}")
    if scale and a.dtype == np.uint16:  # 16-bit pixels, as a 16-bit file gives: scaled like one (see _deep_to_8bit)
        a = (a.astype(np.uint32) + 128) // 257
    a = _to_uint8(a) if scale else _mask_codes(a, name)
    return Image.fromarray(np.ascontiguousarray(a))


class PILBase(Image.Image):
    """A Pillow image that remembers its lamina type. Create one with ``create``.

    Attributes:
        mode_default: the mode images are converted to on creation.
    """

    mode_default: str | None = "RGB"
    kind = "image"  # what it is to batch transforms (a mid-level `TfmdLists` reads it)

    @classmethod
    def from_pil(cls, img: Image.Image) -> "PILBase":
        """Wrap a Pillow image as this class without copying the pixels."""
        if type(img) is cls:
            return img
        new = cls()
        new.__dict__.update(img.__dict__)
        return new

    @classmethod
    def create(cls, fn: ImageSource, draft: tuple[int, int] | None = None, **kwargs: Any) -> "PILBase":
        """An image from a path, str, bytes, memoryview, BytesIO, notebook upload, Pillow image, array or tensor.

        Arrays and tensors may be HxW, HxWxC or CxHxW; float values in [0, 1] are scaled to [0, 255] and
        uint16 values divided by 257 (masks are cast as they are: their values are class indices). Files and
        images deeper than 8 bits are scaled to 8 bits (masks keep their codes); see the module docstring.

        Args:
            fn: the source.
            draft: ``(height, width)``: JPEG files may be decoded at a reduced size no smaller than this.

        Raises:
            TypeError: for an unsupported source. FileNotFoundError / OSError: naming an unreadable file.
            ValueError: for a mask, naming it, when a value is not a code from 0 to 255; for several uploads.
        """
        is_mask = issubclass(cls, PILMask)
        if isinstance(fn, (str, os.PathLike, bytes, bytearray)):
            name = "given as bytes" if isinstance(fn, (bytes, bytearray)) else str(fn)
            img = cls._converted(load_image(fn, None if is_mask else cls.mode_default, draft), name)
        elif isinstance(fn, Image.Image):
            img = cls._converted(fn, "given as a PIL image")
            if not (type(img) is Image.Image or isinstance(img, PILBase)):
                img = img.copy()  # a file-backed image (JpegImageFile ...): decode it into a plain image
        elif isinstance(fn, (np.ndarray, torch.Tensor)):
            array = fn.detach().cpu().numpy() if isinstance(fn, torch.Tensor) else fn
            img = cls._converted(_array_to_pil(array, scale=not is_mask, name="given as an array"))
        else:  # bytes held another way (memoryview, BytesIO, an upload widget's file), or a TypeError
            return cls.create(upload_bytes(fn, f"{cls.__name__}.create"), draft)
        return cls.from_pil(img)

    @classmethod
    def reader(cls) -> "ImageReader | MaskReader":
        """The loading step reading sources as this class (a `Datasets` step ``cls.create`` becomes this)."""
        return MaskReader() if issubclass(cls, PILMask) else ImageReader(cls)

    @classmethod
    def _converted(cls, img: Image.Image, name: str = "") -> Image.Image:
        """``img`` in this class's mode (``name`` says where it came from, for errors)."""
        mode = cls.mode_default
        if mode and _is_deep(img):
            img = _deep_to_8bit(img)
        return img.convert(mode) if mode and img.mode != mode else img

    shape = property(image_shape)
    n_px = property(image_n_px)
    aspect = property(image_aspect)

    def to_thumb(self, h: int, w: int | None = None) -> "PILBase":
        """A copy shrunk (aspect kept) to fit in ``h`` x ``w`` (square if ``w`` is None)."""
        return type(self).from_pil(to_thumb(self, h, w))

    def show(self, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw on a matplotlib axis ``ctx`` (a new figure if None); kwargs go to `show_image` (title, figsize ...)."""
        from .show import show_image
        return show_image(self, ax=ctx, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__} mode={self.mode} size={self.size[0]}x{self.size[1]}"


class PILImage(PILBase):
    """An RGB image."""

    mode_default = "RGB"


class PILImageBW(PILImage):
    """A grayscale image (mode ``'L'``)."""

    mode_default = "L"


class PILMask(PILBase):
    """A segmentation mask (mode ``'L'``): each pixel holds a class index."""

    mode_default = "L"
    kind = "mask"

    @classmethod
    def _converted(cls, img: Image.Image, name: str = "") -> Image.Image:
        # a palette ('P') mask stores class indices: keep them (converting to 'L' would map them to grey levels)
        if img.mode == "P":
            return Image.fromarray(np.asarray(img, dtype=np.uint8))
        # a 16-bit or 32-bit mask holds codes too: keep them exactly (Pillow's conversion would clip at 255)
        if _is_deep(img):
            return Image.fromarray(_mask_codes(np.asarray(img), name or "given as a PIL image"))
        return super()._converted(img, name)

    def show(self, ctx: Any = None, **kwargs: Any) -> Any:
        from .show import show_image
        kwargs = {"cmap": "tab20", "alpha": 0.5, **kwargs}
        return show_image(self, ax=ctx, **kwargs)


def image2tensor(img: Image.Image) -> torch.Tensor:
    """A uint8 tensor: CxHxW for an image (HxW gets a channel), HxW for a `PILMask`."""
    a = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
    if isinstance(img, PILMask):
        return a
    return a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1)


_IMAGE_CLASSES = {"PILImage": PILImage, "PILImageBW": PILImageBW, "PILMask": PILMask}


def image_class(name: str) -> type:
    """The image class called ``name`` (for configs)."""
    if name not in _IMAGE_CLASSES:
        raise ValueError(f"Unknown image class {name!r}; expected one of {sorted(_IMAGE_CLASSES)}")
    return _IMAGE_CLASSES[name]


class ImageReader(TypeTransform):
    """The loading step of `ImageBlock`: ``cls.create(source, draft=self.draft)`` (picklable for workers).

    Attributes:
        lazy: runs in ``__getitem__`` (in the workers), not when the datasets are built.
        draft: ``(h, w)`` the item transforms need at least, or None for full-size decoding.
    """

    lazy = True
    kind = "image"

    def __init__(self, cls: type = PILImage, draft: tuple[int, int] | None = None):
        self.cls, self.draft = cls, draft

    def __call__(self, source: ImageSource) -> PILBase:
        return self.cls.create(source, draft=self.draft)

    def accepts(self, item: Any) -> bool:
        """Whether ``item`` can be read as it is (so `test_set` skips the getters)."""
        return isinstance(item, (str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray, torch.Tensor))

    @property
    def dls_type(self) -> type | None:
        """The DataLoaders class of image inputs (``ImageDataLoaders``, once `lamina.vision.data` registered it)."""
        return DLS_TYPES.get(self.kind)

    def show(self, x: Any, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw an image (Pillow or a CxHxW tensor) on ``ctx``; see `show_image`."""
        from .show import show_image
        return show_image(x, ax=ctx, **kwargs)

    def __repr__(self) -> str:
        return f"ImageReader({self.cls.__name__}, draft={self.draft})"


class MaskReader(TypeTransform):
    """The loading step of `MaskBlock`: reads a mask and checks its values against ``codes``.

    Args:
        codes: the class names (pixel value k is ``codes[k]``).
        ignore_index: a "void" pixel value allowed beyond the codes (e.g. 255); the loss leaves it out.

    Raises:
        FileNotFoundError: (``check``, when the datasets are built) naming a mask path that does not exist.
        ValueError: (when loading) naming the file and the value when a pixel is ``>= len(codes)`` (and not
            ``ignore_index``).
    """

    lazy = True
    kind = "mask"

    def __init__(self, codes: Any = None, ignore_index: int | None = None):
        self.codes = None if codes is None else [str(c) if isinstance(c, np.str_) else c for c in codes]
        self.ignore_index = ignore_index

    @property
    def loss_kwargs(self) -> dict:
        """The mask loss's extra arguments (its kind's loss, in `TARGET_LOSSES`): void pixels are left out."""
        return {} if self.ignore_index is None else {"ignore_index": int(self.ignore_index)}

    @property
    def vocab(self) -> list | None:
        return self.codes

    @property
    def c(self) -> int | None:
        return None if self.codes is None else len(self.codes)

    def check(self, source: Any) -> None:
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
            raise FileNotFoundError(f"The mask file {str(source)!r} does not exist: check the label function "
                                    "that returns mask paths")

    def __call__(self, source: ImageSource) -> PILMask:
        mask = PILMask.create(source)
        if self.codes is not None:
            values = np.asarray(mask)
            if self.ignore_index is not None:
                values = values[values != self.ignore_index]
            top = int(values.max(initial=0))
            if top >= len(self.codes):
                name = str(source) if isinstance(source, (str, os.PathLike)) else "a mask"
                void = "" if self.ignore_index is None else f" besides the void value {self.ignore_index}"
                raise ValueError(f"The mask {name} contains the value {top}, but there are only {len(self.codes)} "
                                 f"codes (values 0 to {len(self.codes) - 1}{void}): check `codes` or the mask files"
                                 + ("" if self.ignore_index is not None else
                                    ", or mark a void value with MaskBlock(codes, ignore_index=...)"))
        return mask

    def decode(self, mask: Any) -> Any:
        return mask

    def show(self, x: Any, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw a mask in colour over what ``ctx`` shows (its image); void pixels stay transparent."""
        from .show import mask_kwargs, show_image
        array = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).astype(np.float32)
        if self.ignore_index is not None:
            array = np.where(array == self.ignore_index, np.nan, array)
        n_codes = len(self.codes) if self.codes else 20
        return show_image(array, ax=ctx, **{**mask_kwargs(n_codes), **kwargs})

    def __repr__(self) -> str:
        return f"MaskReader({len(self.codes) if self.codes else 'no'} codes)"

