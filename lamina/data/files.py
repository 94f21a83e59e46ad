"""Listing the files of a dataset folder, and checking that images open.

Every listing is sorted (folders walked in name order, files in name order within each folder), so the
same folder gives the same list, and the same train/valid split, on every machine. Listings are `L`s
(lists with fastai's helpers): ``verify_images(files).map(Path.unlink)`` deletes the broken images.
"""

from __future__ import annotations

import functools
import mimetypes
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..foundation import L

__all__ = ["get_files", "get_image_files", "get_text_files", "image_extensions", "FileGetter", "ImageGetter",
           "decoded_image", "verify_image", "verify_images", "describe_empty_listing"]

# Everything the system's MIME table calls an image, plus the common formats in case that table is sparse.
image_extensions: set[str] = {ext for ext, kind in mimetypes.types_map.items() if kind.startswith("image/")} | {
    ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def _normalise_extensions(extensions: str | Iterable[str] | None) -> set[str] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [extensions]
    # '.JPG' and 'jpg' both mean '.jpg'
    return {ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions}


def _keep(folder: Path, names: Iterable[str], extensions: set[str] | None) -> list[Path]:
    """The visible files among ``names`` whose extension is wanted, sorted by name."""
    return [folder / name for name in sorted(names)
            if not name.startswith(".") and (not extensions or Path(name).suffix.lower() in extensions)]


def get_files(path: str | Path, extensions: str | Iterable[str] | None = None, recurse: bool = True,
              folders: str | Iterable[str] | None = None, followlinks: bool = True) -> L:
    """The files under ``path``, sorted, optionally only those with the given extensions.

    Files whose names start with ``.`` are skipped, and so are ``.``-folders when recursing.

    Example:
        >>> get_files(path, extensions=[".csv"], folders=["train", "valid"])

    Args:
        path: the folder to list.
        extensions: keep only these extensions (``'.jpg'``, case-insensitive); None or empty keeps all.
        recurse: walk sub-folders too; False lists only the files directly in ``path``.
        folders: when recursing, walk only these top-level sub-folders of ``path`` (files directly in
            ``path`` are then skipped unless ``'.'`` is listed). Deeper levels are walked in full.
        followlinks: follow symbolic links to folders while walking.

    Returns:
        The paths, sorted folder by folder, as an `L`.

    Raises:
        FileNotFoundError: ``path`` does not exist. NotADirectoryError: ``path`` is a file. TypeError: ``path`` is
            a list of files rather than a folder.
    """
    if not isinstance(path, (str, os.PathLike)):
        what = f"a {type(path).__name__} of {len(path)} items" if hasattr(path, "__len__") else repr(path)
        raise TypeError(f"`path` must be a folder to list files from; received {what}. Files listed already are "
                        "the items themselves: pass them as the DataBlock's source (with get_items=None)")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`path` does not exist: {path}; check it (did untar_data finish?)")
    if not path.is_dir():
        raise NotADirectoryError(f"`path` must be a folder to list files from; received the file {path}")
    extensions = _normalise_extensions(extensions)
    if not recurse:
        return L(_keep(path, (entry.name for entry in os.scandir(path) if entry.is_file()), extensions))
    wanted = [folders] if isinstance(folders, str) else list(folders or [])
    found: list[Path] = []
    for depth, (folder, subfolders, names) in enumerate(os.walk(path, followlinks=followlinks)):
        top = depth == 0  # os.walk visits `path` itself first
        if top and wanted:
            subfolders[:] = sorted(name for name in subfolders if name in wanted)
        else:
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if top and wanted and "." not in wanted:
            continue
        found += _keep(Path(folder), names, extensions)
    return L(found)


def get_image_files(path: str | Path, recurse: bool = True, folders: str | Iterable[str] | None = None) -> L:
    """The image files under ``path`` (extensions in ``image_extensions``), sorted; see ``get_files``.

    Example:
        >>> files = get_image_files(untar_data(URLs.PETS) / "images")
    """
    return get_files(path, extensions=image_extensions, recurse=recurse, folders=folders)


def get_text_files(path: str | Path, recurse: bool = True, folders: str | Iterable[str] | None = None) -> L:
    """The ``.txt`` files under ``path``, sorted; see ``get_files``."""
    return get_files(path, extensions=[".txt"], recurse=recurse, folders=folders)


# The image extensions people look for first, named first when an error lists what was looked for.
_COMMON_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# Describing a folder stops counting after this many files (a mistaken path may be a whole disk).
_MAX_COUNTED = 10_000


def _extension_list(extensions: set[str]) -> str:
    ordered = [e for e in _COMMON_IMAGE_EXTENSIONS if e in extensions] + sorted(
        extensions - set(_COMMON_IMAGE_EXTENSIONS))
    shown = ", ".join(ordered[:8])
    return shown if len(ordered) <= 8 else f"{shown} and {len(ordered) - 8} more"


def _file_kinds(path: Path, other: bool = False) -> str:
    """``'12 files: 10 .txt, 2 .csv'`` (``'12 other files: ...'`` with ``other``): the visible files under
    ``path`` counted by extension, most frequent first."""
    counts: Counter = Counter()
    for _, subfolders, names in os.walk(path):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        counts.update(Path(name).suffix.lower() or "(no extension)" for name in names if not name.startswith("."))
        if sum(counts.values()) >= _MAX_COUNTED:
            break
    total, files = sum(counts.values()), "other files" if other else "files"
    if not total:
        return f"no {files}"
    kinds = ", ".join(f"{n} {ext}" for ext, n in counts.most_common(5))
    more = ", ..." if len(counts) > 5 else ""
    return f"{total}{'+' if total >= _MAX_COUNTED else ''} {files if total > 1 else files[:-1]}: {kinds}{more}"


def _listing_options(get_items: Callable | None) -> tuple[str, set[str] | None, list[str]] | None:
    """What a ``get_items`` of this module lists: (sub-folder, extensions, top-level folders); None for others."""
    if isinstance(get_items, FileGetter):
        folders = [get_items.folders] if isinstance(get_items.folders, str) else list(get_items.folders or [])
        return get_items.suf, _normalise_extensions(get_items.extensions), folders
    keywords = get_items.keywords if isinstance(get_items, functools.partial) else {}
    func = get_items.func if isinstance(get_items, functools.partial) else get_items
    folders = keywords.get("folders")
    folders = [folders] if isinstance(folders, str) else list(folders or [])
    if func is get_files:
        return "", _normalise_extensions(keywords.get("extensions")), folders
    extensions = {get_image_files: image_extensions, get_text_files: {".txt"}}.get(func)
    return None if extensions is None else ("", extensions, folders)


def describe_empty_listing(path: str | Path, get_items: Callable | None = get_image_files) -> str:
    """Why listing ``path`` with ``get_items`` found nothing, for an error message: e.g. ``"found 0 images in
    /data/pets (looked for .jpg, .jpeg, .png, ...; found 12 other files: 10 .txt, 2 .csv)"``.

    Args:
        path: the folder that was listed.
        get_items: the listing function (`get_image_files`, a `FileGetter` ...); another function is
            described by what ``path`` holds only.
    """
    path = Path(path)
    if not path.is_dir():
        return f"found nothing: {path} is not a folder" + ("" if path.exists() else " (it does not exist)")
    options = _listing_options(get_items)
    if options is None:
        return f"found no items in {path} ({path} holds {_file_kinds(path)})"
    suf, extensions, folders = options
    what = "images" if extensions == image_extensions else "files"
    where = path / suf
    if folders:
        places = ", ".join(f"{where / f}{'' if (where / f).is_dir() else ' (no such folder)'}"
                           for f in folders if f != ".")
        where_text = places + (f" and {where} itself" if "." in folders else "")
    else:
        where_text = str(where)
    looked = f"looked for {_extension_list(extensions)}; " if extensions else ""
    # files beside the listed folders may be the wanted ones: then they are not "other" files
    found = f"{path} holds {_file_kinds(path)}" if folders or suf else f"found {_file_kinds(path, other=True)}"
    return f"found 0 {what} in {where_text} ({looked}{found})"


class FileGetter:
    """A ``get_items`` function for a DataBlock: ``FileGetter(...)(path)`` lists ``path/suf``.

    Example:
        >>> get_csvs = FileGetter(extensions=".csv", folders=["train"]); get_csvs(path)
    """

    def __init__(self, suf: str = "", extensions: str | Iterable[str] | None = None, recurse: bool = True,
                 folders: str | Iterable[str] | None = None) -> None:
        self.suf, self.extensions, self.recurse, self.folders = suf, extensions, recurse, folders

    def __call__(self, path: str | Path) -> L:
        return get_files(Path(path) / self.suf, self.extensions, self.recurse, self.folders)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(suf={self.suf!r}, extensions={self.extensions!r}, "
                f"recurse={self.recurse}, folders={self.folders!r})")


class ImageGetter(FileGetter):
    """A ``get_items`` function listing the images under ``path/suf``."""

    def __init__(self, suf: str = "", recurse: bool = True, folders: str | Iterable[str] | None = None) -> None:
        super().__init__(suf, image_extensions, recurse, folders)

    def __repr__(self) -> str:
        return f"ImageGetter(suf={self.suf!r}, recurse={self.recurse}, folders={self.folders!r})"


def decoded_image(fn: str | Path) -> Any:
    """The image file ``fn`` opened and fully decoded by Pillow (use it in a ``with``), or None when it cannot be
    (a truncated JPEG, a web page saved as ``.jpg``)."""
    from PIL import Image

    im = None
    try:
        im = Image.open(fn)
        im.load()  # open() only reads the header; decoding finds truncated and corrupt data
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        if im is not None:
            im.close()
        return None
    return im


def verify_image(fn: str | Path) -> bool:
    """Whether Pillow can open and fully decode the image file ``fn`` (a truncated JPEG fails)."""
    im = decoded_image(fn)
    if im is None:
        return False
    im.close()
    return True


def verify_images(fns: Iterable[str | Path], max_workers: int | None = None) -> L:
    """The files among ``fns`` that fail ``verify_image``, in input order, as an `L`. Nothing is deleted.

    Decoding runs in a thread pool (Pillow releases the GIL while decoding).

    Example:
        >>> verify_images(get_image_files(path)).map(Path.unlink)  # delete the broken images

    Args:
        fns: image files to check.
        max_workers: threads to use; None means one per CPU (at most 32).
    """
    fns = [Path(fn) for fn in fns]
    workers = max_workers or min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(verify_image, fns))
    return L([fn for fn, ok in zip(fns, results) if not ok])
