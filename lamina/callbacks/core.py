"""The callback base class, the training events (named once, here) and the cancel exceptions.

A callback is an object with methods named after events. The Learner calls every callback, in
ascending ``order``, at each event. A callback reads the loop's state by fastai's names
(``self.loss``, ``self.pred``, ``self.epoch`` ... : the names in `LEARNER_ATTRS`, read from the
learner at that moment) and changes it through the learner (``self.learn.pred = ...``).

Example:
    >>> class PrintLoss(Callback):
    ...     def after_batch(self): print(self.loss.item())
    >>> learn.fit(1, cbs=PrintLoss())
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core import listify
from ..torch_core import noop  # the do-nothing logger inside `no_logging()`; its home is lamina.torch_core
from ..torch_core import to_detach as _to_detach

__all__ = ["EVENTS", "INNER_EVENTS", "CANCEL_EXCEPTIONS", "LEARNER_ATTRS", "Callback", "CancelBatchException",
           "CancelTrainException", "CancelValidException", "CancelEpochException", "CancelFitException",
           "CancelStepException", "CancelBackwardException", "CallbackListMixin", "snake_name", "noop"]

# Every event in the order a fit with one training and one validation batch fires them.
EVENTS = ("after_create", "before_fit", "before_epoch", "before_train", "before_batch", "after_pred",
          "after_loss", "before_backward", "after_cancel_backward", "after_backward", "before_step",
          "after_cancel_step", "after_step", "after_cancel_batch", "after_batch", "after_cancel_train",
          "after_train", "before_validate", "after_cancel_validate", "after_validate", "after_cancel_epoch",
          "after_epoch", "after_cancel_fit", "after_fit")

# Events inside one pass over a loader: `run_train` / `run_valid` decide whether a callback sees them.
INNER_EVENTS = ("before_batch", "after_pred", "after_loss", "before_backward", "after_cancel_backward",
                "after_backward", "before_step", "after_cancel_step", "after_step", "after_cancel_batch",
                "after_batch")
_INNER = frozenset(INNER_EVENTS)  # for the membership test made at every event


class CancelBatchException(Exception):
    """Skip the rest of this batch (``after_cancel_batch`` then ``after_batch`` still fire)."""


class CancelTrainException(Exception):
    """Skip the rest of this training pass."""


class CancelValidException(Exception):
    """Skip the rest of this validation pass."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch."""


class CancelFitException(Exception):
    """Stop training now (``after_cancel_fit`` then ``after_fit`` still fire)."""


class CancelStepException(Exception):
    """Skip this optimizer step."""


class CancelBackwardException(Exception):
    """Skip this backward pass."""


# The part of the loop each cancel exception ends: ``after_cancel_<part>`` then ``after_<part>`` fire.
CANCEL_EXCEPTIONS: dict[str, type[Exception]] = {
    "fit": CancelFitException, "epoch": CancelEpochException, "train": CancelTrainException,
    "validate": CancelValidException, "batch": CancelBatchException, "backward": CancelBackwardException,
    "step": CancelStepException}
_CANCELS = tuple(CANCEL_EXCEPTIONS.values())

# The learner's state a callback reads by fastai's names: ``self.loss`` is ``self.learn.loss`` at that moment.
# The list is fastai's "attributes available to callbacks", plus `metrics`, `final_record`, `path`, `model_dir`.
LEARNER_ATTRS = ("model", "dls", "loss_func", "opt", "opt_func", "cbs", "metrics", "dl", "x", "xb", "y", "yb",
                 "pred", "loss_grad", "loss", "smooth_loss", "n_epoch", "epoch", "n_iter", "iter", "train_iter",
                 "pct_train", "training", "final_record", "path", "model_dir")
_LEARNER_ATTRS = frozenset(LEARNER_ATTRS)  # for the membership test made at every attribute write


def snake_name(cls_name: str) -> str:
    """``'SaveModelCallback'`` → ``'save_model'``; ``'Recorder'`` → ``'recorder'``."""
    base = cls_name[:-len("Callback")] if cls_name.endswith("Callback") and cls_name != "Callback" else cls_name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", base).lower()


class Callback:
    """Base class of callbacks.

    Attributes:
        order: callbacks run in ascending order at each event.
        run: set False to silence the callback until the end of the fit.
        run_train / run_valid: whether the inner-loop events of training / validation reach it.
        learn: the Learner, set when the callback is added.

    Reading the loop's state: each name of `LEARNER_ATTRS` (``self.loss``, ``self.pred``, ``self.model``,
    ``self.training``, ``self.iter`` ...) reads the learner's current value; assigning one raises an error
    that says to assign ``self.learn.<name>``. A callback may keep a value of its own under such a name by
    setting it before it joins a learner (in its ``__init__``, as `Recorder` does with ``self.loss``) or
    as a class attribute: its own value then wins, for reads and writes. Any other missing name is an
    error that points to ``self.learn``.

    ``Callback(before_batch=fn)`` makes a callback from functions (each called with the learner).
    A callback may define ``cleanup()``: it is called when a fit ends with an error (not a cancel), to
    release what it holds (autocast, files, progress bars). ``run`` is set back to True after every fit.

    State: a callback whose values must survive an interrupted fit returns them from `state_dict` (plain
    numbers, lists, tensors) and takes them back in `load_state_dict`; ``learn.save(...)`` stores them by
    callback name, and a fit resumed with ``learn.load(..., resume=True)`` hands them back after
    ``before_fit``.
    """

    order: int = 0
    run: bool = True
    run_train: bool = True
    run_valid: bool = True
    learn: Any = None
    _name: str | None = None

    def __init__(self, **event_fns: Callable[[Any], None]):
        for event, fn in event_fns.items():
            if event not in EVENTS:
                raise ValueError(f"Unknown event {event!r}; events are: {', '.join(EVENTS)}")
            setattr(self, event, lambda fn=fn: fn(self.learn))

    @property
    def name(self) -> str:
        """The attribute name under which the learner exposes this callback (settable)."""
        return self._name or snake_name(type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def state_dict(self) -> dict:
        """What a checkpoint keeps of this callback to resume a fit; empty (nothing) by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned; called after ``before_fit`` of a resumed fit."""

    def __getattr__(self, attr: str) -> Any:
        # Only reached for names the callback lacks: the listed loop state is read from the learner.
        if attr in _LEARNER_ATTRS:
            if self.learn is None:
                raise AttributeError(f"{type(self).__name__}.{attr} reads the learner's {attr}, but the callback "
                                     "is not attached to a learner: add it with learn.add_cb(cb) or fit(..., cbs=cb)")
            return getattr(self.learn, attr)
        if not attr.startswith("_") and attr not in EVENTS and attr != "cleanup":
            raise AttributeError(f"{type(self).__name__} has no attribute {attr!r}. Callbacks read and write the "
                                 f"training state through the learner: use self.learn.{attr}")
        raise AttributeError(attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in _LEARNER_ATTRS and self.learn is not None and attr not in self.__dict__ \
                and not hasattr(type(self), attr):
            raise AttributeError(f"{type(self).__name__}.{attr} is the learner's {attr}, read-only in a callback: "
                                 f"assign self.learn.{attr} = ... to change it (or, for a value of the callback's "
                                 f"own, set self.{attr} in its __init__)")
        object.__setattr__(self, attr, value)

    def __call__(self, event: str) -> None:
        method = getattr(self, event, None)
        if method is None:
            return
        inner_ok = (event not in _INNER or
                    (self.run_train if getattr(self.learn, "training", False) else self.run_valid))
        if self.run and inner_ok:
            try:
                method()
            except _CANCELS:
                raise
            except Exception as e:
                if hasattr(e, "add_note"):
                    e.add_note(f"(raised in callback {type(self).__name__} at event {event!r})")
                raise

    def __repr__(self) -> str:
        return type(self).__name__


class CallbackListMixin:
    """The Learner's callbacks: adding and removing them (each reachable as ``learn.<name>``), and listing
    which ones handle each event."""

    def add_cb(self, cb: Callback | type) -> Any:
        """Add a callback (a class is instantiated); it becomes ``learn.<cb.name>``.

        A second callback with the same name joins the first; ``learn.<name>`` is the newest until it is removed.
        """
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise TypeError(f"Callbacks must be Callback instances or classes; received {cb!r}")
        existing = getattr(self, cb.name, None)
        if existing is not None and not isinstance(existing, Callback):
            raise ValueError(f"Callback name {cb.name!r} would hide the Learner attribute of the same name; "
                             "rename the callback class or set its `name`")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self._handlers = None  # the learner's per-event lists are rebuilt at the next event
        return self

    def add_cbs(self, cbs: Callback | Iterable[Callback] | None) -> Any:
        """Add several callbacks (see `add_cb`)."""
        for cb in listify(cbs):
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type) -> Any:
        """Remove a callback instance, or every callback of a class."""
        found = [c for c in self.cbs if (isinstance(c, cb) if isinstance(cb, type) else c is cb)]
        for c in found:
            self.cbs.remove(c)
            if getattr(self, c.name, None) is c:
                same = [other for other in self.cbs if other.name == c.name]
                if same:
                    setattr(self, c.name, same[-1])  # the one it had joined is reachable again
                else:
                    delattr(self, c.name)
            c.learn = None
        self._handlers = None
        return self

    def remove_cbs(self, cbs: Iterable) -> Any:
        """Remove several callbacks (see `remove_cb`)."""
        for cb in listify(cbs):
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Iterable[Callback] | None) -> Iterator[Any]:
        """Callbacks present only inside the ``with`` block."""
        cbs = listify(cbs)
        self.add_cbs(cbs)
        try:
            yield self
        finally:
            self.remove_cbs(cbs)

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Iterable[Callback]) -> Iterator[Any]:
        """Callbacks absent inside the ``with`` block."""
        cbs = listify(cbs)
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    def ordered_cbs(self, event: str) -> list[Callback]:
        """The callbacks that handle ``event``, in the order they run (ascending ``order``)."""
        return [cb for cb in sorted(self.cbs, key=lambda c: c.order) if hasattr(cb, event)]

    def to_detach(self, b: Any, cpu: bool = True, gather: bool = True) -> Any:
        """`lamina.torch_core.to_detach` (detached, on the CPU, gathered from every process)."""
        return _to_detach(b, cpu, gather)

    def show_training_loop(self) -> None:
        """Print every event and the callbacks that handle it, in firing order."""
        for event in EVENTS:
            names = [type(cb).__name__ for cb in self.ordered_cbs(event)]
            indent = 0 if event in ("after_create", "before_fit", "after_cancel_fit", "after_fit") else (
                2 if event in ("before_epoch", "after_cancel_epoch", "after_epoch") else (
                    4 if "train" in event or "validate" in event else 6))
            print(f"{' ' * indent}{event:<22} {names if names else ''}")
