"""Freed memory kept for reuse during the Learner's passes: glibc serves a large tensor from the heap inside the
block and from a fresh mapping outside it, blocks nest (across threads) and are undone on errors, the heap is
trimmed only after it grew, and `fit`, `validate` and `get_preds` run inside a block unless turned off.

What glibc does with a block depends on the free blocks its heap already holds, which earlier tests leave behind,
so those checks run in a fresh interpreter."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import lamina.cpu_memory as cm
from lamina.callbacks.core import Callback
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat

pytestmark = pytest.mark.skipif(cm.glibc_allocator() is None, reason="the C library is not glibc 2.33+")

_PROBE = textwrap.dedent("""
    import json, threading
    import torch
    import lamina.cpu_memory as cm

    libc = cm.glibc_allocator()

    def mapped():  # whether a new 48 MiB tensor (over glibc's largest threshold, 32 MiB) gets its own mapping
        before = libc.mallinfo2().hblks
        t = torch.empty(12 << 20)
        now = libc.mallinfo2().hblks
        del t
        return now > before

    seen = {"before": mapped()}
    with cm.reuse_freed_memory() as on:
        seen["on"], seen["inside"] = on, mapped()
        with cm.reuse_freed_memory():
            pass
        seen["after_inner"] = mapped()
    inside, release = threading.Event(), threading.Event()

    def other():
        with cm.reuse_freed_memory():
            inside.set()
            release.wait(10)
    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    try:
        with cm.reuse_freed_memory():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    seen["other_thread_open"] = (cm._depth, mapped())
    release.set()
    thread.join(10)
    seen["depth_after"] = cm._depth
    before = libc.mallinfo2().hblks
    t = torch.empty(80 << 20)  # 320 MiB, never touched: more than the blocks freed above, so mapped
    seen["after"] = libc.mallinfo2().hblks > before
    del t
    print(json.dumps(seen))
""")


def test_large_blocks_come_from_the_heap_inside_blocks_that_nest_across_threads():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if not seen["before"]:
        pytest.skip("another allocator serves malloc (a preloaded jemalloc or tcmalloc)")
    assert seen["on"] and not seen["inside"]
    assert not seen["after_inner"]  # the inner block's end leaves the outer one in force
    assert seen["other_thread_open"] == [1, False]  # an error closed this block; the other thread's is still open
    assert seen["depth_after"] == 0 and seen["after"]  # mapping is back after the last block


def test_the_heap_is_trimmed_only_after_it_grew(monkeypatch):
    libc = cm.glibc_allocator()
    trims, sizes = [], iter([0, 100 << 20, 0, 1 << 20])  # (heap at a block's start, at its end) twice
    real_trim = libc.malloc_trim
    monkeypatch.setattr(libc, "malloc_trim", lambda pad: trims.append(pad) or real_trim(pad))
    monkeypatch.setattr(cm, "_heap_bytes", lambda lib: next(sizes))
    with cm.reuse_freed_memory():
        pass
    assert trims == [0]  # grew by 100 MiB: over TRIM_AFTER_GROWTH
    with cm.reuse_freed_memory():
        with cm.reuse_freed_memory():  # (nested: no reading of the heap, no trim)
            pass
    assert trims == [0]  # grew by 1 MiB: no trim (a `predict` pays none)
    monkeypatch.setenv("LAMINA_REUSE_MEMORY", "0")
    with cm.reuse_freed_memory() as on:
        assert not on and cm._depth == 0


class _Depths(Callback):
    def __init__(self):
        self.seen = set()

    def after_batch(self):
        self.seen.add((self.learn.training, cm._depth > 0))

    def after_epoch(self):
        if self.learn.reuse_memory:
            self.learn.get_preds()  # a nested call: the fit's block stays open after it
            assert cm._depth > 0


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


@pytest.mark.parametrize("name,value", [("MALLOC_MMAP_THRESHOLD_", "65536"),
                                        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
                                        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")])
def test_an_allocator_the_user_configured_or_preloaded_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    cm.glibc_allocator.cache_clear()
    try:
        with cm.reuse_freed_memory() as on:
            assert not on and cm._depth == 0
    finally:
        monkeypatch.undo()
        cm.glibc_allocator.cache_clear()
    assert cm.glibc_allocator() is not None
