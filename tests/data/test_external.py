"""untar_data / download_url against a local HTTP server on 127.0.0.1 (no internet): download once and reuse,
checks of what arrived, unsafe archives, URLs and mirrors. Transfers that go wrong: test_fetch.py."""

from __future__ import annotations

import hashlib
import socket

import pytest

from lamina.data import external
from lamina.data.external import DownloadError, URLs, download_url, extract_archive, resolve_url, untar_data
from tests.data.http_server import PAYLOAD, TINY, leftovers, make_tar, make_zip


# ----------------------------------------------------------------------------------------------------------
# Download, cache, layout


def test_first_download_then_cached_without_network(server, home):
    url = server.serve("/fast-ai-sample/tiny.tgz", make_tar(TINY))
    path = untar_data(url)
    assert path == home / "data" / "tiny"
    assert (path / "a.txt").read_bytes() == b"hello" and (path / "sub" / "payload.bin").read_bytes() == PAYLOAD
    assert (home / "archive" / "tiny.tgz").read_bytes() == server.state.files["/fast-ai-sample/tiny.tgz"]
    assert leftovers(home / "archive") == [] and leftovers(home / "data") == []
    server.stop()
    assert untar_data(url) == path  # no server: returned from disk
    assert len(server.state.requests) == 1


def test_existing_archive_is_extracted_without_network(server, home):
    url = server.serve("/x/tiny.tgz", make_tar(TINY))
    path = untar_data(url)
    server.stop()
    (path / "a.txt").unlink()
    path.rename(home / "data" / "gone")
    assert (untar_data(url) / "a.txt").read_bytes() == b"hello"


def test_layout_overrides(server, home, tmp_path):
    url = server.serve("/d/ml-100k.zip", make_zip({"ml-100k/u.data": b"1 2 3"}))
    assert untar_data(url, base=tmp_path / "elsewhere") == tmp_path / "elsewhere" / "data" / "ml-100k"
    assert (tmp_path / "elsewhere" / "archive" / "ml-100k.zip").exists()
    path = untar_data(url, archive=tmp_path / "arch", data=tmp_path / "ext")
    assert path == tmp_path / "ext" / "ml-100k" and (tmp_path / "arch" / "ml-100k.zip").exists()
    assert untar_data(url, c_key="model") == home / "models" / "ml-100k"
    with pytest.raises(ValueError, match="c_key"):
        untar_data(url, c_key="storage")


def test_archive_names_and_roots(server, home):
    # several entries at the root: the whole content becomes the folder, named after the archive
    flat = untar_data(server.serve("/d/flat.tar", make_tar({"x.csv": b"1", "y.csv": b"2"}, mode="w")))
    assert flat.name == "flat" and sorted(p.name for p in flat.iterdir()) == ["x.csv", "y.csv"]
    # one folder at the root, named differently: it becomes `<archive stem>`
    renamed = untar_data(server.serve("/d/renamed.tar.gz", make_tar({"other/z.txt": b"z"})))
    assert renamed.name == "renamed" and (renamed / "z.txt").read_bytes() == b"z"
    assert oct(flat.stat().st_mode & 0o777) == oct(0o755)


def test_zip_archive(server, home):
    path = untar_data(server.serve("/d/pics.zip", make_zip({"pics/a.txt": b"a", "pics/b/c.txt": b"c"})))
    assert path == home / "data" / "pics" and (path / "b" / "c.txt").read_bytes() == b"c"


def test_progress_bar_and_download_url_dest(server, home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAMINA_PROGRESS", "bar")
    url = server.serve("/d/file.bin", PAYLOAD)
    (tmp_path / "dl").mkdir()
    dest = download_url(url, tmp_path / "dl")  # an existing folder: the file name comes from the URL
    assert dest == tmp_path / "dl" / "file.bin" and dest.read_bytes() == PAYLOAD
    err = capsys.readouterr().err  # tqdm writes to stderr
    assert "file.bin" in err and "100%" in err and "B/s" in err
    download_url(url, tmp_path / "quiet.bin", show_progress=False)
    assert capsys.readouterr().err == ""


def test_download_progress_is_one_line_when_stderr_is_not_a_terminal(server, home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LAMINA_PROGRESS", raising=False)  # pytest's captured stderr is no terminal
    url = server.serve("/d/file.bin", PAYLOAD)
    download_url(url, tmp_path / "logged.bin")
    err = capsys.readouterr().err
    assert err == f"fetching logged.bin ({len(PAYLOAD) / 2**20:.1f} MiB)\n" and "\r" not in err


# ----------------------------------------------------------------------------------------------------------
# Checks and errors


def test_checksum_mismatch_keeps_the_good_file(server, home, monkeypatch):
    good = make_tar(TINY)
    url = server.serve("/d/tiny.tgz", good)
    monkeypatch.setitem(external._CHECKS, url, (len(good), hashlib.sha256(good).hexdigest()))
    path = untar_data(url)
    bad = bytearray(good)
    bad[-100] ^= 0xFF
    server.state.files["/d/tiny.tgz"] = bytes(bad)
    sha_mismatch = r"tiny\.tgz.*expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}.*force_download"
    with pytest.raises(DownloadError, match=sha_mismatch):
        untar_data(url, force_download=True)
    assert (home / "archive" / "tiny.tgz").read_bytes() == good and leftovers(home / "archive") == []
    assert (path / "a.txt").read_bytes() == b"hello"
    server.state.files["/d/tiny.tgz"] = good[:-10]
    with pytest.raises(DownloadError, match=f"expected {len(good):,} bytes, got {len(good) - 10:,}"):
        download_url(url, home / "archive" / "tiny.tgz")
    assert (home / "archive" / "tiny.tgz").read_bytes() == good


def test_bad_archive_on_disk_is_downloaded_again(server, home, monkeypatch, capsys):
    good = make_tar(TINY)
    url = server.serve("/d/tiny.tgz", good)
    monkeypatch.setitem(external._CHECKS, url, (len(good), None))
    (home / "archive").mkdir(parents=True)
    (home / "archive" / "tiny.tgz").write_bytes(b"old version")
    assert (untar_data(url) / "a.txt").exists()
    assert "downloading a new version" in capsys.readouterr().out



@pytest.mark.parametrize("data", [make_tar(TINY)[:5_000], b"this is not an archive"], ids=["truncated", "junk"])
def test_corrupt_archive_leaves_no_partial_folder(server, home, data):
    url = server.serve("/d/tiny.tgz", data)
    with pytest.raises(DownloadError, match=r"could not extract .*tiny\.tgz.*corrupt.*force_download=True"):
        untar_data(url)
    assert list((home / "data").iterdir()) == []


def test_force_download_replaces_only_after_success(server, home):
    url = server.serve("/d/tiny.tgz", make_tar({"tiny/version.txt": b"1", "tiny/pad.bin": PAYLOAD}))
    path = untar_data(url)
    v2 = make_tar({"tiny/version.txt": b"2", "tiny/pad.bin": PAYLOAD})
    server.state.files["/d/tiny.tgz"] = v2
    server.state.drops = 99
    with pytest.raises(DownloadError, match="dropped"):
        untar_data(url, force_download=True)
    assert (path / "version.txt").read_text() == "1"
    server.state.drops = 0
    assert (untar_data(url, force_download=True) / "version.txt").read_text() == "2"
    assert (home / "archive" / "tiny.tgz").read_bytes() == v2
    assert leftovers(home / "data") == [] and leftovers(home / "archive") == []


# ----------------------------------------------------------------------------------------------------------
# Unsafe archives


@pytest.mark.parametrize("kwargs, member", [
    ({"files": {"/tmp/abs_evil.txt": b"x"}}, "/tmp/abs_evil.txt"),
    ({"files": {"ok/../../evil.txt": b"x"}}, "ok/../../evil.txt"),
    ({"files": {}, "links": {"link": "../../outside"}}, "link"),
    ({"files": {}, "links": {"link": "/etc"}}, "link"),
    ({"files": {}, "hardlinks": {"hard": "../outside.txt"}}, "hard"),
    # a link that stays inside, then a link through it that leaves: only the disk state shows it
    ({"files": {}, "links": {"sub/up": "..", "sub/out": "up/../x"}}, "sub/out"),
    ({"files": {}, "links": {"up": "."}, "hardlinks": {}}, None),
])
def test_tar_slip_is_refused(tmp_path, kwargs, member):
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(make_tar(**kwargs))
    dest = tmp_path / "out" / "evil"
    if member is None:  # a harmless link inside is fine
        assert extract_archive(archive, dest).is_dir()
        return
    with pytest.raises(DownloadError, match=f"refusing to extract .*evil.tgz: member '{member}'"):
        extract_archive(archive, dest)
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x").exists()


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="member '../evil.txt'"):
        extract_archive(archive, tmp_path / "out" / "evil")
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "out").iterdir()) == []


# ----------------------------------------------------------------------------------------------------------
# URLs, mirrors, the bundled sample


def test_urls_table():
    assert URLs.S3 == "https://s3.amazonaws.com/fast-ai-"
    assert URLs.PETS == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    assert URLs.MNIST_SAMPLE == "https://s3.amazonaws.com/fast-ai-sample/mnist_sample.tgz"
    assert URLs.CAMVID == "https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz"
    assert URLs.COCO_TINY == "https://s3.amazonaws.com/fast-ai-coco/coco_tiny.tgz"
    assert URLs.IMDB == "https://s3.amazonaws.com/fast-ai-nlp/imdb.tgz"
    assert URLs.ML_100k == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    for name in ["MNIST_TINY", "MNIST", "CAMVID_TINY", "ADULT_SAMPLE", "ML_SAMPLE", "IMDB_SAMPLE", "IMAGENETTE_160",
                 "CIFAR", "BIWI_SAMPLE", "IMAGEWOOF_320", "WIKITEXT_TINY", "PASCAL_2007", "CUB_200_2011"]:
        assert getattr(URLs, name).startswith(URLs.S3) and getattr(URLs, name).endswith(".tgz")
    assert URLs.PETS_SAMPLE.startswith("file://") and URLs.PETS_SAMPLE.endswith("/assets/pets_sample.tgz")


def test_urls_path(home, tmp_path, monkeypatch):
    monkeypatch.setattr(URLs, "LOCAL_PATH", tmp_path / "project")
    assert URLs.path(URLs.PETS) == home / "archive" / "oxford-iiit-pet.tgz"
    assert URLs.path(URLs.PETS, c_key="data") == home / "data" / "oxford-iiit-pet.tgz"
    local = tmp_path / "project" / "models" / "wt103-fwd.tgz"
    local.parent.mkdir(parents=True)
    local.touch()
    assert URLs.path(URLs.WT103_FWD, c_key="model") == local


def test_mirror_rewrites_dataset_urls(server, home, monkeypatch):
    server.serve("/mirror/tiny.tgz", make_tar(TINY))
    monkeypatch.setenv("LAMINA_DATA_URL", server.base + "/mirror/")
    assert resolve_url(URLs.PETS) == server.base + "/mirror/oxford-iiit-pet.tgz"
    assert resolve_url(URLs.ML_100k) == server.base + "/mirror/ml-100k.zip"
    assert resolve_url("https://example.com/mine.tgz") == "https://example.com/mine.tgz"
    assert resolve_url(URLs.PETS_SAMPLE) == URLs.PETS_SAMPLE
    path = untar_data("https://s3.amazonaws.com/fast-ai-sample/tiny.tgz")
    assert path == home / "data" / "tiny" and (path / "a.txt").exists()
    assert server.state.requests == [("/mirror/tiny.tgz", None)]
    with pytest.raises(DownloadError, match="HTTP 404.*mirror/imdb.tgz"):
        untar_data(URLs.IMDB)


def test_pets_sample_offline(home, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the bundled sample must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = untar_data(URLs.PETS_SAMPLE)
    assert path == home / "data" / "pets_sample"
    assert (home / "archive" / "pets_sample.tgz").exists()
    names = sorted(p.name for p in (path / "images").iterdir())
    assert len(names) == 185 and all(n.endswith(".jpg") for n in names)
    assert "Abyssinian_12.jpg" in names
    assert any(n[0].isupper() for n in names) and any(n[0].islower() for n in names)
    assert len({n.rsplit("_", 1)[0] for n in names}) == 37
    assert (path / "LICENSE.txt").read_text().count("CC BY-SA 4.0") >= 1
