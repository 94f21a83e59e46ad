"""Training curves, hyper-parameters, gradients, sample predictions and the exported model in Weights & Biases.

Needs the ``wandb`` package (``pip install 'lamina[wandb]'``); it is imported when a fit starts, not when this
module is. Works without an account in offline mode (``WANDB_MODE=offline``: the run is written under
``wandb/offline-run-*`` and can be uploaded later with ``wandb sync``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .tracking import TrackingBase, check_library, fit_hparams, import_library, prediction_samples

__all__ = ["WandbCallback"]

_WHO = "WandbCallback"
_LOG_CHOICES = (None, "gradients", "parameters", "all")


class WandbCallback(TrackingBase):
    """Log a fit to W&B: the hyper-parameters (`fit_hparams`) in the run's config; per training step
    ``train_loss`` (smoothed) and every optimizer hyper-parameter of every param group (``lr_0``, ``mom_0`` ...);
    per epoch ``epoch``, ``valid_loss`` and the metrics; optionally gradient/weight histograms, a table of
    predictions and the exported model.

    The run is the active one when there is one (you called ``wandb.init(project=...)``: several fits, such as
    `fine_tune`'s two, then go to one run, which you finish); otherwise the callback calls ``wandb.init()`` itself
    (configured by ``WANDB_PROJECT``, ``WANDB_MODE`` ...) and finishes that run at the end of the fit.

    Args:
        log: what ``wandb.watch`` records of the model: ``"gradients"``, ``"parameters"``, ``"all"`` or None.
        log_preds: log a table of ``n_preds`` validation items with target and prediction (images included for
            image data) at the end of the fit.
        log_preds_every_epoch: log that table after every epoch instead.
        log_model: log the exported model (``learn.export``) as a ``model`` artifact at the end of the fit.
        model_name: the artifact's name (default ``run-<run id>-model``).
        valid_dl: the loader the predictions come from (default ``learn.dls.valid``).
        n_preds: the number of items in the predictions table.
        log_freq: the histograms of ``log`` are recorded every ``log_freq`` training batches.

    Example:
        >>> wandb.init(project="pets")
        >>> learn.fine_tune(2, cbs=WandbCallback(log_model=True))
        >>> wandb.finish()
    """

    def __init__(self, log: str | None = "gradients", log_preds: bool = True, log_preds_every_epoch: bool = False,
                 log_model: bool = False, model_name: str | None = None, valid_dl: Any = None, n_preds: int = 36,
                 log_freq: int = 1000):
        super().__init__()
        check_library("wandb", "wandb", "wandb", _WHO)
        if log not in _LOG_CHOICES:
            raise ValueError(f"`log` must be one of {_LOG_CHOICES}; received: log={log!r}")
        if not isinstance(n_preds, int) or n_preds < 1:
            raise ValueError(f"`n_preds` must be a positive integer; received: n_preds={n_preds!r}")
        self.log, self.log_preds, self.log_preds_every_epoch = log, log_preds, log_preds_every_epoch
        self.log_model, self.model_name, self.valid_dl, self.n_preds = log_model, model_name, valid_dl, n_preds
        self.log_freq = log_freq
        self.wandb_run: Any = None
        self._own_run, self._watched = False, None

    def start_run(self) -> None:
        wandb = import_library("wandb", "wandb", "wandb", _WHO)
        self.wandb = wandb
        if self.log_model and not getattr(self.learn, "model_config", None):
            raise ValueError("`log_model=True` logs learn.export(), which needs learn.model_config (set by lamina's "
                             "learner factories such as vision_learner); pass log_model=False for this Learner")
        self._own_run, hparams = wandb.run is None, fit_hparams(self.learn)
        if self._own_run:
            self.wandb_run = wandb.init(config=hparams)
        else:
            self.wandb_run = wandb.run
            self.wandb_run.config.update(hparams, allow_val_change=True)
        # a fresh run's first batch is step 0, where wandb.watch puts its histograms; a run that holds rows
        # continues after them (steps only grow within a run)
        self.step_base = self.wandb_run.step if self.wandb_run.step > 0 else -1
        # the histograms go to the step being written: with them, each step is logged when its batch ends
        self.flush_every = 1 if self.log is not None else TrackingBase.flush_every
        if self.log is not None and self._watched is not self.learn.model:
            wandb.watch(self.learn.model, log=self.log, log_freq=self.log_freq)
            self._watched = self.learn.model

    def log_steps(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        learn = self.learn
        pass_ends = learn.iter == learn.n_iter - 1
        for step, values in rows:
            # committing moves wandb to the next row before the next backward, where wandb.watch writes its
            # histograms; the pass's last row stays open for the epoch's metrics
            self.wandb_run.log(values, step=step, commit=not (pass_ends and step == self.step))

    def _open_step(self) -> int:
        return max(self.step, self.wandb_run.step)  # a row wandb has closed takes nothing more

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        values = {k: v for k, v in metrics.items() if k != "train_loss"}  # per step already
        self.wandb_run.log({"epoch": self.learn.epoch + 1, **values}, step=self._open_step(), commit=True)
        if self.log_preds and self.log_preds_every_epoch:
            self._log_predictions()

    def _log_predictions(self) -> None:
        images, targets, preds = prediction_samples(self.learn, self.n_preds, self.valid_dl)
        if images is not None:
            columns = ["image", "target", "prediction"]
            data = [[self.wandb.Image(img.permute(1, 2, 0).squeeze(-1).numpy()), t, p]  # HW or HWC
                    for img, t, p in zip(images, targets, preds)]
        else:
            columns, data = ["target", "prediction"], [list(row) for row in zip(targets, preds)]
        self.wandb_run.log({"predictions": self.wandb.Table(columns=columns, data=data)}, step=self._open_step())

    def _log_exported_model(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = self.learn.export(Path(folder) / "export.pkl")
            artifact = self.wandb.Artifact(self.model_name or f"run-{self.wandb_run.id}-model", type="model",
                                           metadata={"epochs": self.learn.n_epoch})
            artifact.add_file(str(path))  # "mutable" policy (the default): copied to wandb's staging area now
            self.wandb_run.log_artifact(artifact)

    def end_run(self, failed: bool) -> None:
        try:
            if not failed and self.log_preds and not self.log_preds_every_epoch:
                self._log_predictions()
            if not failed and self.log_model:
                self._log_exported_model()
        finally:
            if self._own_run:
                self.wandb_run.finish(exit_code=1 if failed else 0)
            self.wandb_run = None
