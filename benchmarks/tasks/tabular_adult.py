"""The chapter-1 tabular example on the full Adult sample (32,561 rows): ``TabularDataLoaders.from_csv`` with
6 categorical and 3 continuous columns, ``procs=[Categorify, FillMissing, Normalize]``,
``tabular_learner(dls, metrics=accuracy)`` (layers [200, 100]), ``fit_one_cycle(3)`` at bs 64; then the
latency of ``learn.predict(row)`` on raw rows of the CSV, and the accuracy with all 14 features.

Both sides get the same validation rows (20%, drawn from ``torch.randperm`` seeded with 42, passed as
``valid_idx``); ``time`` is the wall clock of the ``fit_one_cycle`` call, the optimizer's creation included. fastai's
``predict`` is timed inside ``learn.no_bar()`` (its fastest setting; lamina's has no bar).
``fit_cpu_time`` (the process's CPU seconds during the fit) is reported beside the wall-clock ``time``: on a
busy shared machine it varies much less from run to run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = "Tabular: Adult (32,561 rows), chapter-1 columns, fit_one_cycle(3) at bs 64; single-row predict latency"
TARGET = [{"metric": "time", "max_ratio": 0.25,
           "quality": [{"name": "accuracy", "better": "higher", "tol": 0.005}]},
          {"metric": "predict_ms", "max_ratio": 0.2}]
DATA = "adult_sample/adult.csv"
UNITS = {"time": "s", "fit_cpu_time": "s", "ms_per_batch": "ms", "predict_ms": "ms", "all14_time": "s"}
TIMEOUT = 1800

CAT_NAMES = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT_NAMES = ["age", "fnlwgt", "education-num"]
ALL_CATS = CAT_NAMES + ["sex", "native-country"]
ALL_CONTS = CONT_NAMES + ["capital-gain", "capital-loss", "hours-per-week"]
Y, SEED, VALID_PCT = "salary", 42, 0.2


def _valid_idx(n: int) -> list[int]:
    import torch
    gen = torch.Generator().manual_seed(SEED)
    return torch.randperm(n, generator=gen)[:int(VALID_PCT * n)].tolist()


def _predict_ms(learn: Any, df: Any, quick: bool) -> float:
    """Median milliseconds of ``learn.predict`` over raw rows of the CSV (after 3 warm-up calls)."""
    rows = [df.iloc[i] for i in range(25 if quick else 200)]
    for row in rows[:3]:
        learn.predict(row)
    times = []
    for row in rows:
        start = time.perf_counter()
        learn.predict(row)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _fit(lib: Any, csv: str, device: Any, cats: list, conts: list, epochs: int) -> tuple[Any, float, float, float]:
    """Build the loaders and learner with ``lib`` (lamina's or fastai's tabular surface), time the fit.

    Returns:
        ``(learner, wall seconds, CPU seconds, validation accuracy)``.
    """
    n = sum(1 for _ in open(csv)) - 1
    dls = lib.TabularDataLoaders.from_csv(csv, path=csv.rsplit("/", 1)[0], y_names=Y, cat_names=cats,
                                          cont_names=conts, procs=[lib.Categorify, lib.FillMissing, lib.Normalize],
                                          valid_idx=_valid_idx(n), device=device)
    learn = lib.tabular_learner(dls, metrics=lib.accuracy)
    cpu = time.process_time()
    with stopwatch() as t:
        learn.fit_one_cycle(epochs)
    cpu = time.process_time() - cpu
    return learn, t.seconds, cpu, float(learn.validate()[1])


def _run(lib: Any, data_dir: str, opts: dict[str, Any], device: Any, no_bar: Any) -> dict[str, Any]:
    """The whole task with ``lib``'s tabular surface: chapter-1 fit, predict latency, then all 14 features."""
    import pandas as pd
    quick = opts.get("quick", False)
    csv = require_file(data_dir, DATA)
    epochs = 1 if quick else 3
    learn, seconds, cpu, acc = _fit(lib, csv, device, CAT_NAMES, CONT_NAMES, epochs)
    n_batches = epochs * (len(learn.dls.train) + len(learn.dls.valid))
    with no_bar(learn):
        predict_ms = _predict_ms(learn, pd.read_csv(csv), quick)
    _, all14_s, _, all14_acc = _fit(lib, csv, device, ALL_CATS, ALL_CONTS, epochs)
    return {"time": seconds, "fit_cpu_time": cpu, "ms_per_batch": 1000 * seconds / n_batches,
            "predict_ms": predict_ms,
            "all14_time": all14_s, "quality": {"accuracy": acc, "all14_accuracy": all14_acc},
            "info": {"rows": f"{len(learn.dls.train.dataset)} train / {len(learn.dls.valid.dataset)} valid",
                     "bs": 64, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the task with ``lamina.tabular.all``.

    Args:
        data_dir: the folder holding ``adult_sample/adult.csv``.
        opts: harness options (``quick``: 1 epoch and fewer predict calls; device choice).

    Returns:
        the harness's result dict: ``time``, ``fit_cpu_time``, ``ms_per_batch``, ``predict_ms``, ``all14_time``,
        ``quality`` (``accuracy``, ``all14_accuracy``) and ``info``.
    """
    import contextlib

    import lamina.tabular.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, pick_device(opts), lambda learn: contextlib.nullcontext())


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the same task with ``fastai.tabular.all`` (predict timed inside ``learn.no_bar()``); see `run_lamina`."""
    import torch

    import fastai.tabular.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, torch.device(pick_device(opts)), lambda learn: learn.no_bar())
