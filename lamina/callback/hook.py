"""The path of fastai.callback.hook: `hook_output`, `Hooks`, `ActivationStats`, `model_sizes` ...."""

from ..callbacks.hook import *  # noqa: F403
from ..callbacks.hook import __all__ as _hook_all

__all__ = [*_hook_all]
