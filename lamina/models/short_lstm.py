"""Short LSTM sequences at inference on the CPU: one layer, step by step, through oneDNN's packed matrix products.

PyTorch runs a CPU ``nn.LSTM`` as one oneDNN RNN primitive, which prepares the layer's weights at every call:
for a 1152-unit layer (the AWD-LSTM's) about 5 ms, whatever the length of the sequence, then about 0.35 ms a
step. A short call — `predict` on a sentence, or text generation feeding one token at a time — is mostly that
preparation. `short_lstm` keeps the layer's weights packed for oneDNN's matrix product
(``torch.ops.mkldnn._reorder_linear_weight``, the packing PyTorch's own compiler uses on the CPU) until they
change (from the second call with the same weights: packing costs about what one ``nn.LSTM`` call spends
preparing), computes every step's input share in one product, then runs the recurrence one step at a time. It
gives ``nn.LSTM``'s results (the same sums in another order: within 1e-6 relative here) and is used only where it is
faster: inference (no gradient), float32, at most `MAX_STEPS` steps and `MAX_ROWS` rows × steps. The packed
copy costs the layer's weight memory again while it is kept; `forget` drops it, and so does any call of the
layer that records gradients (the AWD-LSTM's training steps).

``LAMINA_SHORT_LSTM=0`` turns this off (every call goes to ``nn.LSTM``).

Example:
    >>> lstm = nn.LSTM(8, 16, batch_first=True).eval()
    >>> with torch.no_grad():
    ...     out, (h, c) = short_lstm(lstm, torch.randn(2, 5, 8), (torch.zeros(1, 2, 16), torch.zeros(1, 2, 16)))
    >>> out.shape
    torch.Size([2, 5, 16])
"""

from __future__ import annotations

import functools
import os
import weakref

import torch
from torch import nn
from torch.nn.modules import module as torch_module

__all__ = ["MAX_STEPS", "MAX_ROWS", "can_run_short", "short_lstm", "forget", "has_forward_hooks"]

# Within these bounds the step-by-step layer is the faster one. Measured on a 2-core AMD EPYC (Zen 4, AVX-512),
# 2 threads, the AWD-LSTM's three layers (400→1152, 1152→1152, 1152→400) against nn.LSTM: 0.14× at 1 row and 1
# step, 0.53-0.86× at 1-4 rows and 16-32 steps, 0.80× at 16 rows × 16 steps; about equal (1.0-1.04×) at 16 rows ×
# 32 steps, 64 × 16 and 1 × 72, which the bounds leave to nn.LSTM (see benchmarks/PROFILES.md).
MAX_STEPS = 32
MAX_ROWS = 256  # rows × steps

# nn.LSTM -> (the weights' addresses, versions and shapes; their sampled values; the weights; the packed weights)
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


@functools.lru_cache(maxsize=1)
def _packing_works() -> bool:
    """Whether this PyTorch packs and multiplies with oneDNN (and gets ``x @ w.T``, checked on a small case)."""
    try:
        g = torch.Generator().manual_seed(0)  # not the global generator: a user's seeded sampling stays the same
        w, x = torch.randn(8, 4, generator=g), torch.randn(3, 4, generator=g)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(out, x @ w.t(), rtol=1e-4, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False


def _enabled() -> bool:
    return os.environ.get("LAMINA_SHORT_LSTM", "1").strip().lower() not in ("0", "false", "no", "off")


def can_run_short(lstm: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None) -> bool:
    """Whether `short_lstm` runs this call: an evaluating one-layer, one-direction, batch-first ``nn.LSTM`` with
    biases, on the CPU in float32, no gradient recorded, at most `MAX_STEPS` steps and `MAX_ROWS` rows × steps, no
    forward hooks to call (``learn.summary``, `hook_output`) and no tracing or compiling under way."""
    if torch.is_grad_enabled() or not isinstance(lstm, nn.LSTM) or x.dim() != 3 or has_forward_hooks(lstm):
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    tensors = [x, lstm.weight_ih_l0, lstm.weight_hh_l0, *(state or ())]
    return (not lstm.training and lstm.num_layers == 1 and not lstm.bidirectional and lstm.batch_first
            and lstm.bias and lstm.proj_size == 0 and 0 < x.shape[1] <= MAX_STEPS and x.shape[0] > 0
            and x.shape[0] * x.shape[1] <= MAX_ROWS
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not any(p.is_inference() for p in lstm.parameters())  # no version counter to follow changes by
            and _enabled() and _packing_works())


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run forward hooks (its own or global ones)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or torch_module._global_forward_hooks
                or torch_module._global_forward_pre_hooks)


def forget(lstm: nn.Module) -> None:
    """Drop ``lstm``'s packed weights (kept until its weights change otherwise)."""
    _PACKED.pop(lstm, None)


def _sample(t: torch.Tensor) -> torch.Tensor:
    """Up to 256 evenly spaced values of ``t``: a write through ``.data`` (which moves no version counter) changes
    them."""
    flat = t.detach().reshape(-1)
    return flat[::max(1, flat.numel() // 256)].clone()


def _packed(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The input and recurrent weights packed for oneDNN, and the summed biases, from the second call with the same
    weights on (packing costs about as much as ``nn.LSTM``'s own preparation, so a single call is not worth it);
    None on the first. Weights count as changed when another tensor, the same one written in place (its version
    counter), or values that differ where sampled."""
    params = [getattr(lstm, n).detach() for n in _NAMES]
    key = tuple((p.data_ptr(), p._version, tuple(p.shape)) for p in params)
    kept = _PACKED.get(lstm)
    if kept is None or kept[0] != key or not all(torch.equal(_sample(p), s) for p, s in zip(params, kept[1])):
        # the weights are kept too, so that their memory cannot hold another tensor that would match the key
        _PACKED[lstm] = (key, [_sample(p) for p in params], params, None)
        return None
    if kept[3] is None:
        w_ih, w_hh, b_ih, b_hh = params
        reorder = torch.ops.mkldnn._reorder_linear_weight
        packed = (reorder(w_ih.contiguous(), None), reorder(w_hh.contiguous(), None), (b_ih + b_hh).contiguous())
        _PACKED[lstm] = kept = (*kept[:3], packed)
    return kept[3]


def short_lstm(lstm: nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run ``lstm`` (see `can_run_short`) on ``x`` ``(bs, seq_len, in)`` from ``state`` ``(h0, c0)``, each
    ``(1, bs, hidden)`` (zeros when None); returns ``(output, (h, c))`` as ``nn.LSTM`` does. The first call with
    new weights goes to ``nn.LSTM`` itself (see `_packed`)."""
    packed = _packed(lstm)
    if packed is None:
        return lstm(x, state)
    w_ih, w_hh, bias = packed
    linear = torch.ops.mkldnn._linear_pointwise
    bs, steps, _ = x.shape
    hid = lstm.hidden_size
    if state is None:
        state = (x.new_zeros(1, bs, hid), x.new_zeros(1, bs, hid))
    x_gates = linear(x.reshape(bs * steps, -1).contiguous(), w_ih, bias, "none", [], "").view(bs, steps, 4 * hid)
    out = x.new_empty(bs, steps, hid)
    h, c = state[0][0].contiguous(), state[1][0]
    for t in range(steps):
        if bs == 1:  # the step's input share rides in as the product's bias
            gates = linear(h, w_hh, x_gates[0, t], "none", [], "")
        else:
            gates = linear(h, w_hh, None, "none", [], "").add_(x_gates[:, t])
        act = torch.sigmoid(gates)
        i, f, _, o = act.chunk(4, 1)
        c = torch.addcmul(f * c, i, torch.tanh(gates[:, 2 * hid:3 * hid]))
        h = torch.tanh(c).mul_(o)
        out[:, t] = h
    return out, (h[None], c[None])
