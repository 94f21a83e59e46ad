"""Learners for images: `vision_learner` (a CNN body and a new head) and `unet_learner` (segmentation).

The learners assemble; the models come from `lamina.models.vision`. Each learner resolves ``arch`` once
(`VisionArch`: a registry entry such as ``resnet34``, a torchvision builder, a timm name with the ``timm``
extra, or your own callable), builds the model, adds the pretrained weights' `Normalize` to the data once,
splits the model into the architecture's param groups, freezes the body when it is pretrained, and records in
``learn.model_config`` how `Learner.export` rebuilds the model (architecture by name, ``pretrained=False``:
the exported weights replace any download).

The model builders (`create_vision_model`, `create_timm_model`, `create_unet_model`, `add_head`) and
`resolve_arch` / `arch_name` live in `lamina.models.vision` and are importable from here too.

Example:
    >>> learn = vision_learner(dls, resnet34, metrics=error_rate)
    >>> learn.fine_tune(1)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..core import as_members
from ..callbacks.precision import (ChannelsLast, MixedPrecision, cpu_has_amx, cpu_has_bf16_matmul,
                                  channels_last_pays)
from ..learner import Learner
from ..models.bodies import create_body, model_meta
from ..models.heads import HeadConfig, create_head
from ..models.vision import (VisionArch, add_head, arch_name, build_vision_model, create_timm_model,
                             create_unet_model, create_vision_model, resolve_arch)
from ..optim import Adam
from .augment import Normalize

__all__ = ["vision_learner", "cnn_learner", "unet_learner", "create_vision_model", "create_timm_model",
           "create_unet_model", "add_head", "resolve_arch", "arch_name",
           # re-exported from their homes (lamina.models.bodies, lamina.models.heads): fastai.vision.learner has them
           "create_body", "create_head", "model_meta"]


# ------------------------------------------------------------------------------------------------------------
# Learners


def _n_out(dls: Any, n_out: int | None, caller: str) -> int:
    n_out = n_out or getattr(dls, "n_out", None)
    if isinstance(n_out, (list, tuple)):
        raise ValueError(f"{caller}: the data has several targets (their outputs: {list(n_out)}); pass n_out= the "
                         f"model's total number of outputs (e.g. {sum(n_out)}) and a loss_func that splits them")
    if not n_out:
        raise ValueError(f"{caller} could not infer the number of outputs from the data (dls.n_out is not set): "
                         "pass n_out=<number of classes or targets>")
    return n_out


def _first_input(dls: Any) -> Any:
    """The input of one item (loaded and collated on the CPU, no batch transforms), or None without items.

    Batch transforms are left out: they keep the channels, and a `Normalize()` without statistics would take
    them from this one item.
    """
    for dl in (dls.valid, dls.train):
        if hasattr(dl, "tensors") and len(dl.tensors[0]):
            return dl.tensors[0][:1]  # tensor data: its first rows are the inputs, no copy needed
        if not hasattr(dl, "tensors") and len(dl.dataset):
            probe = dl.new(bs=1, shuffle=False, drop_last=False, num_workers=0, device="cpu", after_batch=[])
            return as_members(next(iter(probe)))[0]
    return None


def _check_channels(x: Any, n_in: int, caller: str) -> None:
    """Raise when the images ``x`` (a batch) do not have the ``n_in`` channels the model is built for.

    Raises:
        ValueError: naming both counts and the fix, instead of a convolution error at the first batch.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] == n_in:
        return
    channels = x.shape[1]
    grey = " or read colour images as grayscale: ImageBlock(PILImageBW) / img_cls=PILImageBW" if n_in == 1 else ""
    raise ValueError(f"{caller}(n_in={n_in}) builds a model for {n_in}-channel images, but the images of `dls` have "
                     f"{channels} channels (a batch has shape {tuple(x.shape)}). Pass n_in={channels}{grey}")


def _add_normalize(dls: Any, stats: Sequence | None, n_in: int) -> None:
    """Add ``Normalize.from_stats(*stats)`` to every loader, unless a `Normalize` is already there.

    Skipped when the statistics do not fit the input (``n_in`` channels): a 1-channel model cannot use RGB stats.
    """
    if stats is None or len(stats[0]) != n_in:
        return
    if any(isinstance(t, Normalize) for dl in dls.loaders for t in dl.after_batch):
        return
    dls.add_tfms([Normalize.from_stats(*stats)], "after_batch")


def default_formats(device: torch.device, x: Any, unet: bool = False) -> tuple[bool, bool]:
    """``(channels_last, bf16)``: the memory format and precision a CNN learner trains with by default on
    ``device``, for inputs like ``x`` (a batch, or None when unknown).

    * CUDA: channels-last (tensor cores read it), full precision (PyTorch already runs fp32 convolutions on
      TF32 tensor cores there); ``learn.to_bf16()`` / ``to_fp16()`` for mixed precision.
    * CPU with AMX units and inputs of at least 96 px on the shorter side: channels-last and bf16 autocast,
      the CPU's counterpart of TF32 (weights, optimizer and loss stay fp32). Measured per training step with
      one thread: resnet34 at 224 px 0.26x the fp32 time, at 112 px 0.40x; resnet18 at 96 px 0.72x; a U-Net
      at 96x128 0.28x. Below 96 px it is slower (28 px: 1.4x), so small images stay in fp32.
    * CPU with AVX-512 BF16 but no AMX (AMD EPYC from Zen 4) and inputs of at least 96 px, as with AMX: bf16
      autocast, channels-last for classifiers (U-Nets stay channels-first). Measured per batch (training and a
      validation batch, two threads, Zen 4): resnet18 at 96 px 0.56x fp32 (0.63x channels-first), at 128 px
      0.50x; resnet34 at 224 px 0.50x; a resnet18 U-Net at 96x128 0.66x per epoch, the same either memory format.
      Smaller images gain too (28 px 0.85x, 64 px 0.59x), but on MNIST at 28 px bf16 training ended with 9% and
      49% error where fp32 ended with 2% and 18% (two seeds), so they stay in fp32.
    * Other CPUs, and smaller images: fp32; channels-last for classifiers where oneDNN's convolutions gain from
      it (`channels_last_pays`: from 160 px on AVX2, at every size with AVX-512 BF16 and no AMX). U-Nets stay
      channels-first: a resnet18 U-Net's training step took about the same time either way at 96x128 and 1.4x
      longer channels-last at 192x256 (AVX2, 2 threads), and their full-resolution convolutions can then take
      NNPACK where it is timed faster (`lamina.models.large_conv`, which reads channels-first maps).
    * Under bf16 autocast, validation, ``get_preds`` and ``predict`` run in bf16 too, so their numbers differ from
      an fp32 run of the same weights by bf16 rounding; ``learn.to_fp32()`` before them gives fp32's.

    ``learn.to_fp32()`` and ``learn.to_contiguous()`` undo either choice.
    """
    if device.type == "cuda":
        return True, False
    if device.type != "cpu" or not isinstance(x, torch.Tensor) or x.ndim != 4:
        return False, False
    side = min(x.shape[-2:])
    bf16 = side >= 96 and cpu_has_bf16_matmul()  # AMX, or AVX-512 BF16
    if unet:  # channels-last only with AMX and bf16 (AVX-512 BF16 and fp32 U-Nets gained nothing from it)
        return bf16 and cpu_has_amx(), bf16
    return channels_last_pays(device, side, bf16), bf16


def _finish(learn: Learner, pretrained: bool, x: Any = None, unet: bool = False) -> Learner:
    """Freeze a pretrained body; the default memory format and precision (`default_formats`)."""
    if pretrained:
        learn.freeze()
    channels_last, bf16 = default_formats(learn.dls.device, x, unet)
    if channels_last:
        learn.add_cb(ChannelsLast())
    if bf16:
        learn.add_cb(MixedPrecision("bf16"))
    return learn


def vision_learner(dls: Any, arch: Any, normalize: bool = True, n_out: int | None = None, pretrained: bool = True,
                   weights: Any = None, loss_func: Callable | None = None, opt_func: Callable = Adam,
                   lr: float = 1e-3, splitter: Callable | None = None, cbs: Any = None, metrics: Any = None,
                   path: Any = None, model_dir: str = "models", wd: float | None = None, wd_bn_bias: bool = False,
                   train_bn: bool = True, moms: tuple = (0.95, 0.85, 0.95), cut: int | Callable | None = None,
                   init: Callable | None = nn.init.kaiming_normal_, custom_head: nn.Module | None = None,
                   concat_pool: bool = True, pool: bool = True, lin_ftrs: Sequence[int] | None = None,
                   ps: float | Sequence[float] = 0.5, first_bn: bool = True, bn_final: bool = False,
                   lin_first: bool = False, y_range: tuple | None = None, n_in: int = 3, **kwargs: Any) -> Learner:
    """A `Learner` for images: a (pretrained) body of ``arch`` and a new head for ``dls``.

    Args:
        dls: the image `DataLoaders` (``dls.n_out`` and ``dls.loss_func`` are used when not given).
        arch: ``resnet34`` and the other registry entries, a torchvision builder, a timm name, or a callable.
        normalize: add ``Normalize`` with the pretrained weights' statistics to ``dls`` (once).
        n_out: outputs (default ``dls.n_out``).
        pretrained, weights, cut, init, custom_head, n_in: see `build_vision_model`.
        concat_pool, pool, lin_ftrs, ps, first_bn, bn_final, lin_first, y_range: the head's options (see
            `create_head`), forwarded together as one `HeadConfig`.
        loss_func, opt_func, lr, splitter, cbs, metrics, path, model_dir, wd, wd_bn_bias, train_bn, moms:
            see `Learner`; ``splitter`` defaults to the architecture's split (3 groups for a resnet).
        **kwargs: arguments of the architecture's builder (e.g. timm's ``drop_path_rate``).

    Returns:
        The Learner, frozen to its head when ``pretrained``; channels-last and bf16 autocast where they are
        faster (`default_formats`: CUDA; CPUs with AMX or AVX-512 BF16 for images of 96 px and more).
        ``learn.to_fp32()`` and ``learn.to_contiguous()`` undo that.

    Example:
        >>> learn = vision_learner(dls, resnet34, metrics=error_rate); learn.fine_tune(1)
    """
    n_out = _n_out(dls, n_out, "vision_learner")
    x = _first_input(dls)
    _check_channels(x, n_in, "vision_learner")
    arch = VisionArch.of(arch)
    head = HeadConfig(concat_pool, pool, lin_ftrs, ps, first_bn, bn_final, lin_first, y_range)
    model, stats = build_vision_model(arch, n_out, head, pretrained=pretrained, weights=weights, cut=cut, n_in=n_in,
                                      init=init, custom_head=custom_head, **kwargs)
    if normalize and pretrained:
        _add_normalize(dls, stats, n_in)
    learn = Learner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=splitter or arch.split,
                    cbs=cbs, metrics=metrics, path=path, model_dir=model_dir, wd=wd, wd_bn_bias=wd_bn_bias,
                    train_bn=train_bn, moms=moms)
    config_kwargs = dict(n_out=n_out, n_in=n_in, cut=cut, **head.as_kwargs(), **kwargs)
    if custom_head is not None:  # a module is not JSON: the export will ask for a model_config
        config_kwargs["custom_head"] = custom_head
    learn.model_config = arch.export_config("create_vision_model", config_kwargs)
    return _finish(learn, pretrained, x)


def cnn_learner(*args: Any, **kwargs: Any) -> Learner:
    """The old name of `vision_learner` (renamed in fastai 2.7): warns, then forwards every argument."""
    warnings.warn("cnn_learner has been renamed to vision_learner; please update your code", DeprecationWarning,
                  stacklevel=2)
    return vision_learner(*args, **kwargs)


def unet_learner(dls: Any, arch: Any, normalize: bool = True, n_out: int | None = None, pretrained: bool = True,
                 weights: Any = None, config: dict | None = None, loss_func: Callable | None = None,
                 opt_func: Callable = Adam, lr: float = 1e-3, splitter: Callable | None = None, cbs: Any = None,
                 metrics: Any = None, path: Any = None, model_dir: str = "models", wd: float | None = None,
                 wd_bn_bias: bool = False, train_bn: bool = True, moms: tuple = (0.95, 0.85, 0.95),
                 **kwargs: Any) -> Learner:
    """A `Learner` with a `DynamicUnet` on a (pretrained) body of ``arch``, for segmentation.

    ``n_out`` defaults to ``dls.n_out`` (the number of codes); the decoder is sized for the image size of
    ``dls.one_batch()``; the loss comes from the data (``CrossEntropyLossFlat(axis=1)`` for masks).

    Args:
        dls, arch, normalize, n_out, pretrained, weights: as in `vision_learner`.
        config: the old way to pass `DynamicUnet` arguments (merged into ``kwargs``, with a warning).
        loss_func, opt_func, lr, splitter, cbs, metrics, path, model_dir, wd, wd_bn_bias, train_bn, moms:
            see `Learner`.
        **kwargs: ``cut``, ``n_in`` and the arguments of `DynamicUnet` (``blur``, ``self_attention``,
            ``y_range``, ``last_cross``, ``bottle``, ``act_cls``, ``norm_type`` ...).

    Returns:
        The Learner, its encoder frozen when ``pretrained``; memory format and precision as in `vision_learner`
        (`default_formats`).

    Example:
        >>> learn = unet_learner(dls, resnet34); learn.fine_tune(8)
    """
    if config:
        warnings.warn("unet_learner's `config` is deprecated: pass its entries as keyword arguments",
                      DeprecationWarning, stacklevel=2)
        kwargs = {**config, **kwargs}
    n_out = _n_out(dls, n_out, "unet_learner")
    arch = VisionArch.of(arch)
    xb = as_members(dls.one_batch())[0]
    n_in = kwargs.get("n_in", 3)
    _check_channels(xb, n_in, "unet_learner")
    img_size = tuple(int(s) for s in xb.shape[-2:])
    model = create_unet_model(arch, n_out, img_size, pretrained=pretrained, weights=weights, **kwargs)
    if normalize and pretrained:
        _add_normalize(dls, arch.stats, n_in)
    learn = Learner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=splitter or arch.split,
                    cbs=cbs, metrics=metrics, path=path, model_dir=model_dir, wd=wd, wd_bn_bias=wd_bn_bias,
                    train_bn=train_bn, moms=moms)
    learn.model_config = arch.export_config("create_unet_model", dict(n_out=n_out, img_size=list(img_size), **kwargs))
    return _finish(learn, pretrained, xb, unet=True)
