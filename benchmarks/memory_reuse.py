"""Freed memory reused (`lamina.cpu_memory`) against glibc's defaults, in fresh processes alternating.

Each round runs the same job twice, once with ``LAMINA_REUSE_MEMORY=0`` and once without (the order swapped on odd
rounds), each in a fresh process:

* ``unet``: ``unet_learner(dls, resnet18, pretrained=False)`` on 40 random 96×128 images with 32-class masks
  (bs 8, no workers), ``fit(2)``: the wall clock of the fit, its peak resident memory, and the resident memory
  after it;
* ``pets`` (when ``$LAMINA_BENCH_DATA/oxford-iiit-pet/images`` exists): the chapter-1 loader (``Resize(224)``,
  2 workers, bs 64) iterated over its training set 3 times: images per second.

Prints the medians and the ratio (with reuse / without). Nothing is written. On a 2-core AMD EPYC (AVX2) virtual
machine, 3 rounds: U-Net fit 28.1 s against 32.4 s (0.87), peak resident memory 1941 against 1704 MiB (1.14),
after the fit 1135 against 1308 MiB; pets loader 283 against 291 images/s (0.97: the loader does not open a
block).

    python benchmarks/memory_reuse.py               # 3 rounds
    python benchmarks/memory_reuse.py --rounds 2 --jobs unet
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.run import data_dir  # noqa: E402  (``--data``'s default: $LAMINA_BENCH_DATA, else ../shared/data)
from benchmarks.tasks.segmentation_camvid import MaskOf  # noqa: E402  (the benchmarks' mask-file rule and label)
from benchmarks.tasks.vision_pipeline import is_cat  # noqa: E402


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _unet() -> dict:
    import numpy as np
    from PIL import Image

    from lamina.vision.all import SegmentationDataLoaders, get_image_files, resnet18, unet_learner
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "images").mkdir()
        (folder / "labels").mkdir()
        rng = np.random.default_rng(0)
        for i in range(40):
            Image.fromarray((rng.random((96, 128, 3)) * 255).astype("uint8")).save(folder / "images" / f"{i}.png")
            Image.fromarray((rng.random((96, 128)) * 32).astype("uint8")).save(folder / "labels" / f"{i}_P.png")
        dls = SegmentationDataLoaders.from_label_func(
            folder, get_image_files(folder / "images"), MaskOf(folder), codes=[str(i) for i in range(32)], bs=8,
            num_workers=0, valid_pct=0.2, seed=42)
        learn = unet_learner(dls, resnet18, pretrained=False)
        with learn.no_bar(), learn.no_logging():
            start = time.perf_counter()
            learn.fit(2)
            seconds = time.perf_counter() - start
    return {"fit_s": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "after_mib": _resident_mib()}


def _pets() -> dict:
    from lamina.vision.all import ImageDataLoaders, Resize, get_image_files
    path = data_dir(None) / "oxford-iiit-pet" / "images"
    dls = ImageDataLoaders.from_name_func(path, sorted(get_image_files(path)), valid_pct=0.2, seed=42,
                                          label_func=is_cat, item_tfms=Resize(224),
                                          num_workers=2, bs=64, device="cpu")
    sum(len(xb) for xb, _ in dls.train)  # files into the page cache, first-use costs paid
    start = time.perf_counter()
    n = sum(len(xb) for _ in range(3) for xb, _ in dls.train)
    return {"img_per_s": n / (time.perf_counter() - start)}


def _run(job: str, reuse: bool) -> dict:
    env = {**os.environ, "LAMINA_REUSE_MEMORY": "1" if reuse else "0"}
    out = subprocess.run([sys.executable, __file__, "--worker", job], env=env, capture_output=True, text=True,
                         check=True, timeout=1200)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="unet,pets")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_unet() if args.worker == "unet" else _pets()))
        return
    jobs = [j for j in args.jobs.split(",") if j != "pets" or (data_dir(None) / "oxford-iiit-pet").exists()]
    for job in jobs:
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for r in range(args.rounds):
            for reuse in ((True, False) if r % 2 == 0 else (False, True)):
                runs[reuse].append(_run(job, reuse))
        for key in runs[True][0]:
            on = statistics.median(run[key] for run in runs[True])
            off = statistics.median(run[key] for run in runs[False])
            print(f"{job} {key}: reused {on:.1f} [{min(x[key] for x in runs[True]):.1f}–"
                  f"{max(x[key] for x in runs[True]):.1f}], glibc's defaults {off:.1f} "
                  f"[{min(x[key] for x in runs[False]):.1f}–{max(x[key] for x in runs[False]):.1f}], "
                  f"ratio {on / off:.2f}")


if __name__ == "__main__":
    main()
