"""Image blocks and DataLoaders: `ImageBlock`, `MaskBlock`, `ImageDataLoaders`, `SegmentationDataLoaders`.

The factories build a `DataBlock` and return an `ImageDataLoaders`, which adds to `DataLoaders` what
image data needs: ``show_batch``, ``decode_prediction`` (a class name, a list of labels, a mask) and
``inference``, the JSON description an export stores so that `inference_dls` can rebuild the
validation pipeline (image type, classes or codes, item and batch transforms) in a fresh process.

Example:
    >>> def is_cat(x): return x[0].isupper()
    >>> dls = ImageDataLoaders.from_name_func(path, get_image_files(path), valid_pct=0.2, seed=42,
    ...                                       label_func=is_cat, item_tfms=Resize(224))
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.block import CategoryBlock, DataBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from ..data.csvfiles import read_csv
from ..data.datasets import Datasets, default_num_workers
from ..data.files import ImageGetter, describe_empty_listing, get_image_files
from ..data.loaders import DataLoader, DataLoaders, register_dls_type
from ..data.splitters import (ColReader, ColSplitter, GrandparentSplitter, RandomSplitter,
                              RegexLabeller, parent_label, using_attr)
from ..data.transforms import (BATCH_TFMS, ITEM_TFMS, Categorize, MultiCategorize, RegressionSetup,
                               batch_tfm_from_config, declares, item_tfm_from_config, jsonable, tfm_hook)
from ..losses import loss_from_config
from ..registry import register
from .core import ImageReader, MaskReader, PILImage, image_class
from .device_decode import choose_decode
from .bboxes import BBoxLabeler, BBoxSetup
from .lighting import IntToFloatTensor
from .points import PointSetup, TensorPoint, unscale_points
from .show import show_batch, show_results
from .transforms import ToTensor

__all__ = ["ImageBlock", "MaskBlock", "ImageDataLoaders", "SegmentationDataLoaders", "inference_dls"]


def _check_fnames(path: str | Path, fnames: Sequence) -> None:
    """Fail at once on an empty list of images, describing ``path``, where they were meant to come from
    (an empty list would otherwise build loaders of 0 items that fail later, far from the cause).

    Raises:
        FileNotFoundError: when ``fnames`` is empty.
    """
    if len(fnames):
        return
    found = get_image_files(path) if Path(path).is_dir() else []
    if found:
        why = f"`path` ({path}) holds {len(found)} image{'s' if len(found) > 1 else ''}: check how `fnames` was built"
    else:
        why = f"get_image_files(path) {describe_empty_listing(path)}. Check the folder (did the download finish?)"
    raise FileNotFoundError(f"`fnames` is empty, so there are no images to build the DataLoaders from; {why}")


class ImageBlock(TransformBlock):
    """Images read as ``cls`` (`PILImage`, `PILImageBW`), made uint8 tensors, then floats on the device."""

    def __init__(self, cls: type = PILImage):
        super().__init__(type_tfms=ImageReader(cls), item_tfms=ToTensor(), batch_tfms=IntToFloatTensor(),
                         kind="image", dls_type=ImageDataLoaders)


class MaskBlock(TransformBlock):
    """Segmentation masks (pixel values are class indices); ``codes`` name the classes.

    Args:
        codes: the class names; a mask value ``>= len(codes)`` is an error naming the file and the value...
        ignore_index: ...except this "void" value (e.g. 255: unlabelled pixels), which the loss a mask implies,
            ``CrossEntropyLossFlat(axis=1, ignore_index=ignore_index)``, leaves out. Pass the same value to
            metrics that take it (``MeanIoU(ignore_index=255)``).
    """

    def __init__(self, codes: Sequence | None = None, ignore_index: int | None = None):
        super().__init__(type_tfms=MaskReader(codes, ignore_index=ignore_index), item_tfms=ToTensor(),
                         batch_tfms=IntToFloatTensor(), kind="mask")


@register_dls_type("image")
class ImageDataLoaders(DataLoaders):
    """`DataLoaders` for images, with factories (``from_folder``, ``from_name_func`` ...).

    A ``loss_func`` given as a config dict (what blocks carry), or set later as ``loss_config``, is built at once
    (``build_loss``) when there is no loss object yet. Data whose first input is an image is built as this class
    (it is registered for ``'image'`` in `lamina.data.loaders.DLS_TYPES`).
    """

    build_loss = staticmethod(loss_from_config)

    def __init__(self, *loaders: Any, **kwargs: Any):
        self._inference = None
        super().__init__(*loaders, **kwargs)
        for dl in self.loaders:
            dl.show, dl.show_results = show_batch, show_results

    @property
    def target_kind(self) -> str | None:
        """The kind of the first target (``'category'``, ``'multicategory'``, ``'mask'``, ``'regression'``)."""
        kinds, n_inp = self.valid.kinds, self.n_inp or 1
        return kinds[n_inp] if len(kinds) > n_inp else None

    def decode_prediction(self, decoded: torch.Tensor, input_hw: tuple[int, int] | None = None) -> Any:
        """A class name for a class index, a list of labels for a multi-label prediction, points (a
        `TensorPoint`, (n, 2)) in the pixels of the model's input image of ``input_hw`` (scaled ones without it),
        else the tensor."""
        kind = self.target_kind
        if kind == "point":
            points = decoded.reshape(-1, 2)
            return TensorPoint.create(points if input_hw is None else unscale_points(points, input_hw))
        if kind == "category":
            return str(self.vocab[int(decoded)])
        if kind == "multicategory":
            flags = decoded > 0.5 if decoded.is_floating_point() else decoded.bool()
            return [str(self.vocab[i]) for i in torch.nonzero(flags).flatten().tolist()]
        return decoded

    @property
    def inference(self) -> dict:
        """How to rebuild the validation pipeline for `load_learner` (computed from the current transforms,
        so batch transforms added later, such as a learner's `Normalize`, are included).

        Raises:
            ValueError: naming a validation transform that cannot be described (no ``to_config``).
        """
        if self._inference is not None:
            return self._inference
        return {"builder": "inference_dls", "kwargs": _inference_kwargs(self)}

    @inference.setter
    def inference(self, value: dict | None) -> None:
        self._inference = value

    @classmethod
    def from_dblock(cls, dblock: DataBlock, source: Any, path: str | Path = ".", decode: str = "cpu",
                    **kwargs: Any) -> "ImageDataLoaders":
        """``dblock.dataloaders(source, path=path, **kwargs)`` as this class.

        ``decode`` (every factory takes it): ``'cpu'`` decodes images in the loading workers; ``'device'``
        decodes JPEGs on the loaders' device (`lamina.vision.device_decode`); ``'auto'`` does so on a CUDA
        device when the data allow it, else decodes on the CPU.
        """
        return choose_decode(dblock.dataloaders(source, path=path, dls_type=cls, **kwargs), decode)

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int | None = None, vocab: Sequence | None = None, item_tfms: Any = None,
                    batch_tfms: Any = None, img_cls: type = PILImage, **kwargs: Any) -> "ImageDataLoaders":
        """Images in ``path/<train|valid>/<label>/`` (or anywhere under ``path`` split at random by ``valid_pct``)."""
        splitter = GrandparentSplitter(train, valid) if valid_pct is None else RandomSplitter(valid_pct, seed)
        get_items = ImageGetter(folders=[train, valid]) if valid_pct is None else get_image_files
        dblock = DataBlock(blocks=(ImageBlock(img_cls), CategoryBlock(vocab=vocab)), get_items=get_items,
                           splitter=splitter, get_y=parent_label, item_tfms=item_tfms, batch_tfms=batch_tfms)
        return cls.from_dblock(dblock, path, path=path, **kwargs)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Sequence, label_func: Callable, valid_pct: float = 0.2,
                       seed: int | None = None, item_tfms: Any = None, batch_tfms: Any = None,
                       img_cls: type = PILImage, **kwargs: Any) -> "ImageDataLoaders":
        """Images ``fnames`` labelled by ``label_func(path)``, split at random."""
        _check_fnames(path, fnames)
        dblock = DataBlock(blocks=(ImageBlock(img_cls), CategoryBlock), splitter=RandomSplitter(valid_pct, seed),
                           get_y=label_func, item_tfms=item_tfms, batch_tfms=batch_tfms)
        return cls.from_dblock(dblock, fnames, path=path, **kwargs)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Sequence, label_func: Callable,
                       **kwargs: Any) -> "ImageDataLoaders":
        """Images labelled by ``label_func(file_name)`` (a str, e.g. ``'Abyssinian_1.jpg'``), split at random."""
        return cls.from_path_func(path, fnames, using_attr(label_func, "name"), **kwargs)

    @classmethod
    def from_path_re(cls, path: str | Path, fnames: Sequence, pat: str, **kwargs: Any) -> "ImageDataLoaders":
        """Images labelled by group 1 of the regex ``pat`` found in the full path."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat), **kwargs)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Sequence, pat: str, **kwargs: Any) -> "ImageDataLoaders":
        """Images labelled by group 1 of the regex ``pat`` found in the file name."""
        return cls.from_name_func(path, fnames, RegexLabeller(pat), **kwargs)

    @classmethod
    def from_df(cls, df: Any, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = None,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "", label_col: Any = 1,
                label_delim: str | None = None, y_block: Any = None, valid_col: Any = None, item_tfms: Any = None,
                batch_tfms: Any = None, img_cls: type = PILImage, **kwargs: Any) -> "ImageDataLoaders":
        """Images named in column ``fn_col`` (under ``path/folder``), labels in ``label_col``.

        Several label columns or a ``label_delim`` mean multi-label (`MultiCategoryBlock`); ``valid_col``
        (a bool column) gives the split, else it is random.
        """
        pref = f"{Path(path) if folder is None else Path(path) / folder}{os.path.sep}"
        if y_block is None:
            multi = (isinstance(label_col, (list, tuple)) and len(label_col) > 1) or label_delim is not None
            y_block = MultiCategoryBlock if multi else CategoryBlock
        splitter = RandomSplitter(valid_pct, seed) if valid_col is None else ColSplitter(valid_col)
        dblock = DataBlock(blocks=(ImageBlock(img_cls), y_block), get_x=ColReader(fn_col, pref=pref, suff=suff),
                           get_y=ColReader(label_col, label_delim=label_delim), splitter=splitter,
                           item_tfms=item_tfms, batch_tfms=batch_tfms)
        return cls.from_dblock(dblock, df, path=path, **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str = "labels.csv", header: Any = "infer",
                 delimiter: str | None = None, quoting: int = csv.QUOTE_MINIMAL, **kwargs: Any) -> "ImageDataLoaders":
        """`from_df` on the CSV file ``path/csv_fname`` (an empty one raises an error naming it)."""
        sep = {} if delimiter is None else {"delimiter": delimiter}  # None would make pandas sniff (slowly)
        df = read_csv(Path(path) / csv_fname, arg="csv_fname", header=header, quoting=quoting, **sep)
        return cls.from_df(df, path=path, **kwargs)

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Sequence, labels: Sequence, valid_pct: float = 0.2,
                   seed: int | None = None, y_block: Any = None, item_tfms: Any = None, batch_tfms: Any = None,
                   img_cls: type = PILImage, **kwargs: Any) -> "ImageDataLoaders":
        """Images ``fnames`` with one label each in ``labels`` (floats: regression; lists of labels: multi-label).

        Any list or tuple label means multi-label, also a list of one label (fastai looks at the first label
        only and needs two or more in it): a multi-label data set whose first image has one tag stays
        multi-label. Pass ``y_block=CategoryBlock`` for single labels.
        """
        if len(fnames) != len(labels):
            raise ValueError(f"`fnames` and `labels` must have the same length; received {len(fnames)} and "
                             f"{len(labels)}")
        _check_fnames(path, fnames)
        if y_block is None:
            first = labels[0] if len(labels) else None
            if any(isinstance(label, (list, tuple)) for label in labels):
                y_block = MultiCategoryBlock
            elif isinstance(first, (float, np.floating)):
                y_block = RegressionBlock
            else:
                y_block = CategoryBlock
        dblock = DataBlock.from_columns(blocks=(ImageBlock(img_cls), y_block), splitter=RandomSplitter(valid_pct, seed),
                                        item_tfms=item_tfms, batch_tfms=batch_tfms)
        return cls.from_dblock(dblock, (list(fnames), list(labels)), path=path, **kwargs)


class SegmentationDataLoaders(ImageDataLoaders):
    """`ImageDataLoaders` for segmentation: images and masks of class indices."""

    @classmethod
    def from_label_func(cls, path: str | Path, fnames: Sequence, label_func: Callable, valid_pct: float = 0.2,
                        seed: int | None = None, codes: Sequence | None = None, item_tfms: Any = None,
                        batch_tfms: Any = None, img_cls: type = PILImage, **kwargs: Any) -> "SegmentationDataLoaders":
        """Images ``fnames`` whose masks are at ``label_func(image_path)``; ``codes`` name the classes
        (they set ``vocab`` and ``n_out``; mask pixels already are class indices)."""
        _check_fnames(path, fnames)
        dblock = DataBlock(blocks=(ImageBlock(img_cls), MaskBlock(codes=codes)), get_y=label_func,
                           splitter=RandomSplitter(valid_pct, seed), item_tfms=item_tfms, batch_tfms=batch_tfms)
        return cls.from_dblock(dblock, fnames, path=path, **kwargs)


# --- inference: what an export stores, and how it is rebuilt ---------------------------------------------


def _configs(tfms: Sequence, what: str) -> list[dict]:
    """Configs of the transforms that run on validation (training-only ones do not matter for inference)."""
    table = ITEM_TFMS if what == "item" else BATCH_TFMS
    out = []
    for tfm in tfms:
        if tfm_hook(tfm, "split_idx") == 0 or getattr(tfm, "exported", True) is False:
            continue
        if not declares(tfm, "to_config"):
            raise ValueError(f"Cannot export the {what} transform {tfm!r}: it runs on validation data but has no "
                             "to_config(). Give it to_config() and register its class with @register_tfm "
                             "(lamina.data.transforms)")
        config = tfm.to_config()
        if table.get(config.get("name")) is not type(tfm):
            raise ValueError(f"Cannot export the {what} transform {tfm!r}: its class is not registered, so a loaded "
                             "learner could not rebuild it. Register it with @register_tfm (lamina.data.transforms)")
        out.append(config)
    return out


def _inference_kwargs(dls: ImageDataLoaders) -> dict:
    ds = dls.valid.dataset
    reader = ds.lazy_steps[0][0] if isinstance(ds, Datasets) and ds.lazy_steps and ds.lazy_steps[0] else None
    if not isinstance(reader, ImageReader):
        raise ValueError("Only DataLoaders whose first input is an ImageBlock can be exported by lamina.vision")
    loss = dls.loss_func.to_config() if declares(dls.loss_func, "to_config") else None
    masks = [s for steps in ds.lazy_steps for s in steps if isinstance(s, MaskReader)]
    return {"kinds": list(dls.valid.kinds), "n_inp": dls.n_inp or 1, "img_cls": reader.cls.__name__,
            "draft": list(reader.draft) if reader.draft else None, "vocab": jsonable(dls.vocab),
            "n_out": dls.n_out, "item_tfms": _configs(ds.item_tfms, "item"),
            "batch_tfms": _configs(dls.valid.after_batch, "batch"), "loss": loss, "bs": dls.valid.bs,
            "ignore_index": masks[0].ignore_index if masks else None}


def _target_step(kind: str, vocab: list | None, n_out: int | None, ignore_index: int | None) -> Any:
    if kind == "category":
        return Categorize(vocab=vocab, sort=False)
    if kind == "multicategory":
        return MultiCategorize(vocab=vocab)
    if kind == "mask":
        return MaskReader(codes=vocab, ignore_index=ignore_index)
    if kind == "point":
        return PointSetup(c=n_out)
    if kind == "bbox":
        return BBoxSetup()
    if kind == "bbox_label":
        return BBoxLabeler(vocab=[v for v in vocab or [] if v != "#na#"])
    return RegressionSetup(c=n_out)


NO_LABELS = ("test_dl(..., with_labels=True) needs the label function, and a loaded learner has none: an export "
             "keeps the model and the validation transforms, not the code that labels items. Call test_dl(items) "
             "and compare with labels you compute, or rebuild the DataLoaders with the original factory or DataBlock "
             "and set learn.dls = dls")


@register("data")
def inference_dls(kinds: Sequence[str], n_inp: int = 1, img_cls: str = "PILImage", draft: Sequence[int] | None = None,
                  vocab: list | None = None, n_out: int | None = None, item_tfms: Sequence[dict] = (),
                  batch_tfms: Sequence[dict] = (), loss: dict | None = None, bs: int = 64,
                  ignore_index: int | None = None, **_: Any) -> ImageDataLoaders:
    """Empty image DataLoaders with the validation pipeline of an exported learner (its ``test_dl`` and
    ``predict`` take paths, bytes, PIL images, arrays or tensors).

    Args:
        kinds: the batch members' kinds, e.g. ``['image', 'category']``.
        n_inp: how many members are inputs.
        img_cls: ``'PILImage'`` or ``'PILImageBW'``.
        draft: the reduced JPEG decoding size (h, w), if any.
        vocab: the classes or codes.
        n_out: the number of model outputs.
        item_tfms: item transform configs (validation behaviour).
        batch_tfms: batch transform configs.
        loss: the loss config.
        bs: the batch size of ``test_dl``.
        ignore_index: the masks' void value, if any.

    The loaders use `default_num_workers()` worker processes, as training loaders do (``learn.predict`` asks
    for none: one item loads faster in the main process).
    """
    pipelines = [[ImageReader(image_class(img_cls), tuple(draft) if draft else None)]]
    pipelines += [[_target_step(kind, vocab, n_out, ignore_index)] for kind in kinds[n_inp:]]
    dsets = Datasets([], pipelines, n_inp=n_inp, splits=([], []), kinds=kinds,
                     item_tfms=[item_tfm_from_config(c) for c in item_tfms])
    dsets.test_labels_error = NO_LABELS
    after = [batch_tfm_from_config(c) for c in batch_tfms]
    loaders = [DataLoader(dsets.subset(i), bs=bs, num_workers=default_num_workers(), after_batch=after, kinds=kinds,
                          split_idx=i) for i in (0, 1)]
    return ImageDataLoaders(*loaders, vocab=vocab, n_out=n_out, loss_func=loss, n_inp=n_inp)
