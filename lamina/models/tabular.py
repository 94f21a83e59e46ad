"""The tabular model: one embedding per categorical column, batch-normed continuous inputs, an MLP.

Example:
    >>> model = TabularModel([(10, 6), (5, 4)], n_cont=3, out_sz=2, layers=[200, 100])
    >>> model(torch.zeros(8, 2, dtype=torch.long), torch.randn(8, 3)).shape
    torch.Size([8, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..registry import register
from .activations import make_activation
from .layers import Embedding, LinBnDrop, SigmoidRange

__all__ = ["TabularModel", "tabular_config"]

# The embeddings are looked up in one step (see `TabularModel._embed`) while their combined block-diagonal
# table has at most this many entries; beyond it, building that table each batch would cost more than it saves.
FUSED_EMBED_LIMIT = 2 ** 14


@register("model")
class TabularModel(nn.Module):
    """Embeddings for categorical columns and batch norm for continuous ones, then linear blocks.

    Each hidden block is ``Linear → act → BatchNorm1d → Dropout`` (``lin_first=True``); the last layer is a
    plain ``Linear`` (with batch norm only if ``bn_final``), optionally squashed into ``y_range``.

    Args:
        emb_szs: ``(n_categories, width)`` per categorical column, in the column order of ``x_cat``.
        n_cont: number of continuous columns.
        out_sz: number of outputs (classes, or regression targets).
        layers: hidden layer sizes.
        ps: dropout per hidden layer (a number applies to all; default 0).
        embed_p: dropout on the concatenated embeddings.
        y_range: ``(low, high)`` of the outputs (a scaled sigmoid), or None.
        use_bn: batch norm in the hidden blocks.
        bn_final: batch norm on the output layer.
        bn_cont: batch norm on the continuous inputs.
        act_cls: the activation: a module, or a name (``'ReLU'``) or description (`activation_config`) from
            `lamina.models.activations.ACTIVATIONS`; one instance is shared by the hidden blocks.
        lin_first: linear layer before norm and dropout in each block.

    Attributes:
        fuse_embeds: look every embedding up in one step (the default while the tables are small); the result
            is exactly the per-table lookup. Set it False to call each ``embeds[i]`` module (e.g. to hook them).

    Raises:
        ValueError: when ``ps`` has another length than ``layers``, ``out_sz`` < 1, or there is no input.
    """

    def __init__(self, emb_szs: Sequence[Sequence[int]], n_cont: int, out_sz: int, layers: Sequence[int],
                 ps: float | Sequence[float] | None = None, embed_p: float = 0.0,
                 y_range: Sequence[float] | None = None, use_bn: bool = True, bn_final: bool = False,
                 bn_cont: bool = True, act_cls: nn.Module | str | dict = "ReLU", lin_first: bool = True):
        super().__init__()
        layers = list(layers)
        ps = _dropouts(ps, len(layers))
        if not isinstance(out_sz, int) or out_sz < 1:
            raise ValueError(f"`out_sz` must be a positive integer; received: out_sz={out_sz!r}")
        if not emb_szs and not n_cont:
            raise ValueError("TabularModel needs at least one input: received no `emb_szs` and n_cont=0")
        self.embeds = nn.ModuleList([Embedding(int(ni), int(nf)) for ni, nf in emb_szs])
        n_cats = [int(ni) for ni, _ in emb_szs]
        # first row of each column's table in the combined table (a buffer, so it follows the model's device)
        self.register_buffer("emb_offsets", torch.tensor([0, *n_cats[:-1]], dtype=torch.long).cumsum(0),
                             persistent=False)
        # each column's valid codes, [first, last], to check them before the fused lookup
        self.register_buffer("emb_first", torch.zeros(len(n_cats), dtype=torch.long), persistent=False)
        self.register_buffer("emb_last", torch.tensor(n_cats, dtype=torch.long) - 1, persistent=False)
        self.fuse_embeds = sum(n_cats) * sum(int(nf) for _, nf in emb_szs) <= FUSED_EMBED_LIMIT
        self.emb_drop = nn.Dropout(embed_p)
        self.bn_cont = nn.BatchNorm1d(n_cont) if bn_cont and n_cont else None
        self.n_emb, self.n_cont = sum(int(nf) for _, nf in emb_szs), n_cont
        sizes = [self.n_emb + n_cont, *layers, out_sz]
        act = make_activation(act_cls)
        blocks: list[nn.Module] = [
            LinBnDrop(sizes[i], sizes[i + 1], bn=use_bn, p=p, act=act, lin_first=lin_first)
            for i, p in enumerate(ps)]
        blocks.append(LinBnDrop(sizes[-2], sizes[-1], bn=bn_final, lin_first=lin_first))
        self.y_range = tuple(float(v) for v in y_range) if y_range is not None else None
        if self.y_range is not None:
            blocks.append(SigmoidRange(*self.y_range))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs of shape ``(bs, out_sz)``.

        Args:
            x_cat: category codes, int64 of shape ``(bs, n_categorical)`` (any width when there are none).
            x_cont: continuous values, float of shape ``(bs, n_cont)``; unused (may be None) when ``n_cont=0``.
        """
        parts = []
        if self.embeds:
            emb = self._embed(x_cat)
            parts.append(emb if self._drop_is_identity() else self.emb_drop(emb))
        if self.n_cont:
            parts.append(self.bn_cont(x_cont) if self.bn_cont is not None else x_cont)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        return self.layers(x)

    def _embed(self, x_cat: torch.Tensor) -> torch.Tensor:
        """The embeddings of every column side by side, ``(bs, n_emb)``.

        Fused, it is one product ``multi_hot @ block_diag(tables)``: each row of the multi-hot matrix holds one
        1 per column (at the code's row of that column's table), and the tables sit on the diagonal, zero
        elsewhere, so each output is exactly one table entry (1·w plus zeros). A handful of operations forward
        and backward instead of one lookup, one gradient and one copy per column.
        """
        if not self._can_fuse() or not _codes_in_range(x_cat, self.emb_first, self.emb_last):
            # table by table (out-of-range codes then raise the embedding's own error)
            return torch.cat([e(codes) for codes, e in zip(x_cat.unbind(1), self.embeds)], 1)
        table = torch.block_diag(*[e.weight for e in self.embeds])
        multi_hot = torch.zeros(len(x_cat), len(table), dtype=table.dtype, device=table.device)
        return multi_hot.scatter_(1, x_cat + self.emb_offsets, 1.0) @ table

    def _drop_is_identity(self) -> bool:
        """The embedding dropout would return its input (p=0 or eval mode): skip the module call, which costs
        about as much as one of this small model's layers."""
        drop = self.emb_drop
        return (type(drop) is nn.Dropout and not (drop._forward_hooks or drop._forward_pre_hooks)
                and (drop.p == 0 or not self.training))

    def _can_fuse(self) -> bool:
        """Fuse only plain `Embedding` modules without hooks (anything else is called as it is)."""
        return self.fuse_embeds and all(type(e) is Embedding and not (e._forward_hooks or e._forward_pre_hooks)
                                        for e in self.embeds)


def _codes_in_range(x_cat: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> bool:
    """Every code is a row of its own column's table (the fused lookup would read a neighbour's row otherwise)."""
    return x_cat.dtype == torch.long and torch.equal(x_cat.clamp(first, last), x_cat)


def _dropouts(ps: float | Sequence[float] | None, n: int) -> list[float]:
    if ps is None:
        return [0.0] * n
    if isinstance(ps, (int, float)):
        return [float(ps)] * n
    ps = [float(p) for p in ps]
    if len(ps) != n:
        raise ValueError(f"`ps` needs one dropout per hidden layer ({n}); received {len(ps)}: ps={ps}")
    return ps


def tabular_config(ps: float | Sequence[float] | None = None, embed_p: float = 0.0,
                   y_range: Sequence[float] | None = None, use_bn: bool = True, bn_final: bool = False,
                   bn_cont: bool = True, act_cls: nn.Module | str | dict = "ReLU", lin_first: bool = True
                   ) -> dict[str, Any]:
    """Keyword arguments for `TabularModel` (pass as ``tabular_learner(dls, config=tabular_config(...))``).

    Example:
        >>> tabular_learner(dls, config=tabular_config(ps=[0.1, 0.1], embed_p=0.05))
    """
    return dict(ps=ps, embed_p=embed_p, y_range=y_range, use_bn=use_bn, bn_final=bn_final, bn_cont=bn_cont,
                act_cls=act_cls, lin_first=lin_first)
