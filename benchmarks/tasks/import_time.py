"""Import time of the star-import surfaces, each in a fresh interpreter.

Every surface is timed as the wall time of ``python -c "from <surface> import *"`` launched anew: the
median of three launches, after one untimed launch that warms the file cache and writes bytecode.
``torch`` (the same on both sides) is the floor both libraries stand on. A lamina surface that does not
exist yet is reported as skipped.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

TITLE = "Import time of the top-level surfaces (`from <surface> import *`, fresh process)"
TARGET = {"metric": "vision", "max_ratio": 0.6}
DATA = None
# surface name -> (lamina module, fastai module); torch is the floor under both
SURFACES = {
    "vision": ("lamina.vision.all", "fastai.vision.all"),
    "tabular": ("lamina.tabular.all", "fastai.tabular.all"),
    "collab": ("lamina.collab", "fastai.collab"),
    "basics": ("lamina.basics", "fastai.basics"),
    "torch": ("torch", "torch"),
}
UNITS = {name: "s" for name in SURFACES}
TIMEOUT = 900
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _launch(module: str, cwd: str) -> float:
    """Seconds for a fresh interpreter to run ``from <module> import *`` and exit."""
    cmd = [sys.executable, "-c", f"from {module} import *"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=300, check=True)
    return time.perf_counter() - start


def _check(module: str, cwd: str) -> subprocess.CompletedProcess:
    """Import ``module`` once; exit status 3 when it is only a folder without code (a namespace package)."""
    code = (f"import sys, {module} as m\nfrom {module} import *\n"
            "sys.exit(0 if getattr(m, '__file__', None) else 3)")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def _why_failed(module: str, done: subprocess.CompletedProcess) -> str:
    if done.returncode == 3:
        return f"{module} does not exist yet (a folder without __init__.py)"
    last = (done.stderr.strip().splitlines() or ["no error message"])[-1]
    missing = re.search(r"No module named '([\w.]+)'", last)
    if missing and (module + ".").startswith(missing.group(1) + "."):
        return f"{module} does not exist yet"
    return f"`from {module} import *` failed: {last}"


def time_surfaces(lib_index: int, cwd: str, launches: int) -> dict[str, Any]:
    """Median import time of every surface of one library (0: lamina, 1: fastai), launched from ``cwd``."""
    out: dict[str, Any] = {"skipped": {}}
    for name, modules in SURFACES.items():
        module = modules[lib_index]
        done = _check(module, cwd)  # untimed: also warms the file cache and writes bytecode
        if done.returncode != 0:
            out[name] = None
            out["skipped"][name] = _why_failed(module, done)
            continue
        out[name] = statistics.median(_launch(module, cwd) for _ in range(launches))
    out["info"] = {"launches per surface": launches}
    return out


def _launches(opts: dict[str, Any]) -> int:
    return 2 if opts.get("quick") else 3


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    # from the repository root, so that `lamina` is this checkout
    return time_surfaces(0, REPO_ROOT, _launches(opts))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    # from an empty folder, so that nothing of the repository is importable
    with tempfile.TemporaryDirectory() as empty:
        return time_surfaces(1, empty, _launches(opts))
