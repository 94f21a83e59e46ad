"""Transforms, in one home: what a pipeline step and a transform may declare, the base classes, running and fusing
them, their export tables, and the target encoders.

* `steps`: the pipeline step protocol (`PipelineStep`, `TypeTransform`, `step_hook`) and `TARGET_LOSSES`, the
  loss each kind of target implies.
* `base`: `ItemTransform` and `BatchTransform`, their hooks (`ItemTfm`, `BatchTfm`, `tfm_hook`), the one
  ``to_config`` convention, and `ITEM_TFMS` / `BATCH_TFMS` with `register_tfm` and the ``*_from_config`` rebuilders.
* `apply`: `apply_item_tfms`, `apply_batch_tfms`, `merge_tfms` and `fuse_tfms` (the one fuser).
* `targets`: `Categorize`, `MultiCategorize`, `EncodedMultiCategorize`, `OneHotEncode`, `RegressionSetup`.
* `vocab`: `CategoryMap`, the ordered vocabulary every application shares.

The image transforms themselves live in `lamina.vision` (`transforms`, `lighting`, `augment`) and the tabular
procs in `lamina.tabular.procs`; they build on these classes.
"""

from .apply import (apply_batch_tfms, apply_item_tfms, draft_size, fuse_tfms, merge_tfms, sort_tfms,
                    undo_batch_tfms)
from .base import (BATCH_TFMS, ITEM_TFMS, BatchTfm, BatchTransform, ItemTfm, ItemTransform, TransformBase,
                   batch_tfm_from_config, item_tfm_from_config, jsonable, members_of, register_tfm,
                   replace_members, tfm_hook)
from .steps import (TARGET_LOSSES, PipelineStep, TypeTransform, as_steps, declares, loss_config_of, step_hook,
                    target_loss_config)
from .targets import (Category, Categorize, EncodedMultiCategorize, MultiCategorize, OneHotEncode,
                      RegressionSetup)
from .vocab import NA, CategoryMap

# fastai's data.transforms also holds the file listing, the splitters and the labellers; lamina's homes for them are
# lamina.data.files and lamina.data.splitters (neither imports this package), re-exported for fastai's import path
from ..files import FileGetter, ImageGetter, get_files, get_image_files, get_text_files, image_extensions  # noqa: E402
from ..splitters import (AttrGetter, ColReader, ColSplitter, EndSplitter, FileSplitter, FuncSplitter,  # noqa: E402
                         GrandparentSplitter, IndexSplitter, ItemGetter, MaskSplitter, RandomSplitter,
                         RandomSubsetSplitter, RegexLabeller, TrainTestSplitter, parent_label, using_attr)

__all__ = ["CategoryMap", "NA", "PipelineStep", "TypeTransform", "declares", "step_hook", "as_steps", "TARGET_LOSSES",
           "target_loss_config", "loss_config_of", "ItemTfm", "BatchTfm", "TransformBase", "ItemTransform",
           "BatchTransform", "members_of", "replace_members", "jsonable", "tfm_hook", "ITEM_TFMS", "BATCH_TFMS",
           "register_tfm", "item_tfm_from_config", "batch_tfm_from_config", "sort_tfms", "apply_item_tfms",
           "apply_batch_tfms", "undo_batch_tfms", "fuse_tfms", "merge_tfms", "draft_size", "Category", "Categorize",
           "MultiCategorize", "EncodedMultiCategorize", "OneHotEncode", "RegressionSetup",
           "get_files", "get_image_files", "get_text_files", "image_extensions", "FileGetter", "ImageGetter",
           "RandomSplitter", "TrainTestSplitter", "IndexSplitter", "EndSplitter", "GrandparentSplitter", "FuncSplitter",
           "MaskSplitter", "FileSplitter", "ColSplitter", "RandomSubsetSplitter", "parent_label", "RegexLabeller",
           "using_attr", "ColReader", "ItemGetter", "AttrGetter"]
