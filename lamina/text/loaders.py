"""Text loaders: one contiguous token stream for language models, length-sorted padded batches for classifiers.

Both keep the numericalized documents as one flat tensor plus offsets and build each batch with a few
tensor operations (no per-token Python), and both follow lamina's seeding: a loader's ``seed`` is drawn
from torch's generator (so `set_seed` repeats runs) and epoch ``e`` shuffles with ``seed + 7919·e``, so a
checkpoint that restores ``epochs_seen`` resumes with the same order.

* `LMDataLoader`: the documents, shuffled each training epoch, are concatenated into one stream cut into
  ``bs`` parallel rows of ``bl = (n_tokens - 1) // bs`` tokens; batch ``i`` is columns ``[i·seq_len,
  (i+1)·seq_len)`` and its target the same window one token later. Row ``j`` of a batch continues row
  ``j`` of the previous batch, which is what lets the language model carry its hidden state across batches.
* `SortedDL`: batches of documents of similar length, padded with ``xxpad``. Validation goes longest
  first; training shuffles, then sorts within chunks of 50 batches and shuffles the batches (the longest
  batch stays first, so running out of memory shows at once). ``pad_first=True`` puts whole ``seq_len``
  chunks of padding before the text and the rest after it, so a text starts at a chunk boundary and
  `SentenceEncoder` skips the chunks where a row is only padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..data.loaders import _LoaderBase

__all__ = ["LMDataLoader", "SortedDL", "pad_batch", "docs_and_targets"]


def docs_and_targets(dataset: Any) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The token-id tensors of a dataset of ``(ids, target?)`` samples (or of plain id tensors), and the targets."""
    samples = [dataset[k] for k in range(len(dataset))]
    if samples and isinstance(samples[0], torch.Tensor):
        return [s.long() for s in samples], None
    docs = [torch.as_tensor(s[0]).long() for s in samples]
    has_target = bool(samples) and len(samples[0]) > 1
    return docs, (torch.stack([torch.as_tensor(s[1]) for s in samples]) if has_target else None)


def _flatten(docs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(d) for d in docs], dtype=torch.long)
    flat = torch.cat(list(docs)) if len(docs) else torch.zeros(0, dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)])
    return flat, offsets, lens


def pad_batch(flat: torch.Tensor, offsets: torch.Tensor, lens: torch.Tensor, idx: torch.Tensor, pad_idx: int = 1,
              pad_first: bool = True, seq_len: int = 72) -> torch.Tensor:
    """Documents ``idx`` (of the flat store) as a padded ``(len(idx), max_len)`` LongTensor, in one gather.

    With ``pad_first`` a document of length ``n`` gets ``((max_len - n) // seq_len) * seq_len`` pad tokens in
    front and the remainder behind (fastai's ``pad_chunk``); otherwise all the padding goes behind.
    """
    n = lens[idx]
    max_len = int(n.max()) if len(n) else 0
    start = ((max_len - n) // seq_len) * seq_len if pad_first else torch.zeros_like(n)
    pos = torch.arange(max_len).unsqueeze(0) - start.unsqueeze(1)  # position inside the document
    inside = (pos >= 0) & (pos < n.unsqueeze(1))
    src = (offsets[idx].unsqueeze(1) + pos).clamp(0, max(len(flat) - 1, 0))
    out = flat[src] if len(flat) else torch.zeros(inside.shape, dtype=torch.long)
    return torch.where(inside, out, torch.full_like(out, pad_idx))


class _TextLoader(_LoaderBase):
    """What both text loaders share: the documents as a flat tensor, and copies with other arguments."""

    def _store(self, dataset: Any, docs: Sequence[torch.Tensor] | None, targets: torch.Tensor | None) -> None:
        self.dataset = dataset
        if docs is None:
            docs, targets = docs_and_targets(dataset)
        self.flat, self.offsets, self.lens = _flatten(docs)
        self.targets = targets

    def _copy_state(self, new: "_TextLoader") -> "_TextLoader":
        new.epochs_seen = self.epochs_seen
        new.show = getattr(self, "show", None)
        new.show_results = getattr(self, "show_results", None)
        new.dls = getattr(self, "dls", None)
        return new

    def _docs(self) -> list[torch.Tensor]:
        return [self.flat[a:b] for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())]

    @property
    def n(self) -> int:
        return len(self.lens)


class LMDataLoader(_TextLoader):
    """Language-model batches: ``(x, y)`` windows of ``seq_len`` tokens over ``bs`` parallel streams, ``y`` = ``x``
    shifted by one token.

    Args:
        dataset: samples whose first member is a document's token ids (a `Datasets` split), or id tensors.
        lens, cache, num_workers: accepted for fastai compatibility (lengths are read from the documents).
        bs: the number of parallel streams.
        seq_len: the window (the back-propagation-through-time length).
        shuffle: shuffle the document order every epoch (training).
        drop_last: accepted for compatibility (the stream is always cut to whole rows).
        device, after_batch, kinds, split_idx, seed: as in `lamina.data.loaders.DataLoader`.
        docs: the documents, when already extracted (copies made by `new` pass them).
    """

    def __init__(self, dataset: Any, lens: Any = None, cache: int = 2, bs: int = 64, seq_len: int = 72,
                 num_workers: int = 0, shuffle: bool = False, drop_last: bool = False, device: Any = None,
                 after_batch: Sequence[Callable] | None = None, kinds: Sequence[str] | None = None,
                 split_idx: int = 0, seed: int | None = None, docs: Sequence[torch.Tensor] | None = None):
        super().__init__(bs, shuffle, drop_last, device, after_batch, kinds or ("lm_text", "lm_text"), split_idx, seed)
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"`seq_len` must be a positive integer; received: seq_len={seq_len!r}")
        self.seq_len = seq_len
        self._store(dataset, docs, None)
        # one token is kept back for the last target; the end that does not fill a whole row is dropped
        self.bl = max(int(self.lens.sum()) - 1, 0) // bs
        self.n_batches = -(-self.bl // seq_len)
        self.last_len = self.bl - (self.n_batches - 1) * seq_len if self.n_batches else 0

    def __len__(self) -> int:
        return self.n_batches

    def stream(self, order: torch.Tensor | None = None) -> torch.Tensor:
        """All tokens, the documents in ``order`` (default: as stored), as one 1-d tensor."""
        if order is None:
            return self.flat
        lens = self.lens[order]
        before = lens.cumsum(0) - lens  # where each document starts in the new stream
        idx = torch.repeat_interleave(self.offsets[:-1][order] - before, lens) + torch.arange(int(lens.sum()))
        return self.flat[idx]

    def __iter__(self):
        gen = self._epoch_generator()
        if not self.n_batches:
            return
        order = torch.randperm(len(self.lens), generator=gen) if self.shuffle else None
        stream = self.stream(order)
        corpus = self.bl * self.bs
        x, y = stream[:corpus].view(self.bs, self.bl), stream[1:corpus + 1].view(self.bs, self.bl)
        on_device = self.device.type != "cpu"
        if on_device:  # one copy per epoch instead of one per batch
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for i in range(self.n_batches):
            window = slice(i * self.seq_len, i * self.seq_len + self.seq_len)
            yield self._finish((x[:, window].contiguous(), y[:, window].contiguous()), on_device=on_device)

    def new(self, dataset: Any = None, seq_len: int | None = None, docs: Sequence[torch.Tensor] | None = None,
            **kwargs: Any) -> "LMDataLoader":
        """A copy with other arguments (``bs``, ``seq_len``, ``shuffle`` ...) or over another dataset (or ``docs``).
        Arguments of other loaders (``num_workers`` ...) are ignored."""
        args = dict(bs=self.bs, seq_len=self.seq_len if seq_len is None else seq_len, shuffle=self.shuffle,
                    device=self.device, after_batch=list(self.after_batch), kinds=self.kinds,
                    split_idx=self.split_idx, seed=self.seed)
        args.update({k: v for k, v in kwargs.items() if k in args or k == "drop_last"})
        if docs is None and dataset is None:
            docs = self._docs()
        return self._copy_state(LMDataLoader(self.dataset if dataset is None else dataset, docs=docs, **args))


class SortedDL(_TextLoader):
    """Classifier batches ``(x, y)``: documents of similar length padded to the longest of the batch.

    Args:
        dataset: samples ``(token ids, target)`` (a `Datasets` split), or id tensors alone (no targets).
        sort_func, res: accepted for fastai compatibility; documents are sorted by length.
        bs, shuffle, drop_last, device, after_batch, kinds, split_idx, seed: as in `lamina.data.loaders.DataLoader`.
        pad_idx: the padding id (``xxpad``'s, 1 by default).
        pad_first: chunk-aligned padding in front (see `pad_batch`), else all behind.
        seq_len: the chunk length of the padding (the classifier's bptt).
        docs, targets: the documents and targets, when already extracted.
    """

    def __init__(self, dataset: Any, sort_func: Any = None, res: Any = None, bs: int = 64, shuffle: bool = False,
                 drop_last: bool = False, device: Any = None, after_batch: Sequence[Callable] | None = None,
                 kinds: Sequence[str] | None = None, split_idx: int = 0, seed: int | None = None, pad_idx: int = 1,
                 pad_first: bool = True, seq_len: int = 72, docs: Sequence[torch.Tensor] | None = None,
                 targets: torch.Tensor | None = None, num_workers: int = 0):
        super().__init__(bs, shuffle, drop_last, device, after_batch, kinds or ("text", "category"), split_idx, seed)
        self.pad_idx, self.pad_first, self.seq_len = pad_idx, pad_first, seq_len
        self._store(dataset, docs, targets)

    def __len__(self) -> int:
        n = len(self.lens)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def get_idxs(self, gen: torch.Generator | None = None) -> torch.Tensor:
        """The order of the documents: longest first, or (``shuffle``) batches of similar lengths in random order."""
        if not self.shuffle:
            return torch.argsort(self.lens, descending=True, stable=True)
        gen = gen if gen is not None else torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(self.lens), generator=gen)
        first = int(torch.nonzero(perm == int(torch.argmax(self.lens)))[0])
        perm[[0, first]] = perm[[first, 0]]  # the longest document leads: the largest batch comes first
        chunk = self.bs * 50
        pieces = [p[torch.argsort(self.lens[p], descending=True, stable=True)] for p in perm.split(chunk)]
        batches = list(torch.cat(pieces).split(self.bs))
        if len(batches) > 2:
            middle = torch.randperm(len(batches) - 2, generator=gen) + 1
            batches = [batches[0], *(batches[i] for i in middle.tolist()), batches[-1]]
        return torch.cat(batches) if batches else perm

    def __iter__(self):
        order = self.get_idxs(self._epoch_generator())
        stop = len(order) - len(order) % self.bs if self.drop_last else len(order)
        for start in range(0, stop, self.bs):
            idx = order[start:start + self.bs]
            x = pad_batch(self.flat, self.offsets, self.lens, idx, self.pad_idx, self.pad_first, self.seq_len)
            yield self._finish((x,) if self.targets is None else (x, self.targets[idx]))

    def new(self, dataset: Any = None, docs: Sequence[torch.Tensor] | None = None, targets: torch.Tensor | None = None,
            **kwargs: Any) -> "SortedDL":
        """A copy with other arguments (``bs``, ``shuffle``, ``drop_last`` ...) or over another dataset (or ``docs``
        and ``targets``). Arguments of other loaders (``num_workers`` ...) are ignored."""
        args = dict(bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last, device=self.device,
                    after_batch=list(self.after_batch), kinds=self.kinds, split_idx=self.split_idx, seed=self.seed,
                    pad_idx=self.pad_idx, pad_first=self.pad_first, seq_len=self.seq_len)
        args.update({k: v for k, v in kwargs.items() if k in args})
        if docs is None and dataset is None:
            docs, targets = self._docs(), self.targets
        if targets is None and docs is not None:
            args["kinds"] = self.kinds[:1]
        return self._copy_state(SortedDL(self.dataset if dataset is None else dataset, docs=docs, targets=targets,
                                         **args))
