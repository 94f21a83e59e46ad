"""``from lamina.vision.all import *``: everything for images, and everything of `lamina.basics`.

That is: the Learner, callbacks, losses, metrics, optimizers, ``untar_data``/``URLs``, ``get_image_files``,
``load_learner``, ``np``/``pd``/``torch``/``nn``/``F``/``Path``/``partial`` (from `lamina.basics`); image types,
item and batch transforms, blocks, splitters and labellers, ``ImageDataLoaders``/``SegmentationDataLoaders``,
the architectures (``resnet34`` ...), ``vision_learner``/``cnn_learner``/``unet_learner`` and interpretation;
and ``plt`` (``matplotlib.pyplot``, imported on first use, as fastai's surface has it: notebooks plot with it).
torchvision is not imported here: it loads when a model is built.

fastai's typed tensors (``TensorImage`` ...) are there for user code; lamina's batches are plain tensors whose
meaning is in the loaders' ``kinds`` (see `lamina.torch_core`). Points and boxes also have an
item-stage type (``TensorPoint``, ``TensorBBox``).

Example:
    >>> from lamina.vision.all import *
    >>> path = untar_data(URLs.PETS)/'images'
    >>> def is_cat(x): return x[0].isupper()
    >>> dls = ImageDataLoaders.from_name_func(path, get_image_files(path), valid_pct=0.2, seed=42,
    ...                                       label_func=is_cat, item_tfms=Resize(224))
    >>> learn = vision_learner(dls, resnet34, metrics=error_rate)
    >>> learn.fine_tune(1)
"""

from ..basics import *  # noqa: F403  (the basics surface's __all__)
from ..basics import __all__ as _basics_all
from ..data.block import (Category, CategoryBlock, Categorize, DataBlock, Datasets, EncodedMultiCategorize,
                          MultiCategoryBlock, MultiCategorize, OneHotEncode, RegressionBlock, RegressionSetup,
                          TransformBlock)
from ..data.files import FileGetter, ImageGetter, verify_image, verify_images
from ..data.splitters import (AttrGetter, ColReader, ColSplitter, EndSplitter, FileSplitter, FuncSplitter,
                              GrandparentSplitter, IndexSplitter, ItemGetter, MaskSplitter, RandomSplitter,
                              RandomSubsetSplitter, RegexLabeller, TrainTestSplitter, parent_label, using_attr)
from ..interpret import ClassificationInterpretation, Interpretation, SegmentationInterpretation
from ..models.bodies import ARCHS, PretrainedWeightsError, create_body, cut_model, has_pool_type, model_meta
from ..models.bodies import *  # noqa: F403  (the architectures: resnet18 ... regnet_x_32gf)
from ..models.heads import create_head
from ..models.layers import (AdaptiveConcatPool2d, BatchNorm, ConvLayer, Flatten, InstanceNorm, LinBnDrop, MergeLayer,
                             NormType, PixelShuffle_ICNR, ResBlock, ResizeToOrig, SelfAttention, SigmoidRange,
                             icnr_init, init_linear)
from ..models.unet import DynamicUnet, UnetBlock
from ..models.attention import SEModule, SimpleSelfAttention
from ..models.xresnet import (XRESNETS, AdaptiveAvgPool, AvgPool, MaxPool, SEBlock, SEResNeXtBlock, SeparableBlock,
                              XResNet, init_cnn)
from ..models.xresnet import *  # noqa: F403  (the xresnets: xresnet18 ... xse_resnext50_deeper)
from .bboxes import BBoxBlock, BBoxLabeler, BBoxLblBlock, TensorBBox, bb_pad, clip_remove_empty, get_annotations
from .augment import (AffineCoordTfm, Brightness, Contrast, Dihedral, Flip, Hue, IntToFloatTensor, LightingTfm,
                      Normalize, RandomErasing, RandomResizedCropGPU, Rotate, Saturation, Warp, Zoom, aug_transforms,
                      setup_aug_tfms)
from .core import PILImage, PILMask, cifar_stats, imagenet_stats, load_image, mnist_stats
from .data import ImageBlock, ImageDataLoaders, MaskBlock, SegmentationDataLoaders
from ..models.vision import add_head
from .learner import (cnn_learner, create_timm_model, create_unet_model, create_vision_model, unet_learner,
                      vision_learner)
from .points import PointBlock, PointScaler
from .pil_patch import patch_pil_image
from .utils import download_images, resize_image, resize_images, resize_to
from .transforms import (AddMaskCodes, CropPad, DihedralItem, FlipItem, PadMode, RandomCrop, RandomResizedCrop,
                         RatioResize, Resize, ResizeMethod, ToTensor)

__all__ = [
    *_basics_all,
    # data: blocks, splitters, labellers, files
    "TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "Category", "Categorize",
    "MultiCategorize", "EncodedMultiCategorize", "OneHotEncode", "RegressionSetup", "DataBlock", "Datasets",
    "FileGetter", "ImageGetter", "verify_image", "verify_images", "download_images", "resize_images",
    "resize_image", "resize_to", "RandomSplitter", "GrandparentSplitter",
    "IndexSplitter", "FuncSplitter", "MaskSplitter", "FileSplitter", "ColSplitter", "EndSplitter",
    "RandomSubsetSplitter", "TrainTestSplitter", "parent_label", "RegexLabeller", "using_attr", "ColReader",
    "ItemGetter", "AttrGetter",
    # images, transforms, data loaders
    "PILImage", "PILMask", "imagenet_stats", "cifar_stats", "mnist_stats", "load_image",
    "Resize", "RandomResizedCrop", "RandomCrop", "CropPad", "RatioResize", "FlipItem", "DihedralItem", "ToTensor",
    "AddMaskCodes",
    "ResizeMethod", "PadMode", "AffineCoordTfm", "Flip", "Dihedral", "Rotate", "Zoom", "Warp", "RandomResizedCropGPU",
    "aug_transforms", "setup_aug_tfms", "IntToFloatTensor", "Normalize", "LightingTfm", "Brightness", "Contrast",
    "Saturation", "Hue", "RandomErasing", "ImageBlock", "MaskBlock", "ImageDataLoaders", "SegmentationDataLoaders",
    # keypoints and boxes
    "PointBlock", "PointScaler", "BBoxBlock", "BBoxLblBlock", "BBoxLabeler", "TensorBBox", "bb_pad",
    "clip_remove_empty", "get_annotations",
    # models and learners
    "ARCHS", "model_meta", "create_body", "PretrainedWeightsError", "create_head", "add_head", "cut_model",
    "has_pool_type", "create_cnn_model",  # num_features_model: basics
    "AdaptiveConcatPool2d", "Flatten", "LinBnDrop", "SigmoidRange", "BatchNorm", "InstanceNorm", "icnr_init",
    "init_linear", "ConvLayer", "NormType",
    "PixelShuffle_ICNR", "ResBlock", "SelfAttention", "MergeLayer", "ResizeToOrig", "DynamicUnet", "UnetBlock",
    "vision_learner", "cnn_learner", "unet_learner", "create_vision_model", "create_timm_model", "create_unet_model",
    "Interpretation", "ClassificationInterpretation", "SegmentationInterpretation",
    *ARCHS,
    # xresnets and their blocks
    "XResNet", "init_cnn", "SEBlock", "SEResNeXtBlock", "SeparableBlock", "SEModule", "SimpleSelfAttention",
    "AvgPool", "MaxPool", "AdaptiveAvgPool", *XRESNETS,
]

create_cnn_model = create_vision_model  # fastai's former name

patch_pil_image()  # fastai code calls Image.open(f).to_thumb(128, 128) (see lamina.vision.pil_patch)
