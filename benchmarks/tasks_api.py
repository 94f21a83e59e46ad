"""Finding, loading and checking benchmark task modules (stdlib only: both interpreters import this).

A task is ``benchmarks/tasks/<name>.py`` (names starting with ``_`` are helpers, not tasks) defining
``TITLE``, ``TARGET``, ``DATA``, ``run_lamina(data_dir, opts)`` and ``run_fastai(data_dir, opts)``;
optionally ``UNITS`` (unit per metric) and ``TIMEOUT`` (seconds per run). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .summary import normalize_targets

__all__ = ["TASKS_DIR", "LIBS", "Task", "discover_tasks", "load_task", "select_tasks", "missing_data"]

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LIBS = ("lamina", "fastai")
DEFAULT_TIMEOUT = 1800.0


@dataclass
class Task:
    """A checked task module."""

    name: str
    title: str
    targets: list[dict]
    data: tuple[str, ...]
    units: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    module: ModuleType | None = None

    def runner(self, lib: str):
        """``run_lamina`` or ``run_fastai``."""
        return getattr(self.module, f"run_{lib}")


def discover_tasks(tasks_dir: Path = TASKS_DIR) -> list[str]:
    """The task names in ``tasks_dir``, sorted (files starting with ``_`` are skipped)."""
    return sorted(p.stem for p in Path(tasks_dir).glob("*.py") if not p.name.startswith("_"))


def _import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks.tasks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_task(name: str, tasks_dir: Path = TASKS_DIR) -> Task:
    """Import ``<tasks_dir>/<name>.py`` and check its contract.

    Raises:
        FileNotFoundError: when there is no such task file.
        ValueError: when an attribute is missing or malformed (the message names the file and the attribute).
    """
    path = Path(tasks_dir) / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark task {name!r}: expected {path.name} in the tasks folder")
    module = _import_file(name, path)
    where = f"benchmarks/tasks/{path.name}"
    title = getattr(module, "TITLE", None)
    if not isinstance(title, str) or not title:
        raise ValueError(f"{where} must define TITLE, a non-empty string")
    for fn in ("run_lamina", "run_fastai"):
        if not callable(getattr(module, fn, None)):
            raise ValueError(f"{where} must define {fn}(data_dir, opts) -> dict")
    if not hasattr(module, "TARGET") or not hasattr(module, "DATA"):
        raise ValueError(f"{where} must define TARGET (a dict, a list of dicts or None) and DATA "
                         "(a relative data path, a list of them, or None)")
    data = module.DATA
    data = () if data is None else ((data,) if isinstance(data, str) else tuple(data))
    if not all(isinstance(d, str) and not os.path.isabs(d) for d in data):
        raise ValueError(f"{where}: DATA must hold paths relative to the data folder; received {module.DATA!r}")
    units = getattr(module, "UNITS", {}) or {}
    timeout = float(getattr(module, "TIMEOUT", DEFAULT_TIMEOUT))
    return Task(name, title, normalize_targets(name, module.TARGET), data, dict(units), timeout, module)


def select_tasks(available: list[str], requested: str | None) -> list[str]:
    """The tasks named in ``requested`` (comma-separated; None or empty: all), in the order given.

    Raises:
        ValueError: naming an unknown task and listing the known ones.
    """
    if not requested:
        return list(available)
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"Unknown benchmark task(s) {unknown} in --tasks; available: {', '.join(available)}")
    return list(dict.fromkeys(names))


def missing_data(task: Task, data_dir: Path) -> str | None:
    """Why ``task`` cannot run for lack of data under ``data_dir`` (None when everything is there)."""
    missing = [d for d in task.data if not (Path(data_dir) / d).exists()]
    if not missing:
        return None
    return (f"data not found: {', '.join(missing)} under the data folder (set LAMINA_BENCH_DATA or --data "
            "to the folder that holds it)")
