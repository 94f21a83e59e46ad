"""Each process's share of a loader under data-parallel training: `DistributedDL`.

Training (``even=True``): every rank draws the same seeded permutation of the epoch (the wrapped loader's seed
and epoch counter, so the order is the one a single process would draw), pads it by repetition to a multiple
of the number of processes, and takes every ``world_size``-th index starting at its rank. Batch ``k`` of the
ranks together is then batch ``k`` of one process with ``world_size`` times the batch size: changing the
number of processes changes only each one's share. All ranks get the same number of batches, which DDP needs.

Evaluation (``even=False``): contiguous, unpadded parts, the longer ones first, so every item is seen exactly
once and concatenating the ranks' outputs in rank order gives the dataset's order back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Subset

from ..distributed import get_rank, world_size
from .dataloader import DataLoader, TensorDataLoader

__all__ = ["DistributedDL", "shard_indices", "eval_bounds"]

# per rank, so that random item transforms in worker processes differ between ranks
_RANK_SEED_STRIDE = 1_000_003


def shard_indices(order: torch.Tensor, rank: int, n_ranks: int) -> torch.Tensor:
    """Rank ``rank``'s training indices: ``order`` padded by repetition to a multiple of ``n_ranks``, strided."""
    n = len(order)
    total = -(-n // n_ranks) * n_ranks
    if total > n:
        order = torch.cat([order, order.repeat(-(-(total - n) // n))[:total - n]])
    return order[rank::n_ranks]


def eval_bounds(n: int, rank: int, n_ranks: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous evaluation part of ``n`` items (longer parts first)."""
    base, extra = divmod(n, n_ranks)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class DistributedDL:
    """This process's share of ``dl`` (a lamina `DataLoader` or `TensorDataLoader`), drawn anew each epoch.

    Args:
        dl: the loader to shard (image, segmentation, tabular, collab, or plain tensors).
        even: training mode (padded, equal shares, shuffled as ``dl`` shuffles); False for exact evaluation.
        rank, n_ranks: this process's rank and the number of processes (default: the running job's).

    Raises:
        TypeError: for a loader kind that cannot be sharded (text loaders batch whole streams).
    """

    def __init__(self, dl: Any, even: bool = True, rank: int | None = None, n_ranks: int | None = None):
        if not isinstance(dl, (DataLoader, TensorDataLoader)):
            raise TypeError(f"Data-parallel training shards lamina's DataLoader and TensorDataLoader; received "
                            f"{type(dl).__name__}. Language-model and sorted text loaders are not sharded: train "
                            "them in one process")
        self.dl, self.even = dl, even
        self.rank = get_rank() if rank is None else rank
        self.n_ranks = world_size() if n_ranks is None else n_ranks

    # --- what the loop and callbacks read, from the wrapped loader --------------------------------
    @property
    def bs(self) -> int:
        return self.dl.bs

    @property
    def drop_last(self) -> bool:
        return self.dl.drop_last

    @property
    def shuffle(self) -> bool:
        return self.dl.shuffle

    @property
    def device(self) -> torch.device:
        return self.dl.device

    @property
    def dataset(self) -> Any:
        """The whole dataset (the share is drawn per epoch)."""
        return self.dl.dataset

    @property
    def split_idx(self) -> int:
        return self.dl.split_idx

    @property
    def after_batch(self) -> list:
        return self.dl.after_batch

    @property
    def kinds(self) -> tuple:
        return self.dl.kinds

    @property
    def dls(self) -> Any:
        return self.dl.dls

    @property
    def n(self) -> int:
        """Items in this rank's share."""
        n = len(self.dl.dataset)
        if self.even:
            return -(-n // self.n_ranks)
        start, stop = eval_bounds(n, self.rank, self.n_ranks)
        return stop - start

    def decode_batch(self, batch: tuple) -> tuple:
        return self.dl.decode_batch(batch)

    def __len__(self) -> int:
        n, bs = self.n, self.dl.bs
        return n // bs if self.dl.drop_last else -(-n // bs)

    # --- the share of an epoch ---------------------------------------------------------------
    def indices(self, gen: torch.Generator) -> torch.Tensor:
        """This rank's indices for the epoch whose generator is ``gen``."""
        n = len(self.dl.dataset)
        if not self.even:
            start, stop = eval_bounds(n, self.rank, self.n_ranks)
            return torch.arange(start, stop)
        order = torch.randperm(n, generator=gen) if self.dl.shuffle else torch.arange(n)
        return shard_indices(order, self.rank, self.n_ranks)

    def __iter__(self):
        dl = self.dl
        epoch = dl.epochs_seen
        idx = self.indices(dl._epoch_generator())  # advances the wrapped loader's epoch, as iterating it would
        yield from self._share(idx, epoch)

    def _share(self, idx: torch.Tensor, epoch: int) -> Any:
        """A loader over the items ``idx`` of the wrapped loader, in that order."""
        dl, seed = self.dl, self.dl.seed + _RANK_SEED_STRIDE * (self.rank + 1)
        if isinstance(dl, TensorDataLoader):
            idx = idx.to(dl.tensors[0].device)
            share = dl.new(dataset=tuple(t[idx] for t in dl.tensors), shuffle=False, seed=seed)
        else:
            # workers live for one share: the next epoch's share is another loader
            share = dl.new(dataset=Subset(dl.dataset, idx.tolist()), shuffle=False, seed=seed, persistent_workers=False)
        share.epochs_seen = epoch
        return share

    def one_batch(self) -> Any:
        """The first batch of the wrapped loader."""
        return self.dl.one_batch()

    def new(self, **kwargs: Any) -> "DistributedDL":
        """The same share of ``dl.new(**kwargs)``."""
        return DistributedDL(self.dl.new(**kwargs), self.even, self.rank, self.n_ranks)

    def to(self, device: torch.device | str) -> "DistributedDL":
        self.dl.to(device)
        return self

    def __repr__(self) -> str:
        return f"DistributedDL({type(self.dl).__name__}, rank {self.rank} of {self.n_ranks}, even={self.even})"
