"""Tiny synthetic image data sets for tests and examples (deterministic given ``seed``).

* `make_image_folder`: small images whose colour depends on the class, named like the Oxford-IIIT Pet
  images (``Persian_3.jpg`` is a cat: capitalised; ``pug_3.jpg`` a dog) or sorted into
  ``train``/``valid`` class folders.
* `make_segmentation_set`: CamVid-like ``images/<stem>.png``, ``labels/<stem>_P.png`` and ``codes.txt``,
  where every mask is a function of its image's pixels: code ``k`` is painted in ``PALETTE[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_image_folder", "make_segmentation_set", "PALETTE", "mask_from_pixels"]

# well-separated colours: code k is painted PALETTE[k]
PALETTE = np.array([[0, 0, 0], [255, 255, 255], [230, 30, 30], [30, 200, 30], [40, 60, 230], [240, 220, 20],
                    [200, 40, 220], [20, 220, 230]], dtype=np.uint8)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _class_image(rng: np.random.Generator, k: int, n_classes: int, hw: tuple[int, int]) -> Image.Image:
    """A noisy image whose mean colour depends on the class (so a tiny model can learn it)."""
    hue = np.array([255 * (k + 1) / (n_classes + 1), 255 * (n_classes - k) / (n_classes + 1), 128.0])
    noise = rng.normal(0, 25, size=(*hw, 3))
    return Image.fromarray(np.clip(hue + noise, 0, 255).astype(np.uint8))


def make_image_folder(path: str | Path, n_per_class: int = 4, size: int | Sequence[int] = 32,
                      classes: Sequence[str] = ("Persian", "pug"), pets_style: bool = True, fmt: str = "jpg",
                      seed: int = 0, sizes: Sequence | None = None) -> list[Path]:
    """Write ``n_per_class`` images per class and return their paths (sorted).

    Args:
        path: the folder to fill.
        n_per_class: images per class.
        size: an int or (height, width).
        classes: class names; with ``pets_style`` a capitalised name is a cat and a lower-case one a dog.
        pets_style: files ``path/<class>_<i>.<fmt>``; otherwise ``path/train/<class>/<i>.<fmt>`` with every
            fourth image in ``path/valid/<class>/``.
        fmt: ``'jpg'`` or ``'png'``.
        seed: the random seed.
        sizes: optional sizes to cycle through instead of ``size`` (for images of different sizes).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    files = []
    for k, name in enumerate(classes):
        for i in range(n_per_class):
            hw = _size(sizes[(k * n_per_class + i) % len(sizes)] if sizes else size)
            if pets_style:
                fn = path / f"{name}_{i}.{fmt}"
            else:
                fn = path / ("valid" if i % 4 == 3 else "train") / name / f"{i}.{fmt}"
            fn.parent.mkdir(parents=True, exist_ok=True)
            image = _class_image(rng, k, len(classes), hw)
            image.save(fn, **({"quality": 95} if fmt == "jpg" else {}))
            files.append(fn)
    return sorted(files)


def mask_from_pixels(image: np.ndarray) -> np.ndarray:
    """The code of each pixel: the index of the nearest `PALETTE` colour (HxWx3 uint8 → HxW int64)."""
    dist = ((image[..., None, :].astype(np.int32) - PALETTE[None, None].astype(np.int32)) ** 2).sum(-1)
    return dist.argmin(-1)


def make_segmentation_set(path: str | Path, n: int = 8, size: int | Sequence[int] = (24, 32), n_codes: int = 3,
                          block: int = 4, seed: int = 0) -> list[Path]:
    """Write ``n`` images of random ``block``-pixel squares, their masks and ``codes.txt``; return the images.

    Image pixels painted ``PALETTE[k]`` have mask value ``k`` (`mask_from_pixels` recovers the mask).
    Files: ``path/images/img<i>.png``, ``path/labels/img<i>_P.png``, ``path/codes.txt`` (one code a line).
    """
    if not 1 <= n_codes <= len(PALETTE):
        raise ValueError(f"`n_codes` must be in [1, {len(PALETTE)}]; received: n_codes={n_codes!r}")
    path = Path(path)
    (path / "images").mkdir(parents=True, exist_ok=True)
    (path / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = _size(size)
    files = []
    for i in range(n):
        coarse = rng.integers(0, n_codes, size=(-(-h // block), -(-w // block)))
        mask = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:h, :w].astype(np.uint8)
        fn = path / "images" / f"img{i}.png"
        Image.fromarray(PALETTE[mask]).save(fn)
        Image.fromarray(mask).save(path / "labels" / f"img{i}_P.png")
        files.append(fn)
    (path / "codes.txt").write_text("\n".join(f"code{k}" for k in range(n_codes)) + "\n")
    return files
