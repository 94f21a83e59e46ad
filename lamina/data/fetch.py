"""Moving bytes for `lamina.data.external`: an HTTP(S) download into a ``.part`` file that survives dropped
connections (resumed with ``Range`` requests), and the copy of a ``file://`` URL, both with a progress bar.

Checking, locking and renaming into place are `download_url`'s (in `lamina.data.external`); this module only
transfers. Errors a user can act on are `DownloadError`; a connection cut short is `Dropped`, resumed here.
"""

from __future__ import annotations

import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from lamina.config import progress_mode
from lamina.data.archives import DownloadError

__all__ = ["CHUNK", "DEFAULT_TIMEOUT", "ATTEMPTS", "RETRY_DELAY", "Dropped", "copy_stream", "progress_bar",
           "open_url", "fetch_once", "fetch", "copy_local"]

CHUNK = 1 << 20  # 1 MiB reads: few Python calls per second even at 1 GB/s
DEFAULT_TIMEOUT = 30.0  # seconds to connect and per read; a stalled mirror fails instead of hanging
ATTEMPTS = 3  # a dropped connection is resumed this many times within one call
RETRY_DELAY = 0.5  # seconds, times the attempt number


class Dropped(Exception):
    """The connection ended before the whole file arrived (resumable)."""

    def __init__(self, got: int, total: int | None) -> None:
        super().__init__(f"got {got:,} of {'?' if total is None else f'{total:,}'} bytes")
        self.got = got


def copy_stream(src: BinaryIO, dst: BinaryIO, bar: tqdm) -> int:
    """Copy ``src`` to ``dst`` in chunks; read errors mean a dropped connection, write errors propagate."""
    written = 0
    while True:
        try:
            chunk = src.read(CHUNK)
        except (OSError, http.client.HTTPException) as e:
            raise Dropped(written, None) from e
        if not chunk:
            return written
        dst.write(chunk)
        bar.update(len(chunk))
        written += len(chunk)


def progress_bar(name: str, total: int | None, initial: int, show: bool) -> tqdm:
    """A bytes progress bar (rate and time left) for ``name``, starting at ``initial`` of ``total`` bytes.

    Outside a terminal or a notebook (`lamina.config.progress_mode` not ``'bar'``) the bar is off and, in
    ``'line'`` mode, one line says what is being fetched, so logs hold no runs of redrawn bars.
    """
    mode = progress_mode() if show else "none"
    if mode == "line":
        size = f" ({total / 2**20:.1f} MiB)" if total else ""
        print(f"fetching {name}{size}", file=sys.stderr, flush=True)
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=mode != "bar")


def open_url(url: str, have: int, timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, asking for the bytes from ``have`` on; HTTP and connection errors become DownloadError."""
    headers = {"User-Agent": "lamina", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            raise  # the caller decides whether the partial file is complete
        hint = ("the file is not there: check the URL" if e.code == 404 else "the server failed: try again later")
        raise DownloadError(f"HTTP {e.code} ({e.reason}) while downloading {url}; {hint}, or set LAMINA_DATA_URL "
                            "to a mirror that has it.") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not connect to download {url} ({reason}). Check the network connection "
                            "and proxy settings, set LAMINA_DATA_URL to a reachable mirror, or put the file "
                            "in lamina's archive folder yourself.") from e


def fetch_once(url: str, part: Path, timeout: float, show_progress: bool) -> int | None:
    """Fetch ``url`` into ``part`` from its current size; raises Dropped when cut short; returns the size
    the server announced (None: it sent no length, so a cut connection looked like the end)."""
    have = part.stat().st_size if part.exists() else 0
    try:
        response = open_url(url, have, timeout)
    except urllib.error.HTTPError as e:  # 416: nothing left after byte `have`
        e.close()
        complete = e.headers.get("Content-Range", "") == f"bytes */{have}"
        if not complete:  # the partial file is longer than the file: it belongs to something else
            part.unlink()
            return fetch_once(url, part, timeout, show_progress)
        return have
    with response:
        resumed = have > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            response.close()  # some other range came back: start over rather than splice wrong bytes
            part.unlink()
            return fetch_once(url, part, timeout, show_progress)
        if not resumed:  # a fresh download, or a server that ignores Range and sends everything
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = progress_bar(part.name[: -len(".part")], total, have, show_progress)
        with open(part, "ab" if resumed else "wb") as fh, bar:
            try:
                got = copy_stream(response, fh, bar)
            except Dropped as e:
                raise Dropped(have + e.got, total) from e.__cause__
    if total is not None and have + got < total:
        raise Dropped(have + got, total)
    return total


def fetch(url: str, part: Path, timeout: float, show_progress: bool) -> int | None:
    """``fetch_once``, resuming after dropped connections up to ``ATTEMPTS`` times."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fetch_once(url, part, timeout, show_progress)
        except Dropped as e:
            if attempt == ATTEMPTS:
                raise DownloadError(f"the connection dropped {attempt} times while downloading {url} (last: {e}). "
                                    f"The partial file is kept at {part}: call again to resume, or check the "
                                    "network / LAMINA_DATA_URL mirror.") from e
            time.sleep(RETRY_DELAY * attempt)


def copy_local(url: str, part: Path, show_progress: bool) -> int:
    """'Download' a ``file://`` URL by copying the file, so local archives take the same path as remote ones."""
    source = Path(urllib.request.url2pathname(urlsplit(url).path))
    if not source.is_file():
        raise DownloadError(f"{url} points at {source}, which does not exist; check the path "
                            "(for URLs.PETS_SAMPLE: reinstall lamina, the file ships with it).")
    with open(source, "rb") as src, open(part, "wb") as dst, \
            progress_bar(source.name, source.stat().st_size, 0, show_progress) as bar:
        try:
            return copy_stream(src, dst, bar)
        except Dropped as e:
            raise DownloadError(f"could not read {source} ({e.__cause__}); check the file and try again.") from e
