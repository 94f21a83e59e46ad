"""Collaborative filtering on MovieLens 100k: ``collab_learner(n_factors=50, y_range=(0, 5.5))``,
``fit_one_cycle(5, 5e-3, wd=0.1)`` at bs 64, and the chapter-1 example on the MovieLens sample.

Both sides split ``u.data`` with seed 42 and valid_pct 0.2 (the same rows: both draw the split from
``torch.randperm`` seeded with 42); the time is the wall clock of the fit call, the optimizer's creation
included. The chapter-1 example (``from_csv`` + ``fine_tune(10)``) is reported alongside, untargeted.
The MovieLens files are read from the data folder, never copied.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = "Collab filtering: MovieLens 100k, n_factors 50, fit_one_cycle(5, 5e-3, wd=0.1), bs 64"
TARGET = {"metric": "time", "max_ratio": 0.25,
          "quality": [{"name": "valid_mse", "better": "lower", "tol": 0.005}]}
DATA = ["ml-100k/u.data", "movie_lens_sample/ratings.csv"]
UNITS = {"time": "s", "ms_per_batch": "ms", "ch1_time": "s"}
TIMEOUT = 1800

N_FACTORS, Y_RANGE, BS, LR, WD, SEED = 50, (0, 5.5), 64, 5e-3, 0.1, 42


def _ratings(data_dir: str, quick: bool):
    import pandas as pd
    ratings = pd.read_csv(require_file(data_dir, "ml-100k/u.data"), sep="\t", header=None,
                          names=["user", "item", "rating", "timestamp"])
    return ratings.iloc[:20_000] if quick else ratings


def _result(fit_s: float, n_batches: int, valid_mse: float, ch1_s: float, ch1_loss: float, n: int) -> dict:
    return {"time": fit_s, "ms_per_batch": 1000 * fit_s / n_batches, "ch1_time": ch1_s,
            "quality": {"valid_mse": valid_mse, "ch1_valid_loss": ch1_loss},
            "info": {"ratings": n, "bs": BS, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the task with ``lamina.collab``: MovieLens 100k fit, then the chapter-1 example.

    Args:
        data_dir: the folder holding ``ml-100k/u.data`` and ``movie_lens_sample/ratings.csv``.
        opts: harness options (``quick``: 20,000 ratings and 1 epoch; device choice).

    Returns:
        the harness's result dict: ``time``, ``ms_per_batch``, ``ch1_time``, ``quality`` (``valid_mse``,
        ``ch1_valid_loss``) and ``info``.
    """
    from lamina.collab import CollabDataLoaders, collab_learner
    prepare(opts)
    device, quick = pick_device(opts), opts.get("quick", False)
    ratings = _ratings(data_dir, quick)
    dls = CollabDataLoaders.from_df(ratings, valid_pct=0.2, seed=SEED, bs=BS, device=device)
    learn = collab_learner(dls, n_factors=N_FACTORS, y_range=Y_RANGE)
    epochs = 1 if quick else 5
    with stopwatch() as fit:
        learn.fit_one_cycle(epochs, LR, wd=WD)
    valid_mse = float(learn.validate()[0])
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    ch1_s, ch1_loss = _chapter_one_lamina(data_dir, device, quick)
    return _result(fit.seconds, n_batches, valid_mse, ch1_s, ch1_loss, len(ratings))


def _chapter_one_lamina(data_dir: str, device: str, quick: bool) -> tuple[float, float]:
    """The chapter-1 example on the MovieLens sample: ``(fine_tune seconds, validation loss)``."""
    from lamina.collab import CollabDataLoaders, collab_learner
    dls = CollabDataLoaders.from_csv(require_file(data_dir, "movie_lens_sample/ratings.csv"), device=device)
    learn = collab_learner(dls, y_range=(0.5, 5.5))
    with stopwatch() as t:
        learn.fine_tune(1 if quick else 10)
    learn.show_results()
    return t.seconds, float(learn.validate()[0])


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the same task with ``fastai.collab``; see `run_lamina`."""
    import torch
    from fastai.collab import CollabDataLoaders, collab_learner
    prepare(opts)
    device, quick = pick_device(opts), opts.get("quick", False)
    ratings = _ratings(data_dir, quick)
    dls = CollabDataLoaders.from_df(ratings, valid_pct=0.2, seed=SEED, bs=BS, device=torch.device(device))
    learn = collab_learner(dls, n_factors=N_FACTORS, y_range=Y_RANGE)
    epochs = 1 if quick else 5
    with stopwatch() as fit:
        learn.fit_one_cycle(epochs, LR, wd=WD)
    valid_mse = float(learn.validate()[0])
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    ch1_s, ch1_loss = _chapter_one_fastai(data_dir, device, quick)
    return _result(fit.seconds, n_batches, valid_mse, ch1_s, ch1_loss, len(ratings))


def _chapter_one_fastai(data_dir: str, device: str, quick: bool) -> tuple[float, float]:
    """fastai's run of `_chapter_one_lamina`."""
    import torch
    from fastai.collab import CollabDataLoaders, collab_learner
    dls = CollabDataLoaders.from_csv(require_file(data_dir, "movie_lens_sample/ratings.csv"),
                                     device=torch.device(device))
    learn = collab_learner(dls, y_range=(0.5, 5.5))
    with stopwatch() as t:
        learn.fine_tune(1 if quick else 10)
    learn.show_results()
    return t.seconds, float(learn.validate()[0])
