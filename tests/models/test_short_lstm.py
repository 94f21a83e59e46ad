"""short_lstm: short CPU inference calls give nn.LSTM's results; the packed weights follow the real ones."""

import gc

import numpy as np
import pytest
import torch
from torch import nn

from lamina.models import short_lstm as short
from lamina.models.awd_lstm import AWD_LSTM
from lamina.models.short_lstm import MAX_ROWS, MAX_STEPS, can_run_short, forget, short_lstm

pytestmark = pytest.mark.skipif(not short._packing_works(), reason="this PyTorch has no oneDNN packed products")


def _state(bs, hidden, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, bs, hidden, generator=g) * 0.5, torch.randn(1, bs, hidden, generator=g) * 0.5


def _short(lstm, x, state=None):
    """`short_lstm` from packed weights: the first call with new weights goes to nn.LSTM and packs for the next."""
    short_lstm(lstm, x, state)
    out = short_lstm(lstm, x, state)
    assert short._PACKED[lstm][3] is not None
    return out


def _close(got, ref):
    out, (h, c) = got
    ref_out, (ref_h, ref_c) = ref
    for a, b in ((out, ref_out), (h, ref_h), (c, ref_c)):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_first_call_with_new_weights_runs_nn_lstm():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True).eval()
    x = torch.randn(1, 3, 4)
    with torch.no_grad():
        assert torch.equal(short_lstm(lstm, x)[0], lstm(x)[0])  # the same call: nothing packed for one use
        assert short._PACKED[lstm][3] is None
        short_lstm(lstm, x)
        assert short._PACKED[lstm][3] is not None
        lstm.weight_ih_l0.add_(1)
        assert torch.equal(short_lstm(lstm, x)[0], lstm(x)[0]) and short._PACKED[lstm][3] is None


@pytest.mark.parametrize("bs,steps", [(1, 1), (1, 7), (3, 5), (2, MAX_STEPS)])
def test_short_lstm_matches_nn_lstm(bs, steps):
    torch.manual_seed(0)
    lstm = nn.LSTM(12, 20, batch_first=True).eval()
    x, state = torch.randn(bs, steps, 12), _state(bs, 20)
    with torch.no_grad():
        assert can_run_short(lstm, x, state)
        _close(_short(lstm, x, state), lstm(x, state))
        _close(_short(lstm, x), lstm(x))  # no state: zeros, as nn.LSTM


def test_can_run_short_only_where_it_applies(monkeypatch):
    lstm = nn.LSTM(4, 6, batch_first=True).eval()
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        assert can_run_short(lstm, x)
        assert not can_run_short(lstm, torch.randn(1, MAX_STEPS + 1, 4))  # long: oneDNN's layer is faster
        assert not can_run_short(lstm, torch.randn(MAX_ROWS // 4 + 1, 4, 4))
        assert not can_run_short(lstm, x.double())
        assert not can_run_short(lstm, x, (torch.zeros(1, 2, 6, dtype=torch.float64),) * 2)
        assert not can_run_short(lstm.train(), x)
        lstm.eval()
        assert not can_run_short(nn.LSTM(4, 6, batch_first=True, bidirectional=True).eval(), x)
        assert not can_run_short(nn.LSTM(4, 6, num_layers=2, batch_first=True).eval(), x)
        assert not can_run_short(nn.LSTM(4, 6).eval(), x)  # sequence-first
        assert not can_run_short(nn.GRU(4, 6, batch_first=True).eval(), x)
        monkeypatch.setenv("LAMINA_SHORT_LSTM", "0")
        assert not can_run_short(lstm, x)
        monkeypatch.delenv("LAMINA_SHORT_LSTM")
        handle = lstm.register_forward_hook(lambda *a: None)  # hooks expect the module to be called
        assert not can_run_short(lstm, x)
        handle.remove()
        assert can_run_short(lstm, x)
    assert not can_run_short(lstm, x)  # gradients recorded
    with torch.inference_mode():
        made_here = nn.LSTM(4, 6, batch_first=True).eval()  # inference tensors keep no version counter
        assert can_run_short(lstm, x) and not can_run_short(made_here, x)
        assert made_here(x)[0].shape == (2, 3, 6)


def test_packed_weights_follow_changes():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 8, batch_first=True).eval()
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        _short(lstm, x)
        lstm.weight_hh_l0.mul_(-1)  # in place: the version counter moves
        _close(_short(lstm, x), lstm(x))
        lstm.load_state_dict({k: torch.randn_like(v) for k, v in lstm.state_dict().items()})
        _close(_short(lstm, x), lstm(x))
        lstm.bias_ih_l0 = nn.Parameter(torch.randn(32))  # another tensor
        _close(_short(lstm, x), lstm(x))
        lstm.weight_ih_l0.data.copy_(torch.randn(32, 5))  # through .data: no version counter moves
        _close(_short(lstm, x), lstm(x))
        lstm.weight_hh_l0.data.add_(0.01)
        _close(_short(lstm, x), lstm(x))


class _Short(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        short_lstm(self.lstm, x)  # the first call with new weights packs them for the next
        out = short_lstm(self.lstm, x)
        assert short._PACKED[self.lstm][3] is not None
        return out


def test_another_tensor_at_the_same_address_and_version_is_packed_again():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 8, batch_first=True).eval()
    short_model, x = _Short(lstm), torch.randn(1, 3, 5)
    memory = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    with torch.no_grad():
        for _ in range(3):  # a fresh tensor over the same memory each time: same address, version 0, new values
            w_hh = torch.from_numpy(memory)
            got = torch.func.functional_call(short_model, {"lstm.weight_hh_l0": w_hh}, (x,))
            _close(got, torch.func.functional_call(lstm, {"weight_hh_l0": w_hh}, (x,)))
            memory *= -0.5


def test_awd_lstm_eval_uses_short_layers_and_training_drops_them(monkeypatch):
    torch.manual_seed(0)
    enc = AWD_LSTM(vocab_sz=50, emb_sz=8, n_hid=16, n_layers=3).eval()
    words = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        enc(words)  # the first call with these weights packs them
        enc.reset()
        got = enc(words)
        assert all(short._PACKED[rnn.module][3] is not None for rnn in enc.rnns)
        monkeypatch.setenv("LAMINA_SHORT_LSTM", "0")
        enc.reset()
        ref = enc(words)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    enc.train()
    enc(words).sum().backward()  # a training step: the packed copies go
    assert not any(rnn.module in short._PACKED for rnn in enc.rnns)
    enc.eval()
    monkeypatch.delenv("LAMINA_SHORT_LSTM")
    seen = []
    enc.rnns[1].register_forward_hook(lambda m, i, o: seen.append(o[0].shape))  # as learn.summary() hooks
    with torch.no_grad():
        enc.reset()
        enc(words)
    assert seen == [(2, 6, 16)] and enc.rnns[1].module not in short._PACKED
    assert enc.rnns[0].module in short._PACKED


def test_predictions_follow_an_optimizer_step(monkeypatch):
    torch.manual_seed(0)
    enc = AWD_LSTM(vocab_sz=50, emb_sz=8, n_hid=16, n_layers=2).eval()
    words = torch.randint(0, 50, (1, 5))

    def run():
        with torch.no_grad():
            enc.reset()
            enc(words)  # the first call with new weights packs them for the second
            enc.reset()
            return enc(words)
    before = run()
    enc.train()
    enc(words).pow(2).sum().backward()
    for p in enc.parameters():  # a stepper's write (through .data, as lamina's and fastai's steppers do)
        p.data.add_(p.grad, alpha=-0.5)
    enc.eval()
    after = run()
    monkeypatch.setenv("LAMINA_SHORT_LSTM", "0")
    torch.testing.assert_close(after, run(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after, before)


def test_packed_weights_go_with_the_layer():
    lstm = nn.LSTM(3, 4, batch_first=True).eval()
    with torch.no_grad():
        _short(lstm, torch.randn(1, 2, 3))
    forget(lstm)
    assert lstm not in short._PACKED
    with torch.no_grad():
        _short(lstm, torch.randn(1, 2, 3))
    n = len(short._PACKED)
    del lstm
    gc.collect()
    assert len(short._PACKED) == n - 1


def test_the_first_check_leaves_the_global_generator_alone():
    short._packing_works.cache_clear()
    torch.manual_seed(3)
    assert short._packing_works()
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))
