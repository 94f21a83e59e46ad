"""Helpers shared by benchmark tasks; imported inside both interpreters, so only stdlib at module level.

Every ``run_lamina``/``run_fastai`` starts with `prepare(opts)` (same threads, same seeds on both sides)
and times the compared part with `stopwatch`.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["prepare", "reseed", "stopwatch", "pick_device", "require_file"]


def prepare(opts: dict[str, Any]) -> None:
    """Set torch's thread count to ``opts['threads']`` (None: torch's default, as a user's script gets) and seed
    python, numpy and torch with ``opts['seed']``."""
    import torch
    if opts.get("threads") is not None:
        torch.set_num_threads(int(opts["threads"]))
    _seed_all(int(opts["seed"]))


def reseed(opts: dict[str, Any]) -> None:
    """Seed python, numpy and torch with ``seed + round``: the same initial state on both sides of a round, another
    one each round (so a median over rounds is not one draw of the initial weights)."""
    _seed_all(int(opts["seed"]) + int(opts.get("round", 0)))


def reseed_weights(opts: dict[str, Any]) -> None:
    """Seed torch alone with another number per round, right before a model is built: fastai's
    ``RandomSplitter(seed=...)`` sets torch's global seed, which would give fastai the same initial weights in
    every round (python's and numpy's states, which draw fastai's training order, are left as they are)."""
    import torch
    torch.manual_seed(10_000 + int(opts["seed"]) + int(opts.get("round", 0)))


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(opts: dict[str, Any]) -> str:
    """``opts['device']`` when given, else ``'cuda'`` when available, else ``'cpu'`` (the same rule on both sides)."""
    import torch
    if opts.get("device"):
        return str(opts["device"])
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Elapsed:
    seconds: float = float("nan")


@contextlib.contextmanager
def stopwatch() -> Iterator[_Elapsed]:
    """Time the block in wall-clock seconds (after CUDA work finished, when CUDA is in use).

    Example:
        >>> with stopwatch() as t:
        ...     learn.fit_one_cycle(3)
        >>> t.seconds
    """
    _sync()
    elapsed = _Elapsed()
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        _sync()
        elapsed.seconds = time.perf_counter() - start


def _sync() -> None:
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def require_file(data_dir: str | os.PathLike, rel: str) -> str:
    """The path of ``rel`` under ``data_dir``; raises FileNotFoundError naming it when it is missing."""
    path = os.path.join(os.fspath(data_dir), rel)
    if not os.path.exists(path):
        raise FileNotFoundError(f"benchmark data {rel!r} not found under the data folder; set LAMINA_BENCH_DATA")
    return path
