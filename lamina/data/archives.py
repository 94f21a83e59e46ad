"""Safe archive extraction: tgz, tar.gz, tar, zip into a temporary folder beside the target, then one rename.

Members with absolute paths, ``..`` or links that lead outside the target are refused (tar-slip), an
archive that would expand past a ceiling is refused (a small "bomb" cannot fill the disk), a failure leaves
no half-extracted folder, an existing folder is replaced only once the new one is complete, and two
processes extracting into the same folder take turns (``lamina.data.locks``).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from lamina.data.locks import file_lock

__all__ = ["extract_archive", "extract_locked", "archive_problem", "DownloadError", "disk_errors"]

_CHUNK = 1 << 20
# An archive without a known checksum may expand to at most this many times its size. Real datasets stay far
# below (images and audio barely compress, CSV and text a few times), while 20 MB of zeros gzips 1000x smaller.
_MAX_RATIO = 100
# Compressed tar streams by their first bytes, each with the stdlib reader that checks its end marker and CRC
_COMPRESSED = ((b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw)), (b"BZh", bz2.BZ2File),
               (b"\xfd7zXZ\x00", lzma.LZMAFile))


class DownloadError(Exception):
    """A dataset could not be downloaded, checked or extracted; the message says why and how to fix it."""


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn 'disk full' (and over quota) while writing ``path`` into a DownloadError that says what to do."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DownloadError(f"no space left on the device while writing {path}. Free some space there, or "
                            "point LAMINA_HOME (or the `archive`/`data` arguments) at a bigger disk.") from e


def _outside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) != root


def _check_tar_member(member: tarfile.TarInfo, into: Path, archive: Path) -> None:
    """Refuse a member that would be written, or would link, outside ``into`` (tar-slip)."""
    def refuse(why: str) -> DownloadError:
        return DownloadError(f"refusing to extract {archive}: member {member.name!r} {why}. The archive is "
                             "unsafe or damaged; delete it and get it from a source you trust.")
    name = member.name.replace("\\", "/")
    if name.startswith("/") or os.path.isabs(member.name) or re.match(r"^[A-Za-z]:", name):
        raise refuse("has an absolute path")
    if ".." in name.split("/"):
        raise refuse("has a '..' component")
    root = os.path.realpath(into)
    # realpath resolves the links extracted so far, so chains of links cannot sneak out either
    if _outside(os.path.realpath(into / name), root):
        raise refuse("would be written outside the target folder (through a link)")
    if member.issym() or member.islnk():
        base = into / os.path.dirname(name) if member.issym() else into
        if os.path.isabs(member.linkname) or _outside(os.path.realpath(base / member.linkname), root):
            raise refuse(f"links to {member.linkname!r}, outside the target folder")
    elif not (member.isfile() or member.isdir()):
        raise refuse("is a device, pipe or other special file")


def _check_zip_name(name: str, archive: Path) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DownloadError(f"refusing to extract {archive}: member {name!r} would be written outside the target "
                            "folder (absolute path or '..'). Delete the archive and get it from a source you trust.")


class _Budget:
    """The ceiling on the bytes an extraction may produce, counted from the members' declared sizes (before
    writing them) and from the bytes actually written (in case a header lies)."""

    def __init__(self, archive: Path, dest: Path, max_expanded_bytes: int | None, checked: bool) -> None:
        self.archive, self.declared, self.written = archive, 0, 0
        if max_expanded_bytes is not None:
            self.limit, self.why = max_expanded_bytes, "max_expanded_bytes"
            return
        self.limit, self.why = shutil.disk_usage(dest.parent).free, f"the free space on {dest.parent}"
        size = archive.stat().st_size
        if not checked and _MAX_RATIO * size < self.limit:
            self.limit = _MAX_RATIO * size
            self.why = f"{_MAX_RATIO}x the archive's {size:,} bytes, for an archive without a known checksum"

    def declare(self, size: int, member: str) -> None:
        self.declared += size
        self._check(self.declared, member)

    def wrote(self, size: int, member: str) -> None:
        self.written += size
        self._check(self.written, member)

    def _check(self, total: int, member: str) -> None:
        if total > self.limit:
            raise DownloadError(
                f"refusing to extract {self.archive}: it expands to more than {self.limit:,} bytes (passed at member "
                f"{member!r}; the ceiling is {self.why}). Nothing was extracted. If you trust this archive, raise "
                "the ceiling with untar_data(..., max_expanded_bytes=N) or extract_archive(..., "
                "max_expanded_bytes=N) and make sure the disk has that much room.")


def _zip_target(into: Path, name: str) -> Path:
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if os.name == "nt":  # as zipfile does: ':' would write an alternate data stream, the others are invalid
        parts = [re.sub(r'[:<>|"?*]', "_", part) for part in parts]
    return into.joinpath(*parts)


def _unpack_zip(archive: Path, into: Path, budget: _Budget) -> None:
    """Extract a zip member by member, in chunks, stopping as soon as the budget is spent."""
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_zip_name(info.filename, archive)
        for info in members:
            target = _zip_target(into, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            budget.declare(info.file_size, info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    budget.wrote(len(block), info.filename)
                    dst.write(block)


def _unpack(archive: Path, into: Path, budget: _Budget) -> None:
    """Extract every member of ``archive`` (tar in any compression, or zip) into ``into``, checking each one."""
    if zipfile.is_zipfile(archive):
        return _unpack_zip(archive, into, budget)
    # The stdlib 'data' filter (Python >= 3.11.4 / 3.10.12) is a second guard behind our own checks.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:  # one pass, member by member: no second decompression of a large .tgz
            _check_tar_member(member, into, archive)
            if member.isfile():  # tarfile writes exactly the declared size, so this stops before writing
                budget.declare(member.size, member.name)
            tar.extract(member, into, **extra)
            if member.isfile():
                budget.wrote(os.lstat(into / member.name).st_size, member.name)


def _replace_dir(new: Path, dest: Path) -> None:
    """Move the folder ``new`` to ``dest``; an existing ``dest`` is swapped out and deleted only afterwards."""
    if not dest.exists() and not dest.is_symlink():
        try:
            os.replace(new, dest)
        except OSError:
            if not dest.is_dir():
                raise  # otherwise another process has just extracted the same archive: keep its copy
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent)) / dest.name
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old.parent, ignore_errors=True)


def extract_archive(archive: str | Path, dest: str | Path, max_expanded_bytes: int | None = None) -> Path:
    """Extract ``archive`` (``.tgz``, ``.tar.gz``, ``.tar``, ``.zip``) so that its content is the folder ``dest``.

    Everything is extracted into a temporary folder beside ``dest`` first; if the archive's root holds
    exactly one folder, that folder becomes ``dest``, otherwise the temporary folder does. The result is
    renamed into place in one step (replacing an existing ``dest`` only then), and a failure leaves no
    partial folder behind. Members with absolute paths, ``..`` or links leading outside are refused.

    Extraction stops, leaving nothing, once the archive expands past ``max_expanded_bytes`` (counted from
    the sizes its members declare and from the bytes written). Another process extracting into ``dest`` at
    the same time is waited for, and its result is used.

    Example:
        >>> extract_archive("imagewoof2.tgz", "data/imagewoof2")
        >>> extract_archive("huge.tgz", "data/huge", max_expanded_bytes=2 * 10**12)  # 2 TB, if you trust it

    Args:
        archive: the archive file.
        dest: the folder to create (or replace).
        max_expanded_bytes: the most bytes the content may take. None: the free space on ``dest``'s disk,
            and at most 100 times the archive's size (an archive that expands more is likely a "bomb").

    Raises:
        DownloadError: the archive is corrupt, unsafe, too large once expanded, or the disk is full; the
            message names the file and the fix.
    """
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest, f"Waiting for another process that is extracting into {dest}") as waited:
        if waited and dest.exists():
            return dest  # that process has just extracted it: use its result instead of extracting again
        return extract_locked(archive, dest, max_expanded_bytes)


def extract_locked(archive: Path, dest: Path, max_expanded_bytes: int | None = None, checked: bool = False) -> Path:
    """``extract_archive`` for a caller that holds ``file_lock(dest)``; ``checked``: the archive matched a
    known sha256, so the 100x ceiling does not apply (the free space on the disk still does)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        with disk_errors(dest):
            try:
                _unpack(archive, tmp, _Budget(archive, dest, max_expanded_bytes, checked))
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
                raise _corrupt(archive, e) from e
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise _corrupt(archive, e) from e
            entries = list(tmp.iterdir())
            single = len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink()
            if not single:
                tmp.chmod(0o755)  # mkdtemp makes it 0o700; the data should be readable like any other folder
            _replace_dir(entries[0] if single else tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _corrupt(archive: Path, error: BaseException) -> DownloadError:
    error = " ".join(str(error).split())  # tarfile's reasons span several lines
    return DownloadError(f"could not extract {archive}: it is corrupt, incomplete or not a .tgz/.tar/.zip archive "
                         f"({error}). Delete it, or call untar_data(..., force_download=True) to download it again.")


class _Counted:
    """A binary reader that counts the bytes read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def archive_problem(path: Path) -> str | None:
    """None if ``path`` reads through to its end as a zip or a (compressed) tar archive, else what is wrong.

    This is how a download whose server sent no length is told apart from one cut short: a zip must have its
    directory and every member's CRC, a compressed stream its end marker and CRC, a tar its end-of-archive
    block. It reads the whole file once, without writing anything.
    """
    try:
        with open(path, "rb") as raw:
            head = raw.read(6)
            raw.seek(0)
            if head.startswith(b"PK"):
                with zipfile.ZipFile(raw) as zf:
                    bad = zf.testzip()
                return None if bad is None else f"member {bad!r} is damaged"
            opener = next((reader for magic, reader in _COMPRESSED if head.startswith(magic)), None)
            stream = _Counted(opener(raw) if opener else raw)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for _ in tar:  # stream mode reads each member's data, so a cut inside one shows here
                    pass
                end = tar.offset
            while stream.read(_CHUNK):  # through the compressed stream's end marker and CRC
                pass
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        return " ".join(str(e).split()) or type(e).__name__
    # tarfile ends quietly at a missing header; a complete archive has a zero block there
    return None if stream.count >= end + tarfile.BLOCKSIZE else "the tar archive's end-of-archive block is missing"
