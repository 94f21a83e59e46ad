"""Downloads under stress: several processes at once, servers that send no length, archives that expand too far.

Everything runs against a local HTTP server on 127.0.0.1 (``tests/data/test_external.py``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from lamina.data import archives, external, fetch
from lamina.data.external import DownloadError, download_url, extract_archive, untar_data
from tests.data.http_server import Server, leftovers, make_tar

FILES = {"tiny/a.txt": b"hello", "tiny/sub/b.bin": os.urandom(30_000), "tiny/c.bin": os.urandom(30_000)}
ZEROS = 20_000_000  # bytes of zeros: about 20 KB once gzipped, 1000x smaller


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("LAMINA_HOME", str(path))
    monkeypatch.setattr(fetch, "RETRY_DELAY", 0.0)
    return path


def everything_in(home: Path) -> list[str]:
    """Every file and folder under ``home`` (relative), to show that nothing is left behind."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


# ----------------------------------------------------------------------------------------------------------
# Several callers at once


CHILD = """
import os, sys
from lamina.data.external import untar_data
path = untar_data(sys.argv[1])
print(path, os.stat(path).st_ino, flush=True)
"""
WAITING = "Waiting for another process that is downloading or extracting tiny.tgz"


def test_four_processes_download_and_extract_once(server, home, tmp_path):
    archive = make_tar(FILES)
    url = server.serve("/d/tiny.tgz", archive)
    # The server sends half the archive, then holds the rest until the other three callers are waiting,
    # so the calls overlap whatever the machine's speed.
    release = threading.Event()
    server.state.hold, server.state.hold_after = release, len(archive) // 2
    errs = [tmp_path / f"err{i}.txt" for i in range(4)]
    procs = []
    for err in errs:
        with err.open("w") as stderr:  # the child keeps its own copy of the file
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE,
                                          stderr=stderr, text=True, env=os.environ.copy()))
    deadline = time.monotonic() + 30
    while (time.monotonic() < deadline and len(server.state.requests) <= 1
           and sum(WAITING in err.read_text() for err in errs) < 3):
        time.sleep(0.02)
    release.set()
    outs = [proc.communicate(timeout=60)[0] for proc in procs]
    reports = [err.read_text() for err in errs]
    assert [proc.returncode for proc in procs] == [0] * 4, reports
    assert len(server.state.requests) == 1  # one download, served once, whole
    assert sorted(report.count(WAITING) for report in reports) == [0, 1, 1, 1]  # said once by each waiter
    path = home / "data" / "tiny"
    assert {out.split()[0] for out in outs} == {str(path)}
    assert {out.split()[1] for out in outs} == {str(path.stat().st_ino)}  # extracted once, never replaced
    assert hashlib.sha256((home / "archive" / "tiny.tgz").read_bytes()).digest() == hashlib.sha256(archive).digest()
    assert {p: (home / "data" / p).read_bytes() for p in FILES} == FILES
    assert everything_in(home) == ["archive", "archive/tiny.tgz", "data", "data/tiny", "data/tiny/a.txt",
                                   "data/tiny/c.bin", "data/tiny/sub", "data/tiny/sub/b.bin"]  # no lock, no .part


def test_two_threads_download_one_file_once(server, home, capsys):
    url = server.serve("/d/file.bin", os.urandom(50_000))
    release = threading.Event()
    server.state.hold, server.state.hold_after = release, 10_000
    dest, results = home / "file.bin", []
    threads = [threading.Thread(target=lambda: results.append(download_url(url, dest))) for _ in range(2)]
    for thread in threads:
        thread.start()
    said, deadline = "", time.monotonic() + 30
    while "Waiting for another download of file.bin" not in said and len(server.state.requests) < 2 \
            and time.monotonic() < deadline:
        said += capsys.readouterr().err
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert "Waiting for another download of file.bin" in said
    assert results == [dest, dest] and len(server.state.requests) == 1
    assert dest.read_bytes() == server.state.files["/d/file.bin"] and everything_in(home) == ["file.bin"]


def test_two_extractions_into_one_folder_extract_once(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "tiny.tgz"
    archive.write_bytes(make_tar(FILES))
    dest = tmp_path / "out" / "tiny"
    calls, release, unpack = [], threading.Event(), archives._unpack

    def slow_unpack(*args):  # the first extraction waits until the second caller waits for it
        calls.append(args)
        release.wait(timeout=30)
        unpack(*args)

    monkeypatch.setattr(archives, "_unpack", slow_unpack)
    results = []
    threads = [threading.Thread(target=lambda: results.append(extract_archive(archive, dest))) for _ in range(2)]
    for thread in threads:
        thread.start()
    said, deadline = "", time.monotonic() + 30
    while "Waiting for another process that is extracting into" not in said and len(calls) < 2 \
            and time.monotonic() < deadline:
        said += capsys.readouterr().err
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert "Waiting for another process that is extracting into" in said
    assert len(calls) == 1 and results == [dest, dest]
    assert (dest / "a.txt").read_bytes() == b"hello" and sorted(os.listdir(tmp_path / "out")) == ["tiny"]


# ----------------------------------------------------------------------------------------------------------
# Servers that send no length, and connections that drop


def _half_without_length(server: Server, path: str, data: bytes) -> str:
    """Serve ``data`` with no Content-Length, cutting the first response after half of it."""
    url = server.serve(path, data)
    server.state.send_length = False
    server.state.drops, server.state.drop_after = 1, len(data) // 2
    return url


@pytest.mark.parametrize("name, data", [
    ("tiny.tgz", make_tar(FILES)),
    ("tiny.tar", make_tar(FILES, mode="w")),
    ("tiny.zip", None),
], ids=["tgz", "tar", "zip"])
@pytest.mark.parametrize("later", ["resumes", "restarts"])
def test_cut_download_without_length_stays_part(server, home, name, data, later):
    if data is None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for member, content in FILES.items():
                zf.writestr(member, content)
        data = out.getvalue()
    url = _half_without_length(server, f"/d/{name}", data)
    with pytest.raises(DownloadError, match=rf"download of {url} was cut: the server sent no length.*"
                                            rf"{name}\.part: call again to resume"):
        untar_data(url)
    part = home / "archive" / f"{name}.part"
    assert part.read_bytes() == data[: len(data) // 2]  # kept for the next call
    assert not (home / "archive" / name).exists() and not (home / "data" / "tiny").exists()
    server.state.ignore_range = later == "restarts"  # the server may or may not honour the range request
    path = untar_data(url)
    assert {p: (home / "data" / p).read_bytes() for p in FILES} == FILES and path == home / "data" / "tiny"
    assert (home / "archive" / name).read_bytes() == data and not part.exists()
    assert server.state.requests[-1] == (f"/d/{name}", f"bytes={len(data) // 2}-")


def test_complete_download_without_length_is_accepted(server, home):
    data = make_tar(FILES)
    url = server.serve("/d/tiny.tgz", data)
    server.state.send_length = False
    assert (untar_data(url) / "a.txt").read_bytes() == b"hello"
    assert (home / "archive" / "tiny.tgz").read_bytes() == data and leftovers(home / "archive") == []


def test_dropped_connection_with_length_resumes_or_keeps_part(server, home):
    data = make_tar(FILES)
    url = server.serve("/d/tiny.tgz", data)
    server.state.drops, server.state.drop_after = 99, 5_000
    with pytest.raises(DownloadError, match=r"dropped 3 times while downloading .*tiny\.tgz.*call again"):
        untar_data(url)
    assert (home / "archive" / "tiny.tgz.part").stat().st_size == 15_000
    server.state.drops = 1  # the next call resumes, loses the connection once more, and resumes again
    assert (untar_data(url) / "a.txt").read_bytes() == b"hello"
    assert [r[1] for r in server.state.requests[3:]] == ["bytes=15000-", "bytes=20000-"]
    assert (home / "archive" / "tiny.tgz").read_bytes() == data


# ----------------------------------------------------------------------------------------------------------
# Archives that expand too far


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"bomb/zeros{i}.bin", bytes(ZEROS // 4))
    return out.getvalue()


def test_gzip_bomb_is_refused_then_allowed_by_the_argument(server, home):
    data = make_tar({"bomb/zeros.bin": bytes(ZEROS)})
    assert len(data) < ZEROS // 500
    url = server.serve("/d/bomb.tgz", data)
    ceiling = f"{100 * len(data):,}"
    with pytest.raises(DownloadError, match=rf"refusing to extract .*bomb\.tgz: it expands to more than {ceiling} "
                                            r"bytes .*100x.*max_expanded_bytes=N"):
        untar_data(url)
    assert everything_in(home / "data") == []  # nothing half-extracted
    path = untar_data(url, max_expanded_bytes=ZEROS)
    assert (path / "zeros.bin").stat().st_size == ZEROS and len(server.state.requests) == 1


def test_zip_bomb_is_refused_then_allowed_by_the_argument(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_bomb())
    dest = tmp_path / "out" / "bomb"
    with pytest.raises(DownloadError, match=r"refusing to extract .*bomb\.zip: .*member 'bomb/zeros\d\.bin'"):
        extract_archive(archive, dest)
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(DownloadError, match=r"more than 10,000,000 bytes.*max_expanded_bytes"):
        extract_archive(archive, dest, max_expanded_bytes=10_000_000)
    assert os.listdir(tmp_path / "out") == []
    assert len(os.listdir(extract_archive(archive, dest, max_expanded_bytes=ZEROS))) == 4


def test_bytes_written_are_counted_when_the_sizes_lie(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_bomb())
    written, wrote = [], archives._Budget.wrote

    def count(budget: archives._Budget, size: int, member: str) -> None:
        written.append(size)
        wrote(budget, size, member)

    monkeypatch.setattr(archives._Budget, "declare", lambda *args: None)  # as if every header said 0 bytes
    monkeypatch.setattr(archives._Budget, "wrote", count)
    with pytest.raises(DownloadError, match=r"refusing to extract .*bomb\.zip: it expands to more than"):
        extract_archive(archive, tmp_path / "out" / "bomb")
    assert sum(written) <= 100 * archive.stat().st_size + (1 << 20)  # stopped within one chunk of the ceiling
    assert os.listdir(tmp_path / "out") == []


def test_free_space_is_the_ceiling_even_for_known_archives(server, home, monkeypatch):
    data = make_tar({"bomb/zeros.bin": bytes(ZEROS)})
    url = server.serve("/d/bomb.tgz", data)
    monkeypatch.setitem(external._CHECKS, url, (len(data), hashlib.sha256(data).hexdigest()))
    real = archives.shutil.disk_usage
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda path: real(path)._replace(free=ZEROS // 2))
    with pytest.raises(DownloadError, match=r"more than 10,000,000 bytes .*the free space on"):
        untar_data(url)
    assert everything_in(home / "data") == []
    monkeypatch.setattr(archives.shutil, "disk_usage", real)
    # a known sha256 lifts the 100x rule: this archive expands ~1000x without any argument
    assert (untar_data(url) / "zeros.bin").stat().st_size == ZEROS


def test_file_system_without_locks_warns_and_still_works(server, home, monkeypatch):
    def no_locks(fd: int, block: bool) -> bool:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr("lamina.data.locks._lock", no_locks)
    url = server.serve("/d/tiny.tgz", make_tar(FILES))
    with pytest.warns(UserWarning, match=r"does not support file locks \(Function not implemented\).*LAMINA_HOME"):
        path = untar_data(url)
    assert (path / "a.txt").read_bytes() == b"hello"
    assert not [p for p in everything_in(home) if p.endswith(".lock")]
