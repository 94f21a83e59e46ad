"""Export a trained Learner to one safe file, and load it back for inference.

The file is a safetensors file: the model's weights as tensors, and in its metadata a JSON
description of everything else needed to predict (format version, learner class, how to rebuild
the model and the inference data pipeline, the loss). Nothing is pickled, so loading never runs
code from the file: the description may only name callables inside the ``lamina`` package (or in
packages the caller names as trusted), and those are called with JSON arguments.

Example:
    >>> learn.export("pets.pkl")                     # fastai's default name works; the content is safe
    >>> learn = load_learner("pets.pkl"); learn.predict("cat.jpg")
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write
from .core import rank_distrib

__all__ = ["export_learner", "load_learner", "resolve_callable", "ExportError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META_KEY = "lamina"


class ExportError(Exception):
    """An export cannot be written, or a file cannot be loaded as a lamina export."""


def _allowed(module_name: str, trusted: tuple[str, ...]) -> bool:
    return any(module_name == root or module_name.startswith(root + ".") for root in ("lamina", *trusted))


def resolve_callable(path: str, trusted: tuple[str, ...] = ()) -> Any:
    """Import ``'<module>:<name>'`` (dotted names allowed after the colon) from lamina or a trusted package.

    Args:
        path: ``'lamina.<module>:<name>'``, or a module inside one of the ``trusted`` packages.
        trusted: top-level packages of your own whose callables an export may name (opt-in).

    Raises:
        ExportError: when the path is outside lamina and the trusted packages, or does not exist.
    """
    module_name, _, qualname = path.partition(":")
    if not qualname or not _allowed(module_name, tuple(trusted)):
        raise ExportError(f"Refusing to load {path!r}: an export may only name callables inside the lamina package "
                          "('lamina.<module>:<name>') or in packages you trust: load_learner(..., trusted=('mypkg',))")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ExportError(f"The export names {path!r}, which this lamina version does not have: "
                          "load it with the lamina version that wrote it") from e
    return obj


def _class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _describe(learn: Any) -> dict:
    """The JSON description of ``learn`` (raises ExportError naming what is missing)."""
    if not getattr(learn, "model_config", None):
        raise ExportError("learn.export() needs to know how to rebuild the model: this Learner has no `model_config`. "
                          "Learners from lamina's factories (vision_learner, tabular_learner, ...) set it; for a model "
                          "of your own, put its builder in an importable module of yours and set learn.model_config = "
                          "{'factory': 'mypkg.models:build', 'kwargs': {...JSON...}}, then load with "
                          "load_learner(fname, trusted=('mypkg',))")
    inference = getattr(learn.dls, "inference", None)
    if not inference:
        raise ExportError("learn.export() needs the data's inference pipeline, but `learn.dls.inference` is not set: "
                          "build the DataLoaders with a lamina factory")
    to_config = getattr(learn.loss_func, "to_config", None)
    if to_config is None:
        raise ExportError(f"learn.export() cannot describe the loss {type(learn.loss_func).__name__}: use a lamina loss "
                          "(lamina.losses) or one with a to_config() method")
    learner_path = _class_path(learn)
    for path in (learner_path, learn.model_config["factory"], inference["builder"]):
        module_name, _, qualname = path.partition(":")
        if not qualname:
            raise ExportError(f"learn.export() cannot name {path!r}: use 'package.module:function'")
    return {"format": "lamina-export", "version": FORMAT_VERSION, "learner": learner_path,
            "model": learn.model_config, "data": inference, "loss": to_config(),
            "splitter": getattr(learn, "splitter_name", None)}


def export_learner(learn: Any, fname: str | Path = "export.pkl") -> Path | None:
    """Write ``learn`` to ``learn.path / fname`` (atomically: a failed export keeps the old file).

    Returns:
        the path written, or None on processes other than rank 0.
    """
    from safetensors.torch import save
    if rank_distrib() != 0:
        return None
    description = json.dumps(_describe(learn))
    state = {k: v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    shared = _dedupe_shared(state)
    blob = save(state, metadata={_META_KEY: description, "shared": json.dumps(shared)})
    path = Path(fname)
    path = path if path.is_absolute() else learn.path / path
    return atomic_write(path, lambda f: f.write(blob), size_hint=len(blob), what="export")


def _dedupe_shared(state: dict) -> dict:
    """safetensors refuses tensors sharing memory: keep one and remember the aliases."""
    seen, aliases = {}, {}
    for key in list(state):
        t = state[key]
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype) if t.numel() else None
        if ident is not None and ident in seen:
            aliases[key] = seen[ident]
            del state[key]
        elif ident is not None:
            seen[ident] = key
    for key in state:
        state[key] = state[key].clone() if key in aliases.values() else state[key]
    return aliases


def load_learner(fname: str | Path, cpu: bool = True, trusted: tuple[str, ...] = ()) -> Any:
    """Load a learner written by ``learn.export`` (never unpickles; only lamina callables are rebuilt).

    Args:
        fname: the exported file.
        cpu: load on the CPU (else on `default_device()`).
        trusted: packages of your own whose model builders the export may name (e.g. ``('mypkg',)``).

    Raises:
        FileNotFoundError: naming the file when it does not exist.
        ExportError: when the file is not a lamina export (e.g. a fastai pickle) or names unknown callables.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = Path(fname)
    if not path.exists():
        raise FileNotFoundError(f"No exported learner at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise ExportError(f"{path} is not a lamina export (it is not a safetensors file; fastai's pickled exports "
                          "cannot be loaded safely: re-export the model with lamina)") from e
    if _META_KEY not in metadata:
        raise ExportError(f"{path} is a safetensors file but not a lamina export (no '{_META_KEY}' description)")
    desc = json.loads(metadata[_META_KEY])
    if desc.get("version", 0) > FORMAT_VERSION:
        raise ExportError(f"{path} was written by a newer lamina (format {desc['version']}; this one reads up to "
                          f"{FORMAT_VERSION}): upgrade lamina")
    from .core import default_device
    device = torch.device("cpu") if cpu else default_device()
    trusted = tuple(trusted)
    dls = resolve_callable(desc["data"]["builder"], trusted)(**desc["data"].get("kwargs", {}))
    dls.to(device)
    model = resolve_callable(desc["model"]["factory"], trusted)(**desc["model"].get("kwargs", {}))
    state = load_file(str(path), device="cpu")
    for alias, key in json.loads(metadata.get("shared", "{}")).items():
        state[alias] = state[key]
    model.load_state_dict(state)
    model.to(device).eval()
    from .losses import loss_from_config
    learner_cls = resolve_callable(desc["learner"], trusted)
    learn = learner_cls(dls, model, loss_func=loss_from_config(desc["loss"]))
    learn.model_config = desc["model"]
    return learn
