"""xresnet18 from scratch on the Imagenette subset (10 classes, 500 train / 250 val images of 224 px), trained at
64 px the book's way (chapter 7): ``DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
get_y=parent_label, splitter=GrandparentSplitter(valid_name='val'), item_tfms=Resize(80),
batch_tfms=[*aug_transforms(size=64, min_scale=0.75), Normalize.from_stats(*imagenet_stats)])``, then
``Learner(dls, xresnet18(n_out=10), loss_func=CrossEntropyLossFlat(), metrics=accuracy).fit_one_cycle(5, 3e-3)``.

Presizing: the items are resized to 80 px, and one affine transform per batch crops and augments them to 64 px.
Both sides: bs 64, ``num_workers=0`` (2 shared cores), the same torch threads, weights from ``seed + round``.
``time`` is the wall clock of the ``fit_one_cycle`` call, what a user waits for (the optimizer's creation, image
decoding, augmentation, training and the validation passes of the five epochs); ``accuracy`` is the median over the rounds.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import pick_device, prepare, require_file, reseed, stopwatch

TITLE = ("xresnet18 from scratch: Imagenette subset (500 train / 250 val), Resize(80) + aug_transforms(size=64), "
         "fit_one_cycle(5, 3e-3), bs 64")
TARGET = {"metric": "time", "max_ratio": 0.7,
          "quality": [{"name": "accuracy", "better": "higher", "tol": 0.04}]}
DATA = "imagenette2-224"
UNITS = {"time": "s", "ms_per_batch": "ms"}
TIMEOUT = 1800

BS, WORKERS, EPOCHS, LR, SIZE, PRESIZE = 64, 0, 5, 3e-3, 64, 80


def _dls(lib: Any, path: Any, device: Any) -> Any:
    """The book's DataBlock, built from the names of ``lib`` (lamina's or fastai's ``vision.all``)."""
    dblock = lib.DataBlock(blocks=(lib.ImageBlock, lib.CategoryBlock), get_items=lib.get_image_files,
                           get_y=lib.parent_label, splitter=lib.GrandparentSplitter(valid_name="val"),
                           item_tfms=lib.Resize(PRESIZE),
                           batch_tfms=[*lib.aug_transforms(size=SIZE, min_scale=0.75),
                                       lib.Normalize.from_stats(*lib.imagenet_stats)])
    return dblock.dataloaders(path, bs=BS, num_workers=WORKERS, device=device)


def _fit(lib: Any, dls: Any, opts: dict[str, Any]) -> dict[str, Any]:
    reseed(opts)
    learn = lib.Learner(dls, lib.xresnet18(n_out=dls.c), loss_func=lib.CrossEntropyLossFlat(),
                        metrics=lib.accuracy)
    epochs = 1 if opts.get("quick", False) else EPOCHS
    with stopwatch() as t:
        learn.fit_one_cycle(epochs, LR)
    valid_loss, acc = (float(v) for v in learn.validate()[:2])
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    return {"time": t.seconds, "ms_per_batch": 1000 * t.seconds / n_batches,
            "quality": {"accuracy": acc, "valid_loss": valid_loss},
            "info": {"images": f"{len(dls.train.dataset)} train / {len(dls.valid.dataset)} valid", "bs": BS,
                     "num_workers": WORKERS, "epochs": epochs, "size": SIZE, "batches": n_batches}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import lamina.vision.all as lib
    prepare(opts)
    dls = _dls(lib, require_file(data_dir, DATA), pick_device(opts))
    return _fit(lib, dls, opts)


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import fastai.vision.all as lib
    import torch
    prepare(opts)
    dls = _dls(lib, require_file(data_dir, DATA), torch.device(pick_device(opts)))
    return _fit(lib, dls, opts)
