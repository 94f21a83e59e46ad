"""``lamina predict MODEL INPUT...``: predictions of an exported learner for images, folders or CSV rows.

Inputs go through ``dls.test_dl`` and ``get_preds`` in chunks of ``16 × --bs``; an input that fails (a file
that is not an image, a row with an unknown user) is reported on stderr and the others are still predicted.
One line per input on stdout, tab-separated:

* classification: ``<input>  <label>  <probability>`` (multi-label: labels and probabilities joined by ``;``);
* regression and ratings: ``<input>  <value>`` (several values joined by ``;``);
* segmentation: ``<input>  <mask file>  <mean confidence>``; the mask is a greyscale PNG of codes at the
  model's input size, written to ``--masks`` (default: ``<out>_masks/`` beside ``--out``, else ``masks/``).

CSV inputs are named ``<file>:<row>`` (row 1 is the first row under the header). With ``--out FILE.csv`` the
results go to that file instead of stdout (one row per input; failed ones have an ``error``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "load_for_inference", "CommandError"]

EXIT_CODES = "exit status: 0 all inputs predicted; 1 a bad model file or some inputs failed; 2 usage error"


class CommandError(Exception):
    """A command failed for a reason its one-line message gives; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; received {text!r}")
    return int(text)


def add_parser(sub: Any) -> None:
    """Add ``predict`` to the ``lamina`` subcommands."""
    parser = sub.add_parser("predict", help="predict images, folders of images or CSV rows with an exported model",
                            description=__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    parser.add_argument("model", help="a file written by learn.export()")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files or folders (image models); CSV files of rows (tabular, collab models)")
    parser.add_argument("--out", type=Path, help="write the results to this CSV file instead of stdout")
    parser.add_argument("--masks", type=Path, help="folder for segmentation masks")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    parser.add_argument("--bs", type=positive_int, default=64, help="batch size (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="image-decoding worker processes (default 0)")
    parser.set_defaults(run=run)


def load_for_inference(model: str | Path, device: str) -> Any:
    """``load_learner(model)`` on ``device``, in eval mode.

    Raises:
        CommandError: code 2 for a device that is not a device name or not present; code 1 for a missing file
            or a file that is not a lamina export.
    """
    import torch

    from .export import ExportError, load_learner
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise CommandError(f"--device must be a device name such as cpu, cuda or cuda:1; received {device!r}", 2) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {device}: no CUDA device is available here; use --device cpu", 2)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {device}: MPS is not available here; use --device cpu", 2)
    try:
        learn = load_learner(model, cpu=True)
    except (FileNotFoundError, ExportError) as e:
        raise CommandError(str(e)) from e
    learn.model.to(dev).eval()
    learn.dls.to(dev)
    return learn


def run(args: argparse.Namespace) -> int:
    """Predict every input and write the results; returns the exit status."""
    from .inference import application
    learn = load_for_inference(args.model, args.device)
    app = application(learn)
    named, failed = _image_inputs(args.inputs) if app == "image" else _row_inputs(args.inputs, app)
    results = dict(failed)
    names = [name for name, _ in named]
    for start in range(0, len(named), 16 * args.bs):  # chunks: a failure is retried within its chunk only
        chunk = named[start:start + 16 * args.bs]
        results.update(zip([n for n, _ in chunk], _predict(learn, [item for _, item in chunk], args)))
    writer = _Writer(args, learn)
    order = names + [name for name, _ in failed]
    for name in order:
        writer.write(name, results[name])
    writer.close()
    return 1 if any(isinstance(result, Exception) for result in results.values()) else 0


def _predict(learn: Any, items: list, args: argparse.Namespace) -> list:
    from .inference import predict_each
    return predict_each(learn, items, bs=args.bs, num_workers=args.workers)


def _image_inputs(inputs: list[str]) -> tuple[list[tuple[str, Path]], list[tuple[str, Exception]]]:
    """(name, path) of every image file given or found under a folder given, and the inputs that are neither."""
    from .data.files import get_image_files
    named, failed = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = get_image_files(path)
            named += [(str(p), p) for p in found]
            if not found:
                failed.append((text, FileNotFoundError("the folder holds no image files")))
        elif path.is_file():
            named.append((text, path))
        else:
            failed.append((text, FileNotFoundError("no such file or folder")))
    return named, failed


def _row_inputs(inputs: list[str], app: str) -> tuple[list[tuple[str, Any]], list[tuple[str, Exception]]]:
    """(``file:row``, row dict) of every row of the CSV files, and the files that cannot be read."""
    import pandas as pd

    from .data.csvfiles import read_csv
    named, failed = [], []
    for text in inputs:
        try:
            df = read_csv(text, arg="INPUT", **({"skipinitialspace": True} if app == "tabular" else {}))
        except (OSError, ValueError, pd.errors.ParserError) as e:
            failed.append((text, e))
            continue
        rows = df.astype(object).where(df.notna(), None).to_dict("records")
        named += [(f"{text}:{i + 1}", row) for i, row in enumerate(rows)]
    return named, failed


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (a KeyError's without quotes), else its type."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    message = " ".join(str(message).split())
    return message or type(error).__name__


class _Writer:
    """Results to stdout (tab-separated) or to ``--out`` (CSV); failures always to stderr; masks to files."""

    def __init__(self, args: argparse.Namespace, learn: Any):
        from .inference import target_kind
        self.kind, self.out = target_kind(learn), args.out
        default = self.out.with_name(f"{self.out.stem}_masks") if self.out else Path("masks")
        self.mask_dir, self.mask_names = args.masks or default, set()
        self.vocab = [str(v) for v in learn.dls.vocab] if getattr(learn.dls, "vocab", None) is not None else []
        self.rows: list[dict] = []

    def write(self, name: str, result: Any) -> None:
        if isinstance(result, Exception):
            print(f"lamina predict: {name}: {one_line(result)}", file=sys.stderr)
            self.rows.append({"input": name, "error": one_line(result)})
            return
        row = {"input": name, **self._fields(name, result)}
        self.rows.append(row)
        if self.out is None:
            print("\t".join(str(v) for v in (row["input"], row["prediction"], row.get("probability")) if v != ""))

    def _fields(self, name: str, result: Any) -> dict:
        if result.mask is not None:
            path = self._mask_path(name)
            from .inference import mask_png
            path.write_bytes(mask_png(result.mask))
            return {"prediction": str(path), "probability": f"{result.probability:.4f}"}
        value = result.prediction
        probs = result.probabilities or {}
        if isinstance(value, list) and self.kind == "multicategory":
            prob = ";".join(f"{probs[v]:.4f}" for v in value)
            fields = {"prediction": ";".join(value), "probability": prob}
        elif isinstance(value, list):
            fields = {"prediction": ";".join(f"{v:.6g}" for v in value), "probability": ""}
        elif isinstance(value, float):
            fields = {"prediction": f"{value:.6g}", "probability": ""}
        else:
            fields = {"prediction": value, "probability": f"{result.probability:.4f}"}
        return {**fields, **{f"prob_{k}": f"{v:.6f}" for k, v in probs.items()}}

    def _mask_path(self, name: str) -> Path:
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        stem, n = f"{Path(name).stem}_mask", 1
        while f"{stem}.png" in self.mask_names:  # two inputs of one name in different folders
            n += 1
            stem = f"{Path(name).stem}_mask_{n}"
        self.mask_names.add(f"{stem}.png")
        return self.mask_dir / f"{stem}.png"

    def close(self) -> None:
        if self.out is None:
            return
        columns = ["input", "prediction", "probability", *[f"prob_{v}" for v in self.vocab], "error"]
        present = [c for c in columns if any(c in row and row[c] != "" for row in self.rows)]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=present or ["input"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
