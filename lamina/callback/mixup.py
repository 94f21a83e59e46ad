"""The path of fastai.callback.mixup: `MixUp`, `CutMix`, `MixHandler`."""

from ..callbacks.mixup import *  # noqa: F403
from ..callbacks.mixup import __all__ as _mixup_all

__all__ = [*_mixup_all]
