"""Callbacks: each one concern around the training step (progress, recording, schedules, precision,
tracking, logging). `core` holds the `Callback` base, the event names and the cancel exceptions."""

from .mlflow import MLFlowCallback  # noqa: E402,F401  (the trackers: their libraries load when a fit starts)
from .tensorboard import TensorBoardCallback  # noqa: E402,F401
from .wandb import WandbCallback  # noqa: E402,F401
