"""Reusing freed memory for large CPU tensors during training, instead of getting fresh pages from the system.

glibc's ``malloc`` serves a request above its mmap threshold with a fresh ``mmap`` and gives it back with
``munmap`` when freed. The threshold starts at 128 KiB and rises to the size of each mapped block freed, up to
32 MiB: above that, every block is always mapped afresh. The first write to each 4 KiB page of a fresh mapping
costs a page fault and the zeroing of the page. In a training step that makes and frees the same large tensors
every batch, the system work repeats every time: for a resnet18 U-Net at 96×128, batch 8, whose full-resolution
activations are 39 MB each, a ReLU of one took 24 ms against 4.4 ms with the memory reused, an addition 24
against 3.8 ms, a ``torch.cat`` 53 against 7 ms, a 99-channel 3×3 convolution 236 against 157 ms (2-core AVX2
virtual machine). Allocators such as jemalloc and tcmalloc keep freed memory for reuse; PyTorch's CPU
performance guides recommend preloading them for this reason.

`reuse_freed_memory` does the same with glibc's own allocator, for the duration of a block: ``mallopt`` sets
``M_MMAP_MAX`` to 0 (large blocks come from the heap, whose freed blocks are reused) and ``M_TRIM_THRESHOLD`` to
`KEEP_BYTES` (freed memory at the top of the heap is kept). When the last open block ends, mapping comes back
for blocks over 32 MiB (``M_MMAP_THRESHOLD``) and trimming for free memory over 64 MiB at the top of the heap:
where glibc's own adjustment ends once a process has freed a 32 MiB block (any ``mallopt`` call ends that
adjustment, so it cannot be handed back). If the heap grew by more than `TRIM_AFTER_GROWTH` during the block,
``malloc_trim(0)`` then returns its free pages to the system (a call that grew nothing, such as one `predict`,
pays no trim).

Costs: memory freed during the block stays with the process until it is reused or trimmed, and the heap can
fragment: a fresh process's peak resident memory for 2 epochs of the U-Net above was 1.94 GB against 1.70 GB
without it (1.13 GB against 1.31 GB after the fit, with the trim), for a fit of 28.1 s against 32.4 s (medians
of 3 alternating fresh processes each, ``python benchmarks/memory_reuse.py``); a large tensor made inside a
block and freed after it goes back to the system only at the next trim. Threads other than the main one gain
little: glibc's per-thread arenas map requests over 64 MiB whatever ``M_MMAP_MAX`` says. Loader workers forked
during a block inherit the settings for their lifetime.

The Learner's `fit`, `validate` and `get_preds` run inside it (``learn.reuse_memory = False`` turns that off; the
environment variable ``LAMINA_REUSE_MEMORY=0`` turns it off everywhere). Loader iterations outside them do not:
the chapter-1 pets loader (2 workers, bs 64, float batches of 38.5 MB) delivered 283 images/s with it and 291
without, medians of 3 fresh processes each (``python benchmarks/memory_reuse.py``), its time going to decoding
in the workers. It steps aside where the user configured the allocator (``MALLOC_*_`` variables,
``GLIBC_TUNABLES`` with ``glibc.malloc``) or preloaded another one (jemalloc, tcmalloc, mimalloc in
``LD_PRELOAD``), and off Linux with glibc (macOS, Windows, musl), where it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from types import TracebackType
from typing import Any

__all__ = ["reuse_freed_memory", "glibc_allocator", "KEEP_BYTES", "TRIM_AFTER_GROWTH"]

KEEP_BYTES = 1 << 30
"""Freed memory at the top of the heap up to this size stays with the process during a block."""

TRIM_AFTER_GROWTH = 64 << 20
"""When the heap grew by more than this during a block, its end returns the free pages (``malloc_trim``)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt's parameter numbers (malloc.h)
_AFTER = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")  # preloaded in place of glibc's malloc
_depth = 0  # open blocks, all threads
_heap_at_start = 0
_lock = threading.Lock()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.lru_cache(maxsize=1)
def glibc_allocator() -> Any:
    """The C library when it is glibc (with ``mallopt``, ``malloc_trim`` and ``mallinfo2``, glibc 2.33 or later),
    serves ``malloc`` and the user has not configured it through the environment, else None."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    if not sys.platform.startswith("linux") or any(os.environ.get(v) for v in _USER_SETTINGS) \
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(a in preloaded for a in _OTHER_ALLOCATORS):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc (musl has none of these), or a glibc before 2.33
        return None
    return libc


def _heap_bytes(libc: Any) -> int:
    return libc.mallinfo2().arena  # (counts free chunks: no system call)


class reuse_freed_memory:
    """Inside this block, freed memory is kept by the process for reuse (see the module's docstring); blocks nest
    and may be open in several threads at once. ``with`` gives whether the setting is in force (not when
    ``enabled`` is False, ``LAMINA_REUSE_MEMORY`` is ``0``, the allocator is not glibc's or the user configured
    it, or ``mallopt`` refused).

    Example:
        >>> with reuse_freed_memory():
        ...     for xb, yb in dl:
        ...         train_step(xb, yb)  # large activations reuse the memory the previous step freed
    """

    def __init__(self, enabled: bool = True) -> None:
        self.libc = glibc_allocator() if enabled and os.environ.get("LAMINA_REUSE_MEMORY", "1") != "0" else None
        self.entered = False

    def __enter__(self) -> bool:
        global _depth, _heap_at_start
        if self.libc is None:
            return False
        with _lock:  # (the count and the settings change together, so an interrupt leaves both or neither)
            if _depth == 0:
                if not (self.libc.mallopt(_M_MMAP_MAX, 0) and self.libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)):
                    self._restore()
                    return False
                _heap_at_start = _heap_bytes(self.libc)
            _depth += 1
            self.entered = True
        return True

    def __exit__(self, kind: type | None, error: BaseException | None, tb: TracebackType | None) -> None:
        global _depth
        if not self.entered:
            return
        with _lock:
            self.entered = False
            _depth -= 1
            if _depth == 0:
                self._restore()
                if _heap_bytes(self.libc) - _heap_at_start > TRIM_AFTER_GROWTH:
                    self.libc.malloc_trim(0)

    def _restore(self) -> None:
        for param, value in _AFTER:
            self.libc.mallopt(param, value)
