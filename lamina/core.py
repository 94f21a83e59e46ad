"""Foundations: which device to use, seeding, moving nested batches to a device.

Nothing here knows about data, models or training.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["default_device", "set_seed", "seed_worker", "to_device", "to_cpu", "rank_distrib", "num_distrib",
           "listify", "as_members", "as_float", "user_stacklevel", "usable_cpus"]


def default_device() -> torch.device:
    """The device lamina trains on: ``$LAMINA_DEVICE`` if set, else CUDA, then MPS, then CPU.

    Under a distributed launcher each process takes the GPU of its ``$LOCAL_RANK``.

    Example:
        >>> os.environ["LAMINA_DEVICE"] = "cpu"; default_device()
        device(type='cpu')

    Raises:
        ValueError: if ``LAMINA_DEVICE`` names a device torch does not know or cannot use.
    """
    name = os.environ.get("LAMINA_DEVICE", "").strip()
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"LAMINA_DEVICE must name a torch device such as 'cpu', 'cuda' or 'cuda:1'; "
                             f"received: LAMINA_DEVICE={name!r}") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"LAMINA_DEVICE={name!r} asks for CUDA but torch sees no CUDA device; "
                             "unset it or use LAMINA_DEVICE=cpu")
        return device
    if torch.cuda.is_available():
        if "LOCAL_RANK" in os.environ:  # one process per GPU under torchrun: this process's own
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int, reproducible: bool = False) -> None:
    """Seed Python's, numpy's and torch's generators (data-loader workers follow via `seed_worker`).

    Args:
        seed: the seed.
        reproducible: also ask cuDNN for deterministic kernels (slower).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if reproducible:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for torch DataLoaders: seeds numpy and `random` from torch's per-worker seed.

    torch seeds each worker's torch generator from the loader's generator; numpy and `random`
    would otherwise start identical in every worker (the classic duplicated-augmentation bug).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def to_device(batch: Any, device: torch.device | str | None = None, non_blocking: bool = True) -> Any:
    """Move every tensor in a nested tuple/list/dict to ``device`` (default: `default_device()`)."""
    device = torch.device(device) if device is not None else default_device()
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking and device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(o, device, non_blocking) for o in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def to_cpu(batch: Any) -> Any:
    """Move every tensor in a nested structure to the CPU (detached)."""
    if isinstance(batch, torch.Tensor):
        return batch.detach().cpu()
    return to_device(batch, "cpu") if isinstance(batch, (list, tuple, Mapping)) else batch


def rank_distrib() -> int:
    """This process's rank under ``torch.distributed`` (0 when not distributed)."""
    return int(os.environ.get("RANK", 0))


def num_distrib() -> int:
    """The number of processes under ``torch.distributed`` (0 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", 0))


def listify(obj: Any) -> list:
    """``None`` → ``[]``; a list or tuple → a list of its items; anything else → ``[obj]``."""
    if obj is None:
        return []
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def as_members(batch: Any) -> tuple | list:
    """A batch as its members: a tuple or list as it is, a single tensor (what a loader over single values
    yields) as a one-member tuple."""
    return batch if isinstance(batch, (tuple, list)) else (batch,)


def as_float(value: Any) -> Any:
    """``float(value)`` for numbers and one-element tensors; anything else (None, text) unchanged."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the first frame outside lamina.

    Example:
        >>> warnings.warn("...", stacklevel=user_stacklevel())  # names the user's line, however deep the call
    """
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(root):
        frame, level = frame.f_back, level + 1
    return level
