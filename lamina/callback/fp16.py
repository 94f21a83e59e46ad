"""The path of fastai.callback.fp16: `MixedPrecision` (lamina's home: `lamina.callbacks.precision`)."""

from ..callbacks.precision import MixedPrecision, ChannelsLast

__all__ = ["MixedPrecision", "ChannelsLast"]
