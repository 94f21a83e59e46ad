"""Freed memory kept for reuse during the Learner's passes: glibc serves a large tensor from the heap inside the
block and from a fresh mapping outside it, blocks nest and are undone on errors, and `fit`, `validate` and
`get_preds` run inside one unless ``learn.reuse_memory`` is False."""

import ctypes
import threading

import pytest
import torch
from torch import nn

import lamina.cpu_memory as cm
from lamina.callbacks.core import Callback
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat

pytestmark = pytest.mark.skipif(cm.glibc_allocator() is None, reason="the C library is not glibc")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mapped_blocks() -> int:
    """glibc's count of blocks now served by their own mapping (``mallinfo2().hblks``)."""
    libc = cm.glibc_allocator()
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblks


def _large_tensor_is_mapped() -> bool:
    before = _mapped_blocks()
    t = torch.empty(12 * 1024 * 1024)  # 48 MiB: over glibc's largest mapping threshold (32 MiB)
    mapped = _mapped_blocks() > before
    del t
    return mapped


def test_large_blocks_come_from_the_heap_inside_the_block_and_blocks_nest():
    assert _large_tensor_is_mapped()
    with cm.reuse_freed_memory() as on:
        assert on and not _large_tensor_is_mapped()
        with cm.reuse_freed_memory():
            pass
        assert not _large_tensor_is_mapped()  # the inner block's end leaves the outer one in force
    assert _large_tensor_is_mapped() and cm._depth == 0
    with cm.reuse_freed_memory(enabled=False) as on:
        assert not on and _large_tensor_is_mapped()


def test_blocks_in_threads_and_errors_restore_the_defaults():
    inside, release = threading.Event(), threading.Event()

    def other():
        with cm.reuse_freed_memory():
            inside.set()
            release.wait(10)
    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    with pytest.raises(RuntimeError, match="boom"):
        with cm.reuse_freed_memory():
            raise RuntimeError("boom")
    assert cm._depth == 1 and not _large_tensor_is_mapped()  # the other thread's block is still open
    release.set()
    thread.join(10)
    assert cm._depth == 0 and _large_tensor_is_mapped()


class _Depths(Callback):
    def __init__(self):
        self.seen = set()

    def after_batch(self):
        self.seen.add((self.learn.training, cm._depth > 0))


def _learner() -> Learner:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 4, generator=gen), torch.randint(0, 2, (24,), generator=gen)
    dls = DataLoaders.from_tensors(x[:16], y[:16], x[16:], y[16:], bs=8, device="cpu")
    return Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat())


def test_fit_validate_and_get_preds_run_inside_the_block_unless_turned_off():
    learn, depths = _learner(), _Depths()
    learn.add_cb(depths)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
        assert depths.seen == {(True, True), (False, True)} and cm._depth == 0
        depths.seen.clear()
        learn.get_preds()
        learn.validate()
        assert depths.seen == {(False, True)}
        learn.reuse_memory = False
        depths.seen.clear()
        learn.fit(1)
        assert depths.seen == {(True, False), (False, False)}
