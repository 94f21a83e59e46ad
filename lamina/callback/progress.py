"""The path of fastai.callback.progress: `ProgressCallback`, and `CSVLogger` (lamina's home for it:
`lamina.callbacks.logging`)."""

from ..callbacks.progress import ProgressCallback
from ..callbacks.logging import CSVLogger

__all__ = ["ProgressCallback", "CSVLogger"]
