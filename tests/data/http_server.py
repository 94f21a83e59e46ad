"""A small HTTP server on 127.0.0.1 whose misbehaviour the download tests choose, and archive helpers."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAYLOAD = os.urandom(200_000)  # incompressible, so the archive is big enough to cut in the middle


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    drops: int = 0  # how many of the next responses are cut off after `drop_after` bytes
    drop_after: int = 50_000
    status: int | None = None  # answer every request with this error code
    ignore_range: bool = False
    wrong_range: bool = False  # answer a range request with 206 but the bytes from 0
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    hold: threading.Event | None = None  # pause each body after `hold_after` bytes until this is set
    hold_after: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        state: ServerState = self.server.state
        byte_range = self.headers.get("Range")
        state.requests.append((self.path, byte_range))
        data = state.files.get(self.path)
        if state.status or data is None:
            self.send_error(state.status or 404)
            return
        start = 0
        if byte_range and not state.ignore_range:
            start = 0 if state.wrong_range else int(byte_range.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if state.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drops > 0:
            state.drops -= 1
            body = body[: state.drop_after]  # then the connection closes (HTTP/1.0)
        if state.hold is not None:
            self.wfile.write(body[: state.hold_after])
            self.wfile.flush()
            state.hold.wait(timeout=30)  # bounded: a test that forgets to release it still ends
            body = body[state.hold_after:]
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.state = ServerState()
        self.state = self.httpd.state
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def serve(self, path: str, data: bytes) -> str:
        self.state.files[path] = data
        return self.base + path

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()


def make_tar(files: dict[str, bytes], links: dict[str, str] | None = None, hardlinks: dict[str, str] | None = None,
             mode: str = "w:gz") -> bytes:
    """A tar archive (gzip by default) with these regular files, symlinks and hard links (name -> target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for kind, table in ((tarfile.SYMTYPE, links or {}), (tarfile.LNKTYPE, hardlinks or {})):
            for name, target in table.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tar.addfile(info)
    return out.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


TINY = {"tiny/a.txt": b"hello", "tiny/sub/payload.bin": PAYLOAD}


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders or .part files left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))
