"""AWD-LSTM (Merity et al. 2017, https://arxiv.org/abs/1708.02182): an LSTM language model body with its dropouts.

Four dropouts, each scaled by ``drop_mult`` in the learners:

* `EmbeddingDropout` (``embed_p``): whole rows of the embedding (words) are dropped for a batch;
* `RNNDropout` (``input_p``, ``hidden_p``): one mask per sequence, the same at every time step ("variational");
* `WeightDropout` (``weight_p``): DropConnect on the hidden-to-hidden weights of each ``nn.LSTM``, so the
  recurrence itself is regularised while the LSTM still runs as one cuDNN call;
* the output dropout lives in the heads (`lamina.models.text`).

`AWD_LSTM` is stateful: the hidden state of one batch starts the next (language-model batches continue each
other's rows); `reset` zeroes it. The state-dict names follow fastai's (``encoder``, ``encoder_dp.emb``,
``rnns.<i>.module``) so weights move between the two; fastai's ``rnns.<i>.weight_hh_l0_raw`` is lamina's
``rnns.<i>.module.weight_hh_l0`` (`convert_fastai_keys`).

Example:
    >>> enc = AWD_LSTM(vocab_sz=1000, emb_sz=32, n_hid=64, n_layers=2)
    >>> enc(torch.randint(0, 1000, (4, 10))).shape
    torch.Size([4, 10, 32])
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .mixed_lstm import can_run_mixed, mixed_lstm
from .short_lstm import can_run_short, forget, has_forward_hooks, short_lstm

__all__ = ["dropout_mask", "RNNDropout", "WeightDropout", "EmbeddingDropout", "AWD_LSTM", "awd_lstm_lm_config",
           "awd_lstm_clas_config", "awd_lstm_lm_split", "awd_lstm_clas_split", "convert_fastai_keys"]

# fastai's defaults: the language model (WikiText-103 pretraining) and the classifier (fine-tuning).
awd_lstm_lm_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.1,
                          hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2, tie_weights=True, out_bias=True)
awd_lstm_clas_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.4,
                            hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


def dropout_mask(x: torch.Tensor, sz: tuple, p: float) -> torch.Tensor:
    """A mask of shape ``sz`` like ``x``: 0 with probability ``p``, else ``1/(1-p)`` (expectation kept)."""
    return x.new_empty(*sz).bernoulli_(1 - p).div_(1 - p)


class RNNDropout(nn.Module):
    """Dropout with one mask per sequence, shared by all its time steps (input ``(bs, seq_len, ...)``)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(x.detach(), (x.size(0), 1, *x.shape[2:]), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightDropout(nn.Module):
    """DropConnect on some weights of ``module`` (an ``nn.LSTM``'s ``weight_hh_l0`` by default) while training.

    The module keeps its own parameters; in training each call runs it with freshly dropped copies of
    ``layer_names`` (``torch.func.functional_call``), so gradients reach the real weights and evaluation
    runs the untouched module (cuDNN's flattened weights).

    Args:
        module: the wrapped module.
        weight_p: the probability of dropping each weight.
        layer_names: the parameters to drop.
    """

    def __init__(self, module: nn.Module, weight_p: float, layer_names: str | list[str] = "weight_hh_l0"):
        super().__init__()
        self.module, self.weight_p = module, weight_p
        self.layer_names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
        missing = [n for n in self.layer_names if not isinstance(getattr(module, n, None), nn.Parameter)]
        if missing:
            raise ValueError(f"WeightDropout: {type(module).__name__} has no parameters {missing}; "
                             f"its parameters are {[n for n, _ in module.named_parameters()]}")

    def forward(self, *args: Any) -> Any:
        if not self.training or self.weight_p == 0.0:
            return self.module(*args)
        dropped = self._dropped()
        with warnings.catch_warnings():
            # cuDNN warns that dropped weights are not in its flattened buffer (it copies them: expected here)
            warnings.simplefilter("ignore", category=UserWarning)
            return functional_call(self.module, dropped, args)

    def _dropped(self) -> dict[str, torch.Tensor]:
        return {n: F.dropout(getattr(self.module, n), p=self.weight_p, training=True) for n in self.layer_names}

    def weights(self) -> dict[str, torch.Tensor]:
        """The module's parameters as a call uses them: those of ``layer_names`` dropped when training."""
        weights = dict(self.module.named_parameters())
        if self.training and self.weight_p != 0.0:
            weights.update(self._dropped())
        return weights

    def reset(self) -> None:
        reset = getattr(self.module, "reset", None)
        if callable(reset):
            reset()


class EmbeddingDropout(nn.Module):
    """Drop whole rows (words) of the embedding ``emb`` with probability ``embed_p`` while training.

    Args:
        emb: the ``nn.Embedding`` (shared, not copied: its weights are the model's).
        embed_p: the probability of dropping a word.
    """

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, embed_p

    def forward(self, words: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        weight = self.emb.weight
        if self.training and self.embed_p != 0:
            weight = weight * dropout_mask(weight.detach(), (weight.size(0), 1), self.embed_p)
        if scale:
            weight = weight * scale
        padding = self.emb.padding_idx if self.emb.padding_idx is not None else -1
        return F.embedding(words, weight, padding, self.emb.max_norm, self.emb.norm_type,
                           self.emb.scale_grad_by_freq, self.emb.sparse)


class AWD_LSTM(nn.Module):
    """Embedding → ``n_layers`` weight-dropped LSTMs, with variational dropouts; returns the last layer's output.

    Args:
        vocab_sz: the vocabulary size.
        emb_sz: the embedding size (and the last layer's output size, so the decoder can share the embedding).
        n_hid: the hidden size of the inner layers.
        n_layers: the number of LSTM layers.
        pad_token: the padding id (its embedding stays zero).
        hidden_p, input_p, embed_p, weight_p: the dropouts (see the module docstring).
        bidir: bidirectional LSTMs.
    """

    initrange = 0.1

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int, pad_token: int = 1,
                 hidden_p: float = 0.2, input_p: float = 0.6, embed_p: float = 0.1, weight_p: float = 0.5,
                 bidir: bool = False):
        super().__init__()
        self.emb_sz, self.n_hid, self.n_layers, self.pad_token = emb_sz, n_hid, n_layers, pad_token
        self.n_dir = 2 if bidir else 1
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        self.encoder_dp = EmbeddingDropout(self.encoder, embed_p)
        self.rnns = nn.ModuleList([WeightDropout(nn.LSTM(emb_sz if i == 0 else n_hid, self._out_size(i) // self.n_dir,
                                                         1, batch_first=True, bidirectional=bidir), weight_p)
                                   for i in range(n_layers)])
        nn.init.uniform_(self.encoder.weight, -self.initrange, self.initrange)
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList([RNNDropout(hidden_p) for _ in range(n_layers)])
        self.hidden: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _out_size(self, layer: int) -> int:
        return self.n_hid if layer != self.n_layers - 1 else self.emb_sz

    def forward(self, inp: torch.Tensor, from_embeds: bool = False) -> torch.Tensor:
        """``inp``: token ids ``(bs, seq_len)`` (or embeddings ``(bs, seq_len, emb_sz)`` with ``from_embeds``)."""
        hidden = self._hidden_for(inp.shape[0], inp.device)
        output = self.input_dp(inp if from_embeds else self.encoder_dp(inp))
        new_hidden = []
        for i, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            output, state = _run_rnn(rnn, output, hidden[i])
            new_hidden.append(state)
            if i != self.n_layers - 1:
                output = hid_dp(output)
        # the state carries on to the next batch, but gradients stop here (truncated back-propagation)
        self.hidden = [(h.detach(), c.detach()) for h, c in new_hidden]
        return output

    def _hidden_for(self, bs: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The carried state, fitted to ``bs`` rows: zeros for new rows, extra rows dropped."""
        dtype = self.encoder.weight.dtype
        if self.hidden is None or self.hidden[0][0].device != device:
            self.hidden = [tuple(torch.zeros(self.n_dir, 0, self._out_size(i) // self.n_dir, device=device,
                                             dtype=dtype) for _ in range(2)) for i in range(self.n_layers)]
        fitted = []
        for h, c in self.hidden:
            have = h.shape[1]
            if have < bs:
                h, c = (torch.cat([t, t.new_zeros(t.shape[0], bs - have, t.shape[2])], dim=1) for t in (h, c))
            elif have > bs:
                h, c = h[:, :bs].contiguous(), c[:, :bs].contiguous()
            fitted.append((h, c))
        return fitted

    def reset(self) -> None:
        """Forget the hidden state (the next batch starts from zeros)."""
        self.hidden = None
        for rnn in self.rnns:
            rnn.reset()


def _run_rnn(rnn: nn.Module, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """One recurrent layer; under a CPU bf16 autocast, through `mixed_lstm` (or in fp32 where it does not apply);
    a short sequence at inference on the CPU, through `short_lstm`.

    oneDNN's own bf16 LSTM backward is wrong for some layer sizes, the AWD-LSTM's among them (see
    `lamina.models.mixed_lstm`): a language model trained from scratch with it drifts to predicting one word
    everywhere. On CUDA, cuDNN runs the layers under autocast as usual.
    """
    lstm = rnn.module if isinstance(rnn, WeightDropout) else rnn
    if torch.is_grad_enabled() or x.device.type != "cpu":  # a training step (it changes the weights), or a GPU
        forget(lstm)
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        if not rnn.training and not has_forward_hooks(rnn) and can_run_short(lstm, x, state):
            return short_lstm(lstm, x, state)
        return rnn(x, state)
    if torch.get_autocast_dtype("cpu") == torch.bfloat16 and can_run_mixed(lstm):
        weights = rnn.weights() if isinstance(rnn, WeightDropout) else dict(lstm.named_parameters())
        return mixed_lstm(x, state, weights)
    with torch.autocast("cpu", enabled=False):
        return rnn(x.float(), tuple(t.float() for t in state))


def _unique_params(*modules: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``modules``, each once (the encoder, its dropout and the decoder share the embedding)."""
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def awd_lstm_lm_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Param groups of a language model ``(AWD_LSTM, decoder)``: one per LSTM layer, then embedding + decoder."""
    enc = model[0]
    groups = [_unique_params(rnn, dp) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [_unique_params(enc.encoder, enc.encoder_dp, model[1])]


def awd_lstm_clas_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Param groups of a classifier ``(SentenceEncoder(AWD_LSTM), head)``: embedding, each LSTM layer, the head.

    ``learn.freeze_to(-2)`` then trains the last LSTM layer and the head (gradual unfreezing).
    """
    enc = model[0].module
    groups = [_unique_params(enc.encoder, enc.encoder_dp)]
    groups += [_unique_params(rnn, dp) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [_unique_params(model[1])]


_FASTAI_RAW = re.compile(r"^(.*rnns\.\d+)\.(weight_hh_l\d+(?:_reverse)?)_raw$")


def convert_fastai_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with fastai's weight-dropout names (``rnns.0.weight_hh_l0_raw``) renamed to lamina's
    (``rnns.0.module.weight_hh_l0``); the stale non-raw copy fastai also keeps is dropped."""
    out = {}
    raw = {}
    for key, value in state.items():
        m = _FASTAI_RAW.match(key)
        if m:
            raw[f"{m.group(1)}.module.{m.group(2)}"] = value
        else:
            out[key] = value
    out.update(raw)  # the raw weights win over a stale copy under the same name
    return out
