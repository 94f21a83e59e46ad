"""The path of fastai.callback.preds: `MCDropoutCallback` (lamina's home: `lamina.callbacks.training`)."""

from ..callbacks.training import MCDropoutCallback

__all__ = ["MCDropoutCallback"]
