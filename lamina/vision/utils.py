"""Gathering your own images (fastai's chapter 2): download a list of image URLs, then shrink the files.

* `download_images` fetches URLs into a folder, several at a time. Each file appears only once it is complete
  (a dropped connection never leaves half an image under an image name), and the URLs that failed are reported
  in one warning instead of silently missing.
* `resize_images` shrinks every image of a folder so its longer side is at most ``max_size`` (into ``dest``,
  which may be the same folder: each file is replaced by its complete resized version, never half written).
* Broken downloads are then found with `verify_images` and deleted: ``verify_images(fns).map(Path.unlink)``.

Example:
    >>> download_images(path/'grizzly', urls=urls)
    >>> resize_images(path/'grizzly', max_size=400, dest=path/'grizzly')
    >>> failed = verify_images(get_image_files(path)); failed.map(Path.unlink)
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable
from contextlib import suppress
from functools import partial
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..atomic import atomic_write
from ..core import usable_cpus
from ..data.external import DownloadError, download_url
from ..data.files import decoded_image, get_image_files, image_extensions, verify_image
from ..foundation import L
from .core import _deep_to_8bit, _is_deep

__all__ = ["download_images", "resize_to", "resize_image", "resize_images"]

_SAFE_NAME = re.compile(r"[^\w.-]+")


def _url_list(url_file: str | Path | None, urls: Iterable[str] | None, max_pics: int) -> list[str]:
    if urls is None:
        if url_file is None:
            raise ValueError("download_images: pass urls= (a list of image URLs) or url_file= (a text file with "
                             "one URL per line)")
        if not Path(url_file).is_file():
            raise FileNotFoundError(f"download_images: url_file={str(url_file)!r} is not a file; pass a text file "
                                    "with one image URL per line, or the URLs themselves as urls=")
        urls = Path(url_file).read_text(encoding="utf8").splitlines()
    elif isinstance(urls, str):
        urls = [urls]
    return [u.strip() for u in urls if u and u.strip()][:max_pics]


def _suffix_and_stem(url: str) -> tuple[str, str]:
    """The image suffix of ``url``'s path (``.jpg`` when it has none, or one that is not an image's) and a file
    stem made of its last path component."""
    name = Path(unquote(urlsplit(url).path)).name
    stem, suffix = os.path.splitext(name)
    suffix = suffix.lower() if suffix.lower() in image_extensions else ".jpg"
    return suffix, _SAFE_NAME.sub("_", stem).strip("._")[:100]  # a name, with room for its lock and part files


def _file_names(dest: Path, urls: list[str], preserve_filename: bool) -> list[Path]:
    """A file in ``dest`` for each URL: a UUID, or the URL's own name numbered when a file (or an earlier URL)
    already has it."""
    names, taken = [], set()
    for url in urls:
        suffix, stem = _suffix_and_stem(url)
        if not (preserve_filename and stem):
            names.append(dest / f"{uuid.uuid4()}{suffix}")
            continue
        candidate, n = stem, 1
        while candidate + suffix in taken or (dest / (candidate + suffix)).exists():
            candidate, n = f"{stem}{n}", n + 1
        taken.add(candidate + suffix)
        names.append(dest / (candidate + suffix))
    return names


def _fetch_image(url: str, path: Path, timeout: float) -> str | None:
    """Download ``url`` to ``path``; None when it worked, else why not (nothing is left behind)."""
    if urlsplit(url).scheme not in ("http", "https"):
        return f"{url!r} is not an http(s):// URL"
    try:
        download_url(url, path, timeout=timeout, show_progress=False)
    except (DownloadError, OSError, ValueError) as e:
        with suppress(OSError):
            path.with_name(path.name + ".part").unlink(missing_ok=True)  # an image download is never resumed
        return str(e).split("; ")[0]  # what happened, without the advice about dataset mirrors
    if not verify_image(path):  # cut short with no length sent, or a web page instead of an image
        with suppress(OSError):
            path.unlink(missing_ok=True)
        return "what came back is not a complete image"
    return None


def download_images(dest: str | Path, url_file: str | Path | None = None, urls: Iterable[str] | None = None,
                    max_pics: int = 1000, n_workers: int = 8, timeout: float = 4,
                    preserve_filename: bool = False) -> L:
    """Download the images at ``urls`` (or listed one per line in ``url_file``) into the folder ``dest``.

    Files are named with a random UUID and the URL's image suffix (``.jpg`` when it has none), or with the URL's
    own file name if ``preserve_filename`` (numbered ``name1.jpg`` ... when taken). A URL that fails (no
    connection, an HTTP error, a timeout, a download that is not a complete image) leaves no file; all failures
    are reported in one warning.

    Args:
        dest: the folder (created when missing).
        url_file, urls: where the URLs come from (``http://`` or ``https://``).
        max_pics: download at most this many (the first ones).
        n_workers: downloads at once (threads).
        timeout: seconds to wait for a connection and for each read.
        preserve_filename: name files after the URLs instead of UUIDs.

    Returns:
        The files written, as an `L` in the order of the URLs.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    todo = _url_list(url_file, urls, max_pics)
    paths = _file_names(dest, todo, preserve_filename)
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        problems = list(pool.map(partial(_fetch_image, timeout=timeout), todo, paths))
    failed = [(u, p) for u, p in zip(todo, problems) if p is not None]
    if failed:
        shown = "; ".join(f"{u}: {p}" for u, p in failed[:3])
        warnings.warn(f"download_images: {len(failed)} of {len(todo)} URLs could not be downloaded into {dest} "
                      f"(first: {shown})", stacklevel=2)
    return L([p for p, problem in zip(paths, problems) if problem is None])


def resize_to(img: Any, targ_sz: int, use_min: bool = False) -> tuple[int, int]:
    """The ``(width, height)`` with the same aspect ratio as the PIL image ``img`` whose longer side (shorter if
    ``use_min``) is ``targ_sz``."""
    w, h = img.size
    ratio = targ_sz / (min if use_min else max)(w, h)
    return max(1, int(w * ratio)), max(1, int(h * ratio))


def _save_atomically(img: Any, target: Path, img_format: str | None, **kwargs: Any) -> None:
    """Save ``img`` to ``target`` through `atomic_write` (a temporary file renamed over it: never half written;
    a link is written through and the file keeps its permissions)."""
    fmt = img_format or _format_of(target)
    atomic_write(target, lambda f: img.save(f, fmt, **kwargs), what="resized image")


def _format_of(target: Path) -> str:
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"resize_image: Pillow cannot write {target.suffix!r} files ({target}); pass ext= an "
                         "image suffix such as '.jpg' or '.png', or img_format=")
    return fmt


def resize_image(file: str | Path, dest: str | Path, src: str | Path = ".", max_size: int | None = None,
                 n_channels: int = 3, ext: str | None = None, img_format: str | None = None,
                 resample: Any = None, resume: bool = False, **kwargs: Any) -> Path | None:
    """Write ``src/file`` to ``dest/file`` with its longer side at most ``max_size`` and ``n_channels``
    channels (3: converted to RGB).

    A file already within bounds is copied as it is (left alone when ``dest/file`` is the file itself).
    ``ext`` changes the suffix of the written file; ``kwargs`` go to Pillow's ``save`` (``quality=`` ...).
    With ``resume``, an existing ``dest/file`` is kept. A file that cannot be decoded is skipped. A re-encoded
    image is turned as its EXIF orientation says (the tag is not kept) and 16-bit images are scaled to 8 bits.

    Returns:
        The file written (or kept), or None when ``src/file`` is not a readable image.
    """
    from PIL import Image, ImageOps

    source, target = Path(src) / file, Path(dest) / file
    target = target.with_suffix(ext) if ext is not None else target
    if resume and target.exists():
        return target
    img = decoded_image(source)  # decoded once: checked whole here, and resized from the same pixels
    if img is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with img:
        too_big = max_size is not None and max(img.size) > max_size
        if too_big or len(img.getbands()) != n_channels or target.suffix.lower() != source.suffix.lower():
            out = ImageOps.exif_transpose(img)  # the pixels as the camera meant them: the EXIF tag is not kept
            out = _deep_to_8bit(out) if _is_deep(out) else out
            if too_big:
                out = out.resize(resize_to(out, max_size),
                                 resample=Image.Resampling.BILINEAR if resample is None else resample)
            out = out.convert("RGB") if n_channels == 3 and out.mode != "RGB" else out
            _save_atomically(out, target, img_format, **kwargs)
        elif source.resolve() != target.resolve():
            shutil.copy2(source, target)
    return target


def resize_images(path: str | Path, max_workers: int | None = None, max_size: int | None = None,
                  recurse: bool = False, dest: str | Path = Path("."), n_channels: int = 3, ext: str | None = None,
                  img_format: str | None = None, resample: Any = None, resume: bool = False,
                  **kwargs: Any) -> L:
    """`resize_image` for every image under ``path`` (its sub-folders too if ``recurse``), written under ``dest``
    at the same relative paths, several at a time (threads: Pillow decodes and resizes without the GIL).

    ``resume`` keeps the files ``dest`` already has (for a run that was stopped; not when ``dest`` is ``path``).
    Files that cannot be decoded or written are skipped and counted in one warning (find the unreadable ones with
    `verify_images`).

    Returns:
        The files written, as an `L`.
    """
    path, dest = Path(path), Path(dest)
    if not path.is_dir():
        raise FileNotFoundError(f"resize_images: {path} is not a folder; pass the folder holding the images")
    if resume and dest.resolve() == path.resolve():
        raise ValueError("resize_images: resume=True with dest= the images' own folder would keep every file as it "
                         "is; leave resume off to resize in place")
    dest.mkdir(parents=True, exist_ok=True)
    files = [f.relative_to(path) for f in get_image_files(path, recurse=recurse)]

    def one(f: Path) -> Path | str:
        try:
            done = resize_image(f, dest, src=path, max_size=max_size, n_channels=n_channels, ext=ext,
                                img_format=img_format, resample=resample, resume=resume, **kwargs)
        except (OSError, ValueError) as e:  # one bad file does not stop the others
            return f"{path / f}: {e}"
        return done if done is not None else f"{path / f}: not a readable image"

    with ThreadPoolExecutor(max_workers=max_workers or usable_cpus()) as pool:
        done = list(pool.map(one, files))
    skipped = [d for d in done if isinstance(d, str)]
    if skipped:
        warnings.warn(f"resize_images: {len(skipped)} of {len(files)} files under {path} were skipped (first: "
                      f"{skipped[0]}); verify_images(get_image_files(path)) lists the unreadable ones", stacklevel=2)
    return L([d for d in done if isinstance(d, Path)])
