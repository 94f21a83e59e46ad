"""Data-parallel training on `torch.distributed`: the `DistributedTrainer` callback and the learner's
``distrib_ctx()`` / ``to_distributed()``.

One process per device (``torchrun --nproc_per_node=N script.py``). For a fit, the callback wraps the model in
`DistributedDataParallel` for the training forward and backward only: ``learn.model`` stays the plain model that
``save``, ``export``, ``predict`` and ``summary`` see. Each training pass reads this rank's share of the
epoch's order (`DistributedDL`), each batch's loss is averaged over the ranks (so the smoothed loss, `lr_find`
and loss-based stopping agree everywhere), and every sharded evaluation ends by combining the metrics
(`Metric.sync`) and gathering `get_preds`' outputs in the dataset's order. Rank 0 alone prints.

A training step waits for one collective: the loss average rides in the last gradient bucket's collective
(`LossRider`), and module buffers (BatchNorm's running statistics) are not broadcast before every forward, as DDP
does by default, but once from rank 0 at the end of each training pass and of the fit, before anything reads
them (in training mode BatchNorm normalises with the batch's statistics, not the buffers). Every rank then
validates with rank 0's buffers, which are the ones `save` and `export` write. Pass ``forward_sync_buffers=True``
(torch ≥ 2.13; ``broadcast_buffers=True`` before) for DDP's per-forward broadcast (a model whose training forward
reads buffers another rank updates). With a ``process_group`` or ``device_mesh`` of your own, DDP's defaults
apply unchanged.

Example:
    >>> with learn.distrib_ctx():        # or nothing at all: a fit under torchrun adds the callback itself
    ...     learn.fine_tune(1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..core import default_device, listify
from ..data.distributed import DistributedDL
from ..metrics.base import Metric
from ..distributed import (LossRider, all_gather_cat, all_reduce_mean_async, broadcast_int, broadcast_tensors,
                           ensure_distrib, get_rank, is_distributed, setup_distrib, teardown_distrib, world_size)
from .core import Callback, noop

__all__ = ["DistributedTrainer", "DistributedMixin"]


class DistributedTrainer(Callback):
    """Train data-parallel over the processes of a `torch.distributed` job.

    Args:
        sync_bn: convert BatchNorm layers to `SyncBatchNorm` (statistics over the global batch; CUDA only).
        **ddp_kwargs: passed to `DistributedDataParallel` (e.g. ``find_unused_parameters=True`` for a model
            whose forward skips some trainable layers).
    """

    order = 11  # after the device move (TrainEvalCallback) and channels-last, before the Recorder

    def __init__(self, sync_bn: bool = False, **ddp_kwargs: Any):
        super().__init__()
        self.sync_bn, self.ddp_kwargs = sync_bn, ddp_kwargs
        self._sharded, self._no_sync, self._logger, self._mean_loss = False, None, None, None
        self._rider: LossRider | None = None
        self._per_pass_buffers = False  # this fit broadcasts buffers per pass, not DDP per forward
        self._buffers_stale = False  # a training step ran since rank 0's buffers were last broadcast

    # --- the fit ---------------------------------------------------------------------------------
    def before_fit(self) -> None:
        learn = self.learn
        unsynced = [type(m).__name__ for m in learn.metrics if type(m).sync is Metric.sync]
        if unsynced:  # refused now, not after a whole epoch of training
            raise NotImplementedError(f"The metrics {unsynced} do not implement sync(), so under data-parallel "
                                      "training each process would report only its own share. Implement sync() "
                                      "(see AvgMetric.sync and AccumMetric.sync) or train in one process")
        if self.sync_bn:
            self._convert_sync_bn()
        ensure_distrib()
        for dl in learn.dls.loaders:  # the same orders on every rank, whatever each process's random state
            dl.seed, dl.epochs_seen = broadcast_int(dl.seed), broadcast_int(dl.epochs_seen)
        if get_rank() != 0:
            self._logger, learn.logger = learn.logger, noop
        trainable = any(p.requires_grad for p in learn.model.parameters())
        learn.wrapped_model = self._wrap() if trainable else None

    def _wrap(self) -> DistributedDataParallel:
        """DDP with one collective per step: the loss rides with the gradients; buffers sync per pass, not per
        forward (unless the user asked for DDP's broadcast)."""
        ddp = DistributedDataParallel(self.learn.model, **self._ddp_args())
        own_group = {"process_group", "device_mesh"} & set(self.ddp_kwargs)  # ours run on the default group
        self._per_pass_buffers = not own_group and not {"broadcast_buffers", "forward_sync_buffers"} & set(
            self.ddp_kwargs)
        if self._per_pass_buffers:
            ddp.broadcast_buffers = False  # the construction above synced them once from rank 0
        if not own_group:
            self._rider = LossRider()
            ddp.register_comm_hook(self._rider, LossRider.hook)
        return ddp

    def _ddp_args(self) -> dict:
        device = next(self.learn.model.parameters()).device
        ids = dict(device_ids=[device.index if device.index is not None else default_device().index]) \
            if device.type == "cuda" else {}
        return {**ids, **self.ddp_kwargs}

    def _convert_sync_bn(self) -> None:
        device = next(self.learn.model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"sync_bn=True needs CUDA devices: torch's SyncBatchNorm does not train on {device.type}. "
                             "Pass sync_bn=False (each process keeps its own batch statistics)")
        self.learn.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.learn.model)

    def after_fit(self) -> None:
        self._broadcast_buffers()
        self.cleanup()

    def cleanup(self) -> None:
        """The end of every fit, an error's or Ctrl-C's included: the model comes out of its wrapper (no
        collective here: another rank may be gone)."""
        self.learn.wrapped_model, self._mean_loss, self._rider = None, None, None
        self._buffers_stale = self._per_pass_buffers = False
        self._end_no_sync()
        if self._logger is not None:
            self.learn.logger, self._logger = self._logger, None

    def _broadcast_buffers(self) -> None:
        """Rank 0's buffers everywhere, except those the model asks DDP to leave alone (rank-local ones)."""
        if self._buffers_stale:
            model = self.learn.model
            skip = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
            broadcast_tensors([b for name, b in model.named_buffers() if name not in skip])
            self._buffers_stale = False

    # --- the passes ------------------------------------------------------------------------------
    def before_train(self) -> None:
        share = DistributedDL(self.learn.dl, even=True)
        if len(share) == 0:
            raise ValueError(f"Each of the {share.n_ranks} processes gets {share.n} training items, fewer than one "
                             f"batch (bs={share.bs}, drop_last={share.drop_last}). Use a smaller per-process batch "
                             "size (bs=...), more data, or fewer processes")
        self.learn.dl = share

    def after_loss(self) -> None:
        """One loss, the same on every rank, from after the backward: with the gradients when they sync."""
        if not (self.learn.training and self.learn.loss is not None):
            return
        loss, ddp = self.learn.loss.detach().float(), self.learn.wrapped_model
        if self._rider is not None and ddp is not None and ddp.require_backward_grad_sync:
            self._rider.loss = loss
        else:
            self._mean_loss = all_reduce_mean_async(loss)

    def _take_mean_loss(self) -> None:
        rider = self._rider
        if self._mean_loss is None and rider is not None:
            self._mean_loss = rider.take()
            if self._mean_loss is None and rider.loss is not None:  # no backward carried it (cancelled)
                self._mean_loss, rider.loss = all_reduce_mean_async(rider.loss), None
        if self._mean_loss is not None:
            self.learn.loss, self._mean_loss = self._mean_loss(), None

    def after_backward(self) -> None:
        self._take_mean_loss()

    def after_cancel_batch(self) -> None:
        self._take_mean_loss()  # a batch cancelled before its backward: before after_batch's readers

    def before_batch(self) -> None:
        """Skip the gradient all-reduce on the batches gradient accumulation will not step on."""
        if self.learn.training and self._per_pass_buffers:
            self._buffers_stale = True  # from the first forward on (a cancel may skip this batch's after_batch)
        acc, ddp = getattr(self.learn, "gradient_accumulation", None), self.learn.wrapped_model
        if not self.learn.training or acc is None or ddp is None:
            return
        bs = len(self.learn.yb[0]) if self.learn.yb else len(self.learn.xb[0])
        if acc.count + bs < acc.n_acc:
            self._no_sync = ddp.no_sync()
            self._no_sync.__enter__()

    def after_batch(self) -> None:
        self._take_mean_loss()
        self._end_no_sync()

    def _end_no_sync(self) -> None:
        if self._no_sync is not None:
            self._no_sync.__exit__(None, None, None)
            self._no_sync = None

    def after_train(self) -> None:
        self._broadcast_buffers()  # before validation reads them
        if getattr(getattr(self.learn, "recorder", None), "train_metrics", False):
            for m in self.learn.metrics:
                m.sync()

    def before_validate(self) -> None:
        dl = self.learn.dl
        # a loader smaller than the job (one item to predict) runs whole on every rank: nothing to combine
        self._sharded = len(dl.dataset) >= world_size() and not isinstance(dl, DistributedDL)
        if self._sharded:
            self.learn.dl = DistributedDL(dl, even=False)

    def after_cancel_validate(self) -> None:
        self._sharded = False  # a cancelled pass (lr_find skips validation) has nothing to combine

    def after_validate(self) -> None:
        if not self._sharded:
            return
        self._sharded = False
        recorder = getattr(self.learn, "recorder", None)
        if recorder is not None:
            recorder.loss.sync()
            if recorder.valid_metrics:
                for m in self.learn.metrics:
                    m.sync()
        for cb in self.learn.cbs:
            if hasattr(cb, "gather_parts"):
                cb.gather_parts(_gather)


def _gather(parts: list) -> list:
    """One rank's batches (tensors, or tuples of tensors) → every rank's, concatenated in rank order."""
    if not parts:
        raise RuntimeError("this process evaluated no batch; every rank needs at least one item")
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return [all_gather_cat(torch.cat(parts))]
    if isinstance(first, (list, tuple)):
        members = [_gather([p[i] for p in parts])[0] for i in range(len(first))]
        return [type(first)(members) if isinstance(first, tuple) else members]
    raise TypeError(f"cannot gather predictions of type {type(first).__name__} across processes; return tensors")


class DistributedMixin:
    """``learn.to_distributed()``, ``learn.detach_distributed()`` and ``with learn.distrib_ctx():``."""

    wrapped_model: nn.Module | None = None  # the DDP wrapper that runs training batches, during a fit

    def to_distributed(self, sync_bn: bool = False, **ddp_kwargs: Any) -> Any:
        """Join the launcher's job (if not yet) and train data-parallel from now on (adds `DistributedTrainer`).

        Args:
            sync_bn: convert BatchNorm to `SyncBatchNorm` for the fits (CUDA only).
            **ddp_kwargs: passed to `DistributedDataParallel`.
        """
        ensure_distrib()
        self.detach_distributed()
        self.add_cb(DistributedTrainer(sync_bn=sync_bn, **ddp_kwargs))
        return self

    def detach_distributed(self) -> Any:
        """Back to one process's training (removes `DistributedTrainer`; the process group stays)."""
        self.remove_cbs([cb for cb in self.cbs if isinstance(cb, DistributedTrainer)])
        return self

    @contextlib.contextmanager
    def distrib_ctx(self, sync_bn: bool = False, in_notebook: bool = False, **ddp_kwargs: Any) -> Iterator[Any]:
        """Train data-parallel inside the block; the process group started here is torn down at its end.

        Without a launcher's environment (one plain process) the block trains as usual.

        Args:
            sync_bn: convert BatchNorm to `SyncBatchNorm` (CUDA only; off by default).
            in_notebook: accepted for fastai compatibility; launch notebooks' functions with torch's
                ``torch.multiprocessing.spawn`` or ``accelerate.notebook_launcher``.
            **ddp_kwargs: passed to `DistributedDataParallel`.
        """
        if not is_distributed():
            yield self
            return
        started = setup_distrib()
        try:
            self.to_distributed(sync_bn=sync_bn, **ddp_kwargs)
            yield self
        finally:
            self.detach_distributed()
            if started:
                teardown_distrib()

    def _with_distributed(self, cbs: Any) -> Any:
        """``cbs`` plus a `DistributedTrainer` when the process runs under a launcher and has none (torchrun
        with an unchanged single-process script)."""
        if not is_distributed() or any(isinstance(cb, DistributedTrainer) for cb in [*self.cbs, *listify(cbs)]):
            return cbs
        return [*listify(cbs), DistributedTrainer()]

