"""Gradient sums through shared memory for the CPU processes of one machine.

On CPU processes gloo sums a tensor over the loopback network: each collective is a round trip of 0.5–2 ms almost
whatever its size up to a few hundred KB, as long as a whole training step of a small tabular model. When every
rank of the job runs on the same machine, the ranks can instead write their tensors into one shared-memory file
and each add them up itself: a sum of 30k floats over 2 processes takes about 0.06 ms instead of gloo's 1–2 ms
(`benchmarks/DISTRIBUTED.md`).

The protocol, per sum (the ranks call it in the same order with tensors of the same size, as any collective):

1. rank ``r`` copies its tensor into its slot of the current half of the file (the halves alternate);
2. it publishes the tensor's size and dtype, then the sum's sequence number, in its flags;
3. it waits until every rank's sequence number shows that sum, checks that their sizes and dtypes are its own
   (else it raises, as gloo does on a mismatched collective), then adds the slots in rank order (the same order
   everywhere, so every rank gets the same bits).

A slot of one half is written again two sums later, by which time every rank has published the sum in between,
which it does only after reading the earlier one. The flag is written after the slot and read before it: x86-64
keeps stores in order and loads in order (its memory model, TSO), so a rank that sees a flag sees the slot
behind it. Other processors reorder them; there the sums stay with gloo.

Setting up is itself collective (on gloo): the ranks first vote (so all are there), then rank 0 creates the file
in ``/dev/shm``, every rank maps it and says whether it could, and rank 0 removes the name once all have answered
(or the set-up failed), so the name lives for milliseconds; names a killed set-up left behind are removed by the
next one on the machine once their process is gone. A rank on another machine cannot open the file: the job then
keeps gloo everywhere, as it does when ``LAMINA_DIST_SHM=0`` on any rank, when ``/dev/shm`` lacks the space, or off
x86-64. A waiting rank first watches the flags without a system call for up to 1 ms (most waits of a small model's
step are shorter), then yields its core between looks until 2 ms into the wait, then sleeps between looks (50 µs,
doubling up to 1 ms); it raises when a peer's process is gone, or after the process group's timeout. The first
phase is the fastest: a tabular DDP step took 3–10% less than when yielding from the start
(`benchmarks/DISTRIBUTED.md`). But a peer that shares the waiting rank's core cannot run during it, so it is
skipped when the job has more ranks than this process has CPUs to run on.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
import secrets
import time

import numpy as np
import torch
import torch.distributed as dist

from .core import usable_cpus

__all__ = ["SharedMemorySum", "shared_sum", "summable", "close_shared"]

SHM_DIR = "/dev/shm"
PAGE = 4096
FLAG_STRIDE = 8  # int64s between two ranks' flags: each on its own 64-byte line (ranks write only their own)
# The largest file the sums may map, in bytes; a tensor whose two halves over all ranks would not fit keeps gloo.
MAX_BYTES = 256 << 20
BUSY_S = 1e-3  # watch the flags this long without a system call (when every rank can have a core of its own),
YIELD_UNTIL_S = 2e-3  # then yield the core between looks until this long into the wait, then sleep between them
SLEEP_S, MAX_SLEEP_S = 5e-5, 1e-3  # the first sleep, doubling up to the longest
# A rank's flags: the sum's number, its process (PID and PID namespace), the size and dtype per half (as the slots)
SEQ, PID, NUMEL, DTYPE, PIDNS = 0, 1, (2, 3), (4, 5), 6
_NAME = re.compile(r"lamina-sum-([0-9]{1,10})-[0-9a-f]{16}")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
STALE_S = 600  # a name older than this whose creating process is gone was left by a killed set-up


def summable(t: torch.Tensor) -> bool:
    """Whether the shared-memory sum takes ``t``: dense, on the CPU, of a float dtype of `DTYPES`."""
    return t.device.type == "cpu" and not t.is_sparse and t.dtype in DTYPES


def _votes_yes() -> bool:
    """This process's own conditions: x86-64, a shared-memory directory, and not switched off."""
    if os.environ.get("LAMINA_DIST_SHM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and os.path.isdir(SHM_DIR)


class SharedMemorySum:
    """Sums dense CPU tensors over the ranks of the default process group through one shared-memory file.

    Build with `SharedMemorySum.open` (collective); `sum` is collective too, synchronous, and overwrites its
    argument with the result. `fits` says, identically on every rank, whether a tensor goes this way.

    Args:
        mm: the mapped file: the flags, then two halves of ``world`` slots of ``slot_bytes`` bytes.
        rank, world: this process's rank and the number of ranks.
        slot_bytes: the room for one rank's tensor.
        timeout_s: how long a sum waits for its peers before raising.
    """

    def __init__(self, mm: mmap.mmap, rank: int, world: int, slot_bytes: int, timeout_s: float):
        self.mm, self.rank, self.world, self.slot_bytes, self.timeout_s = mm, rank, world, slot_bytes, timeout_s
        self.flags = np.frombuffer(mm, dtype=np.int64, count=world * FLAG_STRIDE)
        self.header = self.header_for(world)
        self.seq = 0
        # Whether the peers' processes are visible from here (one machine, one PID namespace): then a wait also
        # ends when a peer's process is gone, not only at the timeout.
        ns = _pid_namespace()
        self._pids_visible = ns > 0 and all(
            self.flags[j * FLAG_STRIDE + PIDNS] == ns and _alive(int(self.flags[j * FLAG_STRIDE + PID]))
            for j in range(world))
        self._views: dict[tuple[torch.dtype, int, int], list[torch.Tensor]] = {}
        self.busy_s = BUSY_S if world <= usable_cpus() else 0.0  # no watching a core a peer may need

    @staticmethod
    def header_for(world: int) -> int:
        """The bytes before the slots: the flags, in whole pages."""
        return -(-world * FLAG_STRIDE * 8 // PAGE) * PAGE

    @classmethod
    def size_for(cls, world: int, slot_bytes: int) -> int:
        """The file's size in bytes for ``world`` ranks and slots of ``slot_bytes`` bytes."""
        return cls.header_for(world) + 2 * world * slot_bytes

    @classmethod
    def open(cls, slot_bytes: int, timeout_s: float) -> SharedMemorySum | None:
        """Map a new file with slots of ``slot_bytes`` bytes on every rank, or None on every rank when any rank
        cannot (another machine, no room, switched off). Collective: every rank of the default group calls it."""
        rank, world = dist.get_rank(), dist.get_world_size()
        if not _all_agree(_votes_yes()):  # everyone is here before anything is created
            return None
        size, name, mm = cls.size_for(world, slot_bytes), [""], None
        try:
            if rank == 0:
                _remove_stale()
                name[0] = _create(size)
            dist.broadcast_object_list(name, src=0)
            mm = _map(name[0], size) if name[0] else None
            if mm is not None:
                flags = np.frombuffer(mm, dtype=np.int64, count=world * FLAG_STRIDE)
                flags[rank * FLAG_STRIDE + PID], flags[rank * FLAG_STRIDE + PIDNS] = os.getpid(), _pid_namespace()
                del flags  # a live view would keep mm.close() below from closing the mapping
            ok = _all_agree(mm is not None)
        finally:
            if rank == 0 and name[0]:
                _unlink(name[0])  # every rank has mapped it, given up, or failed: the name is no longer needed
        if not ok:
            if mm is not None:
                mm.close()
            return None
        return cls(mm, rank, world, slot_bytes, timeout_s)

    def fits(self, t: torch.Tensor) -> bool:
        """Whether ``t`` can be summed here (`summable`) and fits a slot; the same answer on every rank."""
        return summable(t) and t.numel() * t.element_size() <= self.slot_bytes

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``t``, written into ``t`` (returned)."""
        if t.numel() == 0:
            return t
        self.seq += 1
        mine, half = self.rank * FLAG_STRIDE, self.seq & 1
        slots = self._slots(t.dtype, t.numel(), half)
        slots[self.rank].copy_(t.reshape(-1))
        self.flags[mine + NUMEL[half]], self.flags[mine + DTYPE[half]] = t.numel(), DTYPES.index(t.dtype)
        self.flags[mine + SEQ] = self.seq  # after the slot and its size: see the module's docstring
        self._wait(self.seq)
        flat = t.view(-1) if t.is_contiguous() else torch.empty_like(slots[0])
        flat.copy_(slots[0])
        for j in range(1, self.world):
            flat.add_(slots[j])
        return t if flat.data_ptr() == t.data_ptr() else t.copy_(flat.view_as(t))

    def _slots(self, dtype: torch.dtype, numel: int, half: int) -> list[torch.Tensor]:
        key = (dtype, numel, half)
        if key not in self._views:
            self._views[key] = [torch.frombuffer(self.mm, dtype=dtype, count=numel,
                                                 offset=self.header + (half * self.world + j) * self.slot_bytes)
                                for j in range(self.world)]
        return self._views[key]

    def _wait(self, seq: int) -> None:
        start, looks, nap, flags = time.monotonic(), 0, SLEEP_S, self.flags
        for j in range(self.world):
            while flags[j * FLAG_STRIDE + SEQ] < seq:
                looks += 1
                if looks & 63:
                    continue
                waited = time.monotonic() - start
                if waited < self.busy_s:
                    continue
                if waited < YIELD_UNTIL_S:
                    os.sched_yield()
                    continue
                self._check_alive(j, seq, waited)
                time.sleep(nap)
                nap = min(2 * nap, MAX_SLEEP_S)
            self._check_same(j, seq)

    def _check_alive(self, j: int, seq: int, waited: float) -> None:
        pid = int(self.flags[j * FLAG_STRIDE + PID])
        gone = self._pids_visible and not _alive(pid)
        if gone or waited > self.timeout_s:
            why = f"its process ({pid}) is gone" if gone else f"none came within {waited:.1f} s (the process " \
                "group's timeout; LAMINA_DIST_TIMEOUT sets lamina's)"
            raise RuntimeError(f"Rank {self.rank} waited for rank {j} to reach gradient sum #{seq}: {why}")

    def _check_same(self, j: int, seq: int) -> None:
        """Rank ``j``'s size and dtype for sum ``seq`` (kept until every rank has read them, as its slot)."""
        numel, dtype = NUMEL[seq & 1], DTYPE[seq & 1]
        mine = int(self.flags[self.rank * FLAG_STRIDE + numel]), DTYPES[self.flags[self.rank * FLAG_STRIDE + dtype]]
        theirs = int(self.flags[j * FLAG_STRIDE + numel]), DTYPES[self.flags[j * FLAG_STRIDE + dtype]]
        if mine != theirs:
            raise RuntimeError(f"Gradient sum #{seq} does not match across ranks: rank {self.rank} has {mine[0]} "
                               f"elements of {mine[1]}, rank {j} {theirs[0]} of {theirs[1]}: the ranks must call the "
                               "same collectives with tensors of the same size (a model that differs between "
                               "processes?)")

    def close(self) -> None:
        """Let the mapping go (it closes when the last view of it does)."""
        self._views.clear()
        self.flags = None
        try:
            self.mm.close()
        except BufferError:
            pass  # a caller still holds a view of a slot: the mapping goes with it


# The default group's sums: (the group, its SharedMemorySum or None, the smallest slot in bytes that could not
# be opened); a new group starts afresh.
_state: dict = {"group": None, "sum": None, "refused": None}
MIN_SLOT = 256 << 10


def shared_sum(t: torch.Tensor, timeout_s: float) -> torch.Tensor | None:
    """``t`` summed over the default group's ranks through shared memory (written into ``t``), or None when this
    tensor is to go through the backend's collective instead: the same answer on every rank. Collective; the
    first call, and a call with a larger tensor than any before, set the file up (`SharedMemorySum.open`).

    Args:
        t: a tensor of the same size and dtype on every rank.
        timeout_s: how long to wait for a peer before raising.
    """
    group = dist.group.WORLD
    if _state["group"] is not group:
        close_shared()
        _state["group"] = group
    if not summable(t) or dist.get_world_size() < 2:
        return None
    current, need = _state["sum"], t.numel() * t.element_size()
    if current is not None and current.fits(t):
        current.timeout_s = timeout_s
        return current.sum(t)
    slot = max(MIN_SLOT, -(-need // PAGE) * PAGE)
    refused = _state["refused"]
    if (refused is not None and slot >= refused) or \
            SharedMemorySum.size_for(dist.get_world_size(), slot) > MAX_BYTES:
        return None
    grown = SharedMemorySum.open(slot, timeout_s)
    if grown is None:
        _state["refused"] = slot
        return None
    if current is not None:
        current.close()
    _state["sum"] = grown
    return grown.sum(t)


def close_shared() -> None:
    """Forget the default group's shared-memory sums (at the group's tear-down)."""
    if _state["sum"] is not None:
        _state["sum"].close()
    _state.update(group=None, sum=None, refused=None)


def _all_agree(yes: bool) -> bool:
    """Whether every rank says yes (a collective)."""
    vote = torch.tensor([int(yes)])
    dist.all_reduce(vote, op=dist.ReduceOp.MIN)
    return bool(vote.item())


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's process of that number
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _pid_namespace() -> int:
    """An identity of this process's PID namespace (0 when unknown): PIDs compare only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _remove_stale() -> None:
    """Remove the names that killed set-ups left in ``/dev/shm``: older than `STALE_S`, their process gone.
    Best effort: whatever else is there, or any error, leaves things as they are."""
    now = time.time()
    try:
        for entry in os.scandir(SHM_DIR):
            found = _NAME.fullmatch(entry.name)
            if found and now - entry.stat().st_mtime > STALE_S and not _alive(int(found.group(1))):
                _unlink(entry.path)
    except Exception:  # noqa: BLE001 - a name this cannot read must not stop the job's set-up
        pass


def _create(size: int) -> str:
    """A new file of ``size`` bytes in ``/dev/shm`` with its memory reserved (no SIGBUS later), or "" when the
    directory lacks the room or refuses."""
    path = os.path.join(SHM_DIR, f"lamina-sum-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return ""
    try:
        os.posix_fallocate(fd, 0, size)
        return path
    except OSError:
        _unlink(path)
        return ""
    finally:
        os.close(fd)


def _map(path: str, size: int) -> mmap.mmap | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None  # another machine, or a directory this rank cannot see
    try:
        return mmap.mmap(fd, size) if os.fstat(fd).st_size == size else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
