"""``from lamina.basics import *``: the Learner, its callbacks, losses, metrics, optimizers, data loaders,
data access, fastai's ``L`` and ``Module``, and the usual ``np``/``pd``/``torch``/``nn``/``F``/``Path``/``partial``;
and the everyday names the book's code uses without importing them: `lamina.torch_core`'s (``tensor``, ``to_np``,
``one_hot``, ``first``, ``save_pickle`` ...), ``math``, ``array``, ``Image`` (PIL's module), ``Tensor``,
``Embedding``, ``get_emb_sz``, ``get_c``, ``image2tensor``, ``PILImageBW``, ``show_image``/``show_images`` and the
typed tensors (``TensorImage`` ...); and what fastai's star import brings from the standard library and its
helpers (`lamina.book_names`: ``re``, ``random``, ``os``, ``json``, ``copy``, ``Counter``, ``plt`` imported on first
use, ``coll_repr``, ``store_attr``, ``patch``, ``params`` ...).

Importing this surface (or one built on it: ``lamina.vision.all``, ``lamina.tabular.all``, ``lamina.collab``)
gives ``pathlib.Path`` the method ``ls()`` (`lamina.foundation.patch_path_ls`) and tensors the method ``pca()``
(`lamina.torch_core.pca`), as fastai code expects.
"""

import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy import array
from PIL import Image
from torch import Tensor, nn

from .book_names import *  # noqa: F403  (re, random, os, json, copy, Counter, plt, coll_repr, store_attr ...)
from .book_names import __all__ as _book_names_all
from .callbacks.core import (Callback, CancelBackwardException, CancelBatchException, CancelEpochException,
                             CancelFitException, CancelStepException, CancelTrainException,
                             CancelValidException)
from .callbacks.hook import (ActivationStats, Hook, HookCallback, Hooks, dummy_eval, has_params, hook_output,
                             hook_outputs, model_sizes, num_features_model)
from .callbacks.distributed import DistributedTrainer
from .callbacks.graph import ShowGraphCallback
from .callbacks.logging import CSVLogger
from .callbacks.mixup import CutMix, MixHandler, MixUp
from .callbacks.mlflow import MLFlowCallback
from .callbacks.precision import ChannelsLast, MixedPrecision
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import LRFinder, ParamScheduler, SuggestionMethod, minimum, slide, steep, valley
from .callbacks.tensorboard import TensorBoardCallback
from .callbacks.tracker import EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback, TrackerCallback
from .callbacks.training import (BnFreeze, GradientAccumulation, GradientClip, MCDropoutCallback, ShortEpochCallback,
                                 SkipToEpoch, TerminateOnNaNCallback, TrainEvalCallback)
from .callbacks.wandb import WandbCallback
from .core import default_device, num_distrib, rank_distrib, set_seed
from .data.distributed import DistributedDL
from .distributed import rank0_first, setup_distrib, teardown_distrib
from .data.external import URLs, download_url, untar_data
from .data.files import get_files, get_image_files, get_text_files, image_extensions
from .data.loaders import DataLoader, DataLoaders, TensorDataLoader
from .data.midlevel import Pipeline, TfmdLists, Transform, decode_at, fastuple, show_at
from .data.pipeline import DisplayedTransform, RandTransform
from .data.transforms.base import ItemTransform
from .data.block import get_c
from .data.transforms import CategoryMap
from .checkpoint import load_model, save_model
from .export import load_learner
from .foundation import L, Module, patch_path_ls
from .learner import Learner
from .models.embedding_sizes import get_emb_sz
from .models.layers import Embedding
from .models.small_layers import *  # noqa: F403  (fastai's small layers: View, SequentialEx, PoolFlatten ...)
from .models.small_layers import __all__ as _small_layers_all
from .losses import *  # noqa: F403  (the losses module's __all__)
from .losses import __all__ as _losses_all
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics_all
from .optim import SGD, Adam, OptimWrapper, RAdam, RMSProp, trainable_params
from .optimizer import (Lamb, Larc, Lookahead, Optimizer, QHAdam, StepperAdam, StepperRAdam, StepperRMSProp,
                        StepperSGD, ranger)
from .schedules import (SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly, combine_scheds, combined_cos)
from .steppers import *  # noqa: F403  (sgd_step, weight_decay, average_grad ...: the steppers module's __all__)
from .steppers import __all__ as _steppers_all
from .torch_core import *  # noqa: F403  (tensor, to_np, one_hot, first, save_pickle ...: its __all__)
from .torch_core import __all__ as _torch_core_all
from .torch_core import patch_tensor_pca
from .vision.core import PILImageBW, image2tensor
from .vision.show import get_grid, show_image, show_images, show_titled_image
from .vision.tensors import TensorImage, TensorImageBW, TensorMask, TensorPoint

__all__ = ["partial", "Path", "np", "pd", "torch", "F", "nn",
           "Callback", "CancelBackwardException", "CancelBatchException", "CancelEpochException",
           "CancelFitException", "CancelStepException", "CancelTrainException", "CancelValidException",
           "CSVLogger", "ChannelsLast", "MixedPrecision", "ProgressCallback", "ShowGraphCallback", "Recorder",
           "LRFinder",
           "ParamScheduler", "SuggestionMethod", "minimum", "slide", "steep", "valley", "EarlyStoppingCallback",
           "ReduceLROnPlateau", "SaveModelCallback", "TrackerCallback", "BnFreeze", "GradientAccumulation",
           "GradientClip", "ShortEpochCallback", "SkipToEpoch", "TerminateOnNaNCallback", "TrainEvalCallback",
           "MCDropoutCallback",
           "DistributedTrainer", "DistributedDL", "rank0_first", "setup_distrib", "teardown_distrib", "rank_distrib",
           "num_distrib", "default_device", "set_seed", "URLs", "download_url", "untar_data", "get_files",
           "get_image_files", "get_text_files", "image_extensions", "DataLoader", "DataLoaders",
           "TensorDataLoader", "CategoryMap", "load_learner", "save_model", "load_model", "Learner", "SGD", "Adam",
           "OptimWrapper", "RAdam",
           "RMSProp", "trainable_params", "SchedCos", "SchedExp", "SchedLin", "SchedNo", "SchedPoly",
           "combine_scheds", "combined_cos", *_losses_all, *_metrics_all,
           # fastai's foundations, and its stepper optimizer with its steppers
           "L", "Module", "Optimizer", "Lookahead", "StepperSGD", "StepperRMSProp", "StepperAdam", "StepperRAdam",
           "QHAdam", "Larc", "Lamb", "ranger", *_steppers_all,
           "Hook", "Hooks", "hook_output", "hook_outputs", "HookCallback", "ActivationStats", "dummy_eval",
           "model_sizes", "num_features_model", "has_params", "MixHandler", "MixUp", "CutMix",
           "TensorBoardCallback", "WandbCallback", "MLFlowCallback",
           # the everyday names of the book's code (issue: NameError past chapter 1): lamina.torch_core's, and
           "math", "array", "Image", "Tensor", "Embedding", "get_emb_sz", "get_c", "PILImageBW", "image2tensor",
           "show_image", "show_images", "get_grid", "show_titled_image", "TensorImage", "TensorImageBW", "TensorMask",
           "TensorPoint",
           *_torch_core_all,
           *_small_layers_all,
           # the mid-level data API (book chapter 11)
           "Transform", "DisplayedTransform", "RandTransform", "ItemTransform", "Pipeline", "TfmdLists", "fastuple",
           "show_at", "decode_at",
           # what fastai's star import brings from the standard library and fastcore (lamina.book_names)
           *[n for n in _book_names_all if n not in ("math", "LazyModule")]]

# The one change lamina makes to a class it does not own, made here so that only the fastai-style surfaces make
# it: fastai code lists folders with `path.ls()` (see docs/decisions.md). Importing it again changes nothing.
patch_path_ls()
patch_tensor_pca()  # fastai code calls movie_w.pca(3) (chapter 8); see lamina.torch_core.pca
