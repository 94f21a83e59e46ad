"""An inter-process lock per file, so that two processes never download or extract the same thing at once.

``file_lock(target)`` holds an exclusive lock on ``<target>.lock`` (``fcntl.flock`` on POSIX,
``msvcrt.locking`` on Windows). The operating system releases the lock when its holder exits, even when
it is killed, so a crashed download never leaves a lock that blocks the next call. The lock file is deleted
on release; a waiter that then finds itself holding the lock of a deleted file takes a fresh one.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["file_lock"]

if os.name == "nt":
    import msvcrt

    def _lock(fd: int, block: bool) -> bool:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not block:
                    return False
                time.sleep(0.1)  # msvcrt's own blocking mode gives up after 10 s; a download takes longer

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, block: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (the previous holder may have deleted it meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


# What a file system without locks answers (Lustre mounted without `flock`, some FUSE and network mounts)
_NO_LOCKS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}


def _acquire(path: Path, waiting: str) -> tuple[int | None, bool]:
    """Lock ``path``: its open descriptor (None: no locks on this file system) and whether we had to wait."""
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _lock(fd, block=False):
                if not waited:
                    print(f"{waiting} (lock file: {path})", file=sys.stderr, flush=True)
                waited = True
                _lock(fd, block=True)
        except BaseException as e:
            os.close(fd)
            if not (isinstance(e, OSError) and e.errno in _NO_LOCKS):
                raise
            path.unlink(missing_ok=True)  # useless here: leave nothing behind
            warnings.warn(f"{path.parent} does not support file locks ({e.strerror}), so two processes may "
                          f"download or extract the same file at once there; run the first call in one process "
                          "only, or point LAMINA_HOME at a local disk.", stacklevel=4)
            return None, waited
        if _is_current(fd, path):
            return fd, waited
        os.close(fd)  # we locked a file that its holder deleted on release: lock the current one


def _release(fd: int, path: Path) -> None:
    if os.name == "nt":
        _unlock(fd)
        os.close(fd)
        with suppress(OSError):  # open in another process (Windows cannot delete it): a later holder will
            path.unlink()
    else:  # deleted while still locked, so no one can lock it between our release and its deletion
        path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def file_lock(target: str | Path, waiting: str) -> Iterator[bool]:
    """Hold the inter-process lock of ``target`` (the file ``<target>.lock``) while the block runs.

    When another process holds it, ``waiting`` is printed once (to stderr) and the call waits for it. On a
    file system without locks (e.g. Lustre mounted without ``flock``) it warns and runs the block unlocked.

    Example:
        >>> with file_lock(archive, f"Waiting for another download of {archive.name}") as waited:
        ...     if not (waited and archive.exists()):  # else the other process has just made it
        ...         download(archive)

    Args:
        target: the file or folder to protect; the lock file is created beside it.
        waiting: what to tell the user when they have to wait.

    Returns:
        A context manager that yields True when it had to wait for another process, False otherwise.
    """
    path = Path(target).with_name(Path(target).name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, waited = _acquire(path, waiting)
    try:
        yield waited
    finally:
        if fd is not None:
            _release(fd, path)
