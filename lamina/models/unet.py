"""A U-Net built around any CNN body: the decoder is sized by running the encoder once on a dummy image.

The skip connections are taken from the encoder's stages where the spatial size changes (the last stage
at each resolution). Instead of forward hooks, `DynamicUnet.forward` runs the encoder stage by stage and
keeps those outputs in a local list: nothing outlives a forward call, the model deep-copies and
pickles like any module, and ``torch.compile`` sees plain code.

Example:
    >>> body = create_body(resnet34(weights=None), pretrained=False)
    >>> unet = DynamicUnet(body, n_out=5, img_size=(128, 128))
    >>> unet(torch.randn(2, 3, 128, 128)).shape
    torch.Size([2, 5, 128, 128])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .bodies import eval_mode, in_channels
from .layers import (BatchNorm, ConvLayer, MergeLayer, NormType, PixelShuffle_ICNR, ResBlock, ResizeToOrig,
                     SelfAttention, SigmoidRange)

__all__ = ["DynamicUnet", "UnetBlock", "encoder_stages", "model_sizes", "size_change_indices"]


def encoder_stages(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's children, seen through Sequentials with a single child (bodies like ``Sequential(features)``).

    Raises:
        TypeError: when the encoder is not an ``nn.Sequential`` (its stages cannot be run one by one).
    """
    if not isinstance(encoder, nn.Sequential):
        raise TypeError(f"DynamicUnet needs an nn.Sequential encoder whose children run one after the other; "
                        f"received {type(encoder).__name__}. Build it with create_body(model, cut=...)")
    stages = list(encoder.children())
    while len(stages) == 1 and isinstance(stages[0], nn.Sequential):
        stages = list(stages[0].children())
    return stages


def _stage_outputs(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    outputs = []
    for stage in encoder_stages(encoder):
        x = stage(x)
        outputs.append(x)
    return outputs


def model_sizes(encoder: nn.Module, size: Sequence[int] = (64, 64)) -> list[torch.Size]:
    """The output shape of each encoder stage for one image of ``size`` (eval mode, no gradients)."""
    p = next(iter(encoder.parameters()))
    x = torch.zeros(1, in_channels(encoder), *size, device=p.device, dtype=p.dtype)
    with eval_mode(encoder), torch.no_grad():
        return [o.shape for o in _stage_outputs(encoder, x)]


def size_change_indices(sizes: Sequence[torch.Size]) -> list[int]:
    """Indices of the stages that are the last at their resolution (the next stage changes the size)."""
    return [i for i in range(len(sizes) - 1) if sizes[i][-2:] != sizes[i + 1][-2:]]


class UnetBlock(nn.Module):
    """One decoder step: upsample ``up_in`` ×2, concatenate the (normalised) skip, two convs.

    Args:
        up_in_c: channels of the tensor coming up the decoder.
        x_in_c: channels of the skip connection.
        final_div: keep the channels after the concatenation (else halve them: the last block).
        blur: blur after the pixel shuffle.
        act_cls: activation class.
        self_attention: a `SelfAttention` after the second conv.
        init: initialiser of the convs.
        norm_type: norm of the convs (None by default in a U-Net).
    """

    def __init__(self, up_in_c: int, x_in_c: int, final_div: bool = True, blur: bool = False,
                 act_cls: type[nn.Module] = nn.ReLU, self_attention: bool = False,
                 init: Callable = nn.init.kaiming_normal_, norm_type: NormType | None = None):
        super().__init__()
        self.shuf = PixelShuffle_ICNR(up_in_c, up_in_c // 2, blur=blur, act_cls=act_cls, norm_type=norm_type)
        self.bn = BatchNorm(x_in_c)
        ni = up_in_c // 2 + x_in_c
        nf = ni if final_div else ni // 2
        # decoder convs start with ``init`` weights and zero biases (fastai's U-Net re-initialises them so)
        self.conv1 = ConvLayer(ni, nf, act_cls=act_cls, norm_type=norm_type, init=init, bias_std=0)
        self.conv2 = ConvLayer(nf, nf, act_cls=act_cls, norm_type=norm_type, init=init, bias_std=0,
                               xtra=SelfAttention(nf) if self_attention else None)
        self.act = act_cls()

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: the encoder rounded up, the shuffle doubled exactly
            up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
        x = self.act(torch.cat([up, self.bn(skip)], dim=1))
        return self.conv2(self.conv1(x))


def _dummy(module: nn.Module, device: torch.device, *args: torch.Tensor) -> torch.Tensor:
    """Run a freshly built module once (eval mode, no gradients) to learn its output shape."""
    module.to(device)
    with eval_mode(module), torch.no_grad():
        return module(*args)


class DynamicUnet(nn.Sequential):
    """A U-Net whose decoder mirrors the encoder's resolutions.

    Layers: ``[encoder, BatchNorm, act, middle convs, UnetBlock × n_skips, (PixelShuffle_ICNR),
    ResizeToOrig, (MergeLayer + ResBlock), ConvLayer 1×1 → n_out, (SigmoidRange)]``. ``self[0]`` is the
    encoder, so param-group splits written for ``Sequential(body, head)`` work unchanged.

    Args:
        encoder: an ``nn.Sequential`` body (see `create_body`).
        n_out: output channels (classes for segmentation).
        img_size: the (height, width) used to size the decoder; other sizes work too.
        blur: blur after each upsampling (but see ``blur_final``).
        blur_final: also blur in the last block.
        self_attention: self-attention in the third block from the end.
        y_range: squash outputs into ``(low, high)``.
        last_cross: concatenate the input image before the last convs (a residual block on top).
        bottle: halve the channels in that last residual block.
        act_cls: activation class.
        init: initialiser of the convs.
        norm_type: norm of the decoder convs (None: no norm inside the convs).
    """

    def __init__(self, encoder: nn.Module, n_out: int, img_size: Sequence[int], blur: bool = False,
                 blur_final: bool = True, self_attention: bool = False, y_range: tuple[float, float] | None = None,
                 last_cross: bool = True, bottle: bool = False, act_cls: type[nn.Module] = nn.ReLU,
                 init: Callable = nn.init.kaiming_normal_, norm_type: NormType | None = None):
        img_size = tuple(int(s) for s in img_size)
        p = next(iter(encoder.parameters()))
        device, n_in = p.device, in_channels(encoder)
        x = torch.zeros(1, n_in, *img_size, device=device, dtype=p.dtype)
        with eval_mode(encoder), torch.no_grad():
            feats = _stage_outputs(encoder, x)
        skip_idxs = size_change_indices([f.shape for f in feats])
        ni = feats[-1].shape[1]
        conv = dict(act_cls=act_cls, norm_type=norm_type, init=init)
        middle = nn.Sequential(ConvLayer(ni, ni * 2, bias_std=0, **conv), ConvLayer(ni * 2, ni, bias_std=0, **conv))
        layers: list[nn.Module] = [encoder, BatchNorm(ni), act_cls(), middle]
        x = _dummy(nn.Sequential(*layers[1:]), device, feats[-1])
        for i, idx in enumerate(reversed(skip_idxs)):
            not_last = i != len(skip_idxs) - 1
            block = UnetBlock(x.shape[1], feats[idx].shape[1], final_div=not_last,
                              blur=blur and (not_last or blur_final),
                              self_attention=self_attention and i == len(skip_idxs) - 3, **conv)
            x = _dummy(block, device, x, feats[idx])
            layers.append(block)
        layers += self._head(x, n_in, n_out, img_size, y_range, last_cross, bottle, act_cls, norm_type, init)
        super().__init__(*layers)
        self.to(device)
        self.skip_idxs, self.img_size = tuple(skip_idxs), img_size

    @staticmethod
    def _head(x: torch.Tensor, n_in: int, n_out: int, img_size: tuple, y_range: tuple | None, last_cross: bool,
              bottle: bool, act_cls: type[nn.Module], norm_type: NormType | None, init: Callable) -> list[nn.Module]:
        """The layers after the last block: back to the input size, the last cross connection, the output conv."""
        ni = x.shape[1]
        layers: list[nn.Module] = []
        if any(s < t for s, t in zip(x.shape[-2:], img_size)):
            layers.append(PixelShuffle_ICNR(ni, act_cls=act_cls, norm_type=norm_type))
        layers.append(ResizeToOrig())
        if last_cross:
            ni += n_in
            nf = ni // 2 if bottle else ni
            # like the middle convs: ``init`` weights (its last conv too) and zero biases
            layers += [MergeLayer(dense=True),
                       ResBlock(1, ni, nf, act_cls=act_cls, norm_type=norm_type, init=init, bias_std=0)]
            ni = nf
        # the output conv keeps torch's default weight init and N(0, 0.01) biases, as fastai's does: kaiming
        # (for ReLU) makes its initial logits about 2.5x larger, and the validation loss of early epochs worse
        layers.append(ConvLayer(ni, n_out, ks=1, act_cls=None, norm_type=norm_type, init=None))
        if y_range is not None:
            layers.append(SigmoidRange(*y_range))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig = x
        skips = []
        for i, stage in enumerate(encoder_stages(self[0])):
            x = stage(x)
            if i in self.skip_idxs:
                skips.append(x)
        for i, layer in enumerate(self):
            if i == 0:
                continue
            if isinstance(layer, UnetBlock):
                x = layer(x, skips.pop())
            elif isinstance(layer, (MergeLayer, ResizeToOrig)):
                x = layer(x, orig)
            else:
                x = layer(x)
        return x
