"""Checkpoints: `save` / `load` of everything needed to resume a fit exactly, written atomically.

A checkpoint holds the model, the optimizer (state and per-group hypers), the random states (Python,
numpy, torch CPU and CUDA), the loaders' epoch counters, the number of epochs done, and each callback's
own state by callback name (the Recorder's smoothed loss, the grad scaler, the trackers' best value). It is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a crash mid-write leaves the previous checkpoint intact, and the next write into
that folder removes the temporary file the crashed writer left.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .compiled import fit_state_keys, plain_state_dict
from .core import rank_distrib
from .distributed import all_gather_cat, get_rank, is_initialized, on_rank0, world_size

__all__ = ["CheckpointMixin", "atomic_write", "rng_states", "set_rng_states"]

# Errors that mean the disk (or the user's quota on it) is full.
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def atomic_write(path: Path, write: Callable[[Any], Any], size_hint: int | None = None,
                 what: str = "file") -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename it to ``path``.

    The temporary file is ``.<name>.<host>.<pid>.<process start>.<random>.tmp``: a writer killed mid-write
    (``kill -9``, out of memory) leaves it behind, and the next write of ``path`` removes such leftovers
    once their process is dead (never a live writer's), with one warning. On any failure the temporary
    file is removed and the previous ``path`` is left as it was.

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


def rng_states() -> dict:
    """Python's, numpy's and torch's random states (as tensors and plain types: loadable with weights_only)."""
    np_state = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()),
                                                      *np_state[2:]), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore the states returned by `rng_states`."""
    random.setstate(_tuples(states["python"]))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in a nested dict/list/tuple (the bulk of a saved checkpoint)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        obj = list(obj.values())
    return sum(_tensor_bytes(o) for o in obj) if isinstance(obj, (list, tuple)) else 0


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


class CheckpointMixin:
    """`save` and `load` for the Learner."""

    _resume_states: dict | None = None  # callback states from `load(..., resume=True)`, for the next fit

    def _checkpoint_path(self, file: str | Path) -> Path:
        file = Path(file)
        if file.suffix != ".pth":
            file = file.with_name(file.name + ".pth")
        return file if file.is_absolute() else self.path / self.model_dir / file

    def save(self, file: str | Path, with_opt: bool = True) -> Path | None:
        """Save a checkpoint to ``path/model_dir/file.pth`` (atomically); returns its path.

        Args:
            file: the name under ``path/model_dir`` (``.pth`` added), or a path.
            with_opt: also save the optimizer's state, which ``load(..., resume=True)`` needs to continue
                the fit exactly (without it, the file holds weights for fine-tuning or inference).

        Returns:
            the path written, or None on processes other than rank 0 (they skip the save). Under data-parallel
            training every rank must call it (rank 0 writes while the others wait for the file).

        Raises:
            OSError: (errno ENOSPC) when the disk is full; the previous checkpoint is left intact.
        """
        if is_initialized():  # data-parallel: rank 0 writes, every rank waits until the file is there
            torch_rngs = all_gather_cat(torch.get_rng_state().unsqueeze(0))  # each rank's dropout stream
            return on_rank0(self._save, file, with_opt, torch_rngs)
        return None if rank_distrib() != 0 else self._save(file, with_opt)

    def _save(self, file: str | Path, with_opt: bool, torch_rngs: torch.Tensor | None = None) -> Path:
        state = {"model": plain_state_dict(self.model), "epoch": getattr(self, "epochs_done", 0),
                 "rng": rng_states(), "loaders": [[dl.seed, dl.epochs_seen] for dl in self.dls.loaders]}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        if torch_rngs is not None:
            state["torch_rng_per_rank"] = torch_rngs
        callbacks = {cb.name: cb.state_dict() for cb in self.cbs if getattr(self, cb.name, None) is cb}
        state["callbacks"] = {name: cb_state for name, cb_state in callbacks.items() if cb_state}
        path = self._checkpoint_path(file)
        return atomic_write(path, lambda f: torch.save(state, f), size_hint=_tensor_bytes(state), what="checkpoint")

    def load(self, file: str | Path, device: torch.device | str | None = None, with_opt: bool = True,
             strict: bool = True, resume: bool = False) -> Any:
        """Load a checkpoint written by `save` (safely: ``weights_only=True``).

        Args:
            file: the name under ``path/model_dir`` (``.pth`` added), or a path.
            device: where the weights go (default: the data's device).
            with_opt: also restore the optimizer's state and hypers.
            strict: the checkpoint's keys must match the model's exactly.
            resume: also restore the training position (random states, the loaders' shuffles, the epochs done;
                the callbacks' state — smoothed loss, grad scale, trackers' best value and patience — goes to
                the callbacks of the same name in the next fit), to continue an interrupted fit exactly with
                ``fit_one_cycle(n, start_epoch=learn.epochs_done)``. The file must hold the optimizer's state:
                ``learn.save(name, with_opt=True)`` (the default) or ``SaveModelCallback(with_opt=True)``
                (its default, as fastai's, is ``with_opt=False``).

        Raises:
            FileNotFoundError: naming the checkpoint path when it does not exist.
            ValueError: when the checkpoint does not fit this model or optimizer, or ``resume=True`` and it
                holds no optimizer state (the model is left unchanged).
        """
        path = self._checkpoint_path(file)
        if not path.exists():
            raise FileNotFoundError(f"No checkpoint at {path}: check the name, or `learn.path`/`learn.model_dir` "
                                    f"(now {self.path}/{self.model_dir})")
        device = device if device is not None else self.dls.device
        state = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay CPU tensors
        if "model" not in state:  # a bare state dict, as other tools write
            state = {"model": state}
        if resume and "opt" not in state:
            raise ValueError(f"{path} holds no optimizer state (saved with with_opt=False, or before the optimizer "
                             "existed), so resume=True cannot continue the fit exactly: a fresh optimizer would make "
                             "it diverge. Save checkpoints that resume with "
                             "learn.save(name, with_opt=True) or SaveModelCallback(with_opt=True); to fine-tune "
                             "from these weights instead, load without resume=True")
        self._load_weights_and_opt(path, state, with_opt, strict)
        self.model.to(device)
        if resume:
            self._resume_from(state)
        return self

    def _load_weights_and_opt(self, path: Path, state: dict, with_opt: bool, strict: bool) -> None:
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            self.model.load_state_dict(fit_state_keys(state["model"], self.model), strict=strict)
            if with_opt and "opt" in state:
                if self.opt is None:
                    self.create_opt()
                self.opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            self.model.load_state_dict(backup)
            raise ValueError(f"The checkpoint {path} does not fit this learner ({e}). It was saved from another "
                             "model or param-group split; load it into the same architecture, or pass "
                             "with_opt=False / strict=False") from e
        if with_opt and "opt" not in state:
            warnings.warn(f"{path} holds no optimizer state: the optimizer starts fresh")

    def _resume_from(self, state: dict) -> None:
        if "rng" in state:
            set_rng_states(state["rng"])
        per_rank = state.get("torch_rng_per_rank")
        if per_rank is not None and is_initialized() and len(per_rank) == world_size():
            torch.set_rng_state(per_rank[get_rank()].clone())  # this rank's own stream, as before the stop
        for dl, (seed, seen) in zip(self.dls.loaders, state.get("loaders", [])):
            dl.seed, dl.epochs_seen = seed, seen  # the same shuffles as the interrupted run
        self.epochs_done = state.get("epoch", 0)
        self._resume_states = state.get("callbacks", _legacy_callback_states(state))

    def _restore_callback_states(self) -> None:
        """Give the callbacks of a resumed fit (``start_epoch > 0``) their state from the checkpoint, once.

        Called by `fit` after ``before_fit``, which sets the callbacks up afresh; callbacks are matched by
        name, and a callback the checkpoint does not name keeps its fresh state.
        """
        states, self._resume_states = self._resume_states, None
        if not states or self.start_epoch == 0:
            return
        for cb in self.cbs:
            if cb.name in states and getattr(self, cb.name, None) is cb:
                cb.load_state_dict(states[cb.name])


def _legacy_callback_states(state: dict) -> dict:
    """The callback states of a checkpoint written before callbacks kept their own (top-level keys)."""
    states = {}
    if "smooth_loss" in state:
        states["recorder"] = {"smooth_loss": state["smooth_loss"]}
    if state.get("scaler"):
        states["mixed_precision"] = {"scaler": state["scaler"]}
    return states
