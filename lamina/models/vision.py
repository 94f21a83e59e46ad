"""Vision models from an architecture: a classifier (a cut body and a new head) and a U-Net.

``arch`` is whatever a user passes: an entry of the registry (``resnet34``, see `lamina.models.archs`),
a torchvision builder, ``'torchvision:<name>'`` (how an export names a torchvision architecture), a timm
name (any other string, with the ``timm`` extra) or a callable of your own that returns a model.
`VisionArch.of` resolves it once into everything the builders and the learners need: the builder, the name
an export records, the default cut, the param-group split and the statistics of its pretrained weights.

`create_vision_model` and `create_unet_model` are registered model builders: an export names them and holds
their JSON arguments, and `load_learner` calls them. Their names and arguments stay stable: old files hold them.

Example:
    >>> model = create_vision_model(resnet18, n_out=2, pretrained=False, lin_ftrs=[64])
    >>> unet = create_unet_model(resnet18, n_out=3, img_size=(64, 64), pretrained=False)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..registry import register
from .archs import ARCHS, Arch, arch_meta, build_arch, default_split
from .bodies import create_body, num_features_model, timm_body
from .heads import HeadConfig
from .layers import init_linear
from .unet import DynamicUnet
from .xresnet import XRESNETS

__all__ = ["VisionArch", "arch_name", "resolve_arch", "add_head", "build_vision_model", "create_vision_model",
           "create_timm_model", "create_unet_model"]

_TORCHVISION = "torchvision:"
_LAMINA = "lamina:"  # lamina's own architectures (the xresnets), by name


# ------------------------------------------------------------------------------------------------------------
# Architectures: resolved once


def arch_name(arch: Any) -> str | None:
    """How an export names ``arch``: ``'torchvision:<name>'`` for torchvision architectures, the name itself
    for a timm string; None for other callables (which cannot be rebuilt from a name)."""
    if isinstance(arch, str):
        return arch
    if isinstance(arch, Arch):
        return _TORCHVISION + arch.name
    if XRESNETS.get(getattr(arch, "__name__", None)) is arch:
        return _LAMINA + arch.__name__
    module = getattr(arch, "__module__", None) or ""
    return _TORCHVISION + arch.__name__ if module.startswith("torchvision.models") else None


def resolve_arch(arch: Any) -> Any:
    """``'torchvision:<name>'`` to the registry entry (or torchvision's builder); anything else unchanged.

    Raises:
        ValueError: for a ``'torchvision:'`` name that torchvision does not have (or a ``'lamina:'`` one).
    """
    if isinstance(arch, str) and arch.startswith(_LAMINA):
        if arch[len(_LAMINA):] not in XRESNETS:
            raise ValueError(f"`arch` names no lamina architecture; received: arch={arch!r}. Known: "
                             f"{', '.join(_LAMINA + n for n in XRESNETS)}")
        return XRESNETS[arch[len(_LAMINA):]]
    if not (isinstance(arch, str) and arch.startswith(_TORCHVISION)):
        return arch
    name = arch[len(_TORCHVISION):]
    if name in ARCHS:
        return ARCHS[name]
    import torchvision.models as tvm
    if name not in tvm.list_models(module=tvm):
        raise ValueError(f"torchvision has no classification model named {name!r}; received: arch={arch!r}. "
                         f"Known names: {', '.join(sorted(ARCHS))}, ...")
    return getattr(tvm, name)


@dataclass(frozen=True, eq=False)
class VisionArch:
    """An architecture resolved once, with what the vision builders and learners need to know about it.

    Attributes:
        arch: what builds the model: a registry `Arch`, a torchvision builder, your own callable, or a
            timm name (a string).
        name: how an export names it (`arch_name`); None when it cannot be rebuilt from a name.
        cut: where `create_body` cuts by default (None: before the last child holding a pooling layer).
        split: the splitter of the built model into param groups.
        stats: the (mean, std) its pretrained weights expect; None when unknown (for timm: known once built).
    """

    arch: Any
    name: str | None
    cut: int | Callable[[nn.Module], nn.Module] | None
    split: Callable[[nn.Module], list]
    stats: tuple | None

    @classmethod
    def of(cls, arch: Any) -> VisionArch:
        """Resolve ``arch`` (see the module's docstring); a `VisionArch` is returned as it is.

        Raises:
            ValueError: for a ``'torchvision:'`` name that torchvision does not have (or a ``'lamina:'`` one).
        """
        if isinstance(arch, VisionArch):
            return arch
        arch = resolve_arch(arch)
        if isinstance(arch, str):
            return cls(arch, arch, None, default_split, None)
        meta = arch_meta(arch)
        return cls(arch, arch_name(arch), meta["cut"], meta["split"], meta.get("stats"))

    @property
    def is_timm(self) -> bool:
        """Whether timm builds it (the architecture is a timm name)."""
        return isinstance(self.arch, str)

    def export_config(self, factory: str, kwargs: dict) -> dict | None:
        """``{"factory", "kwargs"}`` with which an export rebuilds the model (``pretrained=False``: the exported
        weights replace any download), or None when it cannot be described in JSON (an architecture without
        a name, a custom head, a cut function, a non-default activation class)."""
        if self.name is None:
            return None
        kwargs = {"arch": self.name, **kwargs, "pretrained": False}
        try:
            kwargs = json.loads(json.dumps(kwargs))  # tuples become lists: the config equals what an export reads
        except (TypeError, ValueError):
            return None
        return {"factory": factory, "kwargs": kwargs}


def _body(arch: VisionArch, pretrained: bool, weights: Any, cut: int | Callable | None, n_in: int,
          **kwargs: Any) -> nn.Module:
    """The torchvision-style body of ``arch``: built (``kwargs`` go to its builder), then cut."""
    model = build_arch(arch.arch, pretrained=pretrained, weights=weights, **kwargs)
    return create_body(model, n_in, pretrained, arch.cut if cut is None else cut)


# ------------------------------------------------------------------------------------------------------------
# Classifiers: a body and a head


def add_head(body: nn.Module, nf: int, n_out: int, init: Callable | None = nn.init.kaiming_normal_,
             head: nn.Module | None = None, config: HeadConfig | None = None, **head_kwargs: Any) -> nn.Sequential:
    """``nn.Sequential(body, head)``: ``head``, or a head made by ``config`` with the options in
    ``head_kwargs`` on top (`HeadConfig`), initialised with ``init``.

    Raises:
        TypeError: for a ``head_kwargs`` name that is not a head option.
    """
    if head is None:
        head = dataclasses.replace(config or HeadConfig(), **head_kwargs).create(nf, n_out)
    if init is not None:
        init_linear(head, init)
    return nn.Sequential(body, head)


def _timm_model(name: str, n_out: int, head: HeadConfig, pretrained: bool, n_in: int, cut: int | Callable | None,
                init: Callable | None, custom_head: nn.Module | None, **kwargs: Any) -> tuple[nn.Sequential, dict]:
    body, cfg = timm_body(name, pretrained=pretrained, n_in=n_in, cut=cut, **kwargs)
    head = dataclasses.replace(head, pool=head.pool and body.needs_pool)  # pool only a feature map
    return add_head(body, body.model.num_features, n_out, init=init, head=custom_head, config=head), cfg


def build_vision_model(arch: Any, n_out: int, head: HeadConfig | None = None, *, pretrained: bool = True,
                       weights: Any = None, cut: int | Callable | None = None, n_in: int = 3,
                       init: Callable | None = nn.init.kaiming_normal_, custom_head: nn.Module | None = None,
                       **kwargs: Any) -> tuple[nn.Sequential, tuple | None]:
    """``nn.Sequential(body, head)`` for ``arch``, and the (mean, std) its pretrained weights expect.

    Args:
        arch: a `VisionArch`, or anything `VisionArch.of` resolves.
        n_out: outputs of the head.
        head: the head's options (default: `HeadConfig`'s).
        pretrained: load the default pretrained weights (torch-hub cache, else a download).
        weights: a specific torchvision weights member or name (wins over ``pretrained``; not for timm).
        cut, n_in: see `create_body`; ``cut`` defaults to the architecture's.
        init: initialiser of the head (None keeps torch's).
        custom_head: a head to use instead of one made from ``head``.
        **kwargs: arguments of the architecture's builder (torchvision's or ``timm.create_model``).

    Returns:
        The model, and the statistics (None when unknown: a callable of your own, a timm config without them).

    Raises:
        PretrainedWeightsError: when pretrained weights are neither cached nor downloadable.
        TypeError: for a head option in ``kwargs`` (it belongs in ``head``).
    """
    misplaced = sorted(set(kwargs) & set(HeadConfig().as_kwargs()))
    if misplaced:
        raise TypeError(f"build_vision_model takes the head's options as head=HeadConfig(...); received them as "
                        f"architecture arguments: {misplaced}. Pass head=HeadConfig({misplaced[0]}=...) or call "
                        "create_vision_model, which takes them one by one")
    arch, head = VisionArch.of(arch), head or HeadConfig()
    if arch.is_timm:
        model, cfg = _timm_model(arch.arch, n_out, head, pretrained, n_in, cut, init, custom_head, **kwargs)
        return model, ((cfg["mean"], cfg["std"]) if "mean" in cfg else None)
    body = _body(arch, pretrained, weights, cut, n_in, **kwargs)
    return add_head(body, num_features_model(body), n_out, init=init, head=custom_head, config=head), arch.stats


@register("model")
def create_vision_model(arch: Any, n_out: int, pretrained: bool = True, weights: Any = None,
                        cut: int | Callable | None = None, n_in: int = 3,
                        init: Callable | None = nn.init.kaiming_normal_, custom_head: nn.Module | None = None,
                        **kwargs: Any) -> nn.Sequential:
    """``nn.Sequential(body, head)`` for ``arch``: the body cut per `model_meta` (or ``cut``), a new head.

    The arguments are `build_vision_model`'s, with the head's options spelled out one by one as in fastai
    (and in exports): ``concat_pool``, ``pool``, ``lin_ftrs``, ``ps``, ``first_bn``, ``bn_final``,
    ``lin_first``, ``y_range`` (see `create_head`). The other ``kwargs`` go to the architecture's builder.

    Example:
        >>> create_vision_model(resnet34, 10, pretrained=False, lin_ftrs=[256], ps=0.2)

    Raises:
        PretrainedWeightsError: when pretrained weights are neither cached nor downloadable.
    """
    head = HeadConfig.from_kwargs(kwargs)
    return build_vision_model(arch, n_out, head, pretrained=pretrained, weights=weights, cut=cut, n_in=n_in,
                              init=init, custom_head=custom_head, **kwargs)[0]


def create_timm_model(arch: str, n_out: int, cut: int | Callable | None = None, pretrained: bool = True,
                      n_in: int = 3, init: Callable | None = nn.init.kaiming_normal_,
                      custom_head: nn.Module | None = None, **kwargs: Any) -> tuple[nn.Sequential, dict]:
    """A timm body (``timm.create_model(arch, num_classes=0, ...)``) with a new head, and timm's config.

    ``kwargs`` are the head's options (as in `create_vision_model`) and arguments of ``timm.create_model``.
    The head pools only when the body returns a feature map.
    """
    head = HeadConfig.from_kwargs(kwargs)
    return _timm_model(arch, n_out, head, pretrained, n_in, cut, init, custom_head, **kwargs)


# ------------------------------------------------------------------------------------------------------------
# U-Nets


@register("model")
def create_unet_model(arch: Any, n_out: int, img_size: Sequence[int], pretrained: bool = True, weights: Any = None,
                      cut: int | Callable | None = None, n_in: int = 3, **kwargs: Any) -> DynamicUnet:
    """A `DynamicUnet` on the body of ``arch`` (cut as in `create_vision_model`); ``kwargs`` go to `DynamicUnet`.

    Example:
        >>> create_unet_model(resnet34, n_out=5, img_size=(128, 128), pretrained=False, self_attention=True)

    Raises:
        ValueError: for a timm name (U-Nets need a torchvision-style sequential body).
    """
    arch = VisionArch.of(arch)
    if arch.is_timm:
        raise ValueError(f"unet_learner needs a torchvision architecture (e.g. resnet34); received the timm name "
                         f"arch={arch.arch!r}, whose body cannot be run stage by stage")
    return DynamicUnet(_body(arch, pretrained, weights, cut, n_in), n_out, img_size, **kwargs)
