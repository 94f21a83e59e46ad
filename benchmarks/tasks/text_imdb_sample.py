"""The chapter-1 text example on the IMDB sample (1,000 reviews): ``TextDataLoaders.from_df`` with the
``is_valid`` column (tokenization and numericalization, timed as ``dls_time``), then
``text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5, metrics=accuracy, pretrained=False)`` and
``fit_one_cycle(2, 1e-2)`` at bs 64 (timed as ``time``), and the latency of ``learn.predict(text)``.

No pretrained weights on either side (they cannot be downloaded here), so the accuracy is near chance for both;
it is reported, with a wide tolerance. lamina's tokenization cache is off (``cache_dir=None``), so both sides
tokenize every run. The timed fit includes the optimizer's creation, on both sides.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = "Text: IMDB sample (1,000 reviews), from_df + AWD_LSTM classifier from scratch, fit_one_cycle(2) at bs 64"
TARGET = [{"metric": "time", "max_ratio": 0.7, "quality": [{"name": "accuracy", "better": "higher", "tol": 0.1}]},
          {"metric": "dls_time", "max_ratio": 0.5},
          {"metric": "predict_ms", "max_ratio": 0.5}]
DATA = "imdb_sample/texts.csv"
UNITS = {"time": "s", "dls_time": "s", "predict_ms": "ms"}
TIMEOUT = 1800

TEXTS = ["I really liked that movie!", "What a waste of two hours.", "The acting was superb, the plot thin."]


def _predict_ms(learn: Any, n: int) -> float:
    for text in TEXTS:
        learn.predict(text)
    times = []
    for i in range(n):
        start = time.perf_counter()
        learn.predict(TEXTS[i % len(TEXTS)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _run(lib: Any, data_dir: str, opts: dict[str, Any], device: Any, extra: dict, no_bar: Any) -> dict[str, Any]:
    import pandas as pd
    quick = opts.get("quick", False)
    df = pd.read_csv(require_file(data_dir, DATA))
    if quick:  # a few reviews of each split
        df = pd.concat([df[~df.is_valid].iloc[:64], df[df.is_valid].iloc[:32]])
    with tempfile.TemporaryDirectory() as tmp, stopwatch() as dls_t:
        dls = lib.TextDataLoaders.from_df(df, path=tmp, text_col="text", label_col="label", valid_col="is_valid",
                                          bs=64, device=device, **extra)
    learn = lib.text_classifier_learner(dls, lib.AWD_LSTM, drop_mult=0.5, metrics=lib.accuracy, pretrained=False)
    epochs = 1 if quick else 2
    with stopwatch() as t:
        learn.fit_one_cycle(epochs, 1e-2)
    with no_bar(learn):
        predict_ms = _predict_ms(learn, 10 if quick else 50)
    return {"time": t.seconds, "dls_time": dls_t.seconds, "predict_ms": predict_ms,
            "quality": {"accuracy": float(learn.validate()[1])},
            "info": {"rows": f"{len(dls.train_ds)} train / {len(dls.valid_ds)} valid", "bs": 64,
                     "vocab": len(dls.vocab[0])}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the task with ``lamina.text.all`` (tokenization cache off, so every run tokenizes)."""
    import contextlib

    import lamina.text.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, pick_device(opts), {"cache_dir": None},
                lambda learn: contextlib.nullcontext())


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the same task with ``fastai.text.all`` (predict timed inside ``learn.no_bar()``); see `run_lamina`."""
    import torch

    import fastai.text.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, torch.device(pick_device(opts)), {}, lambda learn: learn.no_bar())
