"""The fastai methods on any Pillow image once lamina.vision.all is imported (chapter 2: im.to_thumb(128, 128))."""

from PIL import Image

from lamina.vision.all import *  # noqa: F403  (what users write; installs the methods)
from lamina.vision.pil_patch import patch_pil_image


def test_plain_pillow_images_get_fastais_methods(tmp_path):
    Image.new("RGB", (300, 200), (1, 2, 3)).save(tmp_path / "bear.jpg")
    im = Image.open(tmp_path / "bear.jpg")
    thumb = im.to_thumb(128, 128)
    assert thumb.size == (128, 85) and im.size == (300, 200)  # a copy: the image itself is unchanged
    assert im.to_thumb(50, 100).size == (75, 50)
    assert (im.shape, im.n_px, im.aspect) == ((200, 300), 60000, 1.5)
    assert im.reshape(20, 30).size == (30, 20)
    assert im.resize_max(max_px=600).size == (30, 20)
    assert im.resize_max(max_h=100).size == (150, 100) and im.resize_max(max_w=600) is im
    patch_pil_image()  # idempotent
    assert Image.Image.to_thumb is not None
    assert PILImage.create(tmp_path / "bear.jpg").to_thumb(64).size == (64, 43)  # lamina's class keeps its own
