"""The pipeline step protocol: what a step of a `Datasets` member's pipeline may declare, and the loss a kind implies.

A member's pipeline is a list of steps, ``x -> step(x)``: getters (``parent_label``, ``ColReader('label')``),
encoders (`Categorize`), readers (``ImageReader``). Any callable is a step; a step may also declare the hooks
of `PipelineStep` to take part in more than the call (learn a vocabulary, load lazily, name its member's kind,
draw itself ...). `TypeTransform` is the base class that declares every hook with its "absent" default, and
`step_hook` is the one place that reads a hook, so a plain function (which declares none) reads the same
defaults as a `TypeTransform` that does not override them.

`TARGET_LOSSES` is where lamina says which loss a target of each kind implies (and only there): blocks,
`Datasets`, the tabular and collab loaders read it, `lamina.losses.loss_from_config` builds it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["PipelineStep", "TypeTransform", "declares", "step_hook", "as_steps", "TARGET_LOSSES", "target_loss_config",
           "loss_config_of"]


class PipelineStep(Protocol):
    """A step of a member's pipeline: ``step(x) -> y``, with optional hooks (all read through `step_hook`).

    Attributes:
        lazy: True for a *loading* step (a reader): it and the steps after it run in ``__getitem__``, in the
            worker processes; the steps before it run once per item when the `Datasets` is built.
        kind: what the member is once this step has run (``'image'``, ``'mask'``, ``'category'``,
            ``'multicategory'``, ``'regression'``); the last step that names one names the member (batch
            transforms read it; a target's kind picks its loss in `TARGET_LOSSES`). None: says nothing.
        setup: ``setup(training_values)``, called before the step runs on any item, with what it will receive
            for the training items (a vocabulary is learnt there). None: learns nothing.
        check: ``check(value)``, on a loading step: called for every item when the `Datasets` is built, to fail
            early (a mask path that does not exist). None: nothing to check.
        decode: ``decode(x)``: the member back to something readable (a class index to its label). None: as is.
        vocab: the class names (or segmentation codes) the step encodes to; None if it has none.
        c: the number of model outputs a target of this step implies; None if it does not say.
        accepts: ``accepts(item) -> bool``, on a loading step: whether `Datasets.test_set` may hand it ``item``
            as it is (a path, an image), skipping the getters. None: never.
        show: ``show(x, ctx=None, **kwargs)``: draw a decoded member on the matplotlib axis ``ctx`` and return
            the axis. None: the member draws itself (``x.show``), or becomes the axis title.
        loss_kwargs: extra arguments of the loss its kind implies (a mask's ``ignore_index``).
        draft: (optional, set by `DataBlock` on the steps that have it) the smallest ``(h, w)`` the item
            transforms need, so a reader may decode JPEGs at a reduced size.
    """

    lazy: bool
    kind: str | None
    setup: Callable[[Sequence[Any]], None] | None
    check: Callable[[Any], None] | None
    decode: Callable[[Any], Any] | None
    vocab: Sequence[Any] | None
    c: int | None
    accepts: Callable[[Any], bool] | None
    show: Callable[..., Any] | None
    loss_kwargs: Mapping[str, Any]

    def __call__(self, x: Any) -> Any: ...


class TypeTransform:
    """Base class of lamina's pipeline steps (a block's ``type_tfms``): every hook of `PipelineStep` declared
    with its default, so a step overrides only what it does.

    Example:
        >>> class Lower(TypeTransform):
        ...     def __call__(self, label: str) -> str:
        ...         return label.lower()
    """

    lazy: bool = False
    kind: str | None = None
    setup: Callable[[Sequence[Any]], None] | None = None
    check: Callable[[Any], None] | None = None
    decode: Callable[[Any], Any] | None = None
    vocab: Sequence[Any] | None = None
    c: int | None = None
    accepts: Callable[[Any], bool] | None = None
    show: Callable[..., Any] | None = None
    loss_kwargs: Mapping[str, Any] = types.MappingProxyType({})

    def __call__(self, x: Any) -> Any:
        return x

    @property
    def loss_config(self) -> dict | None:
        """The loss a target of this step implies, as a config ``{"name", "kwargs"}`` (see `TARGET_LOSSES`)."""
        return loss_config_of(self)


def declares(obj: Any, name: str) -> bool:
    """Whether ``obj`` has the hook ``name`` (its own, or from its class); the one presence test of the protocols."""
    return hasattr(obj, name)


def as_steps(steps: Any) -> list:
    """A user's steps as a pipeline (one step, a list, or None): classes are instantiated (fastai style
    ``Categorize``), and an image class's ``create`` becomes its reader (``reader()``), so that
    ``[PILImage.create]`` loads lazily, in the workers."""
    if steps is None:
        return []
    return [_as_step(s) for s in (steps if isinstance(steps, (list, tuple)) else [steps])]


def _as_step(step: Any) -> Any:
    owner = getattr(step, "__self__", None)
    if getattr(step, "__name__", None) == "create" and isinstance(owner, type) and declares(owner, "reader"):
        return owner.reader()
    return step() if isinstance(step, type) else step


def step_hook(step: Any, name: str) -> Any:
    """The hook ``name`` of a pipeline step: the step's own, else `TypeTransform`'s default (what a plain function,
    which declares no hook, gets).

    Raises:
        AttributeError: for a name that is not a hook of `PipelineStep`.
    """
    if name not in PipelineStep.__annotations__:
        hooks = sorted(PipelineStep.__annotations__)
        raise AttributeError(f"{name!r} is not a pipeline step hook; the hooks are {hooks}")
    return getattr(step, name) if declares(step, name) else getattr(TypeTransform, name)


# The loss a target of each kind implies, as a config that `lamina.losses.loss_from_config` builds. The one place
# that says it: a mask is classified pixel by pixel (class axis 1), several labels are independent yes/no answers.
TARGET_LOSSES: Mapping[str, Mapping[str, Any]] = types.MappingProxyType({
    "category": {"name": "CrossEntropyLossFlat", "kwargs": {}},
    "multicategory": {"name": "BCEWithLogitsLossFlat", "kwargs": {}},
    "regression": {"name": "MSELossFlat", "kwargs": {}},
    "mask": {"name": "CrossEntropyLossFlat", "kwargs": {"axis": 1}},
    "point": {"name": "MSELossFlat", "kwargs": {}},  # keypoints: a regression on their scaled coordinates
})


def target_loss_config(kind: str | None, **kwargs: Any) -> dict | None:
    """The loss config a target of ``kind`` implies, with ``kwargs`` added to its arguments; None for a kind that
    implies none (``'image'``, ``'raw'``, None).

    Example:
        >>> target_loss_config("mask", ignore_index=255)
        {'name': 'CrossEntropyLossFlat', 'kwargs': {'axis': 1, 'ignore_index': 255}}
    """
    implied = TARGET_LOSSES.get(kind) if kind is not None else None
    if implied is None:
        return None
    return {"name": implied["name"], "kwargs": {**implied["kwargs"], **kwargs}}


def loss_config_of(step: Any) -> dict | None:
    """The loss config a target whose last typed step is ``step`` implies (by its ``kind`` and ``loss_kwargs``)."""
    return target_loss_config(step_hook(step, "kind"), **step_hook(step, "loss_kwargs"))
