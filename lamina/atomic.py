"""Writing a file atomically: `atomic_write` writes beside the target, flushes to disk, then renames over it, so a
crash mid-write leaves the previous file intact; the next write into that folder removes what a crashed writer
left. Checkpoints, exports, tokenization caches and `save_pickle` go through it.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]

# Errors that mean the disk (or the user's quota on it) is full.
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def atomic_write(path: Path, write: Callable[[Any], Any], size_hint: int | None = None,
                 what: str = "file") -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename it to ``path``.

    The temporary file is ``.<name>.<host>.<pid>.<process start>.<random>.tmp``: a writer killed mid-write
    (``kill -9``, out of memory) leaves it behind, and the next write of ``path`` removes such leftovers
    once their process is dead (never a live writer's), with one warning. On any failure the temporary
    file is removed and the previous ``path`` is left as it was. A symbolic link is written through (its target
    is replaced), and a file that exists keeps its permissions.

    Args:
        path: the file to write.
        write: writes the content with ``file_object.write(bytes)`` (`torch.save` accepts the object).
        size_hint: the expected size in bytes, for the full-disk message.
        what: what the file is, for messages ("checkpoint", "export").

    Returns:
        ``path``.

    Raises:
        OSError: (errno ENOSPC) when the disk is full, naming the mount, the size needed and the free space.
    """
    path = Path(path)
    path = path.resolve() if path.is_symlink() else path  # write through a link, as open() does
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_leftovers(path)
    tmp, file = path.with_name(_temp_name(path.name)), None
    try:
        file = _TempFile(tmp)
        try:
            write(file)
            os.fsync(file.fd)
        finally:
            os.close(file.fd)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException as e:
        if file is not None:  # created by us (the name holds our pid and a random part)
            tmp.unlink(missing_ok=True)
        code = _disk_full_errno(e, file)
        if code is None:
            raise
        raise OSError(code, _no_space_message(path, what, size_hint, file.written if file else 0)) from e
    return path


class _TempFile:
    """The file object handed to ``write``: unbuffered ``os.write`` calls that keep count and the first error.

    torch.save reports a failed write as its own RuntimeError ("unexpected pos"); the kept OSError says why.
    """

    def __init__(self, path: Path):
        # 0o666 less the umask: a model file is as readable as any other file the user writes
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        self.written, self.error = 0, None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as e:
            self.error = self.error or e
            raise
        finally:
            self.written += done
        return done

    def flush(self) -> None:
        """Nothing is buffered here (`atomic_write` fsyncs once ``write`` returns)."""


def _disk_full_errno(error: BaseException, file: _TempFile | None) -> int | None:
    """ENOSPC/EDQUOT if ``error``, an error it wraps, or the failed write behind it is a full disk, else None."""
    chain = []
    while error is not None and error not in chain and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for e in [*chain, file and file.error]:
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return e.errno
    return None


def _no_space_message(path: Path, what: str, size_hint: int | None, written: int) -> str:
    needed = f"about {_human(size_hint)}" if size_hint else f"more than {_human(written)}"
    try:
        needed += f" needed, {_human(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        needed += " needed"
    kept = f"the previous {what} is intact" if path.exists() else f"no partial {what} was left"
    return (f"No space left on {_mount_of(path.parent)} while saving {what} {path} ({needed}); {kept}. Free "
            f"space there, or save to another disk (an absolute file name, or set learn.path)")


def _mount_of(folder: Path) -> str:
    """``'<device> mounted at <mount point>'`` for the file system holding ``folder`` (the mount point alone
    where the mount table cannot be read)."""
    mount = Path(os.path.realpath(folder))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    device = None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as table:
            for line in table:  # "<device> <mount point> <type> ...", spaces escaped as \040
                fields = line.split()
                if len(fields) > 2 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1]) == str(mount):
                    device = fields[0]  # the last line wins: it is the mount on top
    except OSError:
        pass
    return f"{device} mounted at {mount}" if device else str(mount)


def _human(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# Temporary files: ".<target>.<host>.<pid>.<process start>.<random>.tmp". The host keeps a process on
# another machine writing into a shared folder safe; the start time (Linux) tells a dead writer from a
# new process that reuses its pid.
def _temp_name(name: str) -> str:
    pid, stat = os.getpid(), _process_stat(os.getpid())
    return f".{name}.{_host()}.{pid}.{stat[1] if stat else 0}.{os.urandom(4).hex()}.tmp"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def _process_stat(pid: int) -> tuple[str, int] | None:
    """The state (R, S, Z...) and start time (clock ticks after boot) of process ``pid``, from Linux's /proc;
    None elsewhere or if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3; the name before ")" may hold spaces
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _writer_alive(host: str, pid: int, start: int, this_host: str) -> bool:
    """Whether the process that named a temporary file may still be writing it (True when we cannot tell)."""
    if host != this_host:
        return True
    if start:
        stat = _process_stat(pid)
        if stat is not None:  # another start time: the pid was reused; a zombie (Z, X) writes no more
            return stat[1] == start and stat[0] not in ("Z", "X")
    if os.name != "posix":
        return True  # Windows: os.kill(pid, 0) would send Ctrl+C, so keep what cannot be checked
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's process
        return True
    return True


def _remove_dead_leftovers(path: Path) -> None:
    """Delete the temporary files of writes to ``path`` whose writer has died; one warning says how much."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([A-Za-z0-9-]*)\.(\d+)\.(\d+)\.[0-9a-f]+\.tmp")
    this_host, count, size = _host(), 0, 0
    try:
        with os.scandir(path.parent) as listing:
            entries = list(listing)
    except OSError:  # a folder we may write but not list: nothing to clean
        return
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if found is None or _writer_alive(found[1], int(found[2]), int(found[3]), this_host):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            nbytes = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
        except OSError:  # removed meanwhile by another writer, or not ours to remove
            continue
        count, size = count + 1, size + nbytes
    if count:
        warnings.warn(f"Removed {count} temporary file(s) ({_human(size)}) left in {path.parent} by interrupted "
                      f"writes of {path.name} whose processes had died", stacklevel=3)
