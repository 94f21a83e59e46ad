"""Pretrained WikiText-103 language models: where they live, reading them safely, fitting them to a new vocabulary.

Layout (the extracted fastai archives ``URLs.WT103_FWD`` / ``URLs.WT103_BWD``)::

    $LAMINA_HOME/models/wt103-fwd/lstm_fwd.pth      # the weights: a state dict (or {'model': state dict})
    $LAMINA_HOME/models/wt103-fwd/itos_wt103.pkl    # the vocabulary: a list of str (pickled) ...
    $LAMINA_HOME/models/wt103-fwd/vocab.json        # ... or the same list as JSON
    $LAMINA_HOME/models/wt103-bwd/...               # the backwards model (``backwards=True``)

``untar_data(URLs.WT103_FWD, c_key='model')`` fills that folder (``LAMINA_DATA_URL`` points it at a mirror);
on an offline machine, copy the two files there by hand.

Nothing is unpickled: the weights go through ``torch.load(weights_only=True)`` (tensors and plain
containers only), and a pickled vocabulary through `read_vocab`'s unpickler, which refuses every global
(a list of strings needs none; anything that would import or call code is refused before it runs).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.external import URLs, untar_data
from ..data.archives import DownloadError
from ..models.awd_lstm import convert_fastai_keys
from ..models.bodies import PretrainedWeightsError

__all__ = ["read_vocab", "read_weights", "match_embeds", "pretrained_files", "PRETRAINED_URLS",
           "RestrictedUnpickler"]

PRETRAINED_URLS = {"wt103-fwd": URLs.WT103_FWD, "wt103-bwd": URLs.WT103_BWD}
_MAX_VOCAB_BYTES = 200 * 2**20  # a 60k-word vocabulary is ~0.5 MB; refuse to parse anything absurd


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class or function): only plain data (lists, str, numbers ...)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load the global {module}.{name}: a vocabulary file must hold a "
                                     "plain list of strings")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: a vocabulary file must hold a plain list of strings")


def read_vocab(path: str | Path) -> list[str]:
    """A vocabulary file: a JSON list of str (``.json``), or a pickled list of str read without running any code.

    Raises:
        FileNotFoundError: naming the file when it is missing.
        ValueError: naming the file, when it is not a list of strings (a crafted pickle is refused here).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No vocabulary file at {path}")
    if path.stat().st_size > _MAX_VOCAB_BYTES:
        raise ValueError(f"The vocabulary file {path} is {path.stat().st_size} bytes: too large for a word list")
    data = path.read_bytes()
    try:
        vocab = json.loads(data) if path.suffix == ".json" else RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as e:
        raise ValueError(f"Cannot read the vocabulary file {path} ({e}): it must be a JSON list of strings, or a "
                         "pickled plain list of strings (e.g. fastai's itos_wt103.pkl)") from e
    if not (isinstance(vocab, list) and all(isinstance(t, str) for t in vocab)):
        raise ValueError(f"The vocabulary file {path} holds a {type(vocab).__name__}, not a list of strings")
    return vocab


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file (``torch.load(weights_only=True)``): its state dict, with fastai's names converted.

    Raises:
        FileNotFoundError: naming the file when it is missing.
        ValueError: naming the file, when it holds something other than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"Cannot read the weights file {path} safely ({e}); it must be a torch state dict of "
                         "tensors (torch.save(model.state_dict(), ...))") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"The weights file {path} does not hold a state dict of tensors")
    return convert_fastai_keys(dict(state))


def match_embeds(old_wgts: dict[str, torch.Tensor], old_vocab: Sequence[str],
                 new_vocab: Sequence[str]) -> dict[str, torch.Tensor]:
    """Fit a language model's embedding (and tied decoder, and its bias) to ``new_vocab``: a token of both keeps
    its row, a new token gets the mean row (the mean bias).

    Args:
        old_wgts: the state dict (keys ``0.encoder.weight``, optionally ``0.encoder_dp.emb.weight``,
            ``1.decoder.weight``, ``1.decoder.bias``).
        old_vocab: the vocabulary the weights were trained with.
        new_vocab: the data's vocabulary.

    Returns:
        ``old_wgts`` with those entries replaced.
    """
    wgts = old_wgts["0.encoder.weight"]
    bias = old_wgts.get("1.decoder.bias")
    old_index = {w: i for i, w in enumerate(old_vocab)}
    rows = torch.tensor([old_index.get(w, -1) for w in new_vocab], dtype=torch.long)
    known = rows >= 0
    new_wgts = wgts.mean(0, keepdim=True).repeat(len(new_vocab), 1)
    new_wgts[known] = wgts[rows[known]]
    old_wgts["0.encoder.weight"] = new_wgts
    if "0.encoder_dp.emb.weight" in old_wgts:
        old_wgts["0.encoder_dp.emb.weight"] = new_wgts.clone()
    if "1.decoder.weight" in old_wgts:
        old_wgts["1.decoder.weight"] = new_wgts.clone()
    if bias is not None:
        new_bias = bias.mean().repeat(len(new_vocab))
        new_bias[known] = bias[rows[known]]
        old_wgts["1.decoder.bias"] = new_bias
    return old_wgts


def _first(folder: Path, patterns: Sequence[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def pretrained_files(name: str = "wt103-fwd") -> tuple[Path, Path]:
    """``(weights, vocabulary)`` of the pretrained model ``name``, from ``$LAMINA_HOME/models/<name>/`` (fetched
    with `untar_data` when the folder is missing).

    Raises:
        PretrainedWeightsError: saying where to put the files, when they are neither there nor downloadable.
    """
    url = PRETRAINED_URLS[name]
    folder = URLs.path(url, c_key="model").parent / name
    where = (f"Put the weights (a state dict, e.g. fastai's lstm_fwd.pth) and the vocabulary (itos_wt103.pkl or "
             f"vocab.json, a list of str) in {folder}, or pass pretrained=False to train from scratch")
    try:
        folder = untar_data(url, c_key="model")
    except (DownloadError, OSError) as e:
        raise PretrainedWeightsError(f"The pretrained {name} language model is not in lamina's cache and could not "
                                     f"be downloaded ({e}). {where}") from e
    weights, vocab = _first(folder, ["*.pth", "*.pt"]), _first(folder, ["*.json", "*.pkl"])
    if weights is None or vocab is None:
        raise PretrainedWeightsError(f"The pretrained {name} folder {folder} is incomplete (weights: {weights}, "
                                     f"vocabulary: {vocab}). {where}")
    return weights, vocab
