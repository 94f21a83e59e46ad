"""Data-parallel scaling on this machine: 2 processes × 1 thread (torchrun, gloo) against 1 process × 1 thread.

Two workloads, each with the same per-process batch size in both set-ups:

* ``cnn``: torchvision's resnet18 on 64-px images (random pixels: the step's arithmetic is what scales), bs 32;
* ``tabular``: the Adult task (``$LAMINA_BENCH_DATA/adult_sample/adult.csv``, else an Adult-shaped synthetic table),
  ``tabular_learner(layers=[200, 100])``, bs 64.

Each process times its training steps after a warm-up. Reported: the throughput ratio (samples per second of the
job over the single process's) and the time of one step against the single process's, whose difference is what the
gradient all-reduce (and the loss average) costs per step. Targets: ≥ 1.7× for the CNN; a tabular step ≤ 1.25× the
single-process one. Writes ``benchmarks/DISTRIBUTED.md``.

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
STEPS = {"cnn": (2, 8), "tabular": (20, 200)}  # (warm-up steps, timed steps) per process


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
    result = {"step_s": step, "bs": learn.dls.train.bs, "allreduce_s": _allreduce_time(learn.model, timed)}
    (out / f"{task}_{rank}.json").write_text(json.dumps(result))


def _allreduce_time(model, n: int) -> float | None:
    """Seconds of one all-reduce of a gradient-sized buffer, alone (None in one process)."""
    import torch
    import torch.distributed as dist
    if not dist.is_initialized():
        return None
    grads = torch.zeros(sum(p.numel() for p in model.parameters() if p.requires_grad))
    dist.barrier()
    start = time.perf_counter()
    for _ in range(n):
        dist.all_reduce(grads)
    return (time.perf_counter() - start) / n


def measure(task: str, n_proc: int, independent: bool = False) -> dict:
    """Launch one measurement; the job's step time is its slowest rank's. ``independent``: ``n_proc`` plain
    single-process runs at the same time, without communication (what the machine's sharing alone costs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAMINA_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
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
    return {"step_s": step, "samples_per_s": n_proc * runs[0]["bs"] / step, "allreduce_s": runs[0]["allreduce_s"]}


def report(results: dict, load: str, repeats: int) -> str:
    lines = ["# Data-parallel scaling (CPU, gloo)", "",
             "`python benchmarks/distributed_scaling.py` — 2 processes × 1 thread (torchrun) against 1 process × "
             "1 thread, the same per-process batch size; medians of the rounds (min–max of the ratio).", "",
             f"Machine: {os.cpu_count()} CPUs, shared; load average before the runs: {load}. {repeats} round(s), "
             "the two set-ups alternating.", "",
             "| workload | 1 proc step | 2 independent procs' step | 2 proc DDP step | all-reduce alone | "
             "step ratio (DDP/1) | step ratio (DDP/independent) | throughput ratio | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    targets = {"cnn": ("throughput", 1.7), "tabular": ("step", 1.25)}
    for task, runs in results.items():
        one = statistics.median(r[0]["step_s"] for r in runs)
        two = statistics.median(r[1]["step_s"] for r in runs)
        ratios = [r[1]["samples_per_s"] / r[0]["samples_per_s"] for r in runs]
        steps = [r[1]["step_s"] / r[0]["step_s"] for r in runs]
        kind, goal = targets[task]
        value = statistics.median(ratios) if kind == "throughput" else statistics.median(steps)
        met = value >= goal if kind == "throughput" else value <= goal
        reduce = statistics.median(r[1]["allreduce_s"] for r in runs)
        alone = statistics.median(r[2]["step_s"] for r in runs)
        shared = statistics.median(r[1]["step_s"] / r[2]["step_s"] for r in runs)
        lines.append(f"| {task} | {one * 1e3:.2f} ms | {alone * 1e3:.2f} ms | {two * 1e3:.2f} ms | "
                     f"{reduce * 1e3:.2f} ms | {statistics.median(steps):.2f}× "
                     f"({min(steps):.2f}–{max(steps):.2f}) | {shared:.2f}× | {statistics.median(ratios):.2f}× "
                     f"({min(ratios):.2f}–{max(ratios):.2f}) | {kind} {'≥' if kind == 'throughput' else '≤'} "
                     f"{goal}×: {'met' if met else 'missed'} |")
    lines += ["", "The communication overhead per step is the 2-process step minus the 1-process step (the same "
              "per-process work): one collective that sums the gradients with the loss average riding along "
              "(an all-gather on gloo for small models, else an all-reduce). \"All-reduce alone\" is "
              "one gloo all-reduce of a buffer the size of the trainable parameters, timed after the fit. "
              "\"2 independent procs\" are two single-process runs at once, without any communication: on a "
              "shared 2-core machine they show what running two processes costs before DDP adds anything.", "",
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
            order = (1, 2, 0) if r % 2 == 0 else (0, 2, 1)  # 0: two independent processes
            got = {n: measure(task, n or 2, independent=n == 0) for n in order}
            results[task].append((got[1], got[2], got[0]))
            print(task, r, got, flush=True)
    text = report(results, load, args.repeats)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
