"""The chapter-10 language model on the IMDB sample (1,000 reviews): ``TextDataLoaders.from_df(..., is_lm=True)``
with the ``is_valid`` column, then ``language_model_learner(dls, AWD_LSTM, drop_mult=0.3, metrics=[accuracy,
Perplexity()], pretrained=False)`` and ``fit_one_cycle(1, 2e-2)`` at bs 64, seq_len 72 (timed as ``time``, from
the call to its return, optimizer creation included).

No pretrained WikiText-103 weights on either side (they cannot be downloaded here): both train from scratch, so
the perplexity is high for both; it is compared through the validation loss (its log). lamina's tokenization cache is off.
"""

from __future__ import annotations

import tempfile
from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = ("Text: IMDB sample language model from scratch, from_df(is_lm=True) + AWD_LSTM, fit_one_cycle(1, 2e-2) "
         "at bs 64, seq_len 72")
# perplexity = exp(valid_loss): a tolerance of 0.02 on the loss is about 2% on the perplexity
TARGET = {"metric": "time", "max_ratio": 0.7, "quality": [{"name": "valid_loss", "better": "lower", "tol": 0.02}]}
DATA = "imdb_sample/texts.csv"
UNITS = {"time": "s", "dls_time": "s"}
TIMEOUT = 2400


def _run(lib: Any, data_dir: str, opts: dict[str, Any], device: Any, extra: dict) -> dict[str, Any]:
    import pandas as pd
    df = pd.read_csv(require_file(data_dir, DATA))
    if opts.get("quick", False):
        df = pd.concat([df[~df.is_valid].iloc[:64], df[df.is_valid].iloc[:16]])
    with tempfile.TemporaryDirectory() as tmp:
        with stopwatch() as dls_t:
            dls = lib.TextDataLoaders.from_df(df, path=tmp, text_col="text", valid_col="is_valid", is_lm=True,
                                              bs=64, seq_len=72, device=device, **extra)
        learn = lib.language_model_learner(dls, lib.AWD_LSTM, drop_mult=0.3, pretrained=False,
                                           metrics=[lib.accuracy, lib.Perplexity()])
        with stopwatch() as t:
            learn.fit_one_cycle(1, 2e-2)
        loss, acc, ppl = (float(v) for v in learn.validate()[:3])
    return {"time": t.seconds, "dls_time": dls_t.seconds,
            "quality": {"valid_loss": loss, "perplexity": ppl, "accuracy": acc},
            "info": {"train_batches": len(dls.train), "bs": 64, "seq_len": 72, "vocab": len(dls.vocab)}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the task with ``lamina.text.all`` (tokenization cache off, so every run tokenizes)."""
    import lamina.text.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, pick_device(opts), {"cache_dir": None})


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the same task with ``fastai.text.all``; see `run_lamina`."""
    import torch

    import fastai.text.all as lib
    prepare(opts)
    return _run(lib, data_dir, opts, torch.device(pick_device(opts)), {})
