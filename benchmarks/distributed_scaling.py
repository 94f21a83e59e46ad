"""Data-parallel scaling on this machine: 2 processes × 1 thread (torchrun, gloo) against 1 process × 1 thread.

Two workloads, each with the same per-process batch size in both set-ups:

* ``cnn``: torchvision's resnet18 on 64-px images (random pixels: the step's arithmetic is what scales), bs 32;
* ``tabular``: the Adult task (``$LAMINA_BENCH_DATA/adult_sample/adult.csv``, else an Adult-shaped synthetic table),
  ``tabular_learner(layers=[200, 100])``, bs 64.

Each process times its training steps after a warm-up. Reported: the throughput ratio (samples per second of the
job over the single process's) and the time of one step against the single process's, whose difference is what the
gradient sum (and the loss average) costs per step. The 2-process job runs twice per round: as users get it (the
ranks of one machine sum through shared memory, `lamina.distributed_shm`) and with ``LAMINA_DIST_SHM=0`` (gloo's
collectives, as between machines). Targets: ≥ 1.7× for the CNN; a tabular step ≤ 1.25× the single-process one.
Writes ``benchmarks/DISTRIBUTED.md``.

    python benchmarks/distributed_scaling.py                 # both workloads, 3 rounds
    python benchmarks/distributed_scaling.py --tasks tabular --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = {"cnn": (2, 8), "tabular": (50, 1000)}  # (warm-up steps, timed steps) per process


def _cnn_learner():
    import torch
    import torchvision
    from lamina.data.loaders import DataLoaders
    from lamina.learner import Learner
    from lamina.losses import CrossEntropyLossFlat
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(640, 3, 64, 64, generator=gen), torch.randint(0, 10, (640,), generator=gen)
    dls = DataLoaders.from_tensors(x[:576], y[:576], x[576:], y[576:], bs=32, device="cpu",
                                   loss_func=CrossEntropyLossFlat())
    return Learner(dls, torchvision.models.resnet18(num_classes=10))


def _adult_frame():
    import pandas as pd
    csv = Path(os.environ.get("LAMINA_BENCH_DATA", str(ROOT.parent / "shared" / "data"))) / "adult_sample" / "adult.csv"
    if csv.exists():
        return pd.read_csv(csv, skipinitialspace=True), "adult_sample/adult.csv"
    from lamina.tabular.synth import adult_like
    df = adult_like(32561, seed=0)
    return df.apply(lambda c: c.str.strip() if pd.api.types.is_string_dtype(c) else c), "synthetic Adult-shaped table"


def _tabular_learner():
    from lamina.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner
    df, _ = _adult_frame()
    dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=["workclass", "education", "marital-status",
                                                                      "occupation", "relationship", "race"],
                                     cont_names=["age", "fnlwgt", "education-num"],
                                     procs=[Categorify, FillMissing, Normalize], bs=64, seed=0, device="cpu")
    return tabular_learner(dls, layers=[200, 100])


def worker(task: str, out: Path) -> None:
    """One process of a measurement (plain, or one rank under torchrun): time the training steps."""
    import torch
    from lamina.callbacks.core import Callback, CancelFitException, CancelValidException
    torch.set_num_threads(1)
    torch.manual_seed(0)
    learn = _cnn_learner() if task == "cnn" else _tabular_learner()
    warm, timed = STEPS[task]
    stamps: list[float] = []

    class Timer(Callback):
        order = 100

        def after_batch(self):
            if self.learn.training:
                stamps.append(time.perf_counter())
                if len(stamps) > warm + timed:
                    raise CancelFitException()

        def before_validate(self):
            raise CancelValidException()

    learn.logger = lambda *a: None
    with learn.no_bar():
        learn.fit(1000, 1e-3, cbs=Timer())
    step = (stamps[warm + timed] - stamps[warm]) / timed
    rank = int(os.environ.get("RANK", 0))
    result = {"step_s": step, "bs": learn.dls.train.bs, **_sum_times(learn.model, timed)}
    (out / f"{task}_{rank}.json").write_text(json.dumps(result))


def _sum_times(model, n: int) -> dict:
    """Seconds of one sum of a gradient-sized buffer over the ranks, alone: gloo's all-reduce and the shared-memory
    sum (None in one process, or where the shared-memory sum is off)."""
    import torch
    import torch.distributed as dist
    from lamina.distributed_shm import shared_sum
    if not dist.is_initialized():
        return {"allreduce_s": None, "shm_sum_s": None}
    grads = torch.zeros(sum(p.numel() for p in model.parameters() if p.requires_grad))
    dist.all_reduce(grads)  # warm-up; the shared-memory sum's first call sets its file up, or says it is off
    sums = {"allreduce_s": dist.all_reduce}
    if shared_sum(grads, 60) is not None:
        sums["shm_sum_s"] = lambda t: shared_sum(t, 60)
    times = {"shm_sum_s": None}
    for name, run in sums.items():
        dist.barrier()
        start = time.perf_counter()
        for _ in range(n):
            run(grads)
        times[name] = (time.perf_counter() - start) / n
    return times


def measure(task: str, n_proc: int, independent: bool = False, shm: bool = True) -> dict:
    """Launch one measurement; the job's step time is its slowest rank's. ``independent``: ``n_proc`` plain
    single-process runs at the same time, without communication (what the machine's sharing alone costs);
    ``shm=False``: the ranks sum through gloo even on one machine."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAMINA_DEVICE": "cpu", "PYTHONPATH": str(ROOT),
           "LAMINA_DIST_SHM": "1" if shm else "0"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        me = [str(Path(__file__).resolve()), "--worker", task, str(out)]
        if independent:
            procs = [subprocess.Popen([sys.executable, *me], env={**env, "RANK": str(r)}) for r in range(n_proc)]
            if any(p.wait() for p in procs):
                raise RuntimeError(f"an independent {task} run failed")
        else:
            cmd = [sys.executable, *me] if n_proc == 1 else \
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_proc}", *me]
            subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"{task}_*.json"))]
    step = max(r["step_s"] for r in runs)
    return {"step_s": step, "samples_per_s": n_proc * runs[0]["bs"] / step,
            **{k: runs[0].get(k) for k in ("allreduce_s", "shm_sum_s")}}


def report(results: dict, load: str, repeats: int) -> str:
    lines = ["# Data-parallel scaling (CPU)", "",
             "`python benchmarks/distributed_scaling.py` — 2 processes × 1 thread (torchrun) against 1 process × "
             "1 thread, the same per-process batch size; medians of the rounds (min–max of the ratio).", "",
             f"Machine: {os.cpu_count()} CPUs, shared; load average before the runs: {load}. {repeats} round(s), "
             "the set-ups alternating.", "",
             "| workload | 1 proc step | 2 independent procs' step | 2 proc DDP step | step ratio (DDP/1) | "
             "step ratio (DDP/independent) | throughput ratio | 2 proc DDP step, gloo only | gloo sum alone | "
             "shared-memory sum alone | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    targets = {"cnn": ("throughput", 1.7), "tabular": ("step", 1.25)}
    ms = lambda s: "—" if s is None else f"{s * 1e3:.2f} ms"  # noqa: E731
    for task, runs in results.items():
        med = lambda kind, key="step_s": statistics.median(r[kind][key] for r in runs)  # noqa: E731
        ratios = [r["ddp"]["samples_per_s"] / r["one"]["samples_per_s"] for r in runs]
        steps = [r["ddp"]["step_s"] / r["one"]["step_s"] for r in runs]
        gloo = [r["gloo"]["step_s"] / r["one"]["step_s"] for r in runs]
        kind, goal = targets[task]
        value = statistics.median(ratios) if kind == "throughput" else statistics.median(steps)
        met = value >= goal if kind == "throughput" else value <= goal
        shared = statistics.median(r["ddp"]["step_s"] / r["independent"]["step_s"] for r in runs)
        shm_alone = [r["ddp"]["shm_sum_s"] for r in runs if r["ddp"]["shm_sum_s"] is not None]
        lines.append(f"| {task} | {ms(med('one'))} | {ms(med('independent'))} | {ms(med('ddp'))} | "
                     f"{statistics.median(steps):.2f}× ({min(steps):.2f}–{max(steps):.2f}) | {shared:.2f}× | "
                     f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | "
                     f"{ms(med('gloo'))} ({statistics.median(gloo):.2f}×) | {ms(med('gloo', 'allreduce_s'))} | "
                     f"{ms(statistics.median(shm_alone) if shm_alone else None)} | "
                     f"{kind} {'≥' if kind == 'throughput' else '≤'} {goal}×: {'met' if met else 'missed'} |")
    lines += ["", "The communication overhead per step is the 2-process step minus the 1-process step (the same "
              "per-process work): one sum of the gradients with the loss average riding along. The ranks of one "
              "machine sum through a shared-memory file (`lamina.distributed_shm`); the \"gloo only\" job "
              "(`LAMINA_DIST_SHM=0`) sums through gloo's collectives as ranks on different machines do (an "
              "all-gather for small models, else an all-reduce). The sums \"alone\" are one sum of a buffer the "
              "size of the trainable parameters, timed after the fit. \"2 independent procs\" are two "
              "single-process runs at once, without any communication: on a shared 2-core machine they show "
              "what running two processes costs before DDP adds anything.", "",
              "fastai 2.8.12's `distrib_ctx` does not run on this CPU set-up: with `accelerate` installed in its "
              "environment and `distrib_ctx(cpu=True)` under torchrun, its `DistributedDL` broadcasts the epoch's "
              "order with `LongTensor(t).cuda()` (\"nccl only works with cuda tensors\") and fails with \"Found no "
              "NVIDIA driver\"; without `cpu=True` its `DistributedTrainer` reads `model.device`, which an unwrapped "
              "model lacks. So there is no fastai column."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="cnn,tabular")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "DISTRIBUTED.md"))
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], Path(args.worker[1]))
    load = " ".join(os.getloadavg().__repr__().strip("()").split(", ")[:3])
    results = {}
    for task in args.tasks.split(","):
        results[task] = []
        for r in range(args.repeats):
            kinds = {"one": (1, False, True), "ddp": (2, False, True), "gloo": (2, False, False),
                     "independent": (2, True, True)}
            order = list(kinds) if r % 2 == 0 else list(kinds)[::-1]  # alternating
            got = {k: measure(task, kinds[k][0], independent=kinds[k][1], shm=kinds[k][2]) for k in order}
            results[task].append(got)
            print(task, r, got, flush=True)
    text = report(results, load, args.repeats)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
