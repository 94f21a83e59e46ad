"""What an export may name: model builders, data (inference loaders) builders and learner classes, by plain names.

An exported file says how to rebuild a learner ("build the model with ``TabularModel`` and these JSON
arguments"). `load_learner` looks each name up in these dicts and nowhere else, so a file can only ask for
something lamina registered on purpose: no attribute traversal, no import by a name read from a file.
Losses, transforms, tabular procs and activations have their own tables, filled where they are defined
(`lamina.losses.LOSSES`, `lamina.data.transforms.ITEM_TFMS`, `lamina.data.transforms.BATCH_TFMS`,
`lamina.tabular.procs.PROCS`, `lamina.models.activations.ACTIVATIONS`), looked up the same way.

This module imports nothing from lamina at import time, so every layer can register into it; `registered`
imports the registering modules (one fixed tuple) when an export is read or written.

Example:
    >>> @register("model")
    ... def tiny_mlp(n_in: int = 2, n_out: int = 2, hidden: int = 16) -> nn.Module: ...
    >>> MODELS["tiny_mlp"] is tiny_mlp
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MODELS", "DATA", "LEARNERS", "register", "registered", "lookup"]

T = TypeVar("T")

# Plain name -> the object. Filled by `register` when the defining module is imported.
MODELS: dict[str, Callable[..., Any]] = {}  # model builders: called with the export's model kwargs
DATA: dict[str, Callable[..., Any]] = {}  # inference DataLoaders builders: called with the data kwargs
LEARNERS: dict[str, type] = {}  # Learner classes: called as cls(dls, model, loss_func=...)

_TABLES = {"model": MODELS, "data": DATA, "learner": LEARNERS}

# The modules whose import fills the tables (fixed names, never names read from a file).
REGISTERING_MODULES = ("lamina.learner", "lamina.testing", "lamina.data.loaders", "lamina.models.tabular",
                       "lamina.models.collab", "lamina.models.vision", "lamina.models.xresnet", "lamina.vision.data",
                       "lamina.tabular.data", "lamina.tabular.learner", "lamina.collab.data", "lamina.collab.learner",
                       "lamina.models.text", "lamina.text.data", "lamina.text.learner")

# The exact strings that exports held before plain names ('module:name'), mapped to the plain names.
# Only ever read by dict lookup: an old file loads, and no string is ever followed as a path. The vision
# builders have since moved to lamina.models.vision; their old strings still name them here.
LEGACY_NAMES = {
    "learner": {"lamina.learner:Learner": "Learner", "lamina.tabular.learner:TabularLearner": "TabularLearner",
                "lamina.collab.learner:CollabLearner": "CollabLearner"},
    "model": {"lamina.vision.learner:create_vision_model": "create_vision_model",
              "lamina.vision.learner:create_unet_model": "create_unet_model",
              "lamina.models.tabular:TabularModel": "TabularModel",
              "lamina.models.collab:EmbeddingNN": "EmbeddingNN",
              "lamina.models.collab:embedding_dot_bias": "embedding_dot_bias",
              "lamina.testing:tiny_mlp": "tiny_mlp"},
    "data": {"lamina.data.loaders:tensor_inference_dls": "tensor_inference_dls",
             "lamina.vision.data:inference_dls": "inference_dls",
             "lamina.tabular.data:tabular_inference_dls": "tabular_inference_dls",
             "lamina.collab.data:collab_inference_dls": "collab_inference_dls"},
}


def registered(kind: str) -> dict[str, Any]:
    """The full table for ``kind`` (``'model'``, ``'data'`` or ``'learner'``), after importing its modules.

    Raises:
        ValueError: for any other kind.
    """
    if kind not in _TABLES:
        raise ValueError(f"`kind` must be one of {sorted(_TABLES)}; received: kind={kind!r}")
    for module in REGISTERING_MODULES:
        importlib.import_module(module)
    return _TABLES[kind]


def lookup(kind: str, entry: Any) -> tuple[str, Any] | None:
    """``(plain name, object)`` for a registered plain name, or for a string an older export wrote for it
    (`LEGACY_NAMES`, or the object's own ``'module:qualname'``); None for anything else."""
    table = registered(kind)
    if not isinstance(entry, str):
        return None
    if entry not in table:
        own = {_where(obj): key for key, obj in table.items()}
        entry = LEGACY_NAMES[kind].get(entry) or own.get(entry)
    return (entry, table[entry]) if entry in table else None


def register(kind: str, name: str | None = None) -> Callable[[T], T]:
    """Decorator: make a builder or Learner class nameable in exports as ``name`` (default: its ``__name__``).

    Args:
        kind: ``'model'``, ``'data'`` or ``'learner'``.
        name: the plain name written into exports; keep it stable, old files hold it.

    Raises:
        ValueError: for an unknown kind, or a name already taken by a different object.
    """
    if kind not in _TABLES:
        raise ValueError(f"`kind` must be one of {sorted(_TABLES)}; received: kind={kind!r}")
    table = _TABLES[kind]

    def add(obj: T) -> T:
        key = name or obj.__name__
        old = table.get(key)
        # Re-registering the same definition (a module reloaded in a notebook) is fine; a clash is not.
        if old is not None and _where(old) != _where(obj):
            raise ValueError(f"The {kind} name {key!r} is already registered for {_where(old)}; register "
                             f"{_where(obj)} under another name: register({kind!r}, name='...')")
        table[key] = obj
        return obj
    return add


def _where(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"
