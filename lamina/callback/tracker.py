"""The path of fastai.callback.tracker: `EarlyStoppingCallback`, `SaveModelCallback`, `ReduceLROnPlateau` ...."""

from ..callbacks.tracker import *  # noqa: F403
from ..callbacks.tracker import __all__ as _tracker_all
from ..callbacks.training import TerminateOnNaNCallback

__all__ = [*_tracker_all, "TerminateOnNaNCallback"]
