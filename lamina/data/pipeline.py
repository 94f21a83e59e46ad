"""fastai's `Transform` and `Pipeline` (book chapter 11), and `fastuple`: steps that compose, set up, decode and show.

A `Transform` is a lamina pipeline step (``setup`` with the training values, ``decode``), an item transform (it has
an ``order``: it receives the sample and the split, and maps over its members) and a batch transform
(``tfm(batch, kinds, split_idx)``), so it goes anywhere lamina's own steps go: in a `Datasets` member's list, in
``after_item`` and in ``after_batch``. `Pipeline` composes steps (sorted by ``order``), sets them up one after the
other, decodes in reverse and shows. `lamina.data.midlevel` builds `TfmdLists` on them.

``encodes`` may be restricted to a type by annotating its argument (``def encodes(self, x: int)``): other values
pass through unchanged. This is a plain ``isinstance`` test on the annotation, not type dispatch: a transform has
one ``encodes`` (and one ``decodes``). lamina's batches are plain tensors whose meaning is in the loader's ``kinds``,
so in ``after_batch`` an annotation with a typed tensor class (``x: TensorImage``) applies to the members of its
``kind`` (``'image'``), and ``x: Tensor`` to every tensor member, the targets included.

Example:
    >>> @Transform
    ... def add_one(x: int): return x + 1
    >>> add_one(2), add_one(2.0)
    (3, 2.0)
"""

from __future__ import annotations

import functools
import inspect
import random
import typing
from collections.abc import Callable, Sequence
from typing import Any

from ..foundation import L
from .transforms import as_steps, sort_tfms, step_hook

__all__ = ["Transform", "DisplayedTransform", "RandTransform", "Pipeline", "fastuple", "run_steps"]


@functools.lru_cache(maxsize=1024)
def _param_types(fn: Callable | None, skip_self: bool) -> Any:
    """The type(s) the first argument of ``fn`` is annotated with, usable by ``isinstance``; None if unrestricted."""
    if fn is None:
        return None
    try:
        params = list(inspect.signature(fn).parameters.values())[1 if skip_self else 0:]
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return None
    if not params or params[0].name not in hints:
        return None
    ann = hints[params[0].name]
    try:
        isinstance(None, ann)
    except TypeError:  # Any, list[int], a TypeVar ...: no restriction
        return None
    return None if ann is object else ann


def _same_kind_of_tuple(old: tuple, values: list) -> tuple:
    """``values`` as a tuple of ``old``'s class (a `fastuple` subclass stays one; a named tuple is rebuilt)."""
    if type(old) is tuple:
        return tuple(values)
    return type(old)(*values) if hasattr(old, "_fields") else type(old)(values)


def _wanted(o: Any, types: Any, kind: str | None) -> bool:
    """Whether ``encodes`` annotated with ``types`` applies to ``o``: no annotation, an instance, or (in a batch,
    where members are plain tensors) a typed tensor class whose ``kind`` is the member's (``TensorImage``: images)."""
    if types is None or isinstance(o, types):
        return True
    return kind is not None and getattr(types, "kind", None) == kind


class Transform:
    """A function with an optional inverse (``decodes``) and set-up (``setups``), applied to each member of a tuple.

    Use it as a decorator on a function, wrap a function (``Transform(f, dec=g)``), or subclass it and write
    ``encodes`` / ``decodes`` / ``setups``.

    Args:
        enc: the function (default: the subclass's ``encodes``).
        dec: its inverse (default: the subclass's ``decodes``; none: decoding returns the value).
        split_idx: None applies on every split; 0 only while training; 1 only on validation.
        order: its place in a `Pipeline` (ascending).

    Example:
        >>> class NormalizeMean(Transform):
        ...     def setups(self, items): self.mean = sum(items) / len(items)
        ...     def encodes(self, x): return x - self.mean
        ...     def decodes(self, x): return x + self.mean
        >>> nm = NormalizeMean(); nm.setup([1, 2, 3, 4, 5]); nm(2), nm.decode(nm(2))
        (-1.0, 2.0)
    """

    order: int = 0
    split_idx: int | None = None
    # the functions given to the constructor; a subclass (whose __init__ need not call this one, as in the book's
    # SiameseTransform) uses its own encodes/decodes
    _enc: Callable | None = None
    _dec: Callable | None = None

    def __init__(self, enc: Callable | None = None, dec: Callable | None = None, split_idx: int | None = None,
                 order: int | None = None):
        if enc is not None and not callable(enc):
            raise TypeError(f"Transform(enc) takes a function; received: enc={enc!r}")
        self._enc, self._dec = enc, dec
        if split_idx is not None:
            self.split_idx = split_idx
        if order is not None:
            self.order = order

    @property
    def _enc_types(self) -> Any:
        return _param_types(self._enc, False) if self._enc is not None else _param_types(type(self).encodes, True)

    @property
    def _dec_types(self) -> Any:
        return _param_types(self._dec, False) if self._dec is not None else _param_types(type(self).decodes, True)

    @property
    def name(self) -> str:
        return getattr(self._enc, "__name__", type(self).__name__)

    def encodes(self, x: Any) -> Any:
        return x

    def decodes(self, x: Any) -> Any:
        return x

    def setups(self, items: Any) -> None:
        """Learn what the transform needs from the training items (override)."""

    def setup(self, items: Any = None, train_setup: bool = False) -> None:
        """Run `setups` on ``items`` (a `TfmdLists` gives its training items)."""
        self.setups(getattr(items, "train", items) if train_setup else items)

    def __call__(self, x: Any, *args: Any, split_idx: int | None = None, **kwargs: Any) -> Any:
        kinds = None
        if len(args) == 2:  # called as a batch transform: (batch, kinds, split_idx)
            kinds, split_idx = args
        if self.split_idx is not None and split_idx is not None and split_idx != self.split_idx:
            return x
        return self._map(self._enc or self.encodes, self._enc_types, x, kinds)

    def decode(self, x: Any, kinds: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The inverse of the call (``decodes`` on each member of a tuple)."""
        return self._map(self._dec or self.decodes, self._dec_types, x, kinds)

    def decode_batch(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        """The batch-transform hook of `lamina.data.transforms.undo_batch_tfms`: `decode` on each member."""
        return self.decode(batch, kinds)

    @staticmethod
    def _map(fn: Callable, types: Any, x: Any, kinds: Sequence[str] | None = None) -> Any:
        if not isinstance(x, tuple):
            return fn(x) if _wanted(x, types, None) else x
        kinds = tuple(kinds or ())
        return _same_kind_of_tuple(x, [fn(o) if _wanted(o, types, kinds[i] if i < len(kinds) else None) else o
                                       for i, o in enumerate(x)])

    def __repr__(self) -> str:
        return f"{self.name}(order={self.order}, split_idx={self.split_idx})"


class DisplayedTransform(Transform):
    """A `Transform` whose repr shows its settings (its public attributes), as fastai's does."""

    def __repr__(self) -> str:
        settings = {k: v for k, v in vars(self).items() if not k.startswith("_") and not callable(v)}
        return f"{self.name} -- {settings} (order={self.order}, split_idx={self.split_idx})"


class RandTransform(DisplayedTransform):
    """A `Transform` applied at random, while training only: before each call `before_call` decides (``self.do``)
    whether it runs, with probability ``p``; override `before_call` to draw the transform's own random values.

    Args:
        p: the probability of applying it.
        nm: a name for ``self.name`` (default: the class name).
        before_call: a function ``(x, split_idx)`` replacing `before_call`.
        **kwargs: `Transform` arguments (``order``, ``split_idx``: None applies it on validation too).

    Example:
        >>> class RandomFlipH(RandTransform):
        ...     def encodes(self, img: PILImage): return PILImage.create(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        >>> item_tfms = [Resize(224), RandomFlipH(p=0.5)]
    """

    split_idx: int | None = 0
    # (class defaults too: a subclass whose __init__ does not call this one still works, as with `Transform`)
    p: float = 1.0
    do: bool = True
    _nm: str | None = None

    def __init__(self, p: float = 1.0, nm: str | None = None, before_call: Callable | None = None, **kwargs: Any):
        if not 0 <= p <= 1:
            raise ValueError(f"RandTransform: p={p} must be a probability, between 0 and 1")
        super().__init__(**kwargs)
        self.p, self.do, self._nm = p, True, nm
        if before_call is not None:
            self.before_call = before_call

    @property
    def name(self) -> str:
        return self._nm or super().name

    def before_call(self, x: Any, split_idx: int | None) -> None:
        """Decide whether this call applies the transform (``self.do``): always when ``p`` is 1."""
        self.do = self.p == 1.0 or random.random() < self.p

    def __call__(self, x: Any, *args: Any, split_idx: int | None = None, **kwargs: Any) -> Any:
        self.before_call(x, args[1] if len(args) == 2 else split_idx)
        return super().__call__(x, *args, split_idx=split_idx, **kwargs) if self.do else x


def _as_pipeline_step(step: Any) -> Any:
    """A plain function becomes a `Transform` (mapped over tuples, restricted by its annotation, as in fastai);
    lamina's steps and transforms stay as they are."""
    if isinstance(step, Transform) or not inspect.isfunction(step):
        return step
    return Transform(step)


class _Mapped(Sequence):
    """``items`` seen through ``steps``, computed on access (what a step's ``setup`` receives)."""

    def __init__(self, items: Sequence, steps: Sequence, split_idx: int | None):
        self.items, self.steps, self.split_idx = items, list(steps), split_idx

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return run_steps(self.steps, self.items[i], self.split_idx)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def run_steps(steps: Sequence, x: Any, split_idx: int | None) -> Any:
    """``x`` through ``steps`` in turn; a `Transform` follows ``split_idx``."""
    for step in steps:
        x = step(x, split_idx=split_idx) if isinstance(step, Transform) else step(x)
    return x


class Pipeline:
    """Steps composed in ``order``: call runs them, `decode` undoes them (last first), `show` draws the result.

    Args:
        funcs: functions, `Transform`s or lamina steps (``Categorize``, ``PILImage.create`` ...); classes are
            instantiated.
        split_idx: the split whose behaviour `Transform`s with a ``split_idx`` follow (None: every one applies).

    Example:
        >>> pipe = Pipeline([parent_label, Categorize()]); pipe.setup(train_files); pipe(files[0])
    """

    def __init__(self, funcs: Any = None, split_idx: int | None = None):
        if isinstance(funcs, Pipeline):
            funcs = funcs.fs
        self.fs = L(sort_tfms([_as_pipeline_step(f) for f in as_steps(funcs)]))
        self.split_idx = split_idx

    def setup(self, items: Sequence | None = None, train_setup: bool = False) -> None:
        """Set up each step on ``items`` as the steps before it turn them (computed only when a step reads them)."""
        for k, step in enumerate(self.fs):
            setup = step.setup if isinstance(step, Transform) else step_hook(step, "setup")
            if setup is not None and items is not None:
                setup(_Mapped(items, self.fs[:k], self.split_idx))

    def __call__(self, o: Any, split_idx: int | None = None) -> Any:
        return run_steps(self.fs, o, self.split_idx if split_idx is None else split_idx)

    def decode(self, o: Any, full: bool = True) -> Any:
        """Undo the steps, last first (a step without an inverse leaves the value)."""
        for step in reversed(self.fs):
            decode = step.decode if isinstance(step, Transform) else step_hook(step, "decode")
            if decode is not None:
                o = decode(o)
        return o

    def show(self, o: Any, ctx: Any = None, **kwargs: Any) -> Any:
        """Decode ``o`` and draw it on the matplotlib axis ``ctx``: something with ``show`` draws itself, a tuple
        member by member (a member that cannot draw becomes the title). Returns the axis."""
        return _show(self.decode(o), ctx, self.fs, **kwargs)

    def __len__(self) -> int:
        return len(self.fs)

    def __getitem__(self, i: int) -> Any:
        return self.fs[i]

    def __repr__(self) -> str:
        return f"Pipeline: {' -> '.join(getattr(f, 'name', None) or type(f).__name__ for f in self.fs) or 'empty'}"


def _show(o: Any, ctx: Any, steps: Sequence, **kwargs: Any) -> Any:
    if callable(getattr(o, "show", None)) and not isinstance(o, type):
        return o.show(ctx=ctx, **kwargs)
    if isinstance(o, tuple):
        for member in o:
            ctx = _show(member, ctx, steps, **kwargs)
        return ctx
    show = next((step_hook(s, "show") for s in reversed(steps)
                 if not isinstance(s, Transform) and step_hook(s, "show") is not None), None)
    if show is not None and hasattr(o, "shape"):
        return show(o, ctx=ctx, **kwargs)
    import matplotlib.pyplot as plt
    if ctx is None:
        _, ctx = plt.subplots()
        ctx.axis("off")
    text = str(o)
    ctx.set_title(f"{ctx.get_title()}\n{text}" if ctx.get_title() else text)
    return ctx


class fastuple(tuple):  # noqa: N801  (fastai's name)
    """A tuple built from its members (``fastuple(a, b, c)``) or from one iterable (``fastuple([a, b])``); subclass
    it with a ``show`` to make a sample that draws itself (the book's ``SiameseImage``)."""

    def __new__(cls, x: Any = None, *rest: Any) -> "fastuple":
        if rest:
            values = (x, *rest)
        elif x is None:
            values = ()
        elif isinstance(x, (tuple, list, L)):
            values = tuple(x)
        else:
            values = (x,)
        return super().__new__(cls, values)
