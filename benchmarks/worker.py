"""One benchmark run in a fresh process: ``python -m benchmarks.worker <task> <lamina|fastai> '<opts json>'``.

It imports the task, calls ``run_<lib>(data_dir, opts)`` with everything the task prints sent to stderr,
and prints exactly one line on stdout: ``{"result": {...}, "versions": {...}}`` or ``{"error": "..."}``.
A run that imported the other library is an error: fastai code runs only in the fastai environment,
lamina code only in lamina's.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import platform
import sys
import traceback

from .tasks_api import LIBS, load_task

OTHER = {"lamina": "fastai", "fastai": "lamina"}


def _clean(value):
    """JSON-safe copy: NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _versions(lib: str) -> dict:
    out = {"python": platform.python_version()}
    for name in (lib, "torch"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception as exc:  # a version we cannot read is reported, not fatal
            out[name] = f"unknown ({type(exc).__name__})"
    return out


def run(task_name: str, lib: str, opts: dict) -> dict:
    """Run one task with one library in this process and return the line to print (as a dict)."""
    if lib not in LIBS:
        return {"error": f"lib must be one of {LIBS}; received {lib!r}"}
    try:
        task = load_task(task_name)
        with contextlib.redirect_stdout(sys.stderr):
            result = task.runner(lib)(opts["data_dir"], opts)
    except Exception:
        return {"error": traceback.format_exc(limit=8)}
    if not isinstance(result, dict):
        return {"error": f"run_{lib} of task {task_name!r} returned {type(result).__name__}, expected a dict"}
    if OTHER[lib] in sys.modules:
        return {"error": f"run_{lib} of task {task_name!r} imported {OTHER[lib]}: each side must use only its "
                         "own library"}
    return {"result": _clean(result), "versions": _versions(lib)}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(json.dumps({"error": "usage: python -m benchmarks.worker TASK LIB OPTS_JSON"}))
        return 2
    line = run(argv[0], argv[1], json.loads(argv[2]))
    # numpy scalars and the like: their Python value, else their text
    sys.stdout.write(json.dumps(line, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    sys.stdout.flush()
    return 0 if "result" in line else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
