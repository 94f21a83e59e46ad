"""Callbacks that shape the training step: train/eval switching, gradient accumulation and clipping,
frozen batch norm, NaN guard, short epochs, resuming at an epoch, dropout kept on while predicting (MC dropout)."""

from __future__ import annotations

import math

from torch import nn

from .core import Callback, CancelBatchException, CancelEpochException, CancelFitException

__all__ = ["TrainEvalCallback", "GradientAccumulation", "GradientClip", "BnFreeze", "TerminateOnNaNCallback",
           "ShortEpochCallback", "SkipToEpoch", "MCDropoutCallback"]


class TrainEvalCallback(Callback):
    """Moves the model to the data's device, switches train/eval mode, and counts progress.

    ``learn.pct_train`` goes from 0 to 1 over the fit (schedules read it); ``learn.train_iter``
    counts training batches.
    """

    order = -10

    def before_fit(self) -> None:
        learn = self.learn
        learn.train_iter = 0
        learn.pct_train = learn.start_epoch / max(learn.n_epoch, 1)
        device = learn.dls.device
        learn.model.to(device)
        if isinstance(learn.loss_func, nn.Module):
            learn.loss_func.to(device)
        if hasattr(learn.model, "reset"):
            learn.model.reset()

    def before_train(self) -> None:
        self.learn.pct_train = self.learn.epoch / self.learn.n_epoch
        self.learn.model.train()
        self.learn.training = True

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.learn.pct_train += 1.0 / (self.learn.n_iter * self.learn.n_epoch)
        self.learn.train_iter += 1

    def before_validate(self) -> None:
        self.learn.model.eval()
        self.learn.training = False

    def after_epoch(self) -> None:
        self.learn.epochs_done = self.learn.epoch + 1  # saved in checkpoints, for exact resume


class GradientAccumulation(Callback):
    """Step the optimizer once every ``n_acc`` samples (not batches), as one big batch would.

    The loss is scaled by ``bs / n_acc`` so the accumulated gradient is the mean over ``n_acc`` samples.
    """

    order = -5  # before MixedPrecision's step handling
    run_valid = False

    def __init__(self, n_acc: int = 32):
        super().__init__()
        if n_acc < 1:
            raise ValueError(f"`n_acc` must be a positive number of samples; received: n_acc={n_acc}")
        self.n_acc = n_acc

    def before_fit(self) -> None:
        self.count = 0

    def after_loss(self) -> None:
        bs = len(self.learn.yb[0]) if self.learn.yb else len(self.learn.xb[0])
        self.learn.loss_grad = self.learn.loss_grad * (bs / self.n_acc)

    def before_step(self) -> None:
        self.count += len(self.learn.yb[0]) if self.learn.yb else len(self.learn.xb[0])
        if self.count < self.n_acc:
            raise CancelBatchException()  # keep the gradients; skip step and zero_grad
        self.count = 0


class GradientClip(Callback):
    """Clip the gradient norm to ``max_norm`` before each step (the true gradients: with fp16, unscaled first)."""

    order = 0

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0):
        super().__init__()
        self.max_norm, self.norm_type = max_norm, norm_type

    def before_step(self) -> None:
        mixed = getattr(self.learn, "mixed_precision", None)
        if mixed is not None:
            mixed.unscale_grads()
        nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm, self.norm_type)


class BnFreeze(Callback):
    """Keep the batch-norm layers of frozen groups in eval mode (their running stats stay put)."""

    run_valid = False

    def before_train(self) -> None:
        for m in self.learn.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()


class TerminateOnNaNCallback(Callback):
    """Stop the fit when the training loss becomes NaN or infinite."""

    order = -9
    run_valid = False

    def after_batch(self) -> None:
        loss = self.learn.loss
        if loss is not None and not math.isfinite(float(loss)):
            self.learn.logger(f"Training stopped at epoch {self.learn.epoch}, batch {self.learn.iter}: loss is {float(loss)}")
            raise CancelFitException()


class ShortEpochCallback(Callback):
    """Run only ``pct`` of each epoch (a quick check that everything runs)."""

    def __init__(self, pct: float = 0.01, short_valid: bool = True):
        super().__init__()
        self.pct, self.short_valid = pct, short_valid

    def after_batch(self) -> None:
        if self.learn.iter / self.learn.n_iter >= self.pct and (self.learn.training or self.short_valid):
            from .core import CancelTrainException, CancelValidException
            raise CancelTrainException() if self.learn.training else CancelValidException()


class SkipToEpoch(Callback):
    """Skip the epochs before ``start_epoch`` (`fit` adds the same behaviour through ``start_epoch``)."""

    order = -11

    def __init__(self, start_epoch: int):
        super().__init__()
        self.start_epoch = start_epoch

    def before_epoch(self) -> None:
        if self.learn.epoch < self.start_epoch:
            raise CancelEpochException()




class MCDropoutCallback(Callback):
    """Keep dropout active during validation and prediction (Monte Carlo dropout): each
    ``learn.get_preds(cbs=[MCDropoutCallback()])`` then draws a different sample of the model's predictions."""

    def _dropouts(self) -> list[nn.Module]:
        return [m for m in self.learn.model.modules() if "dropout" in type(m).__name__.lower()]

    def before_validate(self) -> None:
        for m in self._dropouts():
            m.train()

    def after_validate(self) -> None:
        for m in self._dropouts():
            m.eval()
