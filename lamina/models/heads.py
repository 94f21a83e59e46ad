"""Classification heads that go on top of a CNN body, and `HeadConfig`: a head's options as one value.

Example:
    >>> head = create_head(512, 10)          # a resnet34 body gives 512 features
    >>> head(torch.randn(2, 512, 7, 7)).shape
    torch.Size([2, 10])
    >>> HeadConfig(lin_ftrs=[256], ps=0.2).create(512, 10)   # the same, with the options carried as one value
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .layers import AdaptiveConcatPool2d, Flatten, LinBnDrop, SigmoidRange, _init_norm

__all__ = ["create_head", "head_dropouts", "HeadConfig"]


@dataclass(frozen=True)
class HeadConfig:
    """The options of `create_head` (everything but the sizes ``nf`` and ``n_out``), passed around as one value.

    The vision builders take the options in fastai's flat spelling (``lin_ftrs=[256], ps=0.2``), as exports
    also hold them; `HeadConfig.from_kwargs` gathers them once and the config travels down from there.

    Attributes:
        concat_pool, pool, lin_ftrs, ps, first_bn, bn_final, lin_first, y_range: see `create_head`.
    """

    concat_pool: bool = True
    pool: bool = True
    lin_ftrs: Sequence[int] | None = None
    ps: float | Sequence[float] = 0.5
    first_bn: bool = True
    bn_final: bool = False
    lin_first: bool = False
    y_range: tuple[float, float] | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], base: HeadConfig | None = None) -> HeadConfig:
        """``base`` (default: the defaults) with the head options found in ``kwargs``, which loses them.

        Args:
            kwargs: keyword arguments mixing head options and others (e.g. the architecture builder's);
                the head options are removed from it, the others stay.
            base: the options that ``kwargs`` does not set.
        """
        found = {field.name: kwargs.pop(field.name) for field in dataclasses.fields(cls) if field.name in kwargs}
        return dataclasses.replace(base or cls(), **found)

    def as_kwargs(self) -> dict[str, Any]:
        """The options by name, in fastai's flat spelling (what `create_head` and exports take)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def create(self, nf: int, n_out: int) -> nn.Sequential:
        """`create_head` with these options, for ``nf`` body features and ``n_out`` outputs."""
        return create_head(nf, n_out, **self.as_kwargs())


def head_dropouts(ps: float | Sequence[float], n_linear: int) -> list[float]:
    """One dropout probability per linear layer of a head.

    A single ``ps`` gives ``ps/2`` to every layer but the last, which gets ``ps`` (the default head's
    ``[0.25, 0.5]``): lighter dropout where features are generic, more just before the output.

    Raises:
        ValueError: when a list of ``ps`` does not have one value per linear layer.
    """
    if isinstance(ps, (int, float)):
        return [ps / 2] * (n_linear - 1) + [ps]
    ps = list(ps)
    if len(ps) == 1:
        return [ps[0] / 2] * (n_linear - 1) + ps
    if len(ps) != n_linear:
        raise ValueError(f"`ps` needs one dropout per linear layer of the head ({n_linear}); "
                         f"received {len(ps)}: ps={ps}")
    return ps


def create_head(nf: int, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float | Sequence[float] = 0.5,
                pool: bool = True, concat_pool: bool = True, first_bn: bool = True, bn_final: bool = False,
                lin_first: bool = False, y_range: tuple[float, float] | None = None) -> nn.Sequential:
    """A head for ``nf`` body features and ``n_out`` outputs: pool, flatten, then linear blocks.

    Args:
        nf: channels of the body's output.
        n_out: number of outputs.
        lin_ftrs: sizes of the hidden linear layers (default ``[512]``).
        ps: dropout probability(ies); see `head_dropouts`.
        pool: pool the feature map (False when the body already returns vectors).
        concat_pool: pool with max and average side by side (`AdaptiveConcatPool2d`, ``2 * nf`` features).
        first_bn: batch norm in the first block.
        bn_final: a plain batch norm (momentum 0.01) after the last linear layer.
        lin_first: blocks are ``Linear → act → BatchNorm → Dropout`` instead of
            ``BatchNorm → Dropout → Linear → act``.
        y_range: squash outputs into ``(low, high)`` with `SigmoidRange`.

    Returns:
        A flat ``nn.Sequential``; with the defaults: ``AdaptiveConcatPool2d, Flatten, BatchNorm1d(2nf),
        Dropout(0.25), Linear(2nf, 512, bias=False), ReLU, BatchNorm1d(512), Dropout(0.5),
        Linear(512, n_out, bias=False)``; the blocks' batch norms start with weight 1 and bias 1e-3.
    """
    if not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"`n_out` must be a positive integer; received: n_out={n_out!r}")
    if pool and concat_pool:
        nf *= 2
    sizes = [nf, *([512] if lin_ftrs is None else lin_ftrs), n_out]
    n_linear = len(sizes) - 1
    dropouts = head_dropouts(ps, n_linear)
    layers: list[nn.Module] = []
    if pool:
        layers += [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), Flatten()]
    for i, (n_in_, n_out_) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == n_linear - 1
        block = LinBnDrop(n_in_, n_out_, bn=first_bn if i == 0 else True, p=dropouts[i],
                          act=None if last else nn.ReLU(inplace=True), lin_first=lin_first)
        for m in block:
            if isinstance(m, nn.BatchNorm1d):
                _init_norm(m, zero=False)  # weight 1, bias 1e-3, as fastai's head starts
        layers.extend(block)  # flat, so ``head[-1]`` is the last linear layer
    if bn_final:
        layers.append(nn.BatchNorm1d(sizes[-1], momentum=0.01))
    if y_range is not None:
        layers.append(SigmoidRange(*y_range))
    return nn.Sequential(*layers)
