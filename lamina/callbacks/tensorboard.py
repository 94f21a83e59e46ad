"""Training curves, hyper-parameters, the model graph and sample predictions in TensorBoard.

Needs the ``tensorboard`` package (``pip install 'lamina[tensorboard]'``); it is imported when a fit starts, not
when this module is. Written with ``torch.utils.tensorboard.SummaryWriter``; view with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core import as_members
from .tracking import TrackingBase, check_library, fit_hparams, import_library, prediction_samples

__all__ = ["TensorBoardCallback"]

_WHO = "TensorBoardCallback"


class TensorBoardCallback(TrackingBase):
    """Log a fit to TensorBoard: per training step ``train_loss`` (smoothed) and every optimizer hyper-parameter
    of every param group (``lr_0``, ``mom_0``, ``wd_0`` ...); per epoch ``valid_loss`` and the metrics; at the end
    of the fit the hyper-parameters (`fit_hparams`) with the last metrics (``hparam/<name>``) for the HParams tab.

    Args:
        log_dir: the run's folder; None: ``runs/<date>_<host>`` in the working directory (a new one per fit).
            Fits logged to the same ``log_dir`` by one callback continue its step count.
        trace_model: also log the model graph (traced on one training batch, in eval mode, at the first fit).
        log_preds: after each epoch, log ``n_preds`` validation items with their targets and predictions
            (a figure for images, a text table otherwise) under ``Sample results``.
        n_preds: how many items ``log_preds`` shows.
        projector: at the end of each fit, log the validation set's features to the embedding projector
            (labelled with the targets, and with thumbnails for images).
        layer: the module whose input are the projector's features (default: the model's last ``nn.Linear``).

    Example:
        >>> learn.fit_one_cycle(3, 1e-3, cbs=TensorBoardCallback("runs/pets", trace_model=True))
    """

    def __init__(self, log_dir: str | Path | None = None, trace_model: bool = False, log_preds: bool = False,
                 n_preds: int = 9, projector: bool = False, layer: nn.Module | None = None):
        super().__init__()
        check_library("tensorboard", "tensorboard", "tensorboard", _WHO)
        if not isinstance(n_preds, int) or n_preds < 1:
            raise ValueError(f"`n_preds` must be a positive integer; received: n_preds={n_preds!r}")
        self.log_dir = None if log_dir is None else str(log_dir)
        self.trace_model, self.log_preds, self.n_preds = trace_model, log_preds, n_preds
        self.projector, self.layer = projector, layer
        self.writer: Any = None
        self.hparams: dict[str, Any] = {}
        self.last_metrics: dict[str, float] = {}
        self._traced, self._steps_in_dir = False, 0

    def start_run(self) -> None:
        writer_cls = import_library("torch.utils.tensorboard", "tensorboard", "tensorboard", _WHO).SummaryWriter
        if self.log_preds and not hasattr(self.learn.dls, "valid"):
            raise ValueError("`log_preds=True` needs a validation loader (learn.dls.valid); pass log_preds=False")
        self.writer = writer_cls(log_dir=self.log_dir)
        self.step_base = self._steps_in_dir if self.log_dir is not None else 0
        self.hparams = fit_hparams(self.learn)
        if self.trace_model and not self._traced:
            self._add_graph()
            self._traced = True

    def _add_graph(self) -> None:
        learn = self.learn
        batch = as_members(learn.dls.train.one_batch())
        n_inp = getattr(learn.dls, "n_inp", None) or max(1, len(batch) - 1)
        was_training = learn.model.training
        learn.model.eval()  # tracing runs the model: in train mode it would move batch-norm statistics
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # add_graph traces with torch.jit, whose deprecation notice is torch's own business, not the user's
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
                self.writer.add_graph(learn.model, tuple(batch[:n_inp]))
        finally:
            learn.model.train(was_training)

    def log_steps(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in rows:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        self.last_metrics = metrics
        for name, value in metrics.items():
            if name != "train_loss":  # the per-step curve has it; one tag holds one curve
                self.writer.add_scalar(name, value, step)
        if self.log_preds:
            self._log_predictions(step)
        self.writer.flush()

    def _log_predictions(self, step: int) -> None:
        images, targets, preds = prediction_samples(self.learn, self.n_preds)
        if images is not None:
            self.writer.add_figure("Sample results", _results_figure(images, targets, preds), step)
        else:
            rows = "\n".join(f"| {t} | {p} |" for t, p in zip(targets, preds))
            self.writer.add_text("Sample results", f"| target | prediction |\n|---|---|\n{rows}", step)

    def end_run(self, failed: bool) -> None:
        try:
            if not failed and self.projector:
                self._log_projector()
            metrics = {f"hparam/{k}": v for k, v in self.last_metrics.items()}
            # run_name ".": the hyper-parameters join this run's folder instead of a new sub-run
            self.writer.add_hparams(self.hparams, metrics, run_name=".")
        finally:
            self._steps_in_dir = self.step
            self.writer.close()
            self.last_metrics = {}

    def _log_projector(self) -> None:
        learn = self.learn
        layer = self.layer if self.layer is not None else _last_linear(learn.model)
        if layer is None:
            raise ValueError("`projector=True` needs the layer whose input are the features: the model has no "
                             "nn.Linear, so pass layer=<a module of learn.model>")
        feats: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().flatten(1).cpu()))
        try:
            images, targets, _ = prediction_samples(learn, len(learn.dls.valid.dataset))
        finally:
            hook.remove()
        thumbs = None
        if images is not None:  # 32 px thumbnails keep the projector's sprite small
            thumbs = nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
        self.writer.add_embedding(torch.cat(feats)[:len(targets)], metadata=targets, label_img=thumbs,
                                  global_step=self.step, tag="features")


def _last_linear(model: nn.Module) -> nn.Module | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _results_figure(images: torch.Tensor, targets: list[str], preds: list[str]) -> Any:
    """A grid of images titled ``target/prediction`` (green when they agree, red otherwise)."""
    import matplotlib.pyplot as plt
    n = len(images)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    for ax, img, target, pred in zip(axs.flat, images, targets, preds):
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        ax.set_title(f"{target}/{pred}", color="green" if target == pred else "red")
    fig.tight_layout()
    return fig
