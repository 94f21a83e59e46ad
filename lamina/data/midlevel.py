"""fastai's mid-level data API (book chapter 11): `TfmdLists`, ``show_at``, ``decode_at``, and (from
`lamina.data.pipeline`) `Transform`, `Pipeline` and `fastuple`.

A layer over lamina's own pipeline, not a second one: `TfmdLists` is a `Datasets` of one member whose steps are a
`Pipeline`, run item by item in ``__getitem__`` (in the loader's workers), so ``tls.dataloaders(after_item=...,
after_batch=...)`` is `Datasets.dataloaders`; `Datasets` itself takes fastai's lists of steps per member
(``Datasets(files, [[PILImage.create], [parent_label, Categorize]], splits=splits)``), `Transform`s included.

Example:
    >>> tls = TfmdLists(files, [parent_label, Categorize()], splits=splits)
    >>> tls.decode(tls.valid[0]), show_at(tls.valid, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .datasets import Datasets
from .errors import error_name, renamed_error, step_name
from .pipeline import Pipeline, Transform, fastuple, run_steps
from .transforms import apply_item_tfms, step_hook

__all__ = ["TfmdLists", "show_at", "decode_at",
           # re-exported from their home, lamina.data.pipeline
           "Transform", "Pipeline", "fastuple"]


def _kind_of(x: Any) -> str:
    """What a member is, for batch transforms: what it says (images and masks do: ``kind``), else ``'raw'``."""
    kind = getattr(x, "kind", None)
    return kind if isinstance(kind, str) else "raw"


class TfmdLists(Datasets):
    """Items through one `Pipeline`, lazily, with training and validation splits (fastai's ``TfmdLists``).

    Args:
        items: the items.
        tfms: a `Pipeline`, or the steps of one.
        splits: ``(train_idxs, valid_idxs)``; default: every item in training.
        split_idx: the split this view behaves as (0 training, 1 validation).
        do_setup: set the steps up (vocabularies, statistics) on the training items, or on all items with
            ``train_setup=False``.
        use_list, types, verbose: fastai's; accepted and unused (items are always kept as a list).

    Example:
        >>> tls = TfmdLists(files, SiameseTransform(files, label_func, splits), splits=splits)
        >>> show_at(tls.valid, 0)
        >>> dls = tls.dataloaders(after_item=[Resize(224), ToTensor],
        ...                       after_batch=[IntToFloatTensor, Normalize.from_stats(*imagenet_stats)])
    """

    def __init__(self, items: Any, tfms: Any, use_list: Any = None, do_setup: bool = True,
                 split_idx: int | None = None, train_setup: bool = True, splits: Sequence | None = None,
                 types: Any = None, verbose: bool = False):
        super().__init__(items, tfms=[[]], splits=splits, split_idx=split_idx)
        self.tfms = tfms if isinstance(tfms, Pipeline) else Pipeline(tfms, split_idx=split_idx)
        if do_setup:
            self.tfms.setup([self.items[i] for i in self.splits[0]] if train_setup else list(self.items))

    def _load(self, i: int) -> tuple:
        """Item ``i`` through the pipeline (with this view's split), as a sample tuple; an error names the step."""
        x = self.items[i]
        for step in self.tfms.fs:
            try:
                x = run_steps([step], x, self.split_idx)
            except Exception as e:
                name = step.name if isinstance(step, Transform) else step_name(step)
                raise renamed_error(e, f"step `{name}` of the TfmdLists pipeline failed on item {self.items[i]!r}: "
                                       f"{error_name(e)}: {e}") from e
        return x if isinstance(x, tuple) else (x,)

    def _sample(self, k: int) -> tuple:
        sample = self._load(self.idxs[k])
        if not self.item_tfms:
            return sample
        try:
            return apply_item_tfms(sample, self.item_tfms, self.split_idx)
        except Exception as e:
            raise renamed_error(e, f"An item transform failed on item {self.items[self.idxs[k]]!r}: "
                                   f"{error_name(e)}: {e}") from e

    def __getitem__(self, k: int) -> Any:
        sample = self._sample(k)  # nothing is cached: a pipeline may draw random numbers
        return sample[0] if len(sample) == 1 else sample

    def __getitems__(self, ks: Sequence[int]) -> list:
        samples = [self._sample(k) for k in ks]
        self.check_batchable(ks, samples)
        return samples

    def check_classes(self) -> None:
        """Nothing to check: the pipeline's targets are not known before it runs."""

    def dataloaders(self, *args: Any, **kwargs: Any) -> Any:
        """`Datasets.dataloaders`; what each member is (for batch transforms) is read from the first training
        item: an image is ``'image'``, a mask ``'mask'``, anything else ``'raw'``."""
        if self.splits[0]:
            sample = self._load(self.splits[0][0])
            self.kinds = tuple(_kind_of(x) for x in sample)
            self.n_inp = max(1, len(sample) - 1)
        return super().dataloaders(*args, **kwargs)

    @property
    def vocab(self) -> Any:
        """The vocabulary of the last step that has one."""
        return next((step_hook(s, "vocab") for s in reversed(self.tfms.fs) if step_hook(s, "vocab") is not None),
                    None)

    @property
    def c(self) -> int | None:
        return None if self.vocab is None else len(self.vocab)

    @property
    def loss_config(self) -> None:
        return None  # say the loss: Learner(dls, model, loss_func=...)

    def decode(self, o: Any) -> Any:
        """``o`` back through the pipeline's inverses."""
        return self.tfms.decode(o[0] if isinstance(o, tuple) and len(o) == 1 else o)

    def show(self, o: Any, ctx: Any = None, **kwargs: Any) -> Any:
        return self.tfms.show(o, ctx=ctx, **kwargs)

    def __repr__(self) -> str:
        return f"TfmdLists({len(self.splits[0])} training, {len(self.splits[1])} validation items; {self.tfms!r})"


def decode_at(o: Any, idx: int) -> Any:
    """Item ``idx`` of a `Datasets` or `TfmdLists`, decoded."""
    return o.decode(o[idx])


def show_at(o: Any, idx: int, **kwargs: Any) -> Any:
    """Draw item ``idx`` of a `Datasets` or `TfmdLists` (``show_at(tls.valid, 0)``). Returns the axis."""
    return o.show(o[idx], **kwargs)
