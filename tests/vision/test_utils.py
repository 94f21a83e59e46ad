"""download_images and resize_images (chapter 2's own-images workflow), against a local HTTP server."""

import io
import warnings

import pytest
from PIL import Image

from lamina.data import fetch
from lamina.data.files import verify_image
from lamina.vision.all import *  # noqa: F403  (what users write)
from tests.data.http_server import Server


def _image_bytes(size=(40, 30), mode="RGB", fmt="JPEG", color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new(mode, size, color if mode != "L" else 128).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(fetch, "RETRY_DELAY", 0.0)
    srv = Server()
    yield srv
    srv.stop()


def test_download_images_writes_complete_images_and_reports_failures(tmp_path, server):
    urls = [server.serve("/a/bear.jpg", _image_bytes()), server.serve("/b/cub.png", _image_bytes(fmt="PNG")),
            server.serve("/c/photo?w=100", _image_bytes()), server.base + "/missing.jpg",
            server.serve("/d/page.php", _image_bytes()), "ftp://example.com/x.jpg",
            server.serve("/e/fake.jpg", b"<html>not an image</html>")]
    with pytest.warns(UserWarning, match=r"3 of 7 URLs could not be downloaded.*missing\.jpg"):
        got = download_images(tmp_path / "bears", urls=urls, n_workers=3)
    assert len(got) == 4 and all(p.parent == tmp_path / "bears" for p in got)
    assert [p.suffix for p in got] == [".jpg", ".png", ".jpg", ".jpg"]  # a non-image suffix becomes .jpg
    assert sorted(get_image_files(tmp_path / "bears")) == sorted(got)
    assert not verify_images(got)  # every file decodes
    assert sorted(p.name for p in (tmp_path / "bears").iterdir()) == sorted(p.name for p in got)  # no leftovers


def test_download_images_keeps_url_names_and_reads_a_url_file(tmp_path, server):
    dest = tmp_path / "imgs"
    dest.mkdir()
    (dest / "bear.jpg").write_bytes(b"an existing file")
    urls = [server.serve("/x/bear.jpg", _image_bytes()), server.serve("/y/bear.jpg", _image_bytes()),
            server.serve("/z/cub.jpeg", _image_bytes())]
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n\n")
    got = download_images(dest, url_file=url_file, preserve_filename=True)
    assert [p.name for p in got] == ["bear1.jpg", "bear2.jpg", "cub.jpeg"]
    assert (dest / "bear.jpg").read_bytes() == b"an existing file"  # never overwritten
    assert len(download_images(tmp_path / "two", url_file=url_file, max_pics=2)) == 2
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        download_images(dest, url_file=tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="urls="):
        download_images(dest)


def test_a_dropped_download_is_resumed_to_a_whole_image(tmp_path, server):
    data = _image_bytes(size=(400, 300), fmt="PNG")
    url = server.serve("/big.png", data)
    server.state.drops, server.state.drop_after = 1, len(data) // 2
    (got,) = download_images(tmp_path, urls=[url])
    assert got.read_bytes() == data


def test_a_download_cut_short_without_a_length_leaves_no_file(tmp_path, server):
    data = _image_bytes(size=(400, 300), fmt="PNG")
    url = server.serve("/cut.png", data)
    server.state.send_length, server.state.drops, server.state.drop_after = False, 10, len(data) // 2
    with pytest.warns(UserWarning, match="not a complete image"):
        assert download_images(tmp_path / "out", urls=[url]) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_a_long_url_name_is_shortened(tmp_path, server):
    url = server.serve("/" + "a" * 250 + ".jpg", _image_bytes())
    (got,) = download_images(tmp_path, urls=[url], preserve_filename=True)
    assert got.name == "a" * 100 + ".jpg" and verify_image(got)


def test_resize_images_in_place_shrinks_only_what_is_too_big(tmp_path):
    folder = tmp_path / "bears"
    folder.mkdir()
    Image.new("RGB", (80, 40), (10, 200, 10)).save(folder / "wide.jpg")
    Image.new("RGBA", (20, 20), (0, 0, 255, 128)).save(folder / "alpha.png")
    Image.new("RGB", (16, 16)).save(folder / "small.jpg")
    small = (folder / "small.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(_image_bytes()[:100])
    with pytest.warns(UserWarning, match="1 of 4 files .* skipped .*broken.jpg: not a readable image"):
        done = resize_images(folder, max_size=32, dest=folder)
    assert len(done) == 3
    with Image.open(folder / "wide.jpg") as im:
        assert im.size == (32, 16) and im.mode == "RGB"
    with Image.open(folder / "alpha.png") as im:
        assert im.size == (20, 20) and im.mode == "RGB"  # converted to 3 channels
    assert (folder / "small.jpg").read_bytes() == small  # within bounds: untouched
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_resize_images_to_another_folder_keeps_paths_changes_suffix_and_resumes(tmp_path):
    src = tmp_path / "src"
    (src / "grizzly").mkdir(parents=True)
    Image.new("L", (60, 90), 100).save(src / "grizzly" / "g.png")
    Image.new("RGB", (10, 10)).save(src / "top.jpg")
    out = tmp_path / "out"
    assert resize_images(src, max_size=30, dest=out, recurse=False) == [out / "top.jpg"]
    done = resize_images(src, max_size=30, dest=out, recurse=True, ext=".jpg", n_channels=1)
    assert sorted(done) == [out / "grizzly" / "g.jpg", out / "top.jpg"]
    with Image.open(out / "grizzly" / "g.jpg") as im:
        assert im.format == "JPEG" and im.size == (20, 30) and im.mode == "L"
    (out / "top.jpg").write_bytes(b"kept")
    resize_images(src, max_size=30, dest=out, resume=True)
    assert (out / "top.jpg").read_bytes() == b"kept"
    with pytest.raises(FileNotFoundError, match="not a folder"):
        resize_images(tmp_path / "nothing", max_size=30)


def test_resize_keeps_links_modes_orientation_and_deep_images(tmp_path):
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    deep = np.linspace(0, 65535, 64 * 40).astype(np.uint16).reshape(40, 64)
    Image.fromarray(deep).save(folder / "deep.png")  # 16-bit greyscale
    Image.new("RGB", (4000, 3)).save(folder / "thin.png")
    turned = Image.new("RGB", (60, 30), (255, 0, 0))
    exif = turned.getexif()
    exif[0x0112] = 6  # the camera was turned: show rotated by 90 degrees
    turned.save(folder / "turned.jpg", exif=exif)
    real = tmp_path / "real.jpg"
    Image.new("RGB", (90, 45)).save(real)
    real.chmod(0o644)
    (folder / "linked.jpg").symlink_to(real)
    done = resize_images(folder, max_size=32, dest=folder)
    assert len(done) == 4
    with Image.open(folder / "deep.png") as im:
        values = np.asarray(im.convert("L"), dtype=float)
        assert im.size == (32, 20) and 100 < values.mean() < 155  # scaled to 8 bits, not clipped to white
    with Image.open(folder / "thin.png") as im:
        assert im.size == (32, 1)
    with Image.open(folder / "turned.jpg") as im:
        assert im.size == (16, 32)  # upright, as the EXIF tag said
    assert (folder / "linked.jpg").is_symlink() and Image.open(real).size == (32, 16)  # written through the link
    assert real.stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError, match="resume=True"):
        resize_images(folder, max_size=32, dest=folder, resume=True)


def test_resize_to_keeps_the_aspect_ratio():
    img = Image.new("RGB", (400, 300))
    assert resize_to(img, 200) == (200, 150)
    assert resize_to(img, 150, use_min=True) == (200, 150)
