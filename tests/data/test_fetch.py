"""lamina.data.fetch through download_url / untar_data, against a local HTTP server on 127.0.0.1: transfers that
are cut, resumed or restarted, and the errors of a transfer that cannot finish."""

from __future__ import annotations

import errno
import socket

import pytest

from lamina.data import fetch
from lamina.data.external import DownloadError, download_url, untar_data
from tests.data.http_server import PAYLOAD, TINY, leftovers, make_tar


# ----------------------------------------------------------------------------------------------------------
# Interrupted downloads


def test_resume_after_connection_drop(server, home):
    archive = make_tar(TINY)
    url = server.serve("/d/tiny.tgz", archive)
    server.state.drops, server.state.drop_after = 1, 30_000
    path = untar_data(url)
    assert server.state.requests == [("/d/tiny.tgz", None), ("/d/tiny.tgz", "bytes=30000-")]
    assert (home / "archive" / "tiny.tgz").read_bytes() == archive
    assert (path / "sub" / "payload.bin").read_bytes() == PAYLOAD


def test_resume_in_a_later_call(server, home):
    url = server.serve("/d/file.bin", PAYLOAD)
    server.state.drops, server.state.drop_after = 99, 20_000
    dest = home / "file.bin"
    with pytest.raises(DownloadError, match=r"dropped 3 times.*file\.bin.*call again to resume"):
        download_url(url, dest)
    part = home / "file.bin.part"
    assert part.stat().st_size == 60_000 and not dest.exists()  # 3 attempts, each resumed
    server.state.drops = 0
    assert download_url(url, dest).read_bytes() == PAYLOAD
    assert server.state.requests[-1][1] == "bytes=60000-" and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, home):
    url = server.serve("/d/file.bin", PAYLOAD)
    (home / "file.bin.part").parent.mkdir(parents=True)
    (home / "file.bin.part").write_bytes(b"junk" * 100)
    server.state.ignore_range = True
    assert download_url(url, home / "file.bin").read_bytes() == PAYLOAD
    assert server.state.requests == [("/d/file.bin", "bytes=400-")]


def test_wrong_range_answer_restarts_from_zero(server, home):
    url = server.serve("/d/file.bin", PAYLOAD)
    home.mkdir()
    (home / "file.bin.part").write_bytes(PAYLOAD[:1000])
    server.state.wrong_range = True
    assert download_url(url, home / "file.bin").read_bytes() == PAYLOAD
    assert server.state.requests == [("/d/file.bin", "bytes=1000-"), ("/d/file.bin", None)]


@pytest.mark.parametrize("part_bytes", [PAYLOAD, PAYLOAD + b"extra"], ids=["complete", "too-long"])
def test_range_not_satisfiable(server, home, part_bytes):
    url = server.serve("/d/file.bin", PAYLOAD)
    home.mkdir()
    (home / "file.bin.part").write_bytes(part_bytes)
    assert download_url(url, home / "file.bin").read_bytes() == PAYLOAD
    fresh = [] if part_bytes == PAYLOAD else [("/d/file.bin", None)]  # a complete part is not fetched again
    assert server.state.requests == [("/d/file.bin", f"bytes={len(part_bytes)}-")] + fresh


# ----------------------------------------------------------------------------------------------------------
# Transfers that cannot finish


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_errors_name_the_url(server, home, status):
    url = server.serve("/d/tiny.tgz", b"x")
    server.state.status = status if status != 404 else None
    if status == 404:
        url = server.base + "/d/missing.tgz"
    with pytest.raises(DownloadError, match=f"HTTP {status}.*{url}"):
        untar_data(url)
    assert not (home / "data" / "tiny").exists() and leftovers(home / "archive") == []


def test_connection_refused(home):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny.tgz"
    with pytest.raises(DownloadError, match=f"could not connect to download {url}.*LAMINA_DATA_URL"):
        untar_data(url)


def test_disk_full_is_explained(server, home, monkeypatch):
    url = server.serve("/d/tiny.tgz", make_tar(TINY))

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch, "copy_stream", full)
    with pytest.raises(DownloadError, match=r"no space left.*tiny\.tgz\.part.*LAMINA_HOME"):
        untar_data(url)
