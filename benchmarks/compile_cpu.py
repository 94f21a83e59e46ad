"""CPU training speed of ``learn.compile()`` against the eager model: compile time apart from step time.

    python benchmarks/compile_cpu.py                          # small CNN and tabular model, inductor
    python benchmarks/compile_cpu.py --models tabular --rounds 5 --backend aot_eager

For each model, two learners are built from the same seed: one eager, one compiled with ``learn.compile()``.
A first epoch of each is the warm-up: the compiled learner's first training batch holds the compile of the
forward and backward graphs, its first validation batch the compile of the eval graph. Then ``--rounds``
epochs of each alternate (eager first on even rounds, compiled first on odd ones), so that the load of a shared
machine falls on both; every batch is timed from ``before_batch`` to ``after_batch`` (the whole step: forward,
loss, backward, optimizer, the Recorder), and the report gives medians with min-max.

Compile time is the first batch's time less the median steady batch. It is measured with an empty inductor
cache (a fresh ``TORCHINDUCTOR_CACHE_DIR``), then again for a third learner built afterwards in the same process
("warm cache": dynamo traces again, inductor finds its kernels). torch uses its default number of threads.
Results go to ``benchmarks/COMPILE.md``.

Models: a small CNN (four stride-2 ``ConvLayer`` blocks of 16 to 128 channels, pooling and a linear head, 0.1M
weights) on 64-px random images, batches of 64; ``tabular_learner``'s default MLP (layers 200, 100, embeddings of
8 categorical columns, 6 continuous) on an Adult-like table, batches of 256.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def cnn_learner(steps: int, seed: int = 0) -> Any:
    """The small CNN on random 64-px images of 10 classes: ``steps`` training batches of 64, 2 validation ones."""
    import torch
    from torch import nn

    from lamina.data.loaders import DataLoaders
    from lamina.learner import Learner
    from lamina.losses import CrossEntropyLossFlat
    from lamina.models.layers import ConvLayer, Flatten
    torch.manual_seed(seed)
    bs, n_valid = 64, 128
    x = torch.randn(bs * steps + n_valid, 3, 64, 64)
    y = torch.randint(0, 10, (len(x),))
    dls = DataLoaders.from_tensors(x[n_valid:], y[n_valid:], x[:n_valid], y[:n_valid], bs=bs, device="cpu",
                                   vocab=[str(i) for i in range(10)], loss_func=CrossEntropyLossFlat())
    model = nn.Sequential(ConvLayer(3, 16, stride=2), ConvLayer(16, 32, stride=2), ConvLayer(32, 64, stride=2),
                          ConvLayer(64, 128, stride=2), nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(128, 10))
    return Learner(dls, model)


def tabular_learner_of(steps: int, seed: int = 0) -> Any:
    """``tabular_learner`` on an Adult-like table: ``steps`` training batches of 256, 2 validation ones."""
    import pandas as pd
    import torch

    from lamina.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner
    from lamina.tabular.synth import adult_like
    torch.manual_seed(seed)
    bs, n_valid = 256, 512
    df = adult_like(bs * steps + n_valid, seed=seed)
    df = df.apply(lambda col: col.str.strip() if pd.api.types.is_string_dtype(col) else col)
    cats = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
            "native-country"]
    conts = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    valid_idx = list(range(len(df) - n_valid, len(df)))
    dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=cats, cont_names=conts, bs=bs, seed=seed,
                                     procs=[Categorify, FillMissing, Normalize], valid_idx=valid_idx, device="cpu")
    return tabular_learner(dls)


# name: (title, learner factory, training batches per epoch: a tabular step takes about 1 ms, so more of them)
MODELS = {"cnn": ("small CNN, 64 px, bs 64", cnn_learner, 10),
          "tabular": ("tabular MLP, bs 256", tabular_learner_of, 40)}


def step_timer() -> Any:
    """A callback that times every batch (``before_batch`` to ``after_batch``), training and validation apart."""
    from lamina.callbacks.core import Callback

    class StepTimes(Callback):
        order = -1000  # first at both events: the span holds every other callback's work on the batch

        def __init__(self):
            self.times = {"train": [], "valid": []}

        def before_batch(self) -> None:
            self.start = time.perf_counter()

        def after_batch(self) -> None:
            self.times["train" if self.training else "valid"].append(time.perf_counter() - self.start)

    return StepTimes()


def one_epoch(learn: Any) -> dict[str, list[float]]:
    """Per-batch times of one epoch of ``learn`` (constant lr), and its validation loss."""
    timer = step_timer()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=[timer])
    return {**timer.times, "valid_loss": learn.recorder.values[-1][0]}


def make(name: str, steps: int, compile_kwargs: dict | None) -> Any:
    learn = MODELS[name][1](steps)
    return learn.compile(**compile_kwargs) if compile_kwargs is not None else learn


def compile_seconds(first: dict, steady: dict) -> dict[str, float]:
    """What the first training and validation batches took beyond a steady batch: the compile time."""
    return {split: first[split][0] - statistics.median(steady[split]) for split in ("train", "valid")}


def measure(name: str, steps: int | None, rounds: int, compile_kwargs: dict) -> dict:
    """Eager and compiled learners of model ``name``: warm-up epoch, then ``rounds`` alternating epochs each."""
    steps = steps or MODELS[name][2]
    eager, compiled = make(name, steps, None), make(name, steps, compile_kwargs)
    n_params = sum(p.numel() for p in eager.model.parameters())
    first = {"eager": one_epoch(eager), "compiled": one_epoch(compiled)}
    steady = {"eager": {"train": [], "valid": []}, "compiled": {"train": [], "valid": []}}
    for r in range(rounds):
        for side in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            times = one_epoch(eager if side == "eager" else compiled)
            steady[side]["train"] += times["train"]
            steady[side]["valid"] += times["valid"]
    import torch
    torch.compiler.reset()  # forget the compiled graphs, as a new process would; inductor's disk cache stays
    warm = one_epoch(make(name, steps, compile_kwargs))
    return {"model": MODELS[name][0], "params": n_params, "steady": steady, "steps": steps,
            "threads": torch.get_num_threads(),
            "compile_cold": compile_seconds(first["compiled"], steady["compiled"]),
            "compile_warm": compile_seconds(warm, steady["compiled"]),
            "valid_loss": {side: first[side]["valid_loss"] for side in first}}


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.1f} ({min(ms):.1f}–{max(ms):.1f})"


def table_row(result: dict) -> str:
    if "error" in result:
        return f"| {result['model']} | {result['threads']} | – | failed: `{result['error']}` | | | | | | | |"
    steady, cold, warm = result["steady"], result["compile_cold"], result["compile_warm"]
    eager, compiled = (statistics.median(steady[side]["train"]) for side in ("eager", "compiled"))
    fastest = min(steady["eager"]["train"]) / min(steady["compiled"]["train"])
    gain = eager - compiled
    even = f"{(cold['train'] + cold['valid']) / gain:,.0f}" if gain > 0 else "never"
    cells = [result["model"], result["threads"], f"{result['params'] / 1e6:.2f}M", summary(steady["eager"]["train"]),
             summary(steady["compiled"]["train"]), f"**{eager / compiled:.2f}×**", f"{fastest:.2f}×",
             f"{summary(steady['eager']['valid'])} / {summary(steady['compiled']['valid'])}",
             f"{cold['train']:.1f} + {cold['valid']:.1f}", f"{warm['train'] + warm['valid']:.1f}", even]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def environment(default_threads: int) -> list[str]:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0] \
        if shutil.which("gcc") else "no gcc"
    return [(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
             f"Python {platform.python_version()}, {gcc}"),
            f"- CPU: {cpu}, {os.cpu_count()} logical cores; torch's default is {default_threads} threads"]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def report(results: list[dict], args: argparse.Namespace, load_before: str, load_after: str) -> str:
    steps = ", ".join(f"{model}: {n}" for model, n in {r["model"]: r["steps"] for r in results if "steps" in r}.items())
    lines = ["# learn.compile on the CPU: training speed", "",
             f"`{' '.join(['python benchmarks/compile_cpu.py', *sys.argv[1:]])}`", "",
             *environment(args.default_threads),
             (f"- machine load (uptime's 1, 5, 15-minute averages): {load_before} before, {load_after} after; the "
              "machine is shared, so every figure is a median of one run with its min–max"),
             (f"- backend {args.backend!r}{f', mode {args.mode!r}' if args.mode else ''}; training batches an "
              f"epoch: {steps}, and 2 validation batches; {args.rounds} timed epochs per side after one warm-up "
              "epoch"), "",
             ("| model | threads | weights | eager train step, ms | compiled train step, ms | speed-up (medians) "
              "| speed-up (fastest steps) | valid batch, ms (eager / compiled) | compile s, cold (train + eval) "
              "| compile s, warm cache | break-even steps |"),
             "|---|---|---|---|---|---|---|---|---|---|---|",
             *[table_row(r) for r in results], ""]
    losses = [f"{r['model']}, {r['threads']} threads: eager {r['valid_loss']['eager']:.4f}, compiled "
              f"{r['valid_loss']['compiled']:.4f}"
              for r in results if "valid_loss" in r]
    if losses:
        lines += ["Validation loss after the warm-up epoch (same seed, same batches): " + "; ".join(losses) + ".", ""]
    return "\n".join(lines + NOTES)


NOTES = """## Reading it

- A train step is the whole step (forward, loss, backward, optimizer step, callbacks); `learn.compile` compiles
  the model's forward (and so its backward graph), not the optimizer step or the loss.
- On a loaded machine (the load above, on 2 cores) a step waits for the CPU as often as it computes, and both
  threads of torch's default wait for each other: the medians carry that wait, while the fastest steps are
  those that ran uncontended, which is what an idle machine sees. Both speed-ups are given for that reason.
- Compile time is paid once per process (per input shape, training and eval apart): it is the first batch's
  time less a steady batch. "Break-even steps" is the cold compile time over the time saved per training step.
- "Warm cache" is a third learner compiled after `torch.compiler.reset()`, as a second run of the same script
  on the same machine would: dynamo traces the model again, inductor finds the kernels in its disk cache
  (`TORCHINDUCTOR_CACHE_DIR`, by default a folder in `/tmp`). Within one process a second learner of the same
  architecture reuses the compiled graphs outright (dynamo's guards check the structure, not the module).
- The 1-thread rows keep the two threads of a 2-core machine from waiting on each other; each thread count
  starts from an empty inductor cache and `torch.compiler.reset()`.
- Inductor generates and builds C++ on the CPU, so it needs a C++ compiler (`g++`); without one,
  `learn.compile()` says so and suggests `backend="aot_eager"`.
""".splitlines()


def measure_all(names: list[str], args: argparse.Namespace, compile_kwargs: dict, threads: int) -> list:
    """Every model with ``threads`` torch threads, from an empty inductor cache."""
    import torch
    torch.set_num_threads(threads)
    torch.compiler.reset()  # graphs compiled for another thread count must not be reused
    cache = tempfile.mkdtemp(prefix="lamina-compile-bench-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # an empty cache: the cold compile time
    results = []
    try:
        for name in names:
            print(f"{name}, {torch.get_num_threads()} threads ...", file=sys.stderr, flush=True)
            try:
                results.append(measure(name, args.steps, args.rounds, compile_kwargs))
            except Exception as e:  # noqa: BLE001 - a backend that cannot build here is a result to report
                results.append({"model": MODELS[name][0], "threads": torch.get_num_threads(),
                                "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(table_row(results[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="cnn,tabular", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--mode", default=None, help="torch.compile's mode (default: its default)")
    parser.add_argument("--steps", type=int, default=None, help="training batches per epoch (default: 10 for "
                        "the CNN, 40 for the tabular model)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per side after the warm-up")
    parser.add_argument("--threads", default="default,1", help="torch thread counts to measure, comma-separated "
                        "('default': torch's own choice, one per core)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "COMPILE.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    compile_kwargs = {"backend": args.backend, **({"mode": args.mode} if args.mode else {})}
    import torch
    args.default_threads, load_before, results = torch.get_num_threads(), load_average(), []
    for threads in args.threads.split(","):
        threads = args.default_threads if threads.strip() == "default" else int(threads)
        results += measure_all(names, args, compile_kwargs, threads)
    args.out.write_text(report(results, args, load_before, load_average()))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
