"""Hyper-parameters, per-epoch metrics and the exported model in MLflow.

Needs the ``mlflow`` package (``pip install 'lamina[mlflow]'``: mlflow-skinny, with SQLAlchemy and Alembic for
the local SQLite store); it is imported when a fit starts, not when this module is. Everything goes through an
``MlflowClient`` bound to one tracking URI: the callback never changes mlflow's global tracking URI.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from .tracking import TrackingBase, check_library, fit_hparams, import_library

__all__ = ["MLFlowCallback"]

_WHO = "MLFlowCallback"


class MLFlowCallback(TrackingBase):
    """Log a fit to MLflow: params (`fit_hparams`: ``lr``, ``bs``, ``epochs``, ``opt``, ``wd``, ``arch`` ...),
    per epoch ``train_loss``, ``valid_loss`` and the metrics (step = epoch), and the exported model.

    Where it goes, first match wins: the active run (you called ``mlflow.start_run()``; it stays open and
    ``tracking_uri``/``experiment_name``/``run_name`` are not used); ``tracking_uri``; the URI set with
    ``mlflow.set_tracking_uri`` or ``MLFLOW_TRACKING_URI``; else a local store in the learner's folder:
    ``sqlite:///<learn.path>/mlflow.db`` with artifacts under ``<learn.path>/mlruns`` (view it with
    ``mlflow ui --backend-store-uri sqlite:///<learn.path>/mlflow.db``). A run the callback creates is one
    fit, ended as FINISHED (or FAILED when the fit raised).

    Args:
        tracking_uri: the tracking store, e.g. ``"sqlite:///runs.db"``, ``"http://127.0.0.1:5000"`` or a
            ``"file:<folder>"`` store (recent mlflow accepts those only with ``MLFLOW_ALLOW_FILE_STORE=true``).
        experiment_name: created if missing; default ``$MLFLOW_EXPERIMENT_NAME``, else ``"lamina"``.
        run_name: the run's name (default: mlflow picks one).
        log_model: log ``learn.export()`` (artifact ``model/export.pkl``, loadable with `load_learner`) at the
            end of the fit.

    Example:
        >>> learn.fit_one_cycle(3, 1e-3, cbs=MLFlowCallback(experiment_name="pets"))
    """

    log_every_step = False  # per epoch: an MLflow metric row per batch would flood the store

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 run_name: str | None = None, log_model: bool = True):
        super().__init__()
        check_library("mlflow", "mlflow-skinny", "mlflow", _WHO)
        self.tracking_uri, self.experiment_name, self.run_name = tracking_uri, experiment_name, run_name
        self.log_model = log_model
        self.client: Any = None
        self.run_id: str | None = None
        self._own_run, self._epoch_base = False, 0

    def start_run(self) -> None:
        mlflow = import_library("mlflow", "mlflow-skinny", "mlflow", _WHO)
        if self.log_model and not getattr(self.learn, "model_config", None):
            raise ValueError("`log_model=True` logs learn.export(), which needs learn.model_config (set by lamina's "
                             "learner factories such as vision_learner); pass log_model=False for this Learner")
        active = mlflow.active_run()
        self._own_run = active is None
        if active is not None:
            self.client = mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri())
            self.run_id = active.info.run_id
        else:
            uri, artifacts = self._store_uri(mlflow)
            self.client = mlflow.MlflowClient(tracking_uri=uri)
            experiment_id = self._experiment_id(artifacts)
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
            self._epoch_base = 0
        self._log_params(fit_hparams(self.learn))

    def _store_uri(self, mlflow: Any) -> tuple[str, str | None]:
        """The tracking URI, and the artifact folder for new experiments when it is lamina's local default."""
        if self.tracking_uri is not None:
            return self.tracking_uri, None
        if mlflow.tracking.is_tracking_uri_set():
            return mlflow.get_tracking_uri(), None
        check_library("sqlalchemy", "sqlalchemy", "mlflow", f"{_WHO}'s local SQLite store")
        check_library("alembic", "alembic", "mlflow", f"{_WHO}'s local SQLite store")
        folder = Path(self.learn.path).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlruns").as_uri()

    def _experiment_id(self, artifact_location: str | None) -> str:
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lamina"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(name, artifact_location=artifact_location)

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        # MLflow params are fixed once logged: a later fit in the same run keeps the first values
        logged = self.client.get_run(self.run_id).data.params
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != str(v))
        if changed:
            warnings.warn(f"MLflow run {self.run_id} already has params {changed} with other values; a run's params "
                          "cannot change, so the first values are kept (start a new run for each fit to keep them)")
        new = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        if new:
            self.client.log_batch(self.run_id, params=new)

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        epoch = self._epoch_base + self.learn.epoch
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])

    def end_run(self, failed: bool) -> None:
        try:
            if not failed and self.log_model:
                with tempfile.TemporaryDirectory() as folder:
                    path = self.learn.export(Path(folder) / "export.pkl")
                    self.client.log_artifact(self.run_id, str(path), artifact_path="model")
        finally:
            self._epoch_base += self.learn.n_epoch
            if self._own_run:
                self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
