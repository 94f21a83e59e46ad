"""The path of fastai.data.core: `Datasets`, `TfmdLists`, `DataLoaders`, `DataLoader`, ``show_at``, ``decode_at``.

lamina's homes are `lamina.data.datasets`, `lamina.data.midlevel`, `lamina.data.loaders` and
`lamina.data.dataloader`; nothing is defined here. (lamina has one loader class, so fastai's ``TfmdDL`` is
`DataLoader`.)
"""

from .dataloader import DataLoader
from .datasets import Datasets
from .loaders import DataLoaders
from .midlevel import TfmdLists, decode_at, show_at

TfmdDL = DataLoader

__all__ = ["Datasets", "TfmdLists", "DataLoaders", "DataLoader", "TfmdDL", "show_at", "decode_at"]
