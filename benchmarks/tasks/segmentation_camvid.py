"""Segmentation from scratch: CamVid tiny (100 images, 32 codes), the chapter-1 loader with ``Resize((96,128))``,
``unet_learner(dls, resnet18, pretrained=False)``, ``fit_one_cycle(2, 1e-3)`` at bs 8.

Both sides build ``SegmentationDataLoaders.from_label_func(path, bs=8, fnames=get_image_files(path/'images'),
label_func=<path/'labels'/'<stem>_P<suffix>'>, codes=np.loadtxt(path/'codes.txt', dtype=str),
item_tfms=Resize((96,128)))`` with three things stated: ``valid_pct=0.2, seed=42`` (the chapter's call leaves
the split to the global random state), the file names sorted (fastai lists them in directory order, lamina
sorted), so that both sides validate on the same 20 images; and ``num_workers=2`` (as a user on a 2-core machine
gets by default). ``time`` is the wall clock of the ``fit_one_cycle`` call, the optimizer's creation included.
Python, numpy and torch are seeded with ``seed + round`` before the loaders are built, on both sides: the validation split stays fixed
(``seed=42``), while each round draws its own training order. (Seeded after the loaders, every round of a
library would train in one and the same order, and the medians would rest on a single draw of it: the valid
loss after 20 BatchNorm updates depends on that order as much as on the weights.) Torch alone is seeded again
right before ``unet_learner`` (`reseed_weights`), so that each round also draws its own initial weights on both
sides: fastai's ``RandomSplitter(seed=42)`` sets torch's global seed, and before this every fastai round
started from the same weights while lamina's rounds drew new ones, so the valid-loss medians compared one
fastai draw with three of lamina's.

mIoU is computed here, the same way for both, from ``get_preds`` on the validation set: the arg-max
prediction and the target mask fill one confusion matrix over all validation pixels; pixels whose target
is ``Void`` are left out (as CamVid results in the literature do); a class's IoU is
TP / (TP + FP + FN); the mean runs over the classes that occur in the targets or the predictions.
``pixel_acc`` is the accuracy over the same non-Void pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import pick_device, prepare, require_file, reseed, reseed_weights, stopwatch

TITLE = "Segmentation from scratch: CamVid tiny, Resize((96,128)), unet_learner resnet18, fit_one_cycle(2, 1e-3), bs 8"
TARGET = {"metric": "time", "max_ratio": 0.6,
          "quality": [{"name": "valid_loss", "better": "lower", "tol": 0.0}]}
DATA = ["camvid_tiny/images", "camvid_tiny/labels", "camvid_tiny/codes.txt"]
UNITS = {"time": "s", "ms_per_batch": "ms"}
TIMEOUT = 1200

BS, WORKERS, EPOCHS, LR, SIZE, VOID = 8, 2, 2, 1e-3, (96, 128), "Void"


class MaskOf:
    """``path/'labels'/'<stem>_P<suffix>'`` for an image file (a class, so that it pickles)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, fn: Path) -> Path:
        return self.path / "labels" / f"{fn.stem}_P{fn.suffix}"


def mean_iou(preds: Any, targs: Any, codes: list[str]) -> tuple[float, float]:
    """``(mIoU, pixel accuracy)`` over the non-Void pixels, from probabilities ``(n, c, h, w)`` and masks
    ``(n, h, w)``."""
    import numpy as np
    n_cls = len(codes)
    pred = np.asarray(preds.argmax(dim=1)).reshape(-1).astype(np.int64)
    targ = np.asarray(targs).reshape(-1).astype(np.int64)
    keep = targ != codes.index(VOID) if VOID in codes else np.ones_like(targ, dtype=bool)
    conf = np.bincount(targ[keep] * n_cls + pred[keep], minlength=n_cls * n_cls).reshape(n_cls, n_cls)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    if VOID in codes:
        present[codes.index(VOID)] = False
    return float((tp[present] / union[present]).mean()), float(tp.sum() / max(conf.sum(), 1))


def _fit(learn: Any, dls: Any, codes: list[str], quick: bool) -> dict[str, Any]:
    epochs = 1 if quick else EPOCHS
    with stopwatch() as t:
        learn.fit_one_cycle(epochs, LR)
    valid_loss = float(learn.validate()[0])
    preds, targs = learn.get_preds(dl=dls.valid)[:2]
    miou, acc = mean_iou(preds, targs, codes)
    n_batches = epochs * (len(dls.train) + len(dls.valid))
    return {"time": t.seconds, "ms_per_batch": 1000 * t.seconds / n_batches,
            "quality": {"valid_loss": valid_loss, "miou": miou, "pixel_acc": acc},
            "info": {"images": f"{len(dls.train.dataset)} train / {len(dls.valid.dataset)} valid", "bs": BS,
                     "num_workers": WORKERS, "epochs": epochs, "batches": n_batches,
                     "mIoU": f"mean over the classes present, {VOID} pixels excluded"}}


def run_lamina(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    from lamina.vision.all import Resize, SegmentationDataLoaders, get_image_files, np, resnet18, unet_learner
    prepare(opts)
    reseed(opts)  # before the loaders: each round draws its own training order, and then its initial weights
    path = Path(require_file(data_dir, "camvid_tiny"))
    codes = np.loadtxt(path / "codes.txt", dtype=str)
    fnames = sorted(get_image_files(path / "images"))
    dls = SegmentationDataLoaders.from_label_func(path, bs=BS, fnames=fnames, label_func=MaskOf(path), codes=codes,
                                                  valid_pct=0.2, seed=42, item_tfms=Resize(SIZE), num_workers=WORKERS,
                                                  device=pick_device(opts))
    reseed_weights(opts)  # fastai's splitter set torch's seed: each round draws its own initial weights
    learn = unet_learner(dls, resnet18, pretrained=False)
    return _fit(learn, dls, [str(c) for c in codes], opts.get("quick", False))


def run_fastai(data_dir: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch
    from fastai.vision.all import Resize, SegmentationDataLoaders, get_image_files, np, resnet18, unet_learner
    prepare(opts)
    reseed(opts)  # before the loaders: each round draws its own training order, and then its initial weights
    path = Path(require_file(data_dir, "camvid_tiny"))
    codes = np.loadtxt(path / "codes.txt", dtype=str)
    fnames = sorted(get_image_files(path / "images"))
    dls = SegmentationDataLoaders.from_label_func(path, bs=BS, fnames=fnames, label_func=MaskOf(path), codes=codes,
                                                  valid_pct=0.2, seed=42, item_tfms=Resize(SIZE), num_workers=WORKERS,
                                                  device=torch.device(pick_device(opts)))
    reseed_weights(opts)  # fastai's splitter set torch's seed: each round draws its own initial weights
    learn = unet_learner(dls, resnet18, pretrained=False)
    return _fit(learn, dls, [str(c) for c in codes], opts.get("quick", False))
