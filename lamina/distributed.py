"""Process-group plumbing for data-parallel training on `torch.distributed`: who am I, set-up and tear-down,
and the few collectives the training loop needs (sums, gathers of uneven parts, a barrier).

Launchers (``torchrun``, ``accelerate launch``, Slurm's ``srun`` running ``torchrun``) start one process per
device and describe the job in the environment: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``. Everything here reads that environment, and every helper is a no-op in a single process, so
the same script runs unchanged with one process or many.

Example:
    >>> setup_distrib()                       # under torchrun: join the job (NCCL on CUDA, gloo on CPU)
    >>> total = all_reduce_sum(torch.tensor([correct, count]))
    >>> teardown_distrib()
"""

from __future__ import annotations

import atexit
import datetime
import os
import time
from collections.abc import Callable
from threading import get_native_id
from typing import Any

import torch
import torch.distributed as dist

from .core import default_device, num_distrib, rank_distrib
from .distributed_shm import close_shared, shared_sum

__all__ = ["is_distributed", "local_rank", "default_backend", "dist_timeout", "setup_distrib", "teardown_distrib",
           "is_initialized", "world_size", "get_rank", "barrier", "all_reduce_sum", "all_reduce_mean",
           "all_reduce_mean_async", "broadcast_tensors", "LossRider",
           "all_gather_cat", "broadcast_int", "rank0_first", "on_rank0"]

BACKENDS = ("nccl", "gloo", "mpi", "ucc")
# Collectives give up after this long (seconds) instead of hanging when a peer died: a crashed rank ends the job.
DEFAULT_TIMEOUT_S = 600


def is_distributed() -> bool:
    """Whether this process is one of several: a process group of size > 1, or a launcher's ``WORLD_SIZE`` > 1."""
    if is_initialized():
        return dist.get_world_size() > 1
    return num_distrib() > 1


def is_initialized() -> bool:
    """Whether a `torch.distributed` process group is running in this process."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes in the job (1 when not distributed)."""
    return dist.get_world_size() if is_initialized() else max(num_distrib(), 1)


def get_rank() -> int:
    """This process's rank in the job (0 when not distributed)."""
    return dist.get_rank() if is_initialized() else rank_distrib()


def local_rank() -> int:
    """This process's rank on its machine: ``$LOCAL_RANK``, which picks its GPU (0 when not set)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def default_backend() -> str:
    """``$LAMINA_DIST_BACKEND`` if set, else NCCL when CUDA is usable, else gloo.

    Raises:
        ValueError: when ``LAMINA_DIST_BACKEND`` names no backend torch knows.
    """
    name = os.environ.get("LAMINA_DIST_BACKEND", "").strip().lower()
    if name:
        if name not in BACKENDS:
            raise ValueError(f"LAMINA_DIST_BACKEND must be one of {', '.join(BACKENDS)}; received: "
                             f"LAMINA_DIST_BACKEND={name!r}. Unset it to choose automatically "
                             "(nccl on CUDA, gloo on CPU)")
        return name
    from .core import default_device
    return "nccl" if default_device().type == "cuda" else "gloo"


def dist_timeout() -> datetime.timedelta:
    """How long a collective waits for its peers: ``$LAMINA_DIST_TIMEOUT`` seconds (default 600).

    Raises:
        ValueError: when ``LAMINA_DIST_TIMEOUT`` is not a positive number.
    """
    raw = os.environ.get("LAMINA_DIST_TIMEOUT", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError("LAMINA_DIST_TIMEOUT must be a positive number of seconds; received: "
                         f"LAMINA_DIST_TIMEOUT={raw!r}")
    return datetime.timedelta(seconds=seconds)


def setup_distrib(backend: str | None = None, timeout: datetime.timedelta | None = None) -> bool:
    """Join the job the launcher described in the environment; does nothing when already joined.

    Args:
        backend: ``'nccl'``, ``'gloo'`` ... (default `default_backend`).
        timeout: how long collectives wait for their peers (default `dist_timeout`).

    Returns:
        True when this call started the process group (so the caller owns its tear-down).

    Raises:
        RuntimeError: when the launcher's variables (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
            are missing: launch with ``torchrun --nproc_per_node=N script.py``.
    """
    if is_initialized():
        return False
    missing = [v for v in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"Distributed training needs the launcher's environment, but {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not set. Launch the script with "
                           "`torchrun --nproc_per_node=N script.py` (or accelerate launch / srun + torchrun)")
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(default_device())  # LOCAL_RANK's GPU among those visible (one per task under Slurm)
    dist.init_process_group(backend=backend, timeout=timeout or dist_timeout())
    return True


def teardown_distrib() -> None:
    """Leave the process group (no-op when none is running), then let its worker threads go idle.

    A gloo worker thread drops its last reference to a finished collective shortly after the collective returns,
    and dropping it takes the interpreter lock (the collective's tensors are Python objects). When that happens
    while the interpreter shuts down, the process aborts; so the tear-down, which runs at exit, waits until this
    process's other threads stop running (a few milliseconds, at most half a second).
    """
    close_shared()
    if is_initialized():
        dist.destroy_process_group()
        _wait_for_threads_to_idle()


def _wait_for_threads_to_idle(limit_s: float = 0.5, quiet_polls: int = 3) -> None:
    """Sleep (releasing the interpreter lock) until no other thread of this process is running or runnable for
    ``quiet_polls`` polls in a row, or ``limit_s`` passed. Where /proc is missing, sleep a fixed 50 ms."""
    tasks, me = "/proc/self/task", str(get_native_id())
    if not os.path.isdir(tasks):
        time.sleep(0.05)
        return
    deadline, quiet = time.monotonic() + limit_s, 0
    while quiet < quiet_polls and time.monotonic() < deadline:
        time.sleep(0.005)
        quiet = quiet + 1 if not any(_runnable(tasks, tid) for tid in os.listdir(tasks) if tid != me) else 0


def _runnable(tasks: str, tid: str) -> bool:
    try:
        with open(f"{tasks}/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "R"  # the state follows the parenthesised name
    except (OSError, IndexError):
        return False  # the thread ended meanwhile


def ensure_distrib() -> bool:
    """`setup_distrib` for a script that did not call it (a learner under torchrun); torn down at exit.

    Returns:
        True when this call started the process group.
    """
    started = setup_distrib()
    if started:
        atexit.register(teardown_distrib)
    return started


def _comm_device() -> torch.device:
    """Where tensors must be for the running backend's collectives (NCCL: this rank's GPU)."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (no-op when not distributed)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``t``, as a new tensor on ``t``'s device and dtype (``t`` itself when alone)."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return t
    work = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(t.device)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of ``t`` (``t`` itself when alone)."""
    return all_reduce_mean_async(t)()


def all_reduce_mean_async(t: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Start averaging ``t`` over ranks; returns a function that waits for the mean and returns it.

    The wait joins the collectives queued after it (a DDP backward's gradient all-reduce): started before the
    backward and read after it, the average adds no second point where every rank waits for the others.
    """
    if not (is_initialized() and dist.get_world_size() > 1):
        return lambda: t
    work_buffer = t.detach().to(_comm_device(), copy=True)
    work = dist.all_reduce(work_buffer, op=dist.ReduceOp.SUM, async_op=True)

    def result() -> torch.Tensor:
        work.wait()
        return (work_buffer / dist.get_world_size()).to(t.device)
    return result


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` concatenated along the first dimension in rank order; the ranks' lengths may differ.

    Each rank's part is padded to the longest for the collective (collectives need equal shapes), then trimmed.

    Raises:
        ValueError: when the ranks' parts differ beyond their first dimension.
    """
    if not (is_initialized() and dist.get_world_size() > 1):
        return t
    device, n = _comm_device(), dist.get_world_size()
    shape = torch.tensor([t.dim(), *t.shape, *[0] * (8 - t.dim())], device=device, dtype=torch.int64)
    shapes = [torch.empty_like(shape) for _ in range(n)]
    dist.all_gather(shapes, shape)
    rest = {tuple(s[2:2 + int(s[0]) - 1].tolist()) for s in shapes}
    if len(rest) > 1:
        raise ValueError(f"all_gather_cat: the ranks' tensors differ beyond the first dimension ({sorted(rest)}); "
                         "only the number of rows may differ between ranks")
    lengths = [int(s[1]) for s in shapes]
    longest = max(lengths)
    part = t.detach().to(device)
    if len(part) < longest:
        part = torch.cat([part, part.new_zeros((longest - len(part), *part.shape[1:]))])
    parts = [torch.empty_like(part) for _ in range(n)]
    dist.all_gather(parts, part.contiguous())
    return torch.cat([p[:k] for p, k in zip(parts, lengths)]).to(t.device)


def broadcast_tensors(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` in place, on every rank, with rank ``src``'s values: one collective per dtype
    (no-op when alone). Every rank must pass tensors of the same shapes and dtypes, in the same order."""
    if not (is_initialized() and dist.get_world_size() > 1) or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1).to(_comm_device()) for t in group])
            dist.broadcast(flat, src=src)
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))


class LossRider:
    """A `DistributedDataParallel` communication hook that averages a step's loss in the same collective as the
    step's last gradient bucket, so a DDP step waits for one round trip instead of two.

    Set ``rider.loss`` (a 1-element float tensor) before the backward; after it, ``rider.take()`` gives the mean
    over ranks. When the last bucket is sparse, not fp32, or so large that copying it costs more than a second
    collective (``max_merge`` elements), the loss goes in its own asynchronous collective. Buckets are reduced
    to what DDP's default hook gives (divided by the world size, then summed over ranks; see `_sum_async`).

    Example:
        >>> ddp.register_comm_hook(rider := LossRider(), LossRider.hook)
    """

    max_merge = 1 << 20

    def __init__(self) -> None:
        self.loss: torch.Tensor | None = None
        self._mean: Callable[[], torch.Tensor] | None = None

    def take(self) -> Callable[[], torch.Tensor] | None:
        """The mean loss's getter, once; None when no backward carried the loss (it is still in ``loss``)."""
        mean, self._mean = self._mean, None
        return mean

    @staticmethod
    def hook(rider, bucket):  # unannotated: DDP compares the annotations with its own types (dist.GradBucket)
        buf, n = bucket.buffer(), dist.get_world_size()
        loss = rider.loss if bucket.is_last() else None
        if loss is None or buf.dtype != torch.float32 or buf.is_sparse or buf.numel() > rider.max_merge:
            if loss is not None:
                rider.loss, rider._mean = None, all_reduce_mean_async(loss)
            return _sum_async(buf.div_(n)).then(lambda fut: _into(buf, fut.value()))
        rider.loss = None
        flat = torch.cat([buf.reshape(-1), loss.detach().reshape(1).to(buf.device)]).div_(n)

        def unpack(fut: torch.futures.Future) -> torch.Tensor:
            out = fut.value()
            mean = out[-1].clone().reshape(loss.shape).to(loss.device)
            rider._mean = lambda: mean
            return buf.copy_(out[:-1].view_as(buf))
        return _sum_async(flat).then(unpack)


def _into(buf: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    return total if total is buf or buf.is_sparse else buf.copy_(total)


# Up to this many gathered elements (a bucket's size times the number of ranks), gloo sums faster by gathering
# every rank's tensor (one exchange) than by its all-reduce (a reduce-scatter, then an all-gather). Measured on
# 2 CPU processes with the Adult model's 30k-float bucket: a DDP step of 3.6/5.1/5.6 ms gathering against
# 4.6/6.2/6.3 ms all-reducing (3 alternating runs). Bounding the gathered size, not the bucket's, keeps the data
# each rank receives small when there are many ranks.
GATHER_SUM_MAX = 1 << 19


def _sum_async(t: torch.Tensor) -> torch.futures.Future:
    """A future of the sum over ranks of the dense or sparse tensor ``t`` (``t`` itself may be overwritten).

    On gloo, when every rank runs on this machine, the sum goes through shared memory (`shared_sum`, done before
    this returns); else one gloo all-gather for a small tensor, or the backend's all-reduce."""
    n, gloo = dist.get_world_size(), dist.get_backend() == "gloo"
    total = shared_sum(t, _group_timeout_s()) if gloo else None
    if total is not None:  # the ranks share this machine: summed through shared memory, already done
        done = torch.futures.Future()
        done.set_result(total)
        return done
    if t.is_sparse or t.numel() * n > GATHER_SUM_MAX or not gloo:
        return dist.all_reduce(t, async_op=True).get_future().then(lambda fut: fut.value()[0])
    gathered = t.new_empty((n, t.numel()))
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    work = gather(gathered.view(-1), t.reshape(-1), async_op=True)
    return work.get_future().then(lambda fut: (fut.value(), gathered.sum(0).view_as(t))[1])  # value(): raise


def _group_timeout_s() -> float:
    """The default group's collective timeout in seconds (what its gloo collectives wait), else `dist_timeout`'s."""
    try:
        return dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    except (AttributeError, RuntimeError, TypeError, ValueError):  # a private accessor: absent from some torch
        return dist_timeout().total_seconds()


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s ``value`` on every rank (``value`` itself when alone)."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=src)
    return int(t.item())


def on_rank0(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` on rank 0 only; every rank then waits for it (so a file it writes exists for all). Every rank
    must call it; when ``func`` fails on rank 0, the others are still released (and the error shows on rank 0).

    Returns:
        ``func``'s result on rank 0, None elsewhere.
    """
    if is_distributed():
        ensure_distrib()
    try:
        return func(*args, **kwargs) if get_rank() == 0 else None
    finally:
        barrier()


def rank0_first(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` on rank 0 first, then on the other ranks (e.g. ``untar_data``: one download, then cache hits).

    Example:
        >>> path = rank0_first(untar_data, URLs.PETS)
    """
    if is_distributed():
        ensure_distrib()  # the barrier needs the process group, which otherwise starts with the first fit
    if get_rank() == 0:
        result = func(*args, **kwargs)
        barrier()
        return result
    barrier()
    return func(*args, **kwargs)
