"""Image pipeline throughput: the chapter-1 pets loader (decode + ``Resize(224)`` + collate + ``IntToFloatTensor``)
on the Oxford-IIIT Pets subset, 2 workers, bs 64, iterated without a model.

Both sides build the loader the chapter-1 way, ``ImageDataLoaders.from_name_func(path, get_image_files(path),
valid_pct=0.2, seed=42, label_func=is_cat, item_tfms=Resize(224), num_workers=2, bs=64)``, with one change:
the files are sorted (fastai lists them in directory order, lamina sorted; sorted on both sides, the seeded
split gives both the same training images, so both decode the same JPEGs). Both iterate ``dls.train``
(shuffled, last partial batch dropped, the batch transforms applied on the device) as a training epoch
would. One untimed pass comes first on both sides (the files enter the page cache, the first-use costs of
each library are paid), then ``PASSES`` passes are timed. Neither library keeps its workers between epochs
by default, so every timed pass starts its 2 worker processes, on both sides, as every epoch of a user's
training does. ``img_per_s`` counts the images of the batches delivered.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, stopwatch

TITLE = "Image pipeline: pets (370 JPEGs), from_name_func + Resize(224), 2 workers, bs 64, iterate dls.train"
TARGET = {"metric": "img_per_s", "min_ratio": 1.5}
DATA = "oxford-iiit-pet/images"
UNITS = {"img_per_s": "img/s", "first_pass_time": "s", "pass_time": "s"}
TIMEOUT = 900

BS, WORKERS, SIZE, PASSES = 64, 2, 224, 6


def is_cat(name: str) -> bool:
    """The chapter-1 label: cat breeds' file names start with a capital letter."""
    return name[0].isupper()


def _measure(dls: Any, quick: bool) -> dict[str, Any]:
    """One untimed pass, then ``PASSES`` timed passes over ``dls.train``."""
    def one_pass() -> int:
        n = 0
        for xb, _ in dls.train:
            n += len(xb)
        return n

    with stopwatch() as first:
        one_pass()
    passes = 1 if quick else PASSES
    with stopwatch() as t:
        n_images = sum(one_pass() for _ in range(passes))
    xb, yb = dls.train.one_batch()
    return {"img_per_s": n_images / t.seconds, "pass_time": t.seconds / passes, "first_pass_time": first.seconds,
            "info": {"train images": len(dls.train.dataset), "images per pass": n_images // passes,
                     "timed passes": passes, "batch": f"{tuple(xb.shape)} {str(xb.dtype).replace('torch.', '')}",
                     "bs": BS, "num_workers": WORKERS}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from lamina.vision.all import ImageDataLoaders, Resize, get_image_files
    prepare(opts)
    path = require_file(data_dir, DATA)
    dls = ImageDataLoaders.from_name_func(path, sorted(get_image_files(path)), valid_pct=0.2, seed=42,
                                          label_func=is_cat, item_tfms=Resize(SIZE), num_workers=WORKERS, bs=BS,
                                          device=pick_device(opts))
    return _measure(dls, opts.get("quick", False))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from fastai.vision.all import ImageDataLoaders, Resize, get_image_files
    prepare(opts)
    path = require_file(data_dir, DATA)
    dls = ImageDataLoaders.from_name_func(path, sorted(get_image_files(path)), valid_pct=0.2, seed=42,
                                          label_func=is_cat, item_tfms=Resize(SIZE), num_workers=WORKERS, bs=BS,
                                          device=torch.device(pick_device(opts)))
    return _measure(dls, opts.get("quick", False))
