"""The path of fastai.callback.training: `GradientAccumulation`, `GradientClip`, `BnFreeze`, `ShortEpochCallback`."""

from ..callbacks.training import GradientAccumulation, GradientClip, BnFreeze, ShortEpochCallback, TrainEvalCallback

__all__ = ["GradientAccumulation", "GradientClip", "BnFreeze", "ShortEpochCallback", "TrainEvalCallback"]
