"""The path of fastai.callback.tracker: `EarlyStoppingCallback`, `SaveModelCallback`, `ReduceLROnPlateau` ...."""

from ..callbacks.tracker import (EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback, TrackerCallback)
from ..callbacks.training import TerminateOnNaNCallback

__all__ = ["TrackerCallback", "EarlyStoppingCallback", "SaveModelCallback", "ReduceLROnPlateau",
           "TerminateOnNaNCallback"]
