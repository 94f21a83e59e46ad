"""Tokenize and numericalize the IMDB sample (1,000 reviews): ``TextDataLoaders.from_df`` with the ``is_valid``
column, timed from the call to its return in a fresh process (``dls_time``), the tokenizer library loaded inside
the call where the library loads it there.

``text_imdb_sample`` times the same call once per round next to a five-minute fit; this task repeats only the
call, so a run can afford the rounds a one-second measurement needs on a shared machine. lamina's cache is off
for the timed call (``cache_dir=None``: both sides tokenize); a second call with a cache folder, timed after a
first one filled it, is reported for lamina as ``warm_dls_time`` (fastai's ``from_df`` keeps no cache).

lamina tokenizes from spaCy's tokenizer rules kept in ``$LAMINA_HOME/cache/`` (`lamina.text.spacy_rules`), so
``dls_time`` is what every run after a user's first one takes. The first one imports spaCy and extracts the rules:
``first_use_dls_time`` times it, in a fresh process with an empty ``LAMINA_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = "Text: tokenize + numericalize the IMDB sample (1,000 reviews), TextDataLoaders.from_df, cold"
TARGET = [{"metric": "dls_time", "max_ratio": 0.5}]
DATA = "imdb_sample/texts.csv"
UNITS = {"dls_time": "s", "warm_dls_time": "s", "first_use_dls_time": "s"}
TIMEOUT = 600


def _from_df(lib: Any, df: Any, path: str, device: Any, extra: dict) -> tuple[Any, float]:
    with stopwatch() as t:
        dls = lib.TextDataLoaders.from_df(df, path=path, text_col="text", label_col="label", valid_col="is_valid",
                                          bs=64, device=device, **extra)
    return dls, t.seconds


def _frame(data_dir: str, quick: bool) -> Any:
    import pandas as pd
    df = pd.read_csv(require_file(data_dir, DATA))
    return pd.concat([df[~df.is_valid].iloc[:64], df[df.is_valid].iloc[:32]]) if quick else df


_FIRST_USE = """
import json, sys, tempfile
from benchmarks.common import pick_device, prepare
from benchmarks.tasks.text_tokenize_imdb_sample import _frame, _from_df
import lamina.text.all as lib
data_dir, opts = sys.argv[1], json.loads(sys.argv[2])
prepare(opts)
df = _frame(data_dir, opts.get("quick", False))
with tempfile.TemporaryDirectory() as tmp:
    print(_from_df(lib, df, tmp, pick_device(opts), {"cache_dir": None})[1])
"""


def _first_use_seconds(data_dir: str, opts: dict[str, Any]) -> float:
    """``from_df`` in a fresh process whose ``LAMINA_HOME`` is empty (spaCy imported, its rules extracted)."""
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as home:
        path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "LAMINA_HOME": home, "PYTHONPATH": path}
        out = subprocess.run([sys.executable, "-c", _FIRST_USE, data_dir, json.dumps(opts)], env=env, cwd=root,
                             capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Time ``from_df`` with lamina (cache off), then a cached call after one that fills the cache, then a first
    use in a fresh process with an empty ``LAMINA_HOME``."""
    import lamina.text.all as lib
    prepare(opts)
    df, device = _frame(data_dir, opts.get("quick", False)), pick_device(opts)
    with tempfile.TemporaryDirectory() as tmp:
        dls, seconds = _from_df(lib, df, tmp, device, {"cache_dir": None})
        _from_df(lib, df, tmp, device, {"cache_dir": tmp})
        _, warm = _from_df(lib, df, tmp, device, {"cache_dir": tmp})
    return {"dls_time": seconds, "warm_dls_time": warm, "first_use_dls_time": _first_use_seconds(data_dir, opts),
            "info": {"rows": f"{len(dls.train_ds)} train / {len(dls.valid_ds)} valid", "vocab": len(dls.vocab[0])}}


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Time the same ``from_df`` call with fastai."""
    import torch

    import fastai.text.all as lib
    prepare(opts)
    df = _frame(data_dir, opts.get("quick", False))
    with tempfile.TemporaryDirectory() as tmp:
        dls, seconds = _from_df(lib, df, tmp, torch.device(pick_device(opts)), {})
    return {"dls_time": seconds,
            "info": {"rows": f"{len(dls.train_ds)} train / {len(dls.valid_ds)} valid", "vocab": len(dls.vocab[0])}}
