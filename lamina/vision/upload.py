"""The bytes of an image held in memory: a buffer, or a file from a notebook's upload widget.

The book's chapter 1 reads an uploaded photo with ``PILImage.create(uploader.data[0])``. ipywidgets 7 gave
``uploader.data`` (a list of bytes) and ``uploader.value`` (``{file name: {'metadata': ..., 'content': bytes}}``);
ipywidgets 8 gives ``uploader.value`` only, a tuple of ``{'name': ..., 'content': memoryview, ...}``. `upload_bytes`
takes any of these, so each form works with ``PILImage.create``.

Example:
    >>> img = PILImage.create(uploader.value[0])             # ipywidgets 8
    >>> img = PILImage.create(uploader.value[0]['content'])  # the same, by its content
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

__all__ = ["upload_bytes"]

ACCEPTED = ("a path, str, bytes, memoryview, BytesIO, a notebook upload (uploader.value[0], or the whole "
            "uploader.value when it holds one file), PIL image, numpy array or tensor")


def _one_file(files: list, what: str) -> Any:
    if len(files) != 1:
        raise ValueError(f"{what} holds {len(files)} uploaded files; pass one of them, e.g. uploader.value[0] "
                         "(ipywidgets 8) or uploader.value[name] (ipywidgets 7)")
    return files[0]


def _is_upload(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "content" in obj


def upload_bytes(source: Any, caller: str = "PILImage.create") -> bytes:
    """The encoded image bytes in ``source``: bytes, a memoryview, a binary buffer (``BytesIO``, an open file),
    an upload widget's file dict (``{'content': ...}``), or a widget's whole value when it holds one file
    (ipywidgets 8: a tuple of such dicts; ipywidgets 7: ``{file name: {'content': ...}}``).

    Args:
        source: the image source.
        caller: named in the error.

    Raises:
        ValueError: for an upload value holding several files (pick one), or a buffer opened in text mode.
        TypeError: for anything else, listing what is accepted.
    """
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, memoryview):
        return source.tobytes()
    if isinstance(source, io.BytesIO):
        return source.getvalue()  # the whole buffer, wherever its position is
    if isinstance(source, io.IOBase) and source.readable():
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{caller} needs a binary buffer; this one is in text mode: open the file with 'rb'")
        return bytes(data)
    if _is_upload(source):
        return upload_bytes(source["content"], caller)
    if isinstance(source, Mapping) and source and all(_is_upload(v) for v in source.values()):
        return upload_bytes(_one_file(list(source.values()), "the upload value"), caller)
    if isinstance(source, (tuple, list)) and source and all(_is_upload(v) for v in source):
        return upload_bytes(_one_file(list(source), "the upload value"), caller)
    raise TypeError(f"{caller} takes {ACCEPTED}; received {type(source).__name__}")
