"""GPU check: bf16 autocast and channels-last on CUDA, and resnet34 training throughput at 224 px.

Run on a machine with a CUDA GPU, from the repository root::

    python benchmarks/gpu_check.py --out gpu_check.json

It writes synthetic JPEGs (pets-sized, 500x375 and around, named so that ``is_cat`` labels them), builds the
chapter-1 loader on them (``ImageDataLoaders.from_name_func(..., item_tfms=Resize(224))`` plus
``aug_transforms()`` on the GPU), and trains ``vision_learner(dls, resnet34, pretrained=False)``:

* checks: under ``to_bf16()`` the convolutions run in bf16 while the weights stay fp32 and the loss is finite;
  with channels-last (lamina's default on CUDA) the weights are channels-last and the outputs match the
  contiguous model's; the batch augmentation runs on the GPU.
* throughput: training images per second (steady state: the batches after the first ``WARM`` of the second
  epoch, the GPU synchronised at both ends), for fp32 contiguous and for bf16 + channels-last, each with JPEGs
  decoded by the CPU workers (``decode='cpu'``) and on the GPU (``decode='device'``, nvJPEG), and with the
  model compiled (``mode='reduce-overhead'``: CUDA graphs) where ``--compile`` asks; the same for the model
  alone on one batch held on the GPU (the compute ceiling) and for the loader alone (the data ceiling). The
  GPU's utilisation is sampled every 100 ms during the measured epoch (NVML, else ``nvidia-smi``), and the
  second epoch's wall time is kept, start-up of the workers included (what persistent workers save).
* checks: the device decoding gives the CPU path's images (mean absolute difference, same windows).

Sized to run in one call of under 8 minutes on one GPU (``--images 6000``). Nothing here is a test: the
numbers go to stdout and, with ``--out``, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lamina.callbacks.core import Callback  # noqa: E402
from lamina.callbacks.precision import ChannelsLast  # noqa: E402
from lamina.vision.all import (ImageDataLoaders, Resize, aug_transforms, resnet34,  # noqa: E402
                               vision_learner)

WARM = 5
SIZE = 224  # the item size (``--smoke`` makes it small)
BREEDS = ("Abyssinian", "Bengal", "Persian", "Siamese", "beagle", "boxer", "pug", "samoyed", "havanese", "keeshond")


def is_cat(name: str) -> bool:
    return name[0].isupper()


def _write_jpeg(args: tuple) -> None:
    fn, seed = args
    from PIL import Image
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(300, 420)), int(rng.integers(400, 520))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3) + 60 * np.sin(xs[..., None] / rng.uniform(8, 40) + rng.uniform(0, 6, 3))
    base += 40 * np.cos(ys[..., None] / rng.uniform(8, 40))
    img = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(fn, quality=90)


def make_jpegs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"{BREEDS[i % len(BREEDS)]}_{i}.jpg", i) for i in range(n)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_write_jpeg, jobs, chunksize=32)
    return sorted(p for p, _ in jobs)


class Throughput(Callback):
    """Images per second over the training batches after the first ``WARM`` of the last epoch, the last epoch's
    training wall time, and the GPU's utilisation sampled while it is measured."""

    order = 100

    def before_train(self) -> None:
        torch.cuda.synchronize()
        self.n, self.i, self.t0, self.start = 0, 0, None, time.perf_counter()
        self.sampler = UtilSampler()

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.i += 1
        if self.i == WARM:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()
            self.sampler.start()
        elif self.i > WARM:
            self.n += len(self.learn.xb[0])

    def after_train(self) -> None:
        torch.cuda.synchronize()
        end = time.perf_counter()
        self.img_per_s = self.n / (end - self.t0) if self.t0 else float("nan")
        self.epoch_s = end - self.start
        self.gpu_util = self.sampler.stop()


class UtilSampler:
    """The GPU's utilisation (percent busy) every 100 ms on a thread: NVML through torch, else ``nvidia-smi``."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:  # no pynvml: ask nvidia-smi
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      f"--id={torch.cuda.current_device()}"], capture_output=True, text=True,
                                     timeout=2)
                return float(out.stdout.strip().splitlines()[0])
            except Exception:
                return None

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def quiet(learn: Any) -> Any:
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def model_only(learn: Any, steps: int = 30) -> float:
    """Training steps on one batch held on the GPU: the compute ceiling of this configuration."""
    xb, yb = learn.dls.train.one_batch()
    model, opt = learn.model.train(), learn.opt
    mp = getattr(learn, "mixed_precision", None)
    def ctx() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=mp is not None)

    def step() -> None:
        with ctx():
            loss = learn.loss_func(model(xb).float(), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(WARM):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * len(xb) / (time.perf_counter() - t0)


def loader_only(dls: Any) -> float:
    """Iterate the training loader (decode, Resize, collate, transfer, augmentation) without a model."""
    n, t0 = 0, None
    for i, (xb, _) in enumerate(dls.train):
        if i == WARM:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        elif i > WARM:
            n += len(xb)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def checks(dls: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    learn = quiet(vision_learner(dls, resnet34, pretrained=False)).to_bf16()
    dtypes: list = []
    hook = learn.model[0][0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    learn.fit(1, 1e-3)
    hook.remove()
    out["bf16_conv_dtypes"] = sorted({str(d) for d in dtypes})
    out["bf16_weights_fp32"] = all(p.dtype == torch.float32 for p in learn.model.parameters())
    out["bf16_losses_finite"] = bool(np.isfinite(np.array(learn.recorder.values[-1][:2], dtype=float)).all())
    out["channels_last_cb"] = isinstance(getattr(learn, "channels_last", None), ChannelsLast)
    out["channels_last_weights"] = learn.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    xb, _ = dls.valid.one_batch()
    out["batch_on_gpu"] = xb.device.type == "cuda"
    learn.model.eval()
    with torch.no_grad():
        fast = learn.model(xb).float()
        learn.to_contiguous(to_fp32=True)
        plain = learn.model(xb).float()
    out["channels_last_vs_contiguous_max_abs_diff"] = float((fast - plain).abs().max())
    xa, _ = dls.train.one_batch()
    out["augmented_batch_on_gpu"] = xa.device.type == "cuda"
    ok = (out["bf16_conv_dtypes"] == ["torch.bfloat16"] and out["bf16_weights_fp32"] and out["bf16_losses_finite"]
          and out["channels_last_cb"] and out["channels_last_weights"] and out["batch_on_gpu"]
          and out["augmented_batch_on_gpu"] and out["channels_last_vs_contiguous_max_abs_diff"] < 1e-2)
    out["ok"] = bool(ok)
    return out


def compile_model(learn: Any) -> Any:
    """The model compiled with CUDA graphs (``learn.compile`` when the Learner has it)."""
    if hasattr(learn, "compile"):
        return learn.compile(mode="reduce-overhead")
    learn.model = torch.compile(learn.model, mode="reduce-overhead")
    return learn


def throughput(dls: Any, mode: str, compiled: bool = False) -> dict[str, Any]:
    learn = quiet(vision_learner(dls, resnet34, pretrained=False))
    if mode == "fp32":
        learn.to_contiguous(to_fp32=True)
    else:
        learn.to_bf16()
    if compiled:
        compile_model(learn)
    cb = Throughput()
    t0 = time.perf_counter()
    learn.fit(2, 1e-3, cbs=[cb])  # epoch 1 warms up (cuDNN autotuning, allocator, compiling); epoch 2 is measured
    row = {"train_img_per_s": round(cb.img_per_s, 1), "epoch2_train_s": round(cb.epoch_s, 2),
           "gpu_util_pct": cb.gpu_util, "fit_s": round(time.perf_counter() - t0, 1)}
    if not compiled:
        row["model_only_img_per_s"] = round(model_only(learn), 1)
    return row


def decode_check(tmp: str, files: list[Path], workers: int) -> dict[str, float]:
    """The device decoding's images against the CPU path's (validation windows, the same items)."""
    kw = dict(valid_pct=0.2, seed=42, label_func=is_cat, item_tfms=Resize(SIZE), bs=64, num_workers=workers)
    cpu = ImageDataLoaders.from_name_func(tmp, files[:640], **kw)
    dev = ImageDataLoaders.from_name_func(tmp, files[:640], decode="device", **kw)
    diffs = [float((a.float() - b.float()).abs().mean()) for (a, _), (b, _) in zip(cpu.valid, dev.valid)]
    return {"mean_abs_diff_0_1": round(float(np.mean(diffs)), 5), "batches": len(diffs),
            "ok": bool(np.mean(diffs) < 3 / 255)}


def run_bs(tmp: str, files: list[Path], bs: int, args: argparse.Namespace, report: dict) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for decode in ("cpu", "device"):
        for persistent in ((False, True) if decode == "device" and bs == max(args.bs) else (False,)):
            dls = ImageDataLoaders.from_name_func(tmp, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                                  item_tfms=Resize(SIZE), batch_tfms=aug_transforms(), bs=bs,
                                                  num_workers=args.workers, decode=decode,
                                                  persistent_workers=persistent)
            if bs == args.bs[0] and decode == "cpu":
                report["checks"] = checks(dls)
                print(json.dumps({"checks": report["checks"]}), flush=True)
            key = f"decode_{decode}" + ("_persistent" if persistent else "")
            row[key] = {"loader_only_img_per_s": round(loader_only(dls), 1)}
            modes = ("bf16_channels_last",) if persistent or (decode == "device" and not args.fp32_device) \
                else ("fp32", "bf16_channels_last")
            for mode in modes:
                row[key][mode] = throughput(dls, mode)
                print(json.dumps({"bs": bs, key: {mode: row[key][mode]}}), flush=True)
            if bs in args.compile and not persistent:
                row[key]["bf16_channels_last_compiled"] = throughput(dls, "bf16", compiled=True)
                print(json.dumps({"bs": bs, key: row[key]}), flush=True)
    return row


def smoke(args: argparse.Namespace) -> None:
    """Run the script's steps on the CPU at toy sizes, so that a GPU call is not spent finding a typo."""
    global SIZE, WARM
    SIZE, WARM = 32, 1
    args.images, args.bs, args.workers, args.compile = 96, [8, 16], 2, []
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: 0
    torch.cuda.get_device_name = lambda *a, **k: "none (--smoke, on the CPU)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--bs", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    parser.add_argument("--compile", type=int, nargs="*", default=[64],
                        help="batch sizes at which to also train the compiled model (CUDA graphs)")
    parser.add_argument("--fp32-device", action="store_true", help="also fp32 with device decoding")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="check this script's control flow on the CPU: tiny images, no timing meaning")
    args = parser.parse_args()
    if args.smoke:
        smoke(args)
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here (--smoke runs the script's steps on the CPU)")
    torch.backends.cudnn.benchmark = True
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
        "images": args.images, "cudnn_benchmark": True}
    print(json.dumps(report), flush=True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = make_jpegs(Path(tmp) / "images", args.images)
        report["jpeg_write_s"] = round(time.perf_counter() - t0, 1)
        report["decode_check"] = decode_check(tmp, files, args.workers)
        print(json.dumps({"decode_check": report["decode_check"]}), flush=True)
        for bs in args.bs:
            report[f"bs{bs}"] = run_bs(tmp, files, bs, args, report)
            print(json.dumps({"bs": bs, **report[f"bs{bs}"]}), flush=True)
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
