"""Chapter 1's upload cell: ``PILImage.create(uploader.data[0])`` and its ipywidgets 8 forms."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lamina.vision.core import PILImage, PILMask
from lamina.vision.upload import upload_bytes


def png_bytes(mode: str = "RGB", value: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (6, 4), value if mode == "L" else (value, 10, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def widget8_file(data: bytes, name: str = "cat.png") -> dict:
    """One file of an ipywidgets 8 ``FileUpload.value`` (a tuple of these)."""
    return {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
            "last_modified": 0}


def check(img: PILImage) -> None:
    assert isinstance(img, PILImage) and img.size == (6, 4) and img.mode == "RGB"
    assert img.getpixel((0, 0)) == (200, 10, 30)


def test_the_books_call_and_ipywidgets_7():
    data = png_bytes()
    uploader = SimpleNamespace(data=[data], value={"cat.png": {"metadata": {"name": "cat.png"}, "content": data}})
    check(PILImage.create(uploader.data[0]))
    check(PILImage.create(uploader.value))  # the ipywidgets 7 value, one file
    check(PILImage.create(uploader.value["cat.png"]))
    assert PILImage.create(uploader.data[0]).to_thumb(2).size == (2, 1)


def test_ipywidgets_8_value_forms():
    uploader = SimpleNamespace(value=(widget8_file(png_bytes()),))
    check(PILImage.create(uploader.value[0]["content"]))  # a memoryview
    check(PILImage.create(uploader.value[0]))
    check(PILImage.create(uploader.value))


def test_buffers_and_open_files(tmp_path):
    data = png_bytes()
    buffer = io.BytesIO(data)
    buffer.seek(0, io.SEEK_END)  # already read to the end: the whole buffer is still the image
    check(PILImage.create(buffer))
    check(PILImage.create(bytearray(data)))
    (tmp_path / "cat.png").write_bytes(data)
    with open(tmp_path / "cat.png", "rb") as f:
        check(PILImage.create(f))


def test_masks_from_an_upload_keep_their_codes():
    mask = PILMask.create(widget8_file(png_bytes("L", 3)))
    assert isinstance(mask, PILMask) and np.asarray(mask).max() == 3


def test_errors_say_what_is_accepted(tmp_path):
    two = (widget8_file(png_bytes(), "a.png"), widget8_file(png_bytes(), "b.png"))
    with pytest.raises(ValueError, match="holds 2 uploaded files; pass one of them, e.g. uploader.value\\[0\\]"):
        PILImage.create(two)
    with pytest.raises(TypeError, match="PILImage.create takes a path, str, bytes, memoryview, BytesIO, a notebook "
                                        "upload .* received int"):
        PILImage.create(42)
    with pytest.raises(TypeError, match="PILMask.create takes .* received dict"):
        PILMask.create({"name": "no content"})
    (tmp_path / "cat.png").write_bytes(png_bytes())
    with open(tmp_path / "cat.png", encoding="latin-1") as f, pytest.raises(ValueError, match="text mode"):
        upload_bytes(f)
    with pytest.raises(OSError, match="Could not read the image"):
        PILImage.create(memoryview(b"not an image"))
