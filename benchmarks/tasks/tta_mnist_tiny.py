"""Test-time augmentation on MNIST tiny (3s and 7s, 28 px): ``learn.tta()`` (n=4, beta=0.25) on the 699 validation
images after five epochs of ``vision_learner(dls, resnet18, pretrained=False)``.

The data: ``ImageDataLoaders.from_folder`` with ``batch_tfms=aug_transforms(do_flip=False, max_rotate=10)``
(digits are not symmetric), bs 64, ``num_workers=0``, the same torch threads on both sides. Training
(``fit_one_cycle(5, 3e-3)``) is outside the timing; ``time`` is the ``tta()`` call alone: four passes over the
validation images with the training augmentations and one plain pass. The quality columns are the error rates
of the TTA predictions and of ``get_preds`` on the same model (not timed), from ``seed + round`` on both sides.
Five epochs, not three: after three, a model from scratch ended at about 2% or at 24–27% error depending on the
seed, on both sides alike, so the TTA error compared the two libraries' draws of training rather than their TTA.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, reseed, stopwatch

TITLE = "TTA: MNIST tiny (699 valid, 28 px), resnet18 after 5 epochs, learn.tta() (n=4, beta=0.25), bs 64"
TARGET = {"metric": "time", "max_ratio": 0.7,
          "quality": [{"name": "tta_error_rate", "better": "lower", "tol": 0.02}]}
DATA = "mnist_tiny"
UNITS = {"time": "s", "ms_per_image": "ms"}
TIMEOUT = 900

BS, WORKERS, EPOCHS, LR, N = 64, 0, 5, 3e-3, 4


def _measure(learn: Any, dls: Any, quick: bool) -> dict[str, Any]:
    learn.fit_one_cycle(1 if quick else EPOCHS, LR)
    preds, targs = learn.get_preds()[:2]
    plain_err = float((preds.argmax(1) != targs).float().mean())
    with stopwatch() as t:
        tta_preds, tta_targs = learn.tta(n=N)
    tta_err = float((tta_preds.argmax(1) != tta_targs).float().mean())
    n_images = len(dls.valid.dataset)
    return {"time": t.seconds, "ms_per_image": 1000 * t.seconds / (n_images * (N + 1)),
            "quality": {"tta_error_rate": tta_err, "plain_error_rate": plain_err},
            "info": {"images": f"{n_images} valid", "bs": BS, "num_workers": WORKERS, "passes": N + 1}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from lamina.vision.all import (
        ImageDataLoaders,
        aug_transforms,
        resnet18,
        vision_learner,
    )
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS, num_workers=WORKERS,
                                       batch_tfms=aug_transforms(do_flip=False, max_rotate=10),
                                       device=pick_device(opts))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False)
    return _measure(learn, dls, opts.get("quick", False))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from fastai.vision.all import (
        ImageDataLoaders,
        aug_transforms,
        resnet18,
        vision_learner,
    )
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS, num_workers=WORKERS,
                                       batch_tfms=aug_transforms(do_flip=False, max_rotate=10),
                                       device=torch.device(pick_device(opts)))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False)
    return _measure(learn, dls, opts.get("quick", False))
