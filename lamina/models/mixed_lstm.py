"""A one-layer LSTM for CPU bf16 autocast: bf16 matrix products, fp32 state and gradients.

oneDNN's own bf16 LSTM backward is wrong for some layer sizes (among them hidden 1024 and 1152, the
AWD-LSTM's): its weight gradients come out 15-40% off the fp32 ones and its input gradient more than 100% off.
`mixed_lstm` computes the same layer with the products in bf16 (fp32 accumulation, as autocast's matmuls)
and everything else in fp32: the cell state, the gates, and the weight gradients, which are summed over all
time steps in one product each instead of step by step. Its results are within bf16 rounding of fp32's
(about 0.3%), at the speed of oneDNN's bf16 layer.

Example:
    >>> lstm = nn.LSTM(8, 16, batch_first=True)
    >>> out, (h, c) = mixed_lstm(torch.randn(2, 5, 8), (torch.zeros(1, 2, 16), torch.zeros(1, 2, 16)),
    ...                          dict(lstm.named_parameters()))
    >>> out.shape
    torch.Size([2, 5, 16])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["mixed_lstm", "can_run_mixed"]

_BF16 = torch.bfloat16


def can_run_mixed(lstm: nn.Module) -> bool:
    """Whether `mixed_lstm` computes ``lstm``: a one-layer, one-direction, batch-first ``nn.LSTM`` with biases."""
    return (isinstance(lstm, nn.LSTM) and lstm.num_layers == 1 and not lstm.bidirectional and lstm.batch_first
            and lstm.bias and lstm.proj_size == 0)


def mixed_lstm(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
               weights: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run one LSTM layer as ``nn.LSTM(batch_first=True)`` does, with bf16 products and fp32 everything else.

    Args:
        x: the input, ``(bs, seq_len, in_size)``.
        state: ``(h0, c0)``, each ``(1, bs, hidden)``.
        weights: ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` (an ``nn.LSTM``'s names).

    Returns:
        ``(output, (h, c))`` like ``nn.LSTM``, all fp32.
    """
    h0, c0 = state
    w = [weights[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    with torch.autocast("cpu", enabled=False):
        out, h, c = _MixedLSTM.apply(x.float(), h0[0].float(), c0[0].float(), *w)
    return out, (h[None], c[None])


class _MixedLSTM(torch.autograd.Function):
    """The layer's forward and backward through time, gates in PyTorch's order (input, forget, cell, output)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor,
                w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bs, seq_len, _ = x.shape
        hid = w_hh.shape[1]
        wih, whh = w_ih.to(_BF16), w_hh.to(_BF16)
        x16 = x.reshape(bs * seq_len, -1).to(_BF16)
        # the input's share of every gate at every step, in one product
        x_gates = torch.addmm((b_ih + b_hh).to(_BF16), x16, wih.t()).float().view(bs, seq_len, 4 * hid)
        acts = x.new_empty(bs, seq_len, 4 * hid)
        cells, out = x.new_empty(bs, seq_len, hid), x.new_empty(bs, seq_len, hid)
        h16s = x.new_empty(bs, seq_len, hid, dtype=_BF16)
        h, c, h16 = h0, c0, h0.to(_BF16)
        for t in range(seq_len):
            gates, act = x_gates[:, t] + h16 @ whh.t(), acts[:, t]
            torch.sigmoid(gates, out=act)
            torch.tanh(gates[:, 2 * hid:3 * hid], out=act[:, 2 * hid:3 * hid])
            i, f, g, o = act.chunk(4, 1)
            c = torch.addcmul(f * c, i, g)
            h = o * torch.tanh(c)
            cells[:, t], out[:, t] = c, h
            h16 = h.to(_BF16)
            h16s[:, t] = h16
        ctx.save_for_backward(x16, h0, c0, wih, whh, acts, cells, h16s)
        return out, h, c

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_h: torch.Tensor, d_c: torch.Tensor) -> tuple[Any, ...]:
        x16, h0, c0, wih, whh, acts, cells, h16s = ctx.saved_tensors
        bs, seq_len, hid = cells.shape
        d_gates = acts.new_empty(bs, seq_len, 4 * hid, dtype=_BF16)
        d_h, d_c = d_h.clone(), d_c.clone()  # autograd passes zeros for outputs that got no gradient
        for t in range(seq_len - 1, -1, -1):
            d_h = d_h + d_out[:, t]
            i, f, g, o = acts[:, t].chunk(4, 1)
            c_prev = cells[:, t - 1] if t else c0
            tanh_c = torch.tanh(cells[:, t])
            d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)
            d_g = torch.cat([d_c * g * i * (1 - i), d_c * c_prev * f * (1 - f), d_c * i * (1 - g * g),
                             d_h * tanh_c * o * (1 - o)], 1).to(_BF16)
            d_c = d_c * f
            d_gates[:, t] = d_g
            d_h = (d_g @ whh).float()
        # the weight gradients, each summed over all steps in one product (fp32 accumulation)
        d_gates = d_gates.view(bs * seq_len, 4 * hid)
        h_prev = torch.cat([h0.to(_BF16)[:, None], h16s[:, :-1]], 1).view(bs * seq_len, hid)
        d_bias = d_gates.float().sum(0)
        d_x = (d_gates @ wih).float().view(bs, seq_len, -1)
        return d_x, d_h, d_c, (d_gates.t() @ x16).float(), (d_gates.t() @ h_prev).float(), d_bias, d_bias
