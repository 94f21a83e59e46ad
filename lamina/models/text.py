"""Text models: a language model (AWD-LSTM + a decoder tied to the embedding) and a classifier (AWD-LSTM read in
chunks + concat pooling over the real tokens + a small MLP).

Both return plain logits: ``(bs, seq_len, vocab)`` for the language model, ``(bs, n_out)`` for the classifier.
The last layer's outputs that the AR/TAR regularisation needs are kept on the head while training
(``head.rnn_outputs = (raw, dropped)``), where `RNNRegularizer` reads them.

Example:
    >>> lm = get_language_model(AWD_LSTM, vocab_sz=1000, config={**awd_lstm_lm_config, 'emb_sz': 32})
    >>> clas = get_text_classifier(AWD_LSTM, vocab_sz=1000, n_class=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..registry import register
from .awd_lstm import AWD_LSTM, RNNDropout, awd_lstm_clas_config, awd_lstm_clas_split, awd_lstm_lm_config, \
    awd_lstm_lm_split
from .layers import LinBnDrop, SigmoidRange

__all__ = ["LinearDecoder", "SequentialRNN", "get_language_model", "SentenceEncoder", "masked_concat_pool",
           "PoolingLinearClassifier", "get_text_classifier", "TEXT_ARCHS", "model_meta_text", "text_arch_name"]

# Architectures by plain name (what an export records), and what the learners need to know about each.
TEXT_ARCHS: dict[str, type] = {"AWD_LSTM": AWD_LSTM}
model_meta_text: dict[type, dict[str, Any]] = {
    AWD_LSTM: {"hid_name": "emb_sz", "pretrained": "wt103-fwd", "pretrained_bwd": "wt103-bwd",
               "config_lm": awd_lstm_lm_config, "split_lm": awd_lstm_lm_split,
               "config_clas": awd_lstm_clas_config, "split_clas": awd_lstm_clas_split},
}


def _arch(arch: Any) -> type:
    if isinstance(arch, str):
        if arch not in TEXT_ARCHS:
            raise ValueError(f"Unknown text architecture {arch!r}; known: {sorted(TEXT_ARCHS)}")
        return TEXT_ARCHS[arch]
    if arch not in model_meta_text:
        raise ValueError(f"`arch` must be one of lamina's text architectures ({sorted(TEXT_ARCHS)}); received: "
                         f"{getattr(arch, '__name__', arch)!r}")
    return arch


def text_arch_name(arch: Any) -> str:
    """The plain name of a text architecture (``AWD_LSTM`` → ``'AWD_LSTM'``)."""
    cls = _arch(arch)
    return next(name for name, c in TEXT_ARCHS.items() if c is cls)


class LinearDecoder(nn.Module):
    """Hidden states → vocabulary logits, through an output dropout; the weight may be the embedding's (tied).

    Args:
        n_out: the vocabulary size.
        n_hid: the input size (the encoder's output size).
        output_p: the output dropout.
        tie_encoder: an ``nn.Embedding`` whose weight the decoder shares.
        bias: a bias per token.
    """

    initrange = 0.1

    def __init__(self, n_out: int, n_hid: int, output_p: float = 0.1, tie_encoder: nn.Module | None = None,
                 bias: bool = True):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        nn.init.uniform_(self.decoder.weight, -self.initrange, self.initrange)
        self.output_dp = RNNDropout(output_p)
        if bias:
            nn.init.zeros_(self.decoder.bias)
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight
        self.rnn_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        dropped = self.output_dp(inp)
        self.rnn_outputs = (inp, dropped) if self.training else None
        return self.decoder(dropped)


class SequentialRNN(nn.Sequential):
    """An ``nn.Sequential`` whose `reset` resets every child that has one (the recurrent state)."""

    def reset(self) -> None:
        for child in self.children():
            reset = getattr(child, "reset", None)
            if callable(reset):
                reset()


def _scaled_config(config: dict | None, default: dict, drop_mult: float) -> dict:
    config = dict(default if config is None else config)
    return {k: v * drop_mult if k.endswith("_p") else v for k, v in config.items()}


@register("model")
def get_language_model(arch: Any, vocab_sz: int, config: dict | None = None, drop_mult: float = 1.0) -> SequentialRNN:
    """``SequentialRNN(arch(vocab_sz, ...), LinearDecoder)``; every dropout (``*_p``) of ``config`` times ``drop_mult``.

    Args:
        arch: `AWD_LSTM` (or its name).
        vocab_sz: the vocabulary size.
        config: the architecture's arguments plus ``output_p``, ``tie_weights``, ``out_bias`` (default
            `awd_lstm_lm_config`).
        drop_mult: scales every dropout.
    """
    arch = _arch(arch)
    meta = model_meta_text[arch]
    config = _scaled_config(config, meta["config_lm"], drop_mult)
    tie_weights, output_p, out_bias = (config.pop(k) for k in ("tie_weights", "output_p", "out_bias"))
    init = config.pop("init", None)
    encoder = arch(vocab_sz, **config)
    decoder = LinearDecoder(vocab_sz, config[meta["hid_name"]], output_p,
                            tie_encoder=encoder.encoder if tie_weights else None, bias=out_bias)
    model = SequentialRNN(encoder, decoder)
    return model if init is None else model.apply(init)


class SentenceEncoder(nn.Module):
    """Run ``module`` over a whole padded document batch, ``bptt`` tokens at a time.

    A chunk runs only over the rows whose text has started (with `SortedDL`'s chunk-aligned padding, a row is
    only padding before that), so short texts in a batch of long ones cost little. The state carries from
    chunk to chunk; gradients stop between chunks. Only the outputs of the last ``max_len`` tokens are kept.

    Args:
        bptt: the chunk length.
        module: the recurrent encoder (`AWD_LSTM`).
        pad_idx: the padding id.
        max_len: how many final tokens the pooling sees (None: all).

    Returns (forward):
        ``(outputs, mask)``: ``(bs, kept_len, emb_sz)`` and the padding mask ``(bs, kept_len)``.
    """

    def __init__(self, bptt: int, module: nn.Module, pad_idx: int = 1, max_len: int | None = None):
        super().__init__()
        self.bptt, self.module, self.pad_idx, self.max_len = bptt, module, pad_idx, max_len

    def reset(self) -> None:
        reset = getattr(self.module, "reset", None)
        if callable(reset):
            reset()

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bs, sl = inp.shape
        self.reset()
        mask = inp == self.pad_idx
        real = ~mask
        # rows in the order they start: the rows running at chunk i are then always the first ones, and a row
        # joining the batch gets a zero state (rows that have ended run on over their trailing padding, masked)
        never = torch.full_like(real[:, 0], sl, dtype=torch.long)  # a row of padding only starts after the end
        first = torch.where(real.any(1), real.to(torch.int8).argmax(1), never)
        order = torch.argsort(first, stable=True)
        inp, mask, first = inp[order], mask[order], first[order]
        starts = torch.arange(0, sl, self.bptt, device=inp.device)
        running = (first.unsqueeze(0) < (starts + self.bptt).unsqueeze(1)).sum(1).clamp(min=1).tolist()  # one sync
        outs, masks = [], []
        for i, n_run in zip(range(0, sl, self.bptt), running):
            out = self.module(inp[:n_run, i:i + self.bptt])
            if self.max_len is None or sl - i <= self.max_len:
                outs.append(torch.cat([out, out.new_zeros(bs - n_run, *out.shape[1:])]) if n_run < bs else out)
                masks.append(mask[:, i:i + self.bptt])
        inverse = torch.argsort(order)
        return torch.cat(outs, dim=1)[inverse], torch.cat(masks, dim=1)[inverse]


def masked_concat_pool(output: torch.Tensor, mask: torch.Tensor, bptt: int | None = None) -> torch.Tensor:
    """``[last real output, max over real tokens, mean over real tokens]`` per row (padding is ignored).

    ``bptt`` is accepted for fastai compatibility: the last real token is found from the mask directly.
    """
    real = ~mask
    n_real = real.sum(1).clamp(min=1)
    avg = output.masked_fill(mask.unsqueeze(-1), 0).sum(1) / n_real.unsqueeze(-1).to(output.dtype)
    max_pool = output.masked_fill(mask.unsqueeze(-1), float("-inf")).max(1).values
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * real).argmax(1)  # the index of the last real token of each row
    return torch.cat([output[torch.arange(len(output), device=output.device), last], max_pool, avg], 1)


class PoolingLinearClassifier(nn.Module):
    """Concat pooling over the encoder's outputs, then ``LinBnDrop`` layers (ReLU between them).

    Args:
        dims: layer sizes, the first being 3× the encoder's output size.
        ps: one dropout per layer.
        bptt: the encoder's chunk length.
        y_range: squash the outputs into ``(low, high)``.
    """

    def __init__(self, dims: Sequence[int], ps: Sequence[float], bptt: int, y_range: Sequence[float] | None = None):
        super().__init__()
        if len(ps) != len(dims) - 1:
            raise ValueError(f"`ps` needs one dropout per layer ({len(dims) - 1}); received {len(ps)}: {list(ps)}")
        acts = [nn.ReLU(inplace=True)] * (len(dims) - 2) + [None]
        layers: list[nn.Module] = [LinBnDrop(i, o, p=p, act=a) for i, o, p, a in zip(dims[:-1], dims[1:], ps, acts)]
        if y_range is not None:
            layers.append(SigmoidRange(*y_range))
        self.layers = nn.Sequential(*layers)
        self.bptt = bptt
        self.rnn_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, inp: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out, mask = inp
        self.rnn_outputs = (out, out) if self.training else None
        return self.layers(masked_concat_pool(out, mask, self.bptt))


@register("model")
def get_text_classifier(arch: Any, vocab_sz: int, n_class: int, seq_len: int = 72, config: dict | None = None,
                        drop_mult: float = 1.0, lin_ftrs: Sequence[int] | None = None,
                        ps: Sequence[float] | None = None, pad_idx: int = 1, max_len: int | None = 72 * 20,
                        y_range: Sequence[float] | None = None) -> SequentialRNN:
    """``SequentialRNN(SentenceEncoder(arch(...)), PoolingLinearClassifier)``.

    Args:
        arch: `AWD_LSTM` (or its name).
        vocab_sz: the vocabulary size.
        n_class: the number of outputs.
        seq_len: the chunk length of the encoder.
        config: the architecture's arguments plus ``output_p`` (default `awd_lstm_clas_config`).
        drop_mult: scales every dropout.
        lin_ftrs: hidden sizes of the head (default ``[50]``).
        ps: their dropouts (default 0.1 each).
        pad_idx: the padding id.
        max_len: how many final tokens the pooling sees.
        y_range: squash the outputs into ``(low, high)``.
    """
    arch = _arch(arch)
    meta = model_meta_text[arch]
    config = _scaled_config(config, meta["config_clas"], drop_mult)
    lin_ftrs = [50] if lin_ftrs is None else list(lin_ftrs)
    ps = [0.1] * len(lin_ftrs) if ps is None else list(ps)
    dims = [config[meta["hid_name"]] * 3, *lin_ftrs, n_class]
    ps = [config.pop("output_p"), *ps]
    init = config.pop("init", None)
    encoder = SentenceEncoder(seq_len, arch(vocab_sz, **config), pad_idx=pad_idx, max_len=max_len)
    model = SequentialRNN(encoder, PoolingLinearClassifier(dims, ps, bptt=seq_len, y_range=y_range))
    return model if init is None else model.apply(init)
