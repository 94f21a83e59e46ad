"""Mixed precision (autocast + gradient scaling) and channels-last memory format."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .core import Callback, CancelStepException

__all__ = ["MixedPrecision", "ChannelsLast", "ChannelsLastWhereFaster", "PrecisionMixin", "cpu_has_amx",
           "cpu_has_bf16_matmul", "channels_last_pays", "to_memory_format"]


class MixedPrecision(Callback):
    """Run the forward pass and the loss under ``torch.autocast``; scale fp16 gradients.

    Args:
        amp_mode: ``'bf16'`` (no scaler needed) or ``'fp16'`` (with a ``GradScaler``).
        train_only: autocast the training batches only; validation, ``get_preds`` and ``predict`` run in full
            precision, so metrics and predictions equal those of the exported model in a plain process.
        **scaler_kwargs: arguments of ``torch.amp.GradScaler`` (fp16 only).

    A step with inf/NaN fp16 gradients is skipped (the scaler lowers its scale and training goes on).
    """

    order = 10

    def __init__(self, amp_mode: str = "fp16", train_only: bool = False, **scaler_kwargs: Any):
        super().__init__()
        if amp_mode not in ("fp16", "bf16"):
            raise ValueError(f"`amp_mode` must be 'fp16' or 'bf16'; received: amp_mode={amp_mode!r}")
        self.amp_mode, self.train_only, self.scaler_kwargs = amp_mode, train_only, scaler_kwargs
        self.autocast: Any = None
        self.scaler = None

    def before_fit(self) -> None:
        device = self.learn.dls.device
        self.device_type = device.type
        self.dtype = torch.float16 if self.amp_mode == "fp16" else torch.bfloat16
        if self.amp_mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError("to_bf16(): this GPU does not support bfloat16; use learn.to_fp16() instead")
        if self.amp_mode == "fp16" and device.type == "cpu":
            warnings.warn("fp16 autocast on the CPU is slow and unscaled; lamina uses bf16 there instead")
            self.dtype = torch.bfloat16
        use_scaler = self.dtype == torch.float16 and device.type == "cuda"
        if self.scaler is None or not use_scaler:
            self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler, **self.scaler_kwargs)

    def before_batch(self) -> None:
        if getattr(self, "device_type", None) is None:  # get_preds outside a fit
            self.before_fit()
        if self.train_only and not self.learn.training:
            return
        self.autocast = torch.autocast(self.device_type, dtype=self.dtype)
        self.autocast.__enter__()

    def after_pred(self) -> None:
        pred = self.learn.pred
        if isinstance(pred, torch.Tensor) and pred.is_floating_point():
            self.learn.pred = pred.float()

    def after_loss(self) -> None:
        if self.autocast is not None:
            self.autocast.__exit__(None, None, None)
            self.autocast = None

    def after_cancel_batch(self) -> None:
        if getattr(self, "autocast", None) is not None:
            self.autocast.__exit__(None, None, None)
            self.autocast = None

    cleanup = after_cancel_batch  # a fit that fails mid-batch must not leave autocast on for the thread

    def before_backward(self) -> None:
        if self.scaler.is_enabled():
            self.learn.loss_grad = self.scaler.scale(self.learn.loss_grad)

    def unscale_grads(self) -> None:
        """Divide this step's gradients by the loss scale, so they hold their true values (fp16 with a grad
        scaler; otherwise they already do and nothing happens). A callback that clips or reads gradients in
        ``before_step`` calls it first (as `GradientClip` does); the step then does not unscale again."""
        if self.scaler is not None and self.scaler.is_enabled():
            self.learn.opt.unscale_grads(self.scaler)

    def before_step(self) -> None:
        if not self.scaler.is_enabled():
            return
        # the scaler steps (or skips a step with inf/NaN gradients, lowering its scale); the plain step is skipped
        self.learn.opt.step(scaler=self.scaler)
        self.scaler.update()
        raise CancelStepException()

    def state_dict(self) -> dict:
        """The grad scaler's state (``{}`` without an enabled scaler: bf16, or fp16 on the CPU)."""
        if self.scaler is None or not self.scaler.is_enabled():
            return {}
        return {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Take back the loss scale of a resumed fit (called after ``before_fit`` has made the scaler)."""
        if state.get("scaler") and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])


class ChannelsLast(Callback):
    """Put the model (and so its convolutions) in channels-last memory format: faster on tensor cores."""

    order = -1

    def before_fit(self) -> None:
        to_memory_format(self.learn, torch.channels_last)


class ChannelsLastWhereFaster(ChannelsLast):
    """`ChannelsLast` where a classifier CNN trains faster that way (`channels_last_pays`, for the device, the
    image size and whether a `MixedPrecision` callback autocasts), decided once, at the first training batch;
    elsewhere the model keeps its format. The precision is never changed.

    The `Learner` adds it for models that declare ``channels_last_where_faster = True`` (lamina's `XResNet`):
    architectures known to run in either memory format (a model that flattens a feature map with ``view``
    would fail channels-last, so a model of your own is never converted unasked). The choice stays for later
    fits (``chosen``; a later fit at another image size keeps it). A data-parallel fit keeps the model's format:
    its wrapper was built on the parameters as they were. ``learn.to_contiguous()`` removes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.chosen: bool | None = None  # undecided until a training batch is seen

    def before_fit(self) -> None:
        if self.chosen:
            super().before_fit()

    def before_batch(self) -> None:
        if self.chosen is not None or not self.training:
            return
        x = self.learn.xb[0] if self.learn.xb else None
        images = isinstance(x, torch.Tensor) and x.ndim == 4
        wrapped = getattr(self.learn, "wrapped_model", None) is not None
        autocast = getattr(self.learn, "mixed_precision", None) is not None
        self.chosen = images and not wrapped and channels_last_pays(x.device, min(x.shape[-2:]), autocast)
        if self.chosen:
            super().before_fit()


def to_memory_format(learn: Any, memory_format: torch.memory_format) -> None:
    """Put ``learn.model`` in ``memory_format``, and the optimizer's state in its parameters' new layout (torch's
    fused kernels pair elements by their place in memory)."""
    learn.model.to(memory_format=memory_format)
    match = getattr(learn.opt, "match_layouts", None)
    if match is not None:
        match()


class PrecisionMixin:
    """``to_fp16`` / ``to_bf16`` / ``to_fp32`` / ``to_channelslast`` / ``to_contiguous`` for the Learner."""

    def to_fp16(self, **scaler_kwargs: Any) -> Any:
        """Train with fp16 autocast and gradient scaling (bf16 on the CPU)."""
        self.remove_cb(MixedPrecision)
        return self.add_cb(MixedPrecision("fp16", **scaler_kwargs))

    def to_bf16(self) -> Any:
        """Train with bf16 autocast (no scaling needed)."""
        self.remove_cb(MixedPrecision)
        return self.add_cb(MixedPrecision("bf16"))

    def to_fp32(self) -> Any:
        """Back to full precision."""
        return self.remove_cb(MixedPrecision)

    def to_channelslast(self, use_amp: bool = True, amp_mode: str = "fp16", **scaler_kwargs: Any) -> Any:
        """Channels-last memory format, with mixed precision by default."""
        self.add_cb(ChannelsLast())
        return self.add_cb(MixedPrecision(amp_mode, **scaler_kwargs)) if use_amp else self

    def to_contiguous(self, to_fp32: bool = False) -> Any:
        """Back to the contiguous memory format (and full precision if ``to_fp32``)."""
        self.remove_cb(ChannelsLast)
        to_memory_format(self, torch.contiguous_format)
        return self.to_fp32() if to_fp32 else self


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX matrix units (Intel Xeon from Sapphire Rapids on), which run bf16 convolutions
    several times faster than fp32 ones."""
    return _cpu_probe("_is_amx_tile_supported")


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: AMX units, or AVX-512 BF16 instructions (Intel Xeon
    from Cooper Lake, AMD EPYC from Zen 4), where oneDNN's bf16 matrix products beat fp32 ones."""
    return cpu_has_amx() or _cpu_probe("_is_avx512_bf16_supported")


def channels_last_pays(device: torch.device, side: int, bf16: bool = False) -> bool:
    """Whether a classifier CNN trains faster channels-last than channels-first on ``device``, for images whose
    shorter side is ``side`` pixels, in fp32 or (``bf16``) under bf16 autocast.

    * CUDA: yes (tensor cores read channels-last; fp32 convolutions run on TF32 there).
    * CPU, bf16 autocast from 96 px where the CPU multiplies bf16 in hardware (`cpu_has_bf16_matmul`): yes, as
      `lamina.vision.learner.default_formats` measured.
    * CPU, fp32: on AVX2 CPUs from 160 px (resnet18 at 224 px 0.80-0.85x per training step; 1.1-1.3x at
      28-64 px); on CPUs with AVX-512 BF16 and no AMX (AMD EPYC from Zen 4) at every size measured (two
      threads: MNIST tiny's resnet18 `fit_one_cycle(3)` at 28 px 0.90x; xresnet18 at 64 px 0.92x per batch,
      0.91x per fit on an Imagenette subset; a resnet18 training step at batch 32, 128 px 0.83x, 224 px 0.89x).
      CPUs with AMX keep the AVX2 rule in fp32 (not measured there below 160 px).
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    if bf16 and side >= 96 and cpu_has_bf16_matmul():
        return True
    return side >= 160 or (cpu_has_bf16_matmul() and not cpu_has_amx())


def _cpu_probe(name: str) -> bool:
    """``torch.cpu.<name>()`` where torch has it (it is private) and oneDNN is built in; False otherwise."""
    probe = getattr(torch.cpu, name, None)
    if probe is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(probe())
    except RuntimeError:
        return False
