"""Text learners: `language_model_learner` (predict the next word; generate text) and `text_classifier_learner`,
with the ULMFiT steps: pretrained WikiText-103 weights fitted to the data's vocabulary, fine-tuning the language
model, `save_encoder`, then `load_encoder` into a classifier trained with gradual unfreezing.

Example:
    >>> learn = language_model_learner(dls_lm, AWD_LSTM, drop_mult=0.3, metrics=[accuracy, Perplexity()])
    >>> learn.fit_one_cycle(1, 2e-2); learn.save_encoder('finetuned')
    >>> learn.predict("I liked this movie because", 40, temperature=0.75)
    >>> clas = text_classifier_learner(dls_clas, AWD_LSTM, drop_mult=0.5, metrics=accuracy).load_encoder('finetuned')
    >>> clas.fit_one_cycle(1, 2e-2); clas.freeze_to(-2); clas.fit_one_cycle(1, slice(1e-2/(2.6**4), 1e-2))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..callbacks.precision import MixedPrecision, cpu_has_bf16_matmul
from ..checkpoint import atomic_write
from ..core import as_members, to_cpu
from ..data.block import get_c
from ..export import ExportError
from ..learner import Learner
from ..losses import CrossEntropyLossFlat
from ..models.text import TEXT_ARCHS, get_language_model, get_text_classifier, model_meta_text, text_arch_name
from ..registry import register
from .callbacks import rnn_cbs
from .core import BOS, PAD, UNK, decode_spec_tokens
from .pretrained import match_embeds, pretrained_files, read_vocab, read_weights

__all__ = ["TextLearner", "LMLearner", "language_model_learner", "text_classifier_learner", "text_vocab_of",
           "text_default_bf16"]


def text_vocab_of(dls: Any) -> list[str]:
    """The token vocabulary of text loaders (a classifier's ``dls.vocab`` is ``[tokens, classes]``).

    Raises:
        TypeError: when ``dls`` carries no token vocabulary.
    """
    vocab = getattr(dls, "text_vocab", None) or getattr(dls, "vocab", None)
    if vocab and isinstance(vocab[0], (list, tuple)):
        vocab = vocab[0]
    if not vocab or not all(isinstance(t, str) for t in vocab[:10]):
        raise TypeError("These DataLoaders carry no token vocabulary: build them with TextDataLoaders or a DataBlock "
                        "with a TextBlock")
    return list(vocab)


def _encoder(model: nn.Module) -> nn.Module:
    """The `AWD_LSTM` of a language model ``(encoder, decoder)`` or of a classifier ``(SentenceEncoder, head)``."""
    encoder = model[0]
    return encoder.module if hasattr(encoder, "module") and isinstance(encoder.module, nn.Module) else encoder


@register("learner")
class TextLearner(Learner):
    """A `Learner` for recurrent text models: resets their state, adds AR/TAR, moves encoders in and out.

    Args:
        dls, model: as for `Learner`.
        alpha, beta: the AR and TAR weights (`RNNRegularizer`).
        moms: the momentum cycle (fastai's text default ``(0.8, 0.7, 0.8)``).
        **kwargs: the other `Learner` arguments.
    """

    def __init__(self, dls: Any, model: nn.Module, alpha: float = 2.0, beta: float = 1.0,
                 moms: tuple = (0.8, 0.7, 0.8), **kwargs: Any):
        super().__init__(dls, model, moms=moms, **kwargs)
        self.add_cbs(rnn_cbs(alpha, beta))

    def save_encoder(self, file: str | Path) -> Path:
        """Save the encoder's weights (the `AWD_LSTM`) to ``path/model_dir/file.pth``; returns the path."""
        path = self._checkpoint_path(file)
        state = {k: v.detach().cpu() for k, v in _encoder(self.model).state_dict().items()}
        return atomic_write(path, lambda f: torch.save(state, f), what="encoder")

    def load_encoder(self, file: str | Path, device: Any = None) -> "TextLearner":
        """Load encoder weights saved by `save_encoder` (``torch.load(weights_only=True)``), then `freeze`.

        Raises:
            FileNotFoundError: naming the path when there is no such file.
            ValueError: when the weights do not fit this encoder (another vocabulary or size).
        """
        path = self._checkpoint_path(file)
        if not path.exists():
            raise FileNotFoundError(f"No encoder at {path}: save one with learn.save_encoder({Path(file).stem!r}) "
                                    f"(files live in learn.path/learn.model_dir, now {self.path / self.model_dir})")
        state = read_weights(path)
        encoder = _encoder(self.model)
        try:
            encoder.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"The encoder {path} does not fit this model ({e}). An encoder moves between learners "
                             "built on the same token vocabulary (TextBlock(..., vocab=dls_lm.vocab)) and config"
                             ) from e
        encoder.to(device if device is not None else self.dls.device)
        self.freeze()
        return self

    def load_pretrained(self, wgts_fname: str | Path, vocab_fname: str | Path,
                        model: nn.Module | None = None) -> "TextLearner":
        """Load language-model weights trained on another vocabulary (new tokens get the mean embedding), then
        `freeze`. ``model`` (default the whole model) is the module to load into: a classifier passes its encoder.

        Raises:
            ValueError: when the files cannot be read safely or the weights do not fit the architecture.
        """
        old_vocab = read_vocab(vocab_fname)
        wgts = match_embeds(read_weights(wgts_fname), old_vocab, text_vocab_of(self.dls))
        target = self.model if model is None else model
        if model is not None:  # the encoder alone: its keys without the language model's "0." (and no decoder)
            wgts = {k[2:]: v for k, v in wgts.items() if k.startswith("0.")}
        try:
            target.load_state_dict(wgts)
        except RuntimeError as e:
            raise ValueError(f"The pretrained weights {wgts_fname} do not fit this model ({e}). They fit an AWD_LSTM "
                             "with the default config (emb_sz=400, n_hid=1152, n_layers=3); pass pretrained=False "
                             "to train a model of another size from scratch") from e
        target.to(self.dls.device)
        self.freeze()
        return self

    def export(self, fname: str | Path = "export.pkl") -> Path | None:
        """Write this learner for inference (see `Learner.export`); the tokenizer and vocabularies go in its JSON.

        Raises:
            ExportError: when the data cannot be described by name (a custom tokenizer or rule).
        """
        reason = getattr(self.dls, "unexportable", None)
        if reason:
            raise ExportError(f"learn.export() cannot describe the text pipeline: {reason}")
        return super().export(fname)

    def get_preds(self, ds_idx: int = 1, dl: Any = None, with_input: bool = False, with_decoded: bool = False,
                  with_loss: bool = False, act: Any = None, inner: bool = False, reorder: bool = True,
                  cbs: Any = None, **kwargs: Any) -> tuple:
        """As `Learner.get_preds`; with ``reorder`` (default) the results of a length-sorted loader come back in
        the dataset's order, and ``with_input`` returns the inputs padded to one width."""
        dl = dl if dl is not None else self.dls[ds_idx].new(shuffle=False, drop_last=False)
        out = list(super().get_preds(dl=dl, with_decoded=with_decoded, with_loss=with_loss, act=act, cbs=cbs, **kwargs))
        if with_input:
            out.insert(0, _padded_inputs(dl))
        order = dl.get_idxs() if reorder and hasattr(dl, "get_idxs") and not dl.shuffle else None
        if order is not None:
            inverse = torch.argsort(order)
            out = [o[inverse] if isinstance(o, torch.Tensor) and len(o) == len(inverse) else o for o in out]
        return tuple(out)

    def predict(self, item: Any, rm_type_tfms: Any = None, with_input: bool = False) -> tuple:
        """Classify one text: ``(label, label index, probabilities)`` (the tokens first if ``with_input``)."""
        dl = self.dls.test_dl([item])
        with self.no_bar():
            preds, _, decoded = self.get_preds(dl=dl, with_decoded=True)
        full = self.decode_prediction(decoded[0])
        out = (full, decoded[0], preds[0])
        return (self.dls.decode_text(dl.flat),) + out if with_input else out


def _padded_inputs(dl: Any) -> torch.Tensor:
    batches = [to_cpu(as_members(b)[0]) for b in dl]
    width = max((b.shape[1] for b in batches), default=0)
    pad = getattr(dl, "pad_idx", 1)
    return torch.cat([torch.nn.functional.pad(b, (width - b.shape[1], 0), value=pad) for b in batches])


@register("learner")
class LMLearner(TextLearner):
    """A `TextLearner` for language models; `predict` generates text."""

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.0,
                min_p: float | None = None, no_bar: bool = False, decoder: Callable = decode_spec_tokens,
                only_last_word: bool = False) -> str:
        """``text`` followed by ``n_words`` sampled words.

        Args:
            text: the prompt.
            n_words: how many tokens to sample.
            no_unk: never sample ``xxunk``.
            temperature: below 1 sharpens the distribution (safer words), above 1 flattens it.
            min_p: drop tokens with a smaller probability (unless none would remain).
            no_bar: accepted for fastai compatibility (no bar is shown).
            decoder: turns the tokens back into words (default `decode_spec_tokens`).
            only_last_word: accepted for fastai compatibility (the state carries the context either way).
        """
        vocab = text_vocab_of(self.dls)
        ids = self.dls.encode_text(text).to(self.dls.device)
        generated = _sample(self.model, ids, n_words, vocab, no_unk, temperature, min_p)
        words = self.dls.tokenizer.words([vocab[i] for i in [*ids.tolist(), *generated]])  # pieces spell words
        return self.dls.tokenizer.sep.join(decoder([t for t in words if t not in (BOS, PAD)]))


@torch.no_grad()
def _sample(model: nn.Module, ids: torch.Tensor, n_words: int, vocab: Sequence[str], no_unk: bool,
            temperature: float, min_p: float | None) -> list[int]:
    """Sample ``n_words`` next tokens, feeding the prompt once and then one token at a time (the state carries)."""
    model.eval()
    reset = getattr(model, "reset", None)
    if callable(reset):
        reset()
    logits = model(ids[None])[0, -1]
    unk = vocab.index(UNK) if UNK in vocab else None
    out = []
    for _ in range(n_words):
        probs = torch.softmax(logits.float(), dim=-1)
        if no_unk and unk is not None:
            probs[unk] = 0.0
        if min_p is not None and bool((probs >= min_p).any()):
            probs[probs < min_p] = 0.0
        if temperature != 1.0:
            probs = probs.pow(1 / temperature)
        idx = int(torch.multinomial(probs, 1))
        out.append(idx)
        logits = model(ids.new_tensor([[idx]]))[0, -1]
    if callable(reset):
        reset()
    return out


def _arch_meta(arch: Any) -> dict:
    return model_meta_text[TEXT_ARCHS[text_arch_name(arch)]]


def _json_config(config: dict | None, default: dict) -> dict | None:
    """The config as JSON values, or None when it holds something else (then the learner cannot be exported)."""
    cfg = dict(default if config is None else config)
    return cfg if all(isinstance(v, (int, float, bool, str, type(None))) for v in cfg.values()) else None


def _load_pretrained(learn: TextLearner, arch: Any, backwards: bool, fnames: Sequence[str] | None,
                     model: nn.Module | None) -> None:
    if fnames is not None:
        wgts, vocab = (learn.path / learn.model_dir / f"{fn}.{ext}" for fn, ext in zip(fnames, ("pth", "pkl")))
        vocab = vocab if vocab.exists() else vocab.with_suffix(".json")
    else:
        wgts, vocab = pretrained_files(_arch_meta(arch)["pretrained_bwd" if backwards else "pretrained"])
    learn.load_pretrained(wgts, vocab, model=model)


def text_default_bf16(learn: Learner) -> Learner:
    """Train with bf16 autocast by default on CPUs that multiply bf16 matrices in hardware (AMX units or AVX-512
    BF16; weights, optimizer and loss stay fp32; validation and predictions run in fp32, so they equal the
    exported model's).

    The LSTM layers then run in `lamina.models.mixed_lstm` (bf16 products, fp32 state and gradients; oneDNN's own
    bf16 LSTM is wrong for the AWD-LSTM's sizes) and the decoder in bf16. One training step (bs 64, two threads)
    against fp32: the language model (72 tokens) about 0.5x on AMX, 0.65x on AVX-512 BF16 (AMD EPYC, Zen 4); the
    classifier (300 tokens) 0.70x on AVX-512 BF16. Elsewhere (other CPUs, CUDA) the learner stays in fp32;
    ``learn.to_fp32()`` undoes the choice, ``learn.to_bf16()``/``to_fp16()`` opt in.
    """
    device = getattr(learn.dls, "device", None)
    if device is not None and torch.device(device).type == "cpu" and cpu_has_bf16_matmul():
        learn.add_cb(MixedPrecision("bf16", train_only=True))
    return learn


def language_model_learner(dls: Any, arch: Any, config: dict | None = None, drop_mult: float = 1.0,
                           backwards: bool = False, pretrained: bool = True,
                           pretrained_fnames: Sequence[str] | None = None, **kwargs: Any) -> LMLearner:
    """A language model on ``dls`` (from ``TextDataLoaders(..., is_lm=True)`` or a ``TextBlock(is_lm=True)``).

    Args:
        dls: language-model loaders.
        arch: `AWD_LSTM`.
        config: the architecture's config (default `awd_lstm_lm_config`).
        drop_mult: scales every dropout.
        backwards: use the backwards pretrained model (for data built with ``backwards=True``).
        pretrained: start from the WikiText-103 weights in ``$LAMINA_HOME/models/wt103-fwd`` (see
            `lamina.text.pretrained`), fitted to the data's vocabulary; the learner is then frozen.
        pretrained_fnames: ``(weights, vocab)`` file stems under ``learn.path/learn.model_dir`` instead.
        **kwargs: `Learner` arguments (``metrics``, ``opt_func``, ``wd``, ``cbs`` ...).

    Raises:
        PretrainedWeightsError: with ``pretrained=True``, when the weights are neither cached nor downloadable
            (the message says where to put them), as `vision_learner` does.
    """
    vocab, meta = text_vocab_of(dls), _arch_meta(arch)
    model = get_language_model(arch, len(vocab), config=config, drop_mult=drop_mult)
    kwargs.setdefault("loss_func", CrossEntropyLossFlat())
    learn = LMLearner(dls, model, splitter=meta["split_lm"], **kwargs)
    json_config = _json_config(config, meta["config_lm"])
    learn.model_config = None if json_config is None else {"factory": "get_language_model", "kwargs": {
        "arch": text_arch_name(arch), "vocab_sz": len(vocab), "config": json_config, "drop_mult": drop_mult}}
    if pretrained or pretrained_fnames:
        _load_pretrained(learn, arch, backwards, pretrained_fnames, None)
    return text_default_bf16(learn)


def text_classifier_learner(dls: Any, arch: Any, seq_len: int = 72, config: dict | None = None,
                            backwards: bool = False, pretrained: bool = True, drop_mult: float = 0.5,
                            n_out: int | None = None, lin_ftrs: Sequence[int] | None = None,
                            ps: Sequence[float] | None = None, max_len: int = 72 * 20,
                            y_range: Sequence[float] | None = None, **kwargs: Any) -> TextLearner:
    """A text classifier on ``dls``: an `AWD_LSTM` encoder read ``seq_len`` tokens at a time, concat pooling, a head.

    Args:
        dls: classifier loaders (`TextDataLoaders` or a DataBlock with a TextBlock and a target block).
        arch: `AWD_LSTM`.
        seq_len: the encoder's chunk length.
        config: the architecture's config (default `awd_lstm_clas_config`).
        backwards: use the backwards pretrained model.
        pretrained: start the encoder from the WikiText-103 weights (see `language_model_learner`); frozen then.
        drop_mult: scales every dropout.
        n_out: the number of outputs (default: from the data).
        lin_ftrs, ps: hidden sizes and dropouts of the head.
        max_len: how many final tokens the pooling sees.
        y_range: squash the outputs into ``(low, high)``.
        **kwargs: `Learner` arguments.

    Raises:
        ValueError: when the data implies no number of outputs and ``n_out`` is not given.
        PretrainedWeightsError: as in `language_model_learner`.
    """
    vocab, meta = text_vocab_of(dls), _arch_meta(arch)
    n_out = n_out if n_out is not None else get_c(dls)
    if not n_out:
        raise ValueError("`n_out` is not defined and could not be inferred from the data: pass n_out=")
    model_kwargs = {"arch": text_arch_name(arch), "vocab_sz": len(vocab), "n_class": int(n_out), "seq_len": seq_len,
                    "drop_mult": drop_mult, "lin_ftrs": None if lin_ftrs is None else [int(n) for n in lin_ftrs],
                    "ps": None if ps is None else [float(p) for p in ps],
                    "pad_idx": vocab.index(PAD) if PAD in vocab else 1, "max_len": max_len,
                    "y_range": None if y_range is None else [float(v) for v in y_range]}
    model = get_text_classifier(config=config, **model_kwargs)
    learn = TextLearner(dls, model, splitter=meta["split_clas"], **kwargs)
    json_config = _json_config(config, meta["config_clas"])
    learn.model_config = None if json_config is None else {"factory": "get_text_classifier",
                                                           "kwargs": {**model_kwargs, "config": json_config}}
    if pretrained:
        _load_pretrained(learn, arch, backwards, None, _encoder(model))
    return text_default_bf16(learn)
