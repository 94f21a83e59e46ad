"""The script that tests/test_distributed.py launches with torchrun: ``python -m torch.distributed.run
--nproc_per_node=2 tests/distributed_worker.py SCENARIO OUT``. Each rank writes what it saw to OUT/<scenario>_<rank>.pt,
and the test compares that with one process's run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from torch.nn.parallel import DistributedDataParallel

from lamina.callbacks.core import Callback, CancelFitException, CancelTrainException
from lamina.callbacks.training import GradientAccumulation
from lamina.core import set_seed
from lamina.distributed import LossRider
from lamina.distributed_shm import SharedMemorySum
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import RocAuc, accuracy
from lamina.testing import tiny_mlp

N_TRAIN, N_VALID, N_IN, N_CLASSES = 256, 101, 4, 3  # 101 validation items: not a multiple of 2


def mlp_data(bs: int, path: str | Path = ".") -> DataLoaders:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, N_IN, generator=gen)
    w = torch.randn(N_IN, N_CLASSES, generator=gen)
    y = (x @ w + 0.5 * torch.randn(len(x), N_CLASSES, generator=gen)).argmax(1)
    dls = DataLoaders.from_tensors(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], bs=bs, val_bs=16, device="cpu",
                                   path=str(path), vocab=[f"c{i}" for i in range(N_CLASSES)],
                                   loss_func=CrossEntropyLossFlat())
    dls.train.seed, dls.valid.seed = 123, 7
    return dls


def mlp_learner(bs: int, path: str | Path = ".", dropout: float = 0.0, batch_norm: bool = False,
                **kwargs) -> Learner:
    """The same weights in every process: the model is built after the same seed. Without batch norm unless
    asked, as its statistics over a process's 32 rows differ from those over 64 (SyncBatchNorm, on CUDA, would
    match them)."""
    set_seed(0)
    model = tiny_mlp(N_IN, N_CLASSES, hidden=8)
    if not batch_norm:
        model.body[1] = torch.nn.Dropout(dropout) if dropout else torch.nn.Identity()
    learn = Learner(mlp_data(bs, path), model, metrics=[accuracy, RocAuc()], **kwargs)
    learn.logger = lambda *a: None
    return learn


def weights(learn: Learner) -> dict:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


class Crash(Callback):
    def __init__(self, at_epoch: int):
        super().__init__()
        self.at_epoch = at_epoch

    def before_epoch(self):
        if self.learn.epoch == self.at_epoch:
            raise CancelFitException()


def core(out: Path) -> dict:
    """Equivalence, exact metrics, gathered predictions, lr_find, gradient accumulation, exact resume."""
    res, rank = {}, int(os.environ["RANK"])
    learn = mlp_learner(bs=32)  # under torchrun a fit is data-parallel without any change
    learn.fit(1, 1e-2)
    res["fit_weights"], res["fit_values"] = weights(learn), learn.recorder.values
    res["model_is_plain"] = type(learn.model).__name__
    with learn.distrib_ctx():
        res["validate"] = learn.validate()
        res["preds"], res["targs"] = learn.get_preds()
    res["lr_find"] = float(learn.lr_find(num_it=12, show_plot=False).valley)
    res.update(buffers_and_collectives(rank))
    acc = mlp_learner(bs=16)
    acc.fit(1, 1e-2, cbs=GradientAccumulation(n_acc=32))
    res["acc_weights"] = weights(acc)
    full = mlp_learner(bs=32, path=out / "a", dropout=0.3)
    torch.manual_seed(100 + rank)  # each rank its own dropout masks, which a resumed fit must continue
    full.fit_one_cycle(3, 1e-2)
    res["full_weights"], res["full_values"] = weights(full), full.recorder.values
    from lamina.callbacks.tracker import SaveModelCallback
    crashed = mlp_learner(bs=32, path=out / "b", dropout=0.3)
    torch.manual_seed(100 + rank)
    crashed.fit_one_cycle(3, 1e-2, cbs=[SaveModelCallback(every_epoch=True, with_opt=True), Crash(at_epoch=2)])
    resumed = mlp_learner(bs=32, path=out / "b", dropout=0.3)
    resumed.load("model_1", resume=True)
    resumed.fit_one_cycle(3, 1e-2, start_epoch=resumed.epochs_done)
    res["resumed_weights"], res["resumed_values"] = weights(resumed), resumed.recorder.values
    res["shm"] = shared_sums(rank)  # last: it ends with rank 0 timing out on a sum rank 1 skips
    return res


def shared_sums(rank: int) -> dict:
    """The shared-memory sums directly: dtypes, sizes (the file grows), a strided tensor, what is left in
    /dev/shm, a rank refusing, and a peer that never comes."""
    from lamina import distributed_shm as shm
    res = {"used_by_fits": shm._state["sum"] is not None, "pid": os.getpid(),
           "left_in_dev_shm": sorted(f for f in os.listdir(shm.SHM_DIR) if f.startswith("lamina-sum-"))}
    gen = torch.Generator().manual_seed(rank)
    for dtype, numel in [(torch.float32, 5), (torch.float64, 3000), (torch.float32, 300_000), (torch.float32, 7)]:
        t = torch.randn(numel, generator=gen, dtype=dtype)
        res[f"{dtype}_{numel}"] = (t.clone(), shm.shared_sum(t, 30).clone())
    strided = torch.arange(12.0).view(3, 4).t() * (rank + 1)  # not contiguous
    res["strided"] = shm.shared_sum(strided, 30).clone()
    res["slot_bytes"], res["pids_visible"] = shm._state["sum"].slot_bytes, shm._state["sum"]._pids_visible
    big = torch.zeros(1).expand(shm.MAX_BYTES // 4)  # two halves over two ranks would not fit: gloo's
    res["too_big"] = shm.shared_sum(big, 30) is None
    if rank == 1:
        os.environ["LAMINA_DIST_SHM"] = "0"
    res["refused"] = shm.SharedMemorySum.open(4096, 30) is None  # one rank says no: nobody uses it
    os.environ.pop("LAMINA_DIST_SHM", None)
    if rank == 0:
        start = time.monotonic()
        try:
            shm.shared_sum(torch.ones(3), 0.5)
        except RuntimeError as err:
            res["timeout"] = (str(err), time.monotonic() - start)
    return res


class CancelFirstTrainBatch(Callback):
    order = -5  # before DistributedTrainer's after_batch

    def after_batch(self):
        if self.learn.training:
            raise CancelTrainException()


def collectives_per_step(learn: Learner, fit: Any) -> list[int]:
    """The number of collectives each training step of ``fit(probe)`` calls (DDP's per-forward buffer broadcast
    is its ``_broadcast_coalesced``)."""
    dist, calls, steps = torch.distributed, [], []
    names = [n for n in ("all_reduce", "all_gather_single", "all_gather_into_tensor", "broadcast",
                         "_broadcast_coalesced") if hasattr(dist, n)]
    real = {n: getattr(dist, n) for n in names}
    for n in names:
        setattr(dist, n, lambda *a, _n=n, **k: (calls.append(_n), real[_n](*a, **k))[1])
    shared = SharedMemorySum.sum  # the ranks of one machine sum gradients through shared memory
    SharedMemorySum.sum = lambda *a, **k: (calls.append("shared_sum"), shared(*a, **k))[1]
    probe = Callback(before_batch=lambda learn: calls.clear(),
                     after_batch=lambda learn: steps.append(len(calls)) if learn.training else None)
    try:
        fit(probe)
    finally:
        for n in names:
            setattr(dist, n, real[n])
        SharedMemorySum.sum = shared
    return steps


def buffers_and_collectives(rank: int) -> dict:
    """BatchNorm buffers after a fit (a rank-local buffer DDP is told to ignore included), after a training pass
    cancelled on its first batch, and the collectives of each step, merged or with the loss alone."""
    bn = mlp_learner(bs=32, batch_norm=True)
    bn.model.register_buffer("local", torch.full((3,), float(rank)))
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(bn.model, ["local"])
    merged = collectives_per_step(bn, lambda probe: bn.fit(1, 1e-2, cbs=probe))
    stats = lambda learn: {k: v for k, v in weights(learn).items() if "running" in k or "batches" in k}  # noqa: E731
    res = {"bn": (stats(bn), bn.validate()), "local": bn.model.local.clone()}
    cut = mlp_learner(bs=32, batch_norm=True)
    cut.fit(1, 1e-2, cbs=CancelFirstTrainBatch())
    res["cut_bn"] = stats(cut)
    LossRider.max_merge = 0  # the loss in a collective of its own
    try:
        alone = mlp_learner(bs=32)
        res["steps"] = (merged, collectives_per_step(alone, lambda probe: alone.fit(1, 1e-2, cbs=probe)))
    finally:
        LossRider.max_merge = 1 << 20
    return res


def apps(out: Path) -> dict:
    """The four chapter-1 workloads, unchanged single-process code, each exported on rank 0. Rank 1 turns the
    shared-memory sum off: every rank then sums through gloo, as ranks on two machines do."""
    if os.environ["RANK"] == "1":
        os.environ["LAMINA_DIST_SHM"] = "0"
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from tests.distributed_apps import build_all
    from lamina.distributed_shm import _state as shm_state
    res = {}
    for name, learn, item in build_all(out / f"data_{os.environ['RANK']}"):
        learn.path = out
        learn.fine_tune(1) if name != "collab" else learn.fit_one_cycle(1, 5e-3)
        res[name] = {"values": learn.recorder.values, "shm": shm_state["sum"] is not None,
                     "predict": learn.predict(item)[1:], "export": str(learn.export(f"{name}.pkl"))}
    return res


def crash(out: Path) -> dict:
    """Rank 1 raises in the middle of the first epoch; the job must end, not hang. Through gloo (the
    shared-memory sum's dead peer is tested in test_distributed_shm.py)."""
    os.environ["LAMINA_DIST_SHM"] = "0"
    class Boom(Callback):
        def after_batch(self):
            if int(os.environ["RANK"]) == 1 and self.learn.iter == 2:
                raise RuntimeError("rank 1 failed on purpose")
    learn = mlp_learner(bs=8)
    learn.fit(3, 1e-2, cbs=Boom())
    return {}


def nodes(out: Path) -> dict:
    learn = mlp_learner(bs=32)
    learn.fit(1, 1e-2)
    return {"fit_weights": weights(learn), "fit_values": learn.recorder.values,
            "world": int(os.environ["WORLD_SIZE"]), "group_rank": int(os.environ.get("GROUP_RANK", -1))}


if __name__ == "__main__":
    scenario, out = sys.argv[1], Path(sys.argv[2])
    result = {"core": core, "apps": apps, "crash": crash, "nodes": nodes}[scenario](out)
    torch.save(result, out / f"{scenario}_{os.environ['RANK']}.pt")
