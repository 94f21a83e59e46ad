"""The methods fastai code calls on any Pillow image: ``Image.open(f).to_thumb(128, 128)`` (the book's chapter 2),
``img.shape``, ``img.n_px``, ``img.aspect``, ``img.reshape(h, w)``, ``img.resize_max(max_px=...)``.

lamina's own image classes (`PILImage` ...) have them (the same functions); `patch_pil_image` gives them to
``PIL.Image.Image`` as well.
Like ``Path.ls``, only the star-import surface that fastai code uses (``lamina.vision.all``) installs them, so
``import lamina`` changes no class it does not own; an attribute another library installed first is left alone.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

__all__ = ["patch_pil_image", "image_shape", "image_n_px", "image_aspect", "to_thumb", "reshape", "resize_max"]


def image_shape(self: Image.Image) -> tuple[int, int]:
    """(height, width)."""
    return self.size[1], self.size[0]


def image_n_px(self: Image.Image) -> int:
    """width × height."""
    return self.size[0] * self.size[1]


def image_aspect(self: Image.Image) -> float:
    """width / height."""
    return self.size[0] / self.size[1]


def to_thumb(self: Image.Image, h: int, w: int | None = None) -> Image.Image:
    """A copy shrunk (aspect kept) to fit in ``h`` x ``w`` (square if ``w`` is None); the image is unchanged."""
    im = self.copy()
    im.thumbnail((w or h, h))
    return im


def reshape(self: Image.Image, x: int, y: int, resample: Any = 0) -> Image.Image:
    """The image resized to height ``x`` and width ``y``."""
    return self.resize((y, x), resample=resample)


def resize_max(self: Image.Image, resample: Any = 0, max_px: int | None = None, max_h: int | None = None,
               max_w: int | None = None) -> Image.Image:
    """The image shrunk (aspect kept) to at most ``max_px`` pixels, ``max_h`` rows and ``max_w`` columns."""
    w, h = self.size
    scale = 1.0
    if max_px and w * h > max_px:
        scale = min(scale, math.sqrt(max_px / (w * h)))
    if max_h and h > max_h:
        scale = min(scale, max_h / h)
    if max_w and w > max_w:
        scale = min(scale, max_w / w)
    if scale == 1.0:
        return self
    return self.resize((max(1, int(w * scale)), max(1, int(h * scale))), resample=resample)


def patch_pil_image() -> None:
    """Give ``PIL.Image.Image`` the methods above (idempotent; existing attributes are kept)."""
    for name, value in {"shape": property(image_shape), "n_px": property(image_n_px), "aspect": property(image_aspect),
                        "to_thumb": to_thumb, "reshape": reshape, "resize_max": resize_max}.items():
        if not hasattr(Image.Image, name):
            setattr(Image.Image, name, value)
