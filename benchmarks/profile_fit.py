"""Where a benchmark task's lamina fit spends its time: loader waits, forward, loss, backward, optimizer step and
callbacks, for the training and the validation passes, in one fresh process at the task's settings.

Each phase is the wall clock between two of the learner's events (``before_batch`` → ``after_pred`` is the
forward, ``after_step`` → the next ``before_batch`` the loader's wait with the batch transforms, and so on), summed
over the fit; ``first batch`` is the wait for each pass's first batch (worker processes start there). Only the
task's fit calls are profiled (a task that validates or predicts after its fit does so unprofiled); what a fit call
spends outside the events (its set-up before ``before_fit``: the optimizer's creation) is a phase of its own.

    python benchmarks/profile_fit.py segmentation_camvid
    python benchmarks/profile_fit.py vision_mnist_tiny --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (event that ends the phase, phase name): the phase runs from the previous event to this one
PHASES = {"before_batch": "loader wait", "after_pred": "forward", "after_loss": "loss", "after_backward": "backward",
          "after_step": "optimizer step", "after_batch": "callbacks after the batch"}


def profiler():
    """A callback that adds the time between consecutive events to ``totals[(pass, phase)]``."""
    from lamina.callbacks.core import Callback

    class PhaseTimer(Callback):
        order = -1000  # first at every event: the time before it belongs to the phase that ends there

        def __init__(self):
            super().__init__()
            self.totals: dict[tuple[str, str], float] = {}
            self.mark, self.first = time.perf_counter(), False

        def _end(self, phase: str, kind: str | None = None) -> None:
            now = time.perf_counter()
            kind = kind or ("train" if self.learn.training else "valid")
            key = (kind, "first batch" if self.first and phase == "loader wait" else phase)
            self.totals[key] = self.totals.get(key, 0.0) + now - self.mark
            self.mark, self.first = now, self.first and phase != "loader wait"

        def before_fit(self):
            self.mark = time.perf_counter()

        # the boundaries name their pass: this timer runs before the callback that switches train/eval mode
        def before_train(self):
            self._end("epoch start (before_epoch callbacks)", "fit")
            self.first = True

        def before_validate(self):
            self._end("pass end", "train")
            self.first = True

        def after_validate(self):
            self._end("pass end", "valid")

        def after_fit(self):
            self._end("fit end", "fit")

    for event, phase in PHASES.items():
        setattr(PhaseTimer, event, lambda self, _phase=phase: self._end(_phase))
    return PhaseTimer()


def profile(task: str, data_dir: str, threads: int | None) -> tuple[dict, float]:
    """Run ``task``'s lamina side with a `PhaseTimer` added to its fits; ``(totals, seconds in fit calls)``."""
    from lamina.core import listify
    from lamina.learner import Learner
    timers, spent = [], [0.0]
    real_fit = Learner.fit

    def fit(self, *args, cbs=None, **kwargs):
        timers.append(profiler())
        cbs = [*listify(cbs), timers[-1]]
        start = time.perf_counter()
        try:
            return real_fit(self, *args, cbs=cbs, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            spent[0] += elapsed
            outside = ("fit", "outside the events (set-up before before_fit, e.g. the optimizer)")
            timers[-1].totals[outside] = elapsed - sum(timers[-1].totals.values())
    Learner.fit = fit
    try:
        module = importlib.import_module(f"benchmarks.tasks.{task}")
        module.run_lamina(data_dir, {"seed": 42, "threads": threads, "round": 0})
    finally:
        Learner.fit = real_fit
    totals: dict = {}
    for timer in timers:
        for key, value in timer.totals.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals, spent[0]


def report(task: str, totals: dict, spent: float, threads: int | None) -> str:
    import torch
    lines = [f"### `{task}` (torch threads: {threads or f'default ({torch.get_num_threads()})'})", "",
             f"Fit calls: {spent:.2f} s in all.", "", "| pass | phase | seconds | share of the fit |",
             "| --- | --- | --- | --- |"]
    for (kind, phase), seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {phase} | {seconds:.3f} | {100 * seconds / spent:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--data", default=os.environ.get("LAMINA_BENCH_DATA", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    totals, spent = profile(args.task, args.data, args.threads)
    print(report(args.task, totals, spent, args.threads))


if __name__ == "__main__":
    main()
