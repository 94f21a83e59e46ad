"""The shared-memory gradient sum without a process group: two ranks played by two threads on one mapping, the
file's set-up, and the refusals. The sum inside a real 2-process job is tested in test_distributed.py."""

from __future__ import annotations

import itertools
import mmap
import os
import threading
import time

import pytest
import torch

from lamina import distributed_shm as shm
from lamina.distributed_shm import SharedMemorySum

pytestmark = pytest.mark.skipif(not os.path.isdir(shm.SHM_DIR), reason="needs /dev/shm")


@pytest.fixture
def mapping():
    """A fresh two-rank mapping with 4 KB slots, its name already removed (as after the set-up)."""
    size = SharedMemorySum.size_for(2, 4096)
    path = shm._create(size)
    assert path and os.stat(path).st_size == size and os.stat(path).st_mode & 0o777 == 0o600
    mm = shm._map(path, size)
    shm._unlink(path)
    assert not os.path.exists(path)
    yield mm


def two_ranks(mapping, work) -> list:
    """Run ``work(rank, sums)`` for ranks 0 and 1 at once, each in a thread with its own `SharedMemorySum` on
    ``mapping``; each rank's return value, or the error it raised."""
    results: list = [None, None]

    def run(r: int) -> None:
        try:
            results[r] = work(r, SharedMemorySum(mapping, r, 2, 4096, timeout_s=30))
        except RuntimeError as err:
            results[r] = err
    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    return results


def test_two_ranks_sum_many_times_in_a_row_and_agree_bit_for_bit(mapping):
    inputs = [[torch.randn(1 + (i * 37) % 900, generator=torch.Generator().manual_seed(10 * i + r))
               for i in range(40)] for r in range(2)]

    def work(r, sums):  # rank 1 lags behind now and then, so a half is rewritten while the other is read
        out = []
        for i, t in enumerate(inputs[r]):
            if r == 1 and i % 7 == 0:
                time.sleep(0.01)
            out.append(sums.sum(t.clone()))
        return out
    outputs = two_ranks(mapping, work)
    assert len(outputs[0]) == len(outputs[1]) == 40
    for i in range(40):
        want = inputs[0][i] + inputs[1][i]
        assert torch.equal(outputs[0][i], want) and torch.equal(outputs[1][i], want)


def test_a_sum_writes_into_its_argument_strided_or_float64(mapping):
    def work(r, sums):
        t = torch.arange(12.0, dtype=torch.float64).view(3, 4).t() * (r + 1)  # not contiguous
        return t, sums.sum(t)
    for t, out in two_ranks(mapping, work):
        assert out is t and torch.equal(t, torch.arange(12.0, dtype=torch.float64).view(3, 4).t() * 3)
    alone = SharedMemorySum(mapping, 0, 1, 4096, timeout_s=5)
    assert alone.fits(torch.zeros(512, dtype=torch.float64)) and not alone.fits(torch.zeros(513, dtype=torch.float64))
    assert not alone.fits(torch.zeros(3, dtype=torch.long)) and not alone.fits(torch.zeros(3).to_sparse())


def test_the_flags_of_many_ranks_stay_before_the_slots():
    assert SharedMemorySum.header_for(64) == 4096 and SharedMemorySum.header_for(65) == 8192  # 64 bytes a rank
    assert SharedMemorySum.size_for(65, 1000) == 8192 + 2 * 65 * 1000


def test_a_peer_that_never_comes_raises_naming_it(mapping):
    lonely = SharedMemorySum(mapping, 0, 2, 4096, timeout_s=0.3)
    with pytest.raises(RuntimeError, match="rank 1 to reach gradient sum #1: none came within 0.3 s.*LAMINA_DIST_TIM"):
        lonely.sum(torch.ones(3))


def test_ranks_that_pass_different_sizes_raise_instead_of_summing_stale_data(mapping):
    errors = [str(e) for e in two_ranks(mapping, lambda r, sums: sums.sum(torch.ones(10 + r)))]
    assert all("does not match across ranks" in e for e in errors)
    assert "rank 0 has 10 elements of torch.float32, rank 1 11" in errors[0]


def test_a_peer_whose_process_ended_is_noticed_before_the_timeout(mapping):
    import subprocess
    import sys
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        flags = torch.frombuffer(mapping, dtype=torch.int64, count=2 * shm.FLAG_STRIDE)
        flags[shm.PID], flags[shm.FLAG_STRIDE + shm.PID] = os.getpid(), peer.pid  # as the set-up writes them
        flags[shm.PIDNS] = flags[shm.FLAG_STRIDE + shm.PIDNS] = shm._pid_namespace()
        me = SharedMemorySum(mapping, 0, 2, 4096, timeout_s=60)
        flags[shm.FLAG_STRIDE + shm.PIDNS] += 1  # a peer in another PID namespace: its number means nothing here
        assert me._pids_visible and not SharedMemorySum(mapping, 0, 2, 4096, timeout_s=60)._pids_visible
    finally:
        peer.kill()
        peer.wait()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"rank 1 to reach gradient sum #1: its process \\({peer.pid}\\) is gone"):
        me.sum(torch.ones(3))
    assert time.monotonic() - start < 10


def test_names_left_by_killed_set_ups_are_removed_once_old_and_orphaned():
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    names = {"old_dead": f"lamina-sum-{dead}-{'a' * 16}", "new_dead": f"lamina-sum-{dead}-{'b' * 16}",
             "old_alive": f"lamina-sum-{os.getpid()}-{'c' * 16}",  # below: names of no set-up, left alone
             "old_odd": "lamina-sum-\u00b2-x", "old_huge": f"lamina-sum-99999999999999999999-{'d' * 16}"}
    paths = {k: os.path.join(shm.SHM_DIR, v) for k, v in names.items()}
    try:
        for key, path in paths.items():
            open(path, "wb").close()
            if key.startswith("old"):
                os.utime(path, (time.time() - 2 * shm.STALE_S,) * 2)
        shm._remove_stale()
        assert [os.path.exists(paths[k]) for k in names] == [False, True, True, True, True]
    finally:
        for path in paths.values():
            shm._unlink(path)


def test_a_missing_or_resized_file_is_refused_not_mapped(tmp_path):
    assert shm._map(os.path.join(shm.SHM_DIR, "lamina-sum-no-such-file"), 4096) is None  # another machine's
    path = shm._create(8192)
    try:
        assert shm._map(path, 4096) is None  # not the size the job agreed on
        assert isinstance(shm._map(path, 8192), mmap.mmap)
    finally:
        shm._unlink(path)


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_lamina_dist_shm_0_votes_no(monkeypatch, value):
    monkeypatch.setenv("LAMINA_DIST_SHM", value)
    assert not shm._votes_yes()


def test_without_a_process_group_of_two_nothing_is_shared():
    import datetime
    store = torch.distributed.HashStore()
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1,
                                         timeout=datetime.timedelta(seconds=30))
    try:
        assert shm.shared_sum(torch.ones(3), 5) is None  # one rank: gloo's own (local) collective
    finally:
        shm.close_shared()
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("cpus, watches", [(2, True), (1, False)])
def test_a_waiting_rank_watches_before_it_yields_only_when_every_rank_can_have_a_cpu(mapping, monkeypatch, cpus,
                                                                                   watches):
    monkeypatch.setattr(shm, "usable_cpus", lambda: cpus)
    waiting, peer = (SharedMemorySum(mapping, r, 2, 4096, timeout_s=30) for r in range(2))
    assert waiting.busy_s == (shm.BUSY_S if watches else 0.0)
    ticks = itertools.count()  # a clock that moves 0.1 ms at each reading: the phases no longer depend on the host
    monkeypatch.setattr(shm.time, "monotonic", lambda: next(ticks) * 1e-4)
    first_yield: list = []
    monkeypatch.setattr(shm.os, "sched_yield", lambda: first_yield or first_yield.append(next(ticks) * 1e-4))
    late = threading.Thread(target=lambda: (time.sleep(0.05), peer.sum(torch.ones(3))))
    late.start()
    out = waiting.sum(torch.ones(3))
    late.join()
    assert out.tolist() == [2.0, 2.0, 2.0] and first_yield
    assert (first_yield[0] >= shm.BUSY_S) == watches  # watching: no yield in the first 1 ms of the wait


def test_usable_cpus_counts_the_cpus_this_process_may_run_on():
    assert 1 <= shm.usable_cpus() <= (os.cpu_count() or 1)
