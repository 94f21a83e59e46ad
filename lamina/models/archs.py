"""The architecture registry: torchvision models lamina knows, where to cut them, their param groups, their weights.

Every entry of `ARCHS` is an `Arch`: a callable that builds torchvision's model (torchvision is imported only
then), plus where to cut it (`cut`), how to split it into param groups (`split`), the statistics its
pretrained weights expect (`stats`) and the name of torchvision's weights enum. Users pass the entries as
``arch``: ``vision_learner(dls, resnet34)``. `model_meta` is the same table keyed by architecture, in
fastai's shape; add an entry to it to give your own architecture a cut and a split. `build_arch` instantiates
any architecture (an entry, a torchvision builder, your own callable).

Pretrained weights come through torchvision's weights API and its cache, ``torch.hub.get_dir()/checkpoints``.
When a file is not there and cannot be downloaded, `PretrainedWeightsError` names the file, the folder and
the fixes. Cutting a built model into a body is `lamina.models.bodies`, which re-exports this module's names.

Example:
    >>> resnet34.name, arch_meta(resnet34)["cut"]
    ('resnet34', -2)
    >>> model = build_arch(resnet34, pretrained=False)     # torchvision's resnet34, random weights
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import hub, nn

from ..optim import params_of
from .xresnet import XRESNETS

__all__ = ["Arch", "ARCHS", "model_meta", "arch_meta", "BodySplit", "default_split", "build_arch", "weights_file",
           "PretrainedWeightsError", "IMAGENET_STATS"]

IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are neither in the torch-hub cache nor downloadable (or the cached file is broken)."""


# ------------------------------------------------------------------------------------------------------------
# Param-group splits


class BodySplit:
    """Three param groups for ``nn.Sequential(body, head)`` (or a U-Net): early body, late body, the rest.

    Args:
        index: where the body is split (``body[:index]`` / ``body[index:]``).
        within: split inside ``body[within]`` instead (bodies like ``Sequential(features)``); the body's
            children before it go to the first group, those after it to the second.
    """

    def __init__(self, index: int, within: int | None = None):
        self.index, self.within = index, within

    def __call__(self, model: nn.Module) -> list[list[nn.Parameter]]:
        body = model[0]
        if self.within is None:
            early, late = [body[:self.index]], [body[self.index:]]
        else:
            inner = body[self.within]
            early = [*body[:self.within], inner[:self.index]]
            late = [inner[self.index:], *body[self.within + 1:]]
        return [params_of(early), params_of(late), params_of(list(model.children())[1:])]

    def __repr__(self) -> str:
        return f"BodySplit(index={self.index}, within={self.within})"


def default_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two param groups: the body (``model[0]``) and everything after it."""
    return [params_of(model[0]), params_of(list(model.children())[1:])]


def _regnet_body(model: nn.Module) -> nn.Sequential:
    """RegNet's stem and its four stages as one flat Sequential (so the stages can be split and hooked)."""
    return nn.Sequential(model.stem, *model.trunk_output)


# ------------------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True, eq=False)
class Arch:
    """A torchvision architecture and what lamina needs to know about it.

    Calling it builds torchvision's model: ``resnet34(weights='DEFAULT')`` (or ``pretrained=True``,
    the old spelling); ``weights`` is None, ``'DEFAULT'``, a member name of the weights enum
    (``'IMAGENET1K_V1'``) or the enum member itself.

    Attributes:
        name: torchvision's builder name (``torchvision.models.<name>``).
        weights_enum: torchvision's weights enum class name, e.g. ``'ResNet34_Weights'``.
        cut: where `create_body` cuts: an index into the model's children, or a function of the model.
        split: the splitter of the full model (body + head, or a U-Net) into param groups.
        stats: the (mean, std) the pretrained weights expect.
    """

    name: str
    weights_enum: str
    cut: int | Callable[[nn.Module], nn.Module]
    split: Callable[[nn.Module], list]
    stats: tuple = IMAGENET_STATS

    def __call__(self, weights: Any = None, pretrained: bool | None = None, **kwargs: Any) -> nn.Module:
        import torchvision.models as tvm
        if weights is None and pretrained:
            weights = "DEFAULT"
        return _torchvision_model(getattr(tvm, self.name), weights, **kwargs)

    def __repr__(self) -> str:
        return f"Arch({self.name!r})"


_RESNET, _VGG = BodySplit(6), BodySplit(22, within=0)
_FEATURES4 = BodySplit(4, within=0)  # ConvNeXt, EfficientNet: stem and the stages down to 1/8 | the rest

resnet18 = Arch("resnet18", "ResNet18_Weights", -2, _RESNET)
resnet34 = Arch("resnet34", "ResNet34_Weights", -2, _RESNET)
resnet50 = Arch("resnet50", "ResNet50_Weights", -2, _RESNET)
resnet101 = Arch("resnet101", "ResNet101_Weights", -2, _RESNET)
resnet152 = Arch("resnet152", "ResNet152_Weights", -2, _RESNET)
resnext50_32x4d = Arch("resnext50_32x4d", "ResNeXt50_32X4D_Weights", -2, _RESNET)
resnext101_32x8d = Arch("resnext101_32x8d", "ResNeXt101_32X8D_Weights", -2, _RESNET)
resnext101_64x4d = Arch("resnext101_64x4d", "ResNeXt101_64X4D_Weights", -2, _RESNET)
wide_resnet50_2 = Arch("wide_resnet50_2", "Wide_ResNet50_2_Weights", -2, _RESNET)
wide_resnet101_2 = Arch("wide_resnet101_2", "Wide_ResNet101_2_Weights", -2, _RESNET)
densenet121 = Arch("densenet121", "DenseNet121_Weights", -1, BodySplit(7, within=0))
densenet169 = Arch("densenet169", "DenseNet169_Weights", -1, BodySplit(7, within=0))
densenet201 = Arch("densenet201", "DenseNet201_Weights", -1, BodySplit(7, within=0))
densenet161 = Arch("densenet161", "DenseNet161_Weights", -1, BodySplit(7, within=0))
vgg11_bn = Arch("vgg11_bn", "VGG11_BN_Weights", -2, _VGG)
vgg13_bn = Arch("vgg13_bn", "VGG13_BN_Weights", -2, _VGG)
vgg16_bn = Arch("vgg16_bn", "VGG16_BN_Weights", -2, _VGG)
vgg19_bn = Arch("vgg19_bn", "VGG19_BN_Weights", -2, _VGG)
alexnet = Arch("alexnet", "AlexNet_Weights", -2, BodySplit(6, within=0))
squeezenet1_0 = Arch("squeezenet1_0", "SqueezeNet1_0_Weights", -1, BodySplit(5, within=0))
squeezenet1_1 = Arch("squeezenet1_1", "SqueezeNet1_1_Weights", -1, BodySplit(5, within=0))
convnext_tiny = Arch("convnext_tiny", "ConvNeXt_Tiny_Weights", -2, _FEATURES4)
convnext_small = Arch("convnext_small", "ConvNeXt_Small_Weights", -2, _FEATURES4)
convnext_base = Arch("convnext_base", "ConvNeXt_Base_Weights", -2, _FEATURES4)
convnext_large = Arch("convnext_large", "ConvNeXt_Large_Weights", -2, _FEATURES4)
efficientnet_b0 = Arch("efficientnet_b0", "EfficientNet_B0_Weights", -2, _FEATURES4)
efficientnet_b1 = Arch("efficientnet_b1", "EfficientNet_B1_Weights", -2, _FEATURES4)
efficientnet_b2 = Arch("efficientnet_b2", "EfficientNet_B2_Weights", -2, _FEATURES4)
efficientnet_b3 = Arch("efficientnet_b3", "EfficientNet_B3_Weights", -2, _FEATURES4)
efficientnet_b4 = Arch("efficientnet_b4", "EfficientNet_B4_Weights", -2, _FEATURES4)
efficientnet_b5 = Arch("efficientnet_b5", "EfficientNet_B5_Weights", -2, _FEATURES4)
efficientnet_b6 = Arch("efficientnet_b6", "EfficientNet_B6_Weights", -2, _FEATURES4)
efficientnet_b7 = Arch("efficientnet_b7", "EfficientNet_B7_Weights", -2, _FEATURES4)
efficientnet_v2_s = Arch("efficientnet_v2_s", "EfficientNet_V2_S_Weights", -2, _FEATURES4)
efficientnet_v2_m = Arch("efficientnet_v2_m", "EfficientNet_V2_M_Weights", -2, _FEATURES4)
efficientnet_v2_l = Arch("efficientnet_v2_l", "EfficientNet_V2_L_Weights", -2, _FEATURES4)
mobilenet_v2 = Arch("mobilenet_v2", "MobileNet_V2_Weights", -1, BodySplit(7, within=0))
mobilenet_v3_large = Arch("mobilenet_v3_large", "MobileNet_V3_Large_Weights", -2, BodySplit(7, within=0))
mobilenet_v3_small = Arch("mobilenet_v3_small", "MobileNet_V3_Small_Weights", -2, BodySplit(4, within=0))
regnet_y_400mf = Arch("regnet_y_400mf", "RegNet_Y_400MF_Weights", _regnet_body, BodySplit(3))
regnet_y_800mf = Arch("regnet_y_800mf", "RegNet_Y_800MF_Weights", _regnet_body, BodySplit(3))
regnet_y_1_6gf = Arch("regnet_y_1_6gf", "RegNet_Y_1_6GF_Weights", _regnet_body, BodySplit(3))
regnet_y_3_2gf = Arch("regnet_y_3_2gf", "RegNet_Y_3_2GF_Weights", _regnet_body, BodySplit(3))
regnet_y_8gf = Arch("regnet_y_8gf", "RegNet_Y_8GF_Weights", _regnet_body, BodySplit(3))
regnet_y_16gf = Arch("regnet_y_16gf", "RegNet_Y_16GF_Weights", _regnet_body, BodySplit(3))
regnet_y_32gf = Arch("regnet_y_32gf", "RegNet_Y_32GF_Weights", _regnet_body, BodySplit(3))
regnet_x_400mf = Arch("regnet_x_400mf", "RegNet_X_400MF_Weights", _regnet_body, BodySplit(3))
regnet_x_800mf = Arch("regnet_x_800mf", "RegNet_X_800MF_Weights", _regnet_body, BodySplit(3))
regnet_x_1_6gf = Arch("regnet_x_1_6gf", "RegNet_X_1_6GF_Weights", _regnet_body, BodySplit(3))
regnet_x_3_2gf = Arch("regnet_x_3_2gf", "RegNet_X_3_2GF_Weights", _regnet_body, BodySplit(3))
regnet_x_8gf = Arch("regnet_x_8gf", "RegNet_X_8GF_Weights", _regnet_body, BodySplit(3))
regnet_x_16gf = Arch("regnet_x_16gf", "RegNet_X_16GF_Weights", _regnet_body, BodySplit(3))
regnet_x_32gf = Arch("regnet_x_32gf", "RegNet_X_32GF_Weights", _regnet_body, BodySplit(3))

ARCHS: dict[str, Arch] = {a.name: a for a in (
    resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d,
    wide_resnet50_2, wide_resnet101_2, densenet121, densenet169, densenet201, densenet161, vgg11_bn, vgg13_bn,
    vgg16_bn, vgg19_bn, alexnet, squeezenet1_0, squeezenet1_1, convnext_tiny, convnext_small, convnext_base,
    convnext_large, efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4,
    efficientnet_b5, efficientnet_b6, efficientnet_b7, efficientnet_v2_s, efficientnet_v2_m, efficientnet_v2_l,
    mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, regnet_y_400mf, regnet_y_800mf, regnet_y_1_6gf,
    regnet_y_3_2gf, regnet_y_8gf, regnet_y_16gf, regnet_y_32gf, regnet_x_400mf, regnet_x_800mf, regnet_x_1_6gf,
    regnet_x_3_2gf, regnet_x_8gf, regnet_x_16gf, regnet_x_32gf)}
__all__ += list(ARCHS)

# fastai's table, keyed by architecture; users may add their own entries.
model_meta: dict[Any, dict] = {a: {"cut": a.cut, "split": a.split, "stats": a.stats} for a in ARCHS.values()}
# fastai's xresnets (lamina.models.xresnet): the body stops before the pool; groups: stem | stages | head.
model_meta.update({a: {"cut": -4, "split": BodySplit(3), "stats": IMAGENET_STATS} for a in XRESNETS.values()})


def _torchvision_name(arch: Any) -> str | None:
    """The builder name of a function from ``torchvision.models`` (None for anything else)."""
    module = getattr(arch, "__module__", None) or ""
    return getattr(arch, "__name__", None) if module.startswith("torchvision.models") else None


def arch_meta(arch: Any) -> dict:
    """``{'cut', 'split', 'stats'}`` of an architecture: its `model_meta` entry, that of the registry entry of
    the same name for a torchvision builder, else no cut (search for the pooling layer) and two groups."""
    with contextlib.suppress(TypeError):  # unhashable archs have no entry
        if arch in model_meta:
            return model_meta[arch]
    name = _torchvision_name(arch)
    if name in ARCHS:
        return model_meta[ARCHS[name]]
    return {"cut": None, "split": default_split, "stats": None}


# ------------------------------------------------------------------------------------------------------------
# Building models and loading pretrained weights


def weights_file(weights: Any) -> Path:
    """Where torch hub caches a torchvision weights enum member: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _missing_weights(name: str, weights: Any, path: Path, error: BaseException) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"The pretrained weights of {name} ({type(weights).__name__}.{weights.name}) are not in the torch hub "
        f"cache and could not be downloaded ({type(error).__name__}: {error}). Expected file: {path.name} in the "
        f"folder {path.parent}. To fix: download {weights.url} where there is internet access and place the "
        "file in that folder (set TORCH_HOME to move the cache), or pass pretrained=False to start from random "
        "weights.")


def _torchvision_model(builder: Callable, weights: Any, **kwargs: Any) -> nn.Module:
    """Call a torchvision builder; a failed download or a broken cached file becomes `PretrainedWeightsError`."""
    if weights is None:
        return builder(weights=None, **kwargs)
    import torchvision.models as tvm
    enum_cls = tvm.get_model_weights(builder)
    try:
        weights = enum_cls.verify(weights)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"`weights` must be None, 'DEFAULT' or one of {[w.name for w in enum_cls]} for "
                         f"{builder.__name__}; received: weights={weights!r}") from e
    path = weights_file(weights)
    cached = path.exists()
    try:
        return builder(weights=weights, **kwargs)
    except OSError as e:  # URLError, timeouts, refused connections, a read-only cache folder
        if cached:
            raise
        raise _missing_weights(builder.__name__, weights, path, e) from e
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:
        if not cached:
            raise
        raise PretrainedWeightsError(
            f"Could not load the pretrained weights of {builder.__name__} from {path} ({e}). The file may be "
            "truncated or hold other weights: delete it so that it is downloaded again, or pass "
            "pretrained=False.") from e


def build_arch(arch: Callable, pretrained: bool = True, weights: Any = None, **kwargs: Any) -> nn.Module:
    """Instantiate ``arch``: a registry `Arch`, a torchvision builder, or any callable returning a model.

    ``weights`` wins when given; otherwise ``pretrained`` asks for the default weights. A callable of your
    own receives ``weights=`` or ``pretrained=`` if its signature has one of them.
    """
    if weights is None and pretrained:
        weights = "DEFAULT"
    if isinstance(arch, Arch):
        return arch(weights=weights, **kwargs)
    if _torchvision_name(arch) is not None:
        return _torchvision_model(arch, weights, **kwargs)
    try:
        params = inspect.signature(arch).parameters
    except (TypeError, ValueError):
        params = {}
    if "weights" in params:
        return arch(weights=weights, **kwargs)
    if "pretrained" in params:
        return arch(pretrained=pretrained, **kwargs)
    return arch(**kwargs)
