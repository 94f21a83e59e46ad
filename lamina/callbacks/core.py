"""The callback base class, the training events (named once, here) and the cancel exceptions.

A callback is an object with methods named after events. The Learner calls every callback, in
ascending ``order``, at each event; a callback reads and writes training state through
``self.learn`` (``self.learn.pred``, ``self.learn.loss`` ...).

Example:
    >>> class PrintLoss(Callback):
    ...     def after_batch(self): print(self.learn.loss.item())
    >>> learn.fit(1, cbs=PrintLoss())
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["EVENTS", "INNER_EVENTS", "Callback", "CancelBatchException", "CancelTrainException",
           "CancelValidException", "CancelEpochException", "CancelFitException", "CancelStepException",
           "CancelBackwardException", "snake_name", "noop"]

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


def noop(*args: Any, **kwargs: Any) -> None:
    """Does nothing: the learner's logger inside ``no_logging()``."""
    return None


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

    ``Callback(before_batch=fn)`` makes a callback from functions (each called with the learner).
    A callback may define ``cleanup()``: it is called when a fit ends with an error (not a cancel), to
    release what it holds (autocast, files, progress bars). ``run`` is set back to True after every fit.
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

    def __getattr__(self, attr: str) -> Any:
        # Only reached for missing attributes: say where training state lives instead of forwarding to it.
        if not attr.startswith("_") and attr not in EVENTS and attr != "cleanup":
            raise AttributeError(f"{type(self).__name__} has no attribute {attr!r}. Callbacks read and write the "
                                 f"training state through the learner: use self.learn.{attr}")
        raise AttributeError(attr)

    def __call__(self, event: str) -> None:
        method = getattr(self, event, None)
        if method is None:
            return
        inner_ok = (event not in _INNER or
                    (self.run_train if getattr(self.learn, "training", False) else self.run_valid))
        if self.run and inner_ok:
            try:
                method()
            except (CancelBatchException, CancelTrainException, CancelValidException, CancelEpochException,
                    CancelFitException, CancelStepException, CancelBackwardException):
                raise
            except Exception as e:
                if hasattr(e, "add_note"):
                    e.add_note(f"(raised in callback {type(self).__name__} at event {event!r})")
                raise

    def __repr__(self) -> str:
        return type(self).__name__
