"""The separate virtual environment that holds fastai, so that it never shares an interpreter with lamina.

It lives outside the repository by default (``~/.cache/lamina-bench/fastai-venv``; the environment
variable ``LAMINA_BENCH_FASTAI_VENV`` moves it) and is reused while it holds the pinned fastai.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["FASTAI_VERSION", "PINS", "default_venv_dir", "venv_python", "installed_fastai_version",
           "ensure_fastai_venv", "display_path"]

FASTAI_VERSION = "2.8.12"
# the same torch as lamina's tests, so that the comparison measures the libraries, not two torch builds
PINS = ("torch==2.14.1", "torchvision==0.29.1", f"fastai=={FASTAI_VERSION}")


def default_venv_dir() -> Path:
    """``$LAMINA_BENCH_FASTAI_VENV``, else ``~/.cache/lamina-bench/fastai-venv``."""
    env = os.environ.get("LAMINA_BENCH_FASTAI_VENV")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lamina-bench" / "fastai-venv"


def display_path(path: Path) -> str:
    """``path`` with the home folder written as ``~`` (reports name no user's folders)."""
    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def venv_python(venv: Path) -> Path:
    """The interpreter of the virtual environment ``venv``."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_fastai_version(python: Path) -> str | None:
    """The fastai version importable by ``python``, or None when fastai (or the interpreter) is missing."""
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", "import fastai; print(fastai.__version__)"],
                           capture_output=True, text=True, timeout=300)
    return probe.stdout.strip() if probe.returncode == 0 else None


def _remove_old_venv(venv: Path) -> None:
    if not venv.exists():
        return
    # only ever delete something that is recognisably a virtual environment (or an empty folder)
    if not (venv / "pyvenv.cfg").exists() and any(venv.iterdir()):
        raise RuntimeError(f"{venv} exists but is not a virtual environment (no pyvenv.cfg); refusing to delete "
                           "it. Point LAMINA_BENCH_FASTAI_VENV at an empty or new folder")
    shutil.rmtree(venv)


def ensure_fastai_venv(venv: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Return the fastai interpreter, creating (or re-creating) the environment when it lacks the pinned fastai.

    Args:
        venv: where the environment lives (default `default_venv_dir()`).
        log: where progress messages go.

    Returns:
        The path of the environment's python.

    Raises:
        RuntimeError: when the environment cannot be created or pip cannot install the pins.
    """
    venv = Path(venv) if venv is not None else default_venv_dir()
    python = venv_python(venv)
    found = installed_fastai_version(python)
    if found == FASTAI_VERSION:
        log(f"fastai {found} found in {display_path(venv)}")
        return python
    log(f"creating the fastai environment in {display_path(venv)} ({' '.join(PINS)}); this takes a few minutes")
    _remove_old_venv(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    pip_log = venv.parent / f"{venv.name}-pip.log"
    pip_log.unlink(missing_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], "create the virtual environment", pip_log)
    _run([str(python), "-m", "pip", "install", *PINS], "install " + " ".join(PINS), pip_log)
    found = installed_fastai_version(python)
    if found != FASTAI_VERSION:
        raise RuntimeError(f"fastai {FASTAI_VERSION} is still not importable in {venv} after pip install "
                           f"(found: {found}); delete the folder and run again")
    return python


def _run(cmd: list[str], what: str, log_file: Path) -> None:
    # pip's output goes to a log next to the environment; only its end is shown, and only on failure
    with open(log_file, "a") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-20:])
        raise RuntimeError(f"Could not {what}: `{' '.join(cmd)}` exited with {done.returncode}; the end of "
                           f"{display_path(log_file)}:\n{tail}")
