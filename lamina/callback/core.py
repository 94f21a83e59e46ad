"""The path of fastai.callback.core: `Callback`, `TrainEvalCallback`, the cancel exceptions and the event names."""

from ..callbacks.core import (CANCEL_EXCEPTIONS, Callback, CancelBackwardException, CancelBatchException,
                              CancelEpochException, CancelFitException, CancelStepException, CancelTrainException,
                              CancelValidException, EVENTS, INNER_EVENTS, LEARNER_ATTRS, noop, snake_name)
from ..callbacks.training import TrainEvalCallback

__all__ = ["EVENTS", "INNER_EVENTS", "CANCEL_EXCEPTIONS", "LEARNER_ATTRS", "Callback", "CancelBatchException",
           "CancelTrainException", "CancelValidException", "CancelEpochException", "CancelFitException",
           "CancelStepException", "CancelBackwardException", "snake_name", "noop", "TrainEvalCallback"]
