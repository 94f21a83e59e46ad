"""`Datasets`: items → tuples (input, target), lazily, with item transforms per split.

Each batch member has a pipeline of steps. The steps before the first *loading* step (one with
``lazy = True``, e.g. the image reader) run once for every item when the `Datasets` is built: getters
(``get_x``/``get_y``, label functions) and encoders (`Categorize`). That is cheap (it selects and encodes,
it does not load), and it means:

* vocabularies are fitted on the training items, and a validation label training never saw, a label
  function that raises, or a mask path that does not exist fail at once, naming the item;
* worker processes never need the user's label function (a lambda is fine): they receive the
  results, the loading steps and the item transforms only.

The loading steps and the item transforms run in ``__getitem__``, in DataLoader worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset, get_worker_info

from .cache import SampleCache, samples_are_fixed
from .rows import as_items as _as_list
from .checks import check_batchable, check_classes, check_mask_sizes
from .dataloader import BeforeBatchCollate, default_num_workers, split_loader_kwargs
from .errors import ReadableKeyError, error_name, renamed_error, step_name
from .loaders import DLS_TYPES, DataLoader, DataLoaders
from .transforms import apply_item_tfms, as_steps, fuse_tfms, loss_config_of, sort_tfms, step_hook

__all__ = ["Datasets", "default_num_workers",
           # re-exported from their homes (lamina.data.transforms, lamina.data.errors) for older imports
           "apply_item_tfms", "fuse_tfms", "step_name", "renamed_error", "ReadableKeyError"]


def _describe(o: Any) -> str:
    text = str(o) if isinstance(o, (str, os.PathLike)) else repr(o)
    return repr(text) if isinstance(o, (str, os.PathLike)) else (text if len(text) < 200 else text[:200] + "...")


def _sorted_tfms(tfms: Any) -> list:
    return sort_tfms(as_steps(tfms))


def _show_title(x: Any, ctx: Any) -> Any:
    """``x`` as the title of the matplotlib axis ``ctx`` (a new figure if None), after any title already there."""
    import matplotlib.pyplot as plt
    if ctx is None:
        _, ctx = plt.subplots()
        ctx.axis("off")
    text = ";".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)
    ctx.set_title(f"{ctx.get_title()}\n{text}" if ctx.get_title() else text)
    return ctx


class Datasets(Dataset):
    """Lazy datasets of tuples, one pipeline per tuple member, split into training and validation.

    Args:
        items: the items (a sequence, or a DataFrame whose rows are the items).
        tfms: one list of steps per member, e.g. ``[[PILImage.create], [parent_label, Categorize()]]``
            (classes are instantiated).
        n_inp: how many leading members are inputs (default: all but the last).
        splits: ``(train_idxs, valid_idxs)``; default: every item in training, none in validation.
        item_tfms: item transforms, run (in ``order``) on every sample of both splits.
        kinds: what each member is (``'image'``, ``'category'`` ...); default: each pipeline's ``kind``.
        split_idx: which split's behaviour the item transforms follow (None: random, like training).

    Example:
        >>> dsets = Datasets(files, [[PILImage.create], [parent_label, Categorize()]], splits=splits)
        >>> image, label = dsets.valid[0]
    """

    def __init__(self, items: Any = None, tfms: Sequence | None = None, n_inp: int | None = None,
                 splits: Sequence[Sequence[int]] | None = None, item_tfms: Sequence[Callable] | None = None,
                 kinds: Sequence[str] | None = None, split_idx: int | None = None):
        self.items = _as_list(items)
        pipelines = [as_steps(t) for t in (tfms if tfms is not None else [[]])]
        self.n_inp = n_inp if n_inp is not None else max(1, len(pipelines) - 1)
        cut = [next((k for k, s in enumerate(p) if step_hook(s, "lazy")), len(p)) for p in pipelines]
        self._eager = [p[:k] for p, k in zip(pipelines, cut)]
        self.lazy_steps = [p[k:] for p, k in zip(pipelines, cut)]
        # each member's type step: the last step that names its kind (None when none does)
        self.type_steps = [next((s for s in reversed(p) if step_hook(s, "kind") is not None), None)
                           for p in pipelines]
        self.kinds = tuple(kinds) if kinds is not None else tuple(
            "raw" if s is None else step_hook(s, "kind") for s in self.type_steps)
        self.item_tfms = _sorted_tfms(item_tfms)
        n = len(self.items)
        self.splits = ([int(i) for i in splits[0]], [int(i) for i in splits[1]]) if splits is not None \
            else (list(range(n)), [])
        self._values = self._encode_all()
        self.idxs = sorted(set(self.splits[0]) | set(self.splits[1]))
        self.split_idx = split_idx
        self._sample_cache: SampleCache | None = None  # filled on first use (see _cache_for_this_pass)
        self.test_labels_error: str | None = None  # why `test_set(with_labels=True)` cannot work, if it cannot

    # --- eager phase: getters and encoders for every item --------------------------------------------
    def _encode_all(self) -> list:
        """The result of the eager steps of every member for every item in a split (None elsewhere)."""
        train, valid = self.splits
        n = len(self.items)
        bad = [i for i in (*train, *valid) if not 0 <= i < n]
        if bad:
            raise IndexError(f"The splits refer to items {bad[:5]} but there are {n} items")
        used = sorted(set(train) | set(valid))
        in_train = set(train)
        items = list(self.items)  # one pass over DataFrame rows, for all members
        columns = [self._encode_member(items, j, used, in_train) for j in range(len(self._eager))]
        values: list = [None] * n
        for i in used:
            values[i] = tuple(col[i] for col in columns)
        return values

    def _encode_member(self, items: list, j: int, used: list[int], in_train: set[int]) -> dict:
        values = {i: items[i] for i in used}
        for step in self._eager[j]:
            setup = step_hook(step, "setup")
            if setup is not None:  # vocabularies and the like come from the training items only
                setup([values[i] for i in self.splits[0]])
            values = {i: self._run(step, values[i], i, j, i in in_train) for i in used}
        check = step_hook(self.lazy_steps[j][0], "check") if self.lazy_steps[j] else None
        if check is not None:
            for i in used:
                self._run(check, values[i], i, j, i in in_train)
        return values

    def _run(self, step: Callable, value: Any, i: int, j: int, train: bool | None = None) -> Any:
        try:
            return step(value)
        except Exception as e:
            where = "" if train is None else (" (training set)" if train else " (validation set)")
            kind = self.kinds[j] if j < len(self.kinds) else "?"
            message = (f"step `{step_name(step)}` of the '{kind}' pipeline failed on item "
                       f"{_describe(self.items[i])}{where}: {error_name(e)}: {e}")
            raise renamed_error(e, message) from e

    def check_classes(self) -> None:
        """Raise a ValueError when a single-label classification target has one class in the training items
        (`lamina.data.checks.check_classes`)."""
        check_classes(self)

    # --- lazy phase: loading and item transforms, in the worker processes ------------------------------
    def source_name(self, i: int, j: int) -> str:
        """What member ``j`` of item ``i`` was loaded from (its file name when it is one)."""
        value = self._values[i][j]
        return _describe(value if isinstance(value, (str, os.PathLike)) else self.items[i])

    def _load(self, i: int) -> tuple:
        sample = []
        for j, steps in enumerate(self.lazy_steps):
            x = self._values[i][j]
            for step in steps:
                x = self._run(step, x, i, j)
            sample.append(x)
        check_mask_sizes(self, sample, i)
        return tuple(sample)

    def __len__(self) -> int:
        return len(self.idxs)

    def __getitem__(self, k: int) -> tuple:
        i = self.idxs[k]
        cache, key = self._cache_for_this_pass()
        if cache is not None and (hit := cache.get(i, key)) is not None:
            return hit
        try:
            sample = apply_item_tfms(self._load(i), self.item_tfms, self.split_idx)
        except Exception as e:
            raise renamed_error(e, f"An item transform failed on item {_describe(self.items[i])}: "
                                   f"{error_name(e)}: {e}") from e
        if cache is not None:
            cache.put(i, key, sample)
        return sample

    def _cache_for_this_pass(self) -> tuple[SampleCache | None, Any]:
        """This view's `SampleCache` and its key, when samples are the same every epoch and we are in the main
        process (a worker's cache would end with its epoch), else ``(None, None)``."""
        if get_worker_info() is not None or not samples_are_fixed(self.item_tfms, self.split_idx):
            return None, None
        if self._sample_cache is None:
            self._sample_cache = SampleCache()
        return self._sample_cache, (self.split_idx, tuple(map(id, self.item_tfms)))

    def __getitems__(self, ks: Sequence[int]) -> list:
        """A batch's samples (torch's loader calls this), checked to have matching shapes, so the error
        names the files instead of failing inside ``torch.stack``."""
        samples = [self[k] for k in ks]
        self.check_batchable(ks, samples)
        return samples

    def check_batchable(self, ks: Sequence[int], samples: Sequence[tuple]) -> None:
        """Raise a ValueError naming two items whose members differ in shape (`lamina.data.checks.check_batchable`)."""
        check_batchable(self, ks, samples)

    def __getstate__(self) -> dict:
        # worker processes need the results of the getters, not the getters (a lambda label function
        # cannot be pickled under the 'spawn' start method)
        state = dict(self.__dict__)
        state["_eager"] = None
        state["_sample_cache"] = None  # each process fills its own
        return state

    # --- views -----------------------------------------------------------------------------------
    def _view(self) -> "Datasets":
        """A shallow copy that keeps the getters (``copy.copy`` would go through ``__getstate__``)."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._sample_cache = None  # a view caches its own samples
        return view

    def subset(self, i: int) -> "Datasets":
        """The training (0) or validation (1) items, with that split's item-transform behaviour."""
        view = self._view()
        view.idxs, view.split_idx = list(self.splits[i]), i
        return view

    @property
    def train(self) -> "Datasets":
        return self.subset(0)

    @property
    def valid(self) -> "Datasets":
        return self.subset(1)

    @property
    def vocab(self) -> Any:
        """The vocabulary of the last member that has one (class names, or segmentation codes); with several
        targets that have one (two `CategoryBlock`s), the list of their vocabularies, as fastai's."""
        targets = [step.vocab for step in self.type_steps[self.n_inp:] if step_hook(step, "vocab") is not None]
        if len(targets) > 1:
            return targets
        for step in [*reversed(self.type_steps), *self.item_tfms]:
            if step_hook(step, "vocab") is not None:
                return step.vocab
        return None

    @property
    def c(self) -> int | list | None:
        """The number of model outputs the first target implies (classes, codes or regression targets); with
        several targets, the list of each one's (a target that implies none counts 1), as fastai's."""
        if len(targets := self.type_steps[self.n_inp:]) > 1:
            return [step_hook(step, "c") or 1 for step in targets]
        steps = targets or self.type_steps[-1:]
        c = step_hook(steps[0], "c") if steps else None
        return c if c is not None else next((t.c for t in self.item_tfms if step_hook(t, "c")), None)

    def decode(self, sample: Sequence) -> tuple:
        """Each member back to something readable (a class index → its label)."""
        decoders = [step_hook(step, "decode") for step in self.type_steps]
        return tuple(x if decode is None else decode(x) for x, decode in zip(sample, decoders))

    def test_set(self, items: Any, with_labels: bool = False) -> "Datasets":
        """A dataset over new items with the validation behaviour (no augmentation).

        Without labels only the inputs are built. An item the loading step accepts as it is (for images: a
        path, bytes, a PIL image, an array or a tensor) skips the getters; other items (DataFrame rows ...)
        go through them.

        Raises:
            ValueError: with ``with_labels`` when the labelling steps are not available (``test_labels_error``).
        """
        if with_labels and self.test_labels_error:
            raise ValueError(self.test_labels_error)
        members = list(range(len(self.lazy_steps) if with_labels else self.n_inp))
        view = self._view()
        view.items = _as_list(items)
        view.lazy_steps = [self.lazy_steps[j] for j in members]
        view.kinds = self.kinds[:len(members)]
        view._values = [tuple(self._test_value(item, j, with_labels) for j in members) for item in view.items]
        view.idxs = list(range(len(view.items)))
        view.splits, view.split_idx = (view.idxs, []), 1
        return view

    def _test_value(self, item: Any, j: int, with_labels: bool) -> Any:
        loader = self.lazy_steps[j][0] if self.lazy_steps[j] else None
        accepts = None if loader is None else step_hook(loader, "accepts")
        if not with_labels and accepts is not None and accepts(item):
            return item
        if self._eager is None:
            raise RuntimeError("This dataset was copied to another process without its getters; "
                               "call test_set in the main process")
        for step in self._eager[j]:
            try:
                item = step(item)
            except Exception as e:
                raise renamed_error(e, f"step `{step_name(step)}` failed on test item {_describe(item)}: "
                                       f"{error_name(e)}: {e}") from e
        return item

    def dataloaders(self, bs: int = 64, shuffle: bool = True, val_shuffle: bool = False, n: int | None = None,
                    path: str = ".", dl_type: Any = None, dl_kwargs: Sequence[dict] | None = None,
                    device: Any = None, drop_last: bool | None = None, val_bs: int | None = None,
                    num_workers: int | None = None, after_item: Sequence | None = None,
                    after_batch: Sequence | None = None, dls_type: type | None = None, loss_func: Any = None,
                    timeout: float = 0, before_batch: Callable | None = None, **kwargs: Any) -> DataLoaders:
        """A training and a validation `DataLoader` over the two splits, in a `DataLoaders` (or ``dls_type``).

        Args:
            bs: batch size; ``val_bs`` for validation (default ``bs``).
            shuffle: shuffle the training items every epoch; ``val_shuffle`` the validation items.
            n: use only the first ``n`` training items.
            path: the DataLoaders' folder (models and exports go under it).
            dl_type: fastai's loader class. lamina has one, `DataLoader`: None or `DataLoader`.
            dl_kwargs: extra `DataLoader` arguments, one dict per loader (training, validation).
            device: where batches go (default: `default_device()`).
            drop_last: drop the training loader's last partial batch (default: ``shuffle``).
            num_workers: loading processes (default `default_num_workers()`).
            after_item: item transforms replacing the datasets' own (fastai style; classes are instantiated).
            after_batch: batch transforms for both loaders; neighbours that can be fused are (`fuse_tfms`).
            dls_type: the DataLoaders class (default: the one registered for the inputs' kind in `DLS_TYPES`,
                e.g. images give ``ImageDataLoaders``, else `DataLoaders`).
            loss_func: the loss (an object, or a config dict); default: the one the targets' kind implies
                (`TARGET_LOSSES`). It is ``dls.loss_config`` either way, so that the training layer can build it.
            timeout: accepted for fastai compatibility and ignored: lamina's loaders wait for their workers.
            before_batch: ``samples -> samples`` before they are stacked (`bb_pad` pads box lists to one length).
            **kwargs: ``pin_memory``, ``persistent_workers``, ``seed``; a ``val_`` prefix (``val_num_workers=0``)
                applies a value to the validation loader only.

        Raises:
            TypeError: naming unknown keyword arguments or an unsupported ``dl_type``.
            ValueError: when ``n`` is more than the training items, or a classification target has a single
                class in them (`check_classes`).
        """
        common, valid_only = split_loader_kwargs(kwargs, dl_type)
        self.check_classes()
        workers = default_num_workers() if num_workers is None else num_workers
        base = dict(device=device, num_workers=workers, after_batch=fuse_tfms(as_steps(after_batch)),
                    kinds=self.kinds, collate_fn=None if before_batch is None else BeforeBatchCollate(before_batch))
        train_ds, valid_ds = self._loader_splits(after_item, n)
        extra = [dict(d or {}) for d in (dl_kwargs or [])] + [{}, {}]
        train = DataLoader(train_ds, **{**base, "bs": bs, "shuffle": shuffle, "split_idx": 0, **common,
                                        "drop_last": shuffle if drop_last is None else drop_last, **extra[0]})
        valid = DataLoader(valid_ds, **{**base, "bs": val_bs or bs, "shuffle": val_shuffle, "drop_last": False,
                                        "split_idx": 1, **common, **valid_only, **extra[1]})
        vocab = train_ds.vocab  # the view: `after_item` may carry the codes (AddMaskCodes)
        return (dls_type or self.dls_type or DataLoaders)(
            train, valid, path=path, vocab=list(vocab) if vocab is not None else None, n_out=train_ds.c,
            loss_func=self.loss_config if loss_func is None else loss_func, n_inp=self.n_inp)

    def _loader_splits(self, after_item: Sequence | None, n: int | None) -> tuple["Datasets", "Datasets"]:
        """The two split views for `dataloaders`: ``after_item`` replaces their item transforms, ``n`` cuts training."""
        train_ds, valid_ds = self.train, self.valid
        if after_item is not None:
            train_ds.item_tfms = valid_ds.item_tfms = _sorted_tfms(after_item)
        if n is not None:
            if not 0 < n <= len(train_ds):
                raise ValueError(f"`n` must be between 1 and the number of training items ({len(train_ds)}); "
                                 f"received: n={n!r}")
            train_ds.idxs = train_ds.idxs[:n]
        return train_ds, valid_ds

    @property
    def loss_config(self) -> dict | None:
        """The loss the first target implies, as a config ``{"name", "kwargs"}``: its kind's, from `TARGET_LOSSES`."""
        steps = self.type_steps[self.n_inp:]
        return loss_config_of(steps[0]) if steps and steps[0] is not None else None

    @property
    def dls_type(self) -> type | None:
        """The DataLoaders class registered for the inputs' kind (`DLS_TYPES`: images give ``ImageDataLoaders``)."""
        return next((DLS_TYPES[kind] for kind in self.kinds[:self.n_inp] if kind in DLS_TYPES), None)

    def show(self, o: Sequence, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw one sample, e.g. ``dsets.show(dsets.train[0])``: decoded, each member by its type step's
        ``show`` (or its own: an image draws itself); a member that cannot draw (a label) becomes the title.

        Returns:
            The matplotlib axis.
        """
        for x, step in zip(self.decode(o), self.type_steps):
            show = step_hook(step, "show")
            if show is not None:
                ctx = show(x, ctx=ctx, **kwargs)
            elif callable(getattr(x, "show", None)):
                ctx = x.show(ctx=ctx, **kwargs)
            else:
                ctx = _show_title(x, ctx)
        return ctx

    def __repr__(self) -> str:
        return (f"Datasets({len(self.splits[0])} training, {len(self.splits[1])} validation items; "
                f"kinds={self.kinds})")
