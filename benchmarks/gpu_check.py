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
  epoch, the GPU synchronised at both ends), for fp32 contiguous and for bf16 + channels-last; the same for
  the model alone on one batch held on the GPU (the compute ceiling) and for the loader alone (the data
  ceiling).

Nothing here is a test: the numbers go to stdout and, with ``--out``, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
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
    """Images per second over the training batches after the first ``WARM`` of the last epoch."""

    order = 100

    def before_train(self) -> None:
        self.n, self.i, self.t0 = 0, 0, None

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.i += 1
        if self.i == WARM:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()
        elif self.i > WARM:
            self.n += len(self.learn.xb[0])

    def after_train(self) -> None:
        torch.cuda.synchronize()
        self.img_per_s = self.n / (time.perf_counter() - self.t0) if self.t0 else float("nan")


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


def throughput(dls: Any, mode: str) -> dict[str, float]:
    learn = quiet(vision_learner(dls, resnet34, pretrained=False))
    if mode == "fp32":
        learn.to_contiguous(to_fp32=True)
    else:
        learn.to_bf16()
    cb = Throughput()
    learn.fit(2, 1e-3, cbs=[cb])  # epoch 1 warms up (cuDNN autotuning, allocator); epoch 2 is measured
    return {"train_img_per_s": cb.img_per_s, "model_only_img_per_s": model_only(learn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--bs", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here")
    torch.backends.cudnn.benchmark = True
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
        "images": args.images, "cudnn_benchmark": True}
    print(json.dumps(report), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = make_jpegs(Path(tmp) / "images", args.images)
        report["jpeg_write_s"] = round(time.perf_counter() - t0, 1)
        for bs in args.bs:
            dls = ImageDataLoaders.from_name_func(tmp, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                                  item_tfms=Resize(224), batch_tfms=aug_transforms(), bs=bs,
                                                  num_workers=args.workers)
            if bs == args.bs[0]:
                report["checks"] = checks(dls)
                print(json.dumps({"checks": report["checks"]}), flush=True)
            row = {"loader_only_img_per_s": loader_only(dls)}
            for mode in ("fp32", "bf16_channels_last"):
                row[mode] = throughput(dls, mode)
                print(json.dumps({"bs": bs, mode: row[mode]}), flush=True)
            report[f"bs{bs}"] = row
            print(json.dumps({"bs": bs, **row}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
