"""Running tasks: each run a fresh subprocess, lamina and fastai interleaved round by round.

Interleaving (ABBA: lamina, fastai, then fastai, lamina, ...) spreads the load of a shared, noisy
machine evenly over both libraries; medians over the rounds then damp what noise is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .summary import summarize_task
from .tasks_api import Task, missing_data

__all__ = ["REPO_ROOT", "interleaved_plan", "bench_env", "parse_worker_output", "run_one", "run_task",
           "summarize_runs", "scrub_paths"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# variables that would let one interpreter import the other's packages, or change what it runs
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


def interleaved_plan(repeats: int, libs: tuple[str, ...] = ("lamina", "fastai")) -> list[tuple[int, str]]:
    """``(round, lib)`` pairs: every round runs each library once, the order reversed on odd rounds.

    Raises:
        ValueError: when ``repeats`` is below 1 or ``libs`` is empty.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be an integer >= 1; received: repeats={repeats!r}")
    if not libs:
        raise ValueError("`libs` must name at least one library ('lamina', 'fastai')")
    return [(r, lib) for r in range(repeats) for lib in (libs if r % 2 == 0 else tuple(reversed(libs)))]


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def bench_env(threads: int | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: the caller's, less the Python path variables, with the thread counts pinned
    to ``threads`` (None: left out, so torch picks its default, one thread per core, as in a user's shell)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _DROPPED_ENV and (threads is not None or k not in _THREAD_VARS)}
    for var in _THREAD_VARS if threads is not None else ():
        env[var] = str(threads)
    env["PYTHONHASHSEED"] = "0"
    # stderr goes to a log file, where lamina would print a line per epoch instead of its bars: time the bars a
    # user sees in a terminal, as fastai (which always draws them) is timed
    env.setdefault("LAMINA_PROGRESS", "bar")
    return env


def parse_worker_output(stdout: str) -> dict:
    """The worker's JSON line (the last line of stdout that parses as a JSON object)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and ("result" in parsed or "error" in parsed):
                return parsed
    return {"error": "the run printed no result line"}


def run_one(task: Task, lib: str, python: str, opts: dict, log_file: Path | None = None) -> dict:
    """Run ``task`` with ``lib`` in a fresh ``python`` process; returns the worker's dict plus ``wall_s``.

    The process's stderr (progress bars, warnings, tracebacks) goes to ``log_file`` when given.
    """
    cmd = [str(python), "-m", "benchmarks.worker", task.name, lib, json.dumps(opts)]
    start = time.perf_counter()
    log = open(log_file, "w") if log_file is not None else subprocess.DEVNULL
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT, env=bench_env(opts["threads"]), stdout=subprocess.PIPE,
                              stderr=log, text=True, timeout=task.timeout)
        out = parse_worker_output(done.stdout)
        if "error" in out and done.returncode not in (0, 1):
            out["error"] += f" (exit status {done.returncode})"
    except subprocess.TimeoutExpired:
        out = {"error": f"timed out after {task.timeout:.0f} s (raise TIMEOUT in the task module)"}
    finally:
        if log_file is not None:
            log.close()
    if "error" in out:
        out["error"] = scrub_paths(out["error"])
    out["wall_s"] = round(time.perf_counter() - start, 3)
    return out


def scrub_paths(text: str) -> str:
    """``text`` with the repository's folder left out and the home folder written ``~`` (reports are committed)."""
    return text.replace(str(REPO_ROOT) + os.sep, "").replace(str(Path.home()), "~")


def _one_line(run: dict) -> str:
    if "error" in run:
        return "ERROR: " + run["error"].strip().splitlines()[-1]
    res = run["result"]
    parts = [f"{k}={v:.4g}" for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    parts += [f"{k}={v:.4g}" for k, v in (res.get("quality") or {}).items() if isinstance(v, (int, float))]
    return ", ".join(parts) or "no metrics"


def run_task(task: Task, pythons: dict[str, str], opts: dict, repeats: int, data_dir: Path,
             log_dir: Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run ``task`` for ``repeats`` interleaved rounds with each library in ``pythons`` and summarise it.

    Args:
        task: the loaded task.
        pythons: interpreter per library, e.g. ``{"lamina": sys.executable, "fastai": ".../bin/python"}``.
        opts: passed to the task functions (``threads``: a count or None for torch's default, ``seed``,
            ``quick``, ``device``, ``data_dir``).
        repeats: rounds.
        data_dir: the data folder (checked for the task's ``DATA`` first).
        log_dir: where each run's stderr is kept (None: discarded).
        log: progress messages.

    Returns:
        The task's entry of ``results.json``: ``status`` ('ok', 'skipped' or 'error'), ``reason``, the raw
        ``runs`` and the `summarize_task` fields.
    """
    entry = {"name": task.name, "title": task.title, "targets": task.targets}
    reason = missing_data(task, data_dir)
    if reason is not None:
        log(f"[{task.name}] skipped: {reason}")
        return {**entry, "status": "skipped", "reason": reason, "runs": []}
    runs = []
    suffix = "" if opts.get("threads") is None else f"-t{opts['threads']}"
    for rnd, lib in interleaved_plan(repeats, tuple(pythons)):
        log_file = log_dir / f"{task.name}-{lib}-{rnd}{suffix}.log" if log_dir is not None else None
        run = run_one(task, lib, pythons[lib], {**opts, "round": rnd}, log_file)
        runs.append({"lib": lib, "round": rnd, **run})
        log(f"[{task.name}] round {rnd + 1}/{repeats} {lib:<6} {_one_line(run)}")
    return {**entry, **summarize_runs(task, runs)}


def summarize_runs(task: Task, runs: list[dict]) -> dict:
    """Status, reason and summary of a task's raw runs."""
    ok = {lib: [r["result"] for r in runs if r["lib"] == lib and "result" in r] for lib in ("lamina", "fastai")}
    errors = [f"{r['lib']} round {r['round'] + 1}: {r['error'].strip().splitlines()[-1]}"
              for r in runs if "error" in r]
    status = "error" if errors and not (ok["lamina"] and ok["fastai"]) else "ok"
    summary = summarize_task(task.targets, ok["lamina"], ok["fastai"], task.units)
    return {"status": status, "reason": "; ".join(errors) or None, "runs": runs, **summary}
