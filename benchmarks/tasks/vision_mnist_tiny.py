"""Image classification from scratch: MNIST tiny (3s and 7s, 28 px), ``ImageDataLoaders.from_folder`` (train/valid
folders), ``vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)``, ``fit_one_cycle(3, 3e-3)``.

Both sides use the same batch size (64, the default), each library's default item loading (the user code sets
no ``num_workers``; the count each used is in the notes), the same torch threads and the same split (the
train/valid folders). ``time`` is the wall clock of the ``fit_one_cycle`` call, the optimizer's creation and
the validation passes of the three epochs included. The weights are initialised from the seed
``seed + round`` (the same on both sides in a round), so the medians of ``error_rate`` and ``valid_loss``
over the rounds are not one draw of the initial weights.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, reseed, stopwatch

TITLE = "Vision from scratch: MNIST tiny (709 train / 699 valid, 28 px), resnet18, fit_one_cycle(3, 3e-3), bs 64"
TARGET = {"metric": "time", "max_ratio": 0.7,
          "quality": [{"name": "error_rate", "better": "lower", "tol": 0.01}]}
DATA = "mnist_tiny"
UNITS = {"time": "s", "ms_per_batch": "ms"}
TIMEOUT = 1200

BS, EPOCHS, LR = 64, 3, 3e-3


def _fit(learn: Any, dls: Any, quick: bool) -> dict[str, Any]:
    epochs = 1 if quick else EPOCHS
    with stopwatch() as t:
        learn.fit_one_cycle(epochs, LR)
    valid_loss, err = (float(v) for v in learn.validate()[:2])
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    return {"time": t.seconds, "ms_per_batch": 1000 * t.seconds / n_batches,
            "quality": {"error_rate": err, "valid_loss": valid_loss},
            "info": {"images": f"{len(dls.train.dataset)} train / {len(dls.valid.dataset)} valid", "bs": BS,
                     "num_workers": dls.train.num_workers, "epochs": epochs, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from lamina.vision.all import ImageDataLoaders, error_rate, resnet18, vision_learner
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS,
                                       device=pick_device(opts))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    return _fit(learn, dls, opts.get("quick", False))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from fastai.vision.all import ImageDataLoaders, error_rate, resnet18, vision_learner
    prepare(opts)
    dls = ImageDataLoaders.from_folder(require_file(data_dir, DATA), bs=BS,
                                       device=torch.device(pick_device(opts)))
    reseed(opts)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    return _fit(learn, dls, opts.get("quick", False))
