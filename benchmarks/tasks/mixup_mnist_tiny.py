"""MixUp on MNIST tiny (3s and 7s, 28 px): ``ImageDataLoaders.from_folder`` (train/valid folders),
``vision_learner(dls, resnet18, pretrained=False, metrics=error_rate, cbs=MixUp())``, ``fit_one_cycle(5, 3e-3)``.

The same set-up as ``vision_mnist_tiny`` (bs 64, ``num_workers=0``, the train/valid folders, the same torch threads)
with fastai's ``MixUp()`` callback (alpha 0.4) on both sides, and five epochs, since mixed targets learn more slowly.
``time`` is the wall clock of the ``fit_one_cycle`` call (the optimizer's creation and the validation passes
included), what a user waits for. The
weights are initialised from ``seed + round`` (the same on both sides in a round): ``error_rate`` is reported as
the median over the rounds, so it is not one draw of the initial weights and of the mixing coefficients.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, reseed, stopwatch

TITLE = "MixUp: MNIST tiny (709 train / 699 valid, 28 px), resnet18, MixUp(0.4), fit_one_cycle(5, 3e-3), bs 64"
TARGET = {"metric": "time", "max_ratio": 0.7,
          "quality": [{"name": "error_rate", "better": "lower", "tol": 0.01}]}
DATA = "mnist_tiny"
UNITS = {"time": "s", "ms_per_batch": "ms"}
TIMEOUT = 1200

BS, WORKERS, EPOCHS, LR = 64, 0, 5, 3e-3


def _fit(learn: Any, dls: Any, quick: bool) -> dict[str, Any]:
    epochs = 1 if quick else EPOCHS
    with stopwatch() as t:
        learn.fit_one_cycle(epochs, LR)
    valid_loss, err = (float(v) for v in learn.validate()[:2])
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    return {"time": t.seconds, "ms_per_batch": 1000 * t.seconds / n_batches,
            "quality": {"error_rate": err, "valid_loss": valid_loss},
            "info": {"images": f"{len(dls.train.dataset)} train / {len(dls.valid.dataset)} valid", "bs": BS,
                     "num_workers": WORKERS, "epochs": epochs, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from lamina.vision.all import (
        ImageDataLoaders,
        MixUp,
        error_rate,
        resnet18,
        vision_learner,
    )
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS, num_workers=WORKERS,
                                       device=pick_device(opts))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate, cbs=MixUp())
    return _fit(learn, dls, opts.get("quick", False))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from fastai.vision.all import (
        ImageDataLoaders,
        MixUp,
        error_rate,
        resnet18,
        vision_learner,
    )
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS, num_workers=WORKERS,
                                       device=torch.device(pick_device(opts)))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate, cbs=MixUp())
    return _fit(learn, dls, opts.get("quick", False))
