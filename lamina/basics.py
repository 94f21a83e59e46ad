"""``from lamina.basics import *``: the Learner, its callbacks, losses, metrics, optimizers, data loaders,
data access, and the usual ``np``/``pd``/``torch``/``nn``/``F``/``Path``/``partial``."""

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .callbacks.core import (Callback, CancelBackwardException, CancelBatchException, CancelEpochException,
                             CancelFitException, CancelStepException, CancelTrainException,
                             CancelValidException)
from .callbacks.logging import CSVLogger
from .callbacks.mlflow import MLFlowCallback
from .callbacks.precision import ChannelsLast, MixedPrecision
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import LRFinder, ParamScheduler, SuggestionMethod, minimum, slide, steep, valley
from .callbacks.tensorboard import TensorBoardCallback
from .callbacks.tracker import EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback, TrackerCallback
from .callbacks.training import (BnFreeze, GradientAccumulation, GradientClip, ShortEpochCallback, SkipToEpoch,
                                 TerminateOnNaNCallback, TrainEvalCallback)
from .callbacks.wandb import WandbCallback
from .core import default_device, set_seed, to_device
from .data.external import URLs, download_url, untar_data
from .data.files import get_files, get_image_files, get_text_files, image_extensions
from .data.loaders import DataLoader, DataLoaders, TensorDataLoader
from .data.transforms import CategoryMap
from .export import load_learner
from .learner import Learner
from .losses import *  # noqa: F403  (the losses module's __all__)
from .losses import __all__ as _losses_all
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics_all
from .optim import SGD, Adam, OptimWrapper, RAdam, RMSProp, trainable_params
from .schedules import (SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly, combine_scheds, combined_cos)

__all__ = ["partial", "Path", "np", "pd", "torch", "F", "nn",
           "Callback", "CancelBackwardException", "CancelBatchException", "CancelEpochException",
           "CancelFitException", "CancelStepException", "CancelTrainException", "CancelValidException",
           "CSVLogger", "ChannelsLast", "MixedPrecision", "ProgressCallback", "Recorder", "LRFinder",
           "ParamScheduler", "SuggestionMethod", "minimum", "slide", "steep", "valley", "EarlyStoppingCallback",
           "ReduceLROnPlateau", "SaveModelCallback", "TrackerCallback", "BnFreeze", "GradientAccumulation",
           "GradientClip", "ShortEpochCallback", "SkipToEpoch", "TerminateOnNaNCallback", "TrainEvalCallback",
           "default_device", "set_seed", "to_device", "URLs", "download_url", "untar_data", "get_files",
           "get_image_files", "get_text_files", "image_extensions", "DataLoader", "DataLoaders",
           "TensorDataLoader", "CategoryMap", "load_learner", "Learner", "SGD", "Adam", "OptimWrapper", "RAdam",
           "RMSProp", "trainable_params", "SchedCos", "SchedExp", "SchedLin", "SchedNo", "SchedPoly",
           "combine_scheds", "combined_cos", *_losses_all, *_metrics_all,
           "TensorBoardCallback", "WandbCallback", "MLFlowCallback"]
