"""The path of fastai.callback.core: `Callback`, `TrainEvalCallback`, the cancel exceptions and the event names."""

from ..callbacks.core import *  # noqa: F403
from ..callbacks.core import __all__ as _core_all
from ..callbacks.training import TrainEvalCallback

__all__ = [*_core_all, "TrainEvalCallback"]
