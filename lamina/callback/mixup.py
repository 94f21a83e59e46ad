"""The path of fastai.callback.mixup: `MixUp`, `CutMix`, `MixHandler`."""

from ..callbacks.mixup import (CutMix, MixHandler, MixUp, reduce_loss)

__all__ = ["MixHandler", "MixUp", "CutMix", "reduce_loss"]
