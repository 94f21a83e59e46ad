"""Data-parallel training: loader shares, process-group helpers, and real jobs of two processes launched with
torchrun on the CPU (gloo). Each launch costs several seconds, so one launch checks many things."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lamina.callbacks.core import Callback
from lamina.callbacks.distributed import DistributedTrainer
from lamina.data.dataloader import DataLoader, TensorDataLoader
from lamina.data.distributed import DistributedDL, eval_bounds, shard_indices
from lamina.distributed import (LossRider, broadcast_tensors, default_backend, dist_timeout, is_distributed,
                               setup_distrib, teardown_distrib)
from lamina.metrics import AvgMetric, Metric, accuracy

from .distributed_worker import GradientAccumulation, collectives_per_step, mlp_learner

ROOT = Path(__file__).parent.parent
WORKER = Path(__file__).parent / "distributed_worker.py"
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LAMINA_DIST_BACKEND")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_listener(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Return once something accepts connections on 127.0.0.1:``port`` (``proc`` must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port} within {timeout} s")


def job_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", LAMINA_DEVICE="cpu", LAMINA_DIST_TIMEOUT="60")
    return env


def torchrun(args: list, scenario: str, out: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, str(WORKER), scenario, str(out)]
    return subprocess.run(cmd, env=job_env(), capture_output=True, text=True, timeout=timeout, check=False)


def launch(scenario: str, out: Path) -> list[dict]:
    """Run ``scenario`` on two processes of one machine; return what each rank wrote."""
    done = torchrun(["--standalone", "--nproc_per_node=2"], scenario, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return [torch.load(out / f"{scenario}_{rank}.pt", weights_only=True) for rank in range(2)]


def assert_same_weights(got: dict, want: dict, atol: float = 1e-5) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=atol), (k, (got[k] - want[k]).abs().max())


def assert_same_table(got: list, want: list, abs_tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    for row_got, row_want in zip(got, want):
        assert row_got == pytest.approx(row_want, abs=abs_tol)


# --- shares of an epoch (no process group needed) ---------------------------------------------------------


def test_training_shares_are_disjoint_strided_parts_of_one_padded_permutation():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    parts = [shard_indices(order, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded from 10 to 12 by repeating the first two
    joined = torch.stack(parts, 1).reshape(-1)  # batch k of all ranks = batch k of one process
    assert torch.equal(joined[:10], order) and torch.equal(joined[10:], order[:2])


def test_evaluation_shares_cover_each_item_once_in_order():
    for n, ranks in [(101, 2), (7, 3), (3, 3), (64, 4)]:
        bounds = [eval_bounds(n, r, ranks) for r in range(ranks)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_distributed_dl_gives_each_rank_its_share_of_the_single_process_order():
    x = torch.arange(20).float().unsqueeze(1)
    dl = TensorDataLoader((x, x.long().squeeze(1)), bs=4, shuffle=True, drop_last=True, seed=5, device="cpu")
    single = torch.cat([b[1] for b in dl.new(bs=8)])  # one process, twice the batch, same seed and epoch
    shares = [DistributedDL(dl.new(), even=True, rank=r, n_ranks=2) for r in range(2)]
    batches = [[b[1] for b in share] for share in shares]
    assert len(shares[0]) == len(batches[0]) == 2
    joined = torch.cat([torch.stack([batches[0][k], batches[1][k]], 1).reshape(-1) for k in range(2)])
    assert torch.equal(joined, single)
    again = [b[1] for b in shares[0]]  # the next epoch draws another order, the wrapped loader's epoch counter moves
    assert shares[0].dl.epochs_seen == 2 and not all(torch.equal(a, b) for a, b in zip(again, batches[0]))


def test_distributed_dl_shards_a_dataset_loader_for_exact_evaluation():
    data = [(torch.tensor([float(i)]), i) for i in range(11)]
    dl = DataLoader(data, bs=4, device="cpu", split_idx=1)
    seen = [torch.cat([b[1] for b in DistributedDL(dl, even=False, rank=r, n_ranks=2)]) for r in range(2)]
    assert [len(s) for s in seen] == [6, 5]
    assert torch.cat(seen).tolist() == list(range(11))


def test_distributed_dl_names_loaders_it_cannot_shard():
    with pytest.raises(TypeError, match="DataLoader and TensorDataLoader"):
        DistributedDL([1, 2, 3], rank=0, n_ranks=2)


# --- helpers and errors ------------------------------------------------------------------------------------


def test_backend_is_chosen_from_the_device_and_the_override_is_checked(monkeypatch):
    monkeypatch.delenv("LAMINA_DIST_BACKEND", raising=False)
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    assert default_backend() == "gloo"
    monkeypatch.setenv("LAMINA_DIST_BACKEND", "GLOO")
    assert default_backend() == "gloo"
    monkeypatch.setenv("LAMINA_DIST_BACKEND", "nccl2")
    with pytest.raises(ValueError, match="LAMINA_DIST_BACKEND must be one of"):
        default_backend()
    monkeypatch.setenv("LAMINA_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LAMINA_DIST_TIMEOUT"):
        dist_timeout()


def test_setup_without_a_launcher_says_how_to_launch(monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not is_distributed()
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        setup_distrib()


def test_a_metric_without_sync_refuses_to_report_one_share():
    class Custom(Metric):
        pass
    with pytest.raises(NotImplementedError, match="implement sync"):
        Custom().sync()
    metric = AvgMetric(accuracy)
    metric.total, metric.count = torch.tensor(3.0), 4
    metric.sync()  # one process: the sums stay as they are
    assert metric.value == pytest.approx(0.75)


def test_a_metric_without_sync_is_refused_before_training(monkeypatch):
    class Custom(Metric):
        value = 0.0
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    learn = mlp_learner(bs=64)
    learn.metrics = [Custom()]
    seen = []
    learn.model.register_forward_hook(lambda *a: seen.append(1))
    with pytest.raises(NotImplementedError, match=r"\['Custom'\] do not implement sync"):
        learn.fit(1, cbs=DistributedTrainer())
    assert not seen  # refused before the first batch, not after an epoch


def test_distrib_ctx_without_a_launcher_trains_as_one_process(monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    learn = mlp_learner(bs=64)
    with learn.distrib_ctx():
        assert not any(isinstance(cb, DistributedTrainer) for cb in learn.cbs)
        learn.fit(1, 1e-2)
    assert learn.wrapped_model is None


def test_sync_bn_on_cpu_is_refused_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    learn = mlp_learner(bs=64)
    with pytest.raises(ValueError, match="sync_bn=True needs CUDA"):
        learn.fit(1, cbs=DistributedTrainer(sync_bn=True))


def test_one_process_group_of_size_one_trains_through_ddp(monkeypatch):
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    for name, value in dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    reference = mlp_learner(bs=64)
    reference.fit(1, 1e-2)
    learn, seen = mlp_learner(bs=64), []
    probe = Callback(before_batch=lambda learn: seen.append((learn.training, type(learn.wrapped_model).__name__)))
    try:
        learn.to_distributed()
        learn.fit(1, 1e-2, cbs=probe)
        preds, targs = learn.get_preds()
    finally:
        learn.detach_distributed()
        teardown_distrib()
    assert {name for training, name in seen if training} == {"DistributedDataParallel"}
    assert type(learn.model).__name__ == "TinyMLP" and learn.wrapped_model is None  # users see the plain model
    assert_same_weights(learn.model.state_dict(), reference.model.state_dict(), atol=1e-6)
    assert_same_table(learn.recorder.values, reference.recorder.values, abs_tol=1e-6)
    assert torch.allclose(preds, reference.get_preds()[0], atol=1e-6) and len(targs) == 101


# 0: the loss takes the separate path (without a collective in a group of one; the 2-process job counts it)
@pytest.mark.parametrize("max_merge", [LossRider.max_merge, 0])
def test_a_ddp_step_runs_one_collective_and_no_buffer_broadcast(monkeypatch, max_merge):
    monkeypatch.setenv("LAMINA_DEVICE", "cpu")
    monkeypatch.setattr(LossRider, "max_merge", max_merge)
    for name, value in dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    reference = mlp_learner(bs=64, batch_norm=True)
    reference.fit(1, 1e-2)
    learn = mlp_learner(bs=64, batch_norm=True)
    try:
        learn.to_distributed()
        steps = collectives_per_step(learn, lambda probe: learn.fit(1, 1e-2, cbs=probe))
    finally:
        learn.detach_distributed()
        teardown_distrib()
    assert steps == [1] * 4  # 256 rows at bs 64: the gradients' sum (loss included); DDP's broadcast would add one
    assert_same_weights(learn.model.state_dict(), reference.model.state_dict(), atol=1e-6)  # buffers included
    assert_same_table(learn.recorder.values, reference.recorder.values, abs_tol=1e-6)


def test_broadcast_tensors_without_a_group_leaves_tensors_alone():
    t = torch.arange(3.0)
    broadcast_tensors([t, torch.zeros(2, dtype=torch.long)])
    assert torch.equal(t, torch.arange(3.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_one_gpu_trains_with_an_nccl_process_group(monkeypatch):
    monkeypatch.delenv("LAMINA_DEVICE", raising=False)
    monkeypatch.delenv("LAMINA_DIST_BACKEND", raising=False)
    for name, value in dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    assert default_backend() == "nccl"
    learn = mlp_learner(bs=64)
    learn.dls.to("cuda")
    try:
        learn.to_distributed()
        learn.fit(1, 1e-2)
        preds, _ = learn.get_preds()
        backend = torch.distributed.get_backend()
    finally:
        learn.detach_distributed()
        teardown_distrib()
    assert backend == "nccl" and len(preds) == 101
    assert next(learn.model.parameters()).device.type == "cuda" and learn.wrapped_model is None


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread states from /proc (Linux)")
def test_teardown_waits_for_running_threads_but_not_forever():
    """The tear-down at exit waits while another thread still runs (a collective's worker releasing its
    tensors), so the interpreter does not shut down under it; a thread that never stops delays it only briefly."""
    import threading

    from lamina.distributed import _wait_for_threads_to_idle

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    busy = threading.Thread(target=spin, args=(0.3,))
    busy.start()
    _wait_for_threads_to_idle(limit_s=30)
    assert not busy.is_alive()
    stuck = threading.Thread(target=spin, args=(3,))
    stuck.start()
    _wait_for_threads_to_idle(limit_s=0.1)
    assert stuck.is_alive()
    stuck.join()


# --- real jobs of two processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def core_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("core")
    return launch("core", out)


def test_two_processes_at_bs32_end_where_one_process_at_bs64_does(core_job):
    single = mlp_learner(bs=64)
    single.fit(1, 1e-2)
    for rank in core_job:
        assert rank["model_is_plain"] == "TinyMLP"
        assert_same_weights(rank["fit_weights"], single.model.state_dict())
        assert_same_table(rank["fit_values"], single.recorder.values)


def test_batch_norm_buffers_end_each_pass_as_rank_0s(core_job):
    (buffers0, valid0), (buffers1, valid1) = (rank["bn"] for rank in core_job)
    assert buffers0.keys() == buffers1.keys() and any("running_mean" in k for k in buffers0)
    assert all(torch.equal(buffers0[k], buffers1[k]) for k in buffers0)  # DDP's per-forward broadcast left
    assert valid0 == pytest.approx(valid1, abs=1e-6)                     # rank 1 with its own last update
    cut0, cut1 = (rank["cut_bn"] for rank in core_job)  # a pass cancelled after its first batch: synced too
    assert all(torch.equal(cut0[k], cut1[k]) for k in cut0)
    for rank, job in enumerate(core_job):  # a buffer DDP is told to ignore stays each rank's own
        assert torch.equal(job["local"], torch.full((3,), float(rank)))


def test_a_two_process_step_waits_for_one_collective_or_two_with_the_loss_alone(core_job):
    for job in core_job:
        merged, alone = job["steps"]
        assert merged == [1] * 4 and alone == [2] * 4  # 256 rows, 2 ranks at bs 32


def test_ranks_of_one_machine_sum_through_shared_memory(core_job):
    ranks = [job["shm"] for job in core_job]
    assert all(r["used_by_fits"] for r in ranks)  # the fits above went this way
    assert all(r["pids_visible"] for r in ranks)  # one machine, one PID namespace: a dead peer is noticed
    for pid in (r["pid"] for r in ranks):  # the file's name is gone once every rank mapped it
        assert not [f for r in ranks for f in r["left_in_dev_shm"] if f"-{pid}-" in f]
    for key in ("torch.float32_5", "torch.float64_3000", "torch.float32_300000", "torch.float32_7"):
        (mine0, sum0), (mine1, sum1) = ranks[0][key], ranks[1][key]
        assert sum0.dtype == mine0.dtype and torch.equal(sum0, mine0 + mine1) and torch.equal(sum0, sum1)
    assert ranks[0]["slot_bytes"] >= 300_000 * 4  # grown for the larger tensor, then used for the smaller
    want = torch.arange(12.0).view(3, 4).t() * 3
    assert all(torch.equal(r["strided"], want) for r in ranks)
    assert all(r["too_big"] and r["refused"] for r in ranks)
    message, waited = ranks[0]["timeout"]
    assert "rank 1" in message and "LAMINA_DIST_TIMEOUT" in message and 0.5 <= waited < 10


def test_two_processes_validate_exactly_as_one(core_job):
    single = mlp_learner(bs=64)
    single.model.load_state_dict(core_job[0]["fit_weights"])
    want = single.validate()
    preds, targs = single.get_preds()
    for rank in core_job:
        assert rank["validate"] == pytest.approx(want, abs=1e-6)  # loss, accuracy and RocAuc, 101 items
        assert torch.allclose(rank["preds"], preds, atol=1e-6) and torch.equal(rank["targs"], targs)


def test_lr_find_agrees_on_every_rank(core_job):
    assert core_job[0]["lr_find"] == core_job[1]["lr_find"]


def test_gradient_accumulation_steps_as_one_process_with_the_same_samples_per_step(core_job):
    single = mlp_learner(bs=32)  # two ranks at bs 16 cover the samples of one batch of 32
    single.fit(1, 1e-2, cbs=GradientAccumulation(n_acc=64))
    for rank in core_job:
        assert_same_weights(rank["acc_weights"], single.model.state_dict())


def test_an_interrupted_two_process_fit_resumes_exactly(core_job):
    for rank in core_job:
        assert_same_weights(rank["resumed_weights"], rank["full_weights"], atol=1e-6)
        assert_same_table(rank["resumed_values"], rank["full_values"][2:], abs_tol=1e-6)


@pytest.mark.slow
def test_the_four_chapter_one_workloads_train_on_two_processes_and_export_on_rank0(tmp_path):
    ranks = launch("apps", tmp_path)
    assert sorted(ranks[0]) == ["adult", "camvid", "collab", "pets"]
    for name, result in ranks[0].items():
        assert Path(result["export"]) == tmp_path / f"{name}.pkl"
        assert ranks[1][name]["export"] == "None"  # only rank 0 writes
        assert ranks[0][name]["values"] == ranks[1][name]["values"]  # one table: the metrics are combined
        assert not ranks[0][name]["shm"] and not ranks[1][name]["shm"]  # rank 1 said no: gloo on both
    fresh = subprocess.run([sys.executable, "-c", _PREDICT, str(tmp_path)], env=job_env(), capture_output=True,
                           text=True, timeout=180, check=False)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    for name, result in ranks[0].items():
        loaded = torch.load(tmp_path / f"{name}_pred.pt", weights_only=True)
        for got, want in zip(loaded, result["predict"], strict=True):
            assert torch.allclose(torch.as_tensor(got).float(), torch.as_tensor(want).float(), atol=1e-5), name


# a fresh single process: load each export and predict the item the training job predicted
_PREDICT = """
import sys
from pathlib import Path
import torch
from lamina.export import load_learner
from tests.distributed_apps import build_all
out = Path(sys.argv[1])
for name, _, item in build_all(out / "data_0"):
    torch.save(load_learner(out / f"{name}.pkl").predict(item)[1:], out / f"{name}_pred.pt")
"""


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_job_with_its_error(tmp_path):
    start = time.monotonic()
    done = torchrun(["--standalone", "--nproc_per_node=2"], "crash", tmp_path, timeout=180)
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stdout + done.stderr
    assert time.monotonic() - start < 120  # not the collective timeout's wait, and not a hang


@pytest.mark.slow
def test_two_nodes_through_the_c10d_rendezvous_train_as_one_process(tmp_path):
    port = free_port()
    args = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
            "--rdzv_id=lamina-test"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, str(WORKER), "nodes", str(tmp_path)]
    # node 0 first, and node 1 once node 0's rendezvous store listens: two agents that start together on one
    # host can both try to host the store on the port
    nodes = [subprocess.Popen(cmd, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    _wait_for_listener(port, nodes[0])
    nodes.append(subprocess.Popen(cmd, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [node.communicate(timeout=180)[0] for node in nodes]
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
        raise AssertionError("the two nodes did not finish in 180 s:\n" +
                             "\n".join(node.communicate()[0][-3000:] for node in nodes)) from None
    assert all(node.returncode == 0 for node in nodes), "\n".join(log[-3000:] for log in logs)
    single = mlp_learner(bs=64)
    single.fit(1, 1e-2)
    for rank in range(2):
        got = torch.load(tmp_path / f"nodes_{rank}.pt", weights_only=True)
        assert got["world"] == 2
        assert_same_weights(got["fit_weights"], single.model.state_dict())
