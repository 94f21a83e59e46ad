"""mixed_lstm: the CPU bf16 LSTM layer gives nn.LSTM's outputs and gradients within bf16 rounding."""

import pytest
import torch
from torch import nn

from lamina.models.awd_lstm import WeightDropout
from lamina.models.mixed_lstm import can_run_mixed, mixed_lstm


def _run(lstm, x, state, mixed, weights=None):
    x = x.clone().requires_grad_()
    h0, c0 = (t.clone().requires_grad_() for t in state)
    lstm.zero_grad()
    if mixed:
        out, (h, c) = mixed_lstm(x, (h0, c0), weights or dict(lstm.named_parameters()))
    else:
        out, (h, c) = lstm(x, (h0, c0))
    # every output gets a gradient: the sequence, the last hidden state and the last cell state
    (out.pow(2).sum() + (h * 3).sum() + c.pow(2).sum()).backward()
    grads = {n: p.grad.clone() for n, p in lstm.named_parameters()}
    return (out, h, c), grads | {"x": x.grad, "h0": h0.grad, "c0": c0.grad}


@pytest.mark.parametrize("hidden", [24, 1024])  # 1024: a size where oneDNN's own bf16 backward is off
def test_mixed_lstm_matches_fp32(hidden):
    torch.manual_seed(0)
    lstm = nn.LSTM(12, hidden, batch_first=True)
    x = torch.randn(3, 7, 12)
    state = (torch.randn(1, 3, hidden) * 0.5, torch.randn(1, 3, hidden) * 0.5)
    ref_out, ref = _run(lstm, x, state, mixed=False)
    out, got = _run(lstm, x, state, mixed=True)
    for a, b in zip(out, ref_out):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert float((a - b).detach().norm() / b.detach().norm()) < 0.02
    for name, g in ref.items():
        err = float((got[name] - g).norm() / g.norm())
        assert err < 0.02, f"{name}: {err:.1%} off fp32"


def test_mixed_lstm_trains_through_weight_dropout():
    torch.manual_seed(0)
    wd = WeightDropout(nn.LSTM(6, 10, batch_first=True), 0.5)
    x, state = torch.randn(2, 4, 6), (torch.zeros(1, 2, 10), torch.zeros(1, 2, 10))
    weights = wd.weights()
    assert weights["weight_hh_l0"] is not wd.module.weight_hh_l0  # dropped while training
    assert weights["weight_ih_l0"] is wd.module.weight_ih_l0
    out, _ = mixed_lstm(x, state, weights)
    out.sum().backward()
    assert wd.module.weight_hh_l0.grad.abs().sum() > 0
    assert (wd.module.weight_hh_l0.grad == 0).any()  # the dropped weights get none
    assert wd.eval().weights()["weight_hh_l0"] is wd.module.weight_hh_l0


def test_can_run_mixed_only_for_plain_one_layer_lstms():
    assert can_run_mixed(nn.LSTM(4, 5, batch_first=True))
    assert not can_run_mixed(nn.LSTM(4, 5, batch_first=True, bidirectional=True))
    assert not can_run_mixed(nn.LSTM(4, 5, num_layers=2, batch_first=True))
    assert not can_run_mixed(nn.LSTM(4, 5))
    assert not can_run_mixed(nn.GRU(4, 5, batch_first=True))
