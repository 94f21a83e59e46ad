"""Safe archive extraction: tgz, tar.gz, tar, zip into a temporary folder beside the target, then one rename.

Members with absolute paths, ``..`` or links that lead outside the target are refused (tar-slip), a
failure leaves no half-extracted folder, and an existing folder is replaced only once the new one is
complete.
"""

from __future__ import annotations

import errno
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

__all__ = ["extract_archive", "DownloadError", "disk_errors"]


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


def _unpack(archive: Path, into: Path) -> None:
    """Extract every member of ``archive`` (tar in any compression, or zip) into ``into``, checking each one."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_zip_name(name, archive)
            zf.extractall(into)
        return
    # The stdlib 'data' filter (Python >= 3.11.4 / 3.10.12) is a second guard behind our own checks.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:  # one pass, member by member: no second decompression of a large .tgz
            _check_tar_member(member, into, archive)
            tar.extract(member, into, **extra)


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


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` (``.tgz``, ``.tar.gz``, ``.tar``, ``.zip``) so that its content is the folder ``dest``.

    Everything is extracted into a temporary folder beside ``dest`` first; if the archive's root holds
    exactly one folder, that folder becomes ``dest``, otherwise the temporary folder does. The result is
    renamed into place in one step (replacing an existing ``dest`` only then), and a failure leaves no
    partial folder behind. Members with absolute paths, ``..`` or links leading outside are refused.

    Raises:
        DownloadError: the archive is corrupt, unsafe, or the disk is full; the message names the file.
    """
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        with disk_errors(dest):
            try:
                _unpack(archive, tmp)
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
