"""Export a trained Learner to one safe file, and load it back for inference.

The file is a safetensors file: the model's weights as tensors, and in its metadata a JSON
description of everything else needed to predict (format version, learner class, how to rebuild
the model and the inference data pipeline, the loss). Nothing is pickled, and the description names
what to rebuild only by plain names registered in `lamina.registry` (``"TabularModel"``,
``"tabular_inference_dls"``, ``"TabularLearner"``), called with JSON arguments. Loading never follows
a dotted path or imports a module named by the file, except ``'mypkg.module:build'`` entries for
packages the caller trusts by name (``load_learner(fname, trusted=('mypkg',))``).

Example:
    >>> learn.export("pets.pkl")                     # fastai's default name works; the content is safe
    >>> learn = load_learner("pets.pkl"); learn.predict("cat.jpg")
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write
from .compiled import fit_state_keys, plain_state_dict
from .core import rank_distrib
from .registry import lookup, registered

__all__ = ["export_learner", "load_learner", "resolve_entry", "ExportError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META_KEY = "lamina"

_KIND = {"learner": "learner", "model.factory": "model", "data.builder": "data"}

# A real fastai export is a pickle (protocol 2+ starts with 0x80) or torch.save's zip archive.
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
# Model arguments with which lamina's builders fetch weights (torchvision `weights`, timm's others).
_FETCHING_KWARGS = ("weights", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


class ExportError(Exception):
    """An export cannot be written, or a file cannot be loaded as a lamina export."""


# --- names: what an export may call ---------------------------------------------------------------------


def _trusted_roots(trusted: Sequence[str] | str) -> tuple[str, ...]:
    roots = (trusted,) if isinstance(trusted, str) else tuple(trusted)
    for root in roots:
        top = root.split(".")[0] if isinstance(root, str) else None
        if top is None or not all(part.isidentifier() for part in root.split(".")):
            raise ValueError(f"`trusted` must hold package names such as 'mypkg'; received: trusted={trusted!r}")
        if top == "lamina" or top == "builtins" or top in sys.stdlib_module_names:
            raise ValueError(f"`trusted` is for packages of your own; received {root!r}. lamina's own builders "
                             "are found by their registered names, and Python's standard library is never trusted")
    return roots


def resolve_entry(entry: Any, field: str, trusted: Sequence[str] | str = ()) -> Any:
    """The builder or class an export's ``field`` names: a registered plain name, or a trusted package's own.

    Args:
        entry: the value of the field, e.g. ``'TabularModel'`` or ``'mypkg.models:build'``.
        field: ``'learner'``, ``'model.factory'`` or ``'data.builder'``.
        trusted: packages of your own whose top-level functions and classes the entry may name.

    Raises:
        ExportError: naming the field and the entry, for anything else.
    """
    kind = _KIND[field]
    found = lookup(kind, entry)
    if found is not None:
        return found[1]
    if isinstance(entry, str) and ":" in entry:
        module_name = entry.partition(":")[0]
        for root in _trusted_roots(trusted):
            if module_name == root or module_name.startswith(root + "."):
                return _from_trusted(entry, field, kind, root)
    known = ", ".join(sorted(registered(kind)))
    raise ExportError(f"field {field!r} names {entry!r}, which is not something an export may name: use one of "
                      f"lamina's registered names ({known}), or for a builder or class of your own "
                      "'mypkg.module:name' and load with load_learner(fname, trusted=('mypkg',))")


def _from_trusted(entry: str, field: str, kind: str, root: str) -> Any:
    """A top-level function or class defined in the trusted package ``root``, found on the module the entry names."""
    module_name, _, name = entry.partition(":")
    parts = [*module_name.split("."), name]
    if not all(part.isidentifier() and not part.startswith("__") for part in parts):
        raise ExportError(f"field {field!r} names {entry!r}: a trusted entry must be 'package.module:name' with one "
                          "plain name after the colon (no dots, no dunders)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ExportError(f"field {field!r} names {entry!r}, but {module_name!r} cannot be imported ({e}): install "
                          "the package that defines it") from e
    obj = getattr(module, name, None)
    defined_here = getattr(obj, "__module__", None) or ""
    if not ((inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__qualname__", None) == name
            and (defined_here == root or defined_here.startswith(root + "."))):
        raise ExportError(f"field {field!r} names {entry!r}, which is not a top-level function or class defined in "
                          f"the trusted package {root!r}")
    if kind == "learner":
        # lamina's Learner through the registry: lamina.learner imports this module (Learner.export), so an
        # import of it here would make the two modules import each other
        learner_base = registered("learner")["Learner"]
        if not (inspect.isclass(obj) and issubclass(obj, learner_base)):
            raise ExportError(f"field {field!r} names {entry!r}, which is not a Learner class")
    return obj


def _check_json(value: Any, field: str) -> None:
    """Refuse anything but plain JSON values in ``field`` (a dotted path; tuples are written as lists)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{field}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExportError(f"field {field!r} has the key {key!r} ({type(key).__name__}): JSON keys are text, "
                                  "so it would come back as a different key; use text keys")
            _check_json(item, f"{field}.{key}" if field else key)
    else:
        raise ExportError(f"field {field!r} must be a plain JSON value (dict, list, str, int, float, bool or None); "
                          f"received {type(value).__name__}: {repr(value)[:80]}")


# --- writing ---------------------------------------------------------------------------------------------


def _export_name(entry: Any, field: str) -> str:
    """The plain name to write for ``entry`` (old 'lamina.x:name' strings become plain names), if it will load."""
    found = lookup(_KIND[field], entry)
    if found is not None:
        return found[0]
    try:  # an entry of the user's own package loads when that package is trusted
        trusted = _trusted_roots(entry.partition(":")[0].split(".")[0]) if isinstance(entry, str) else ()
    except ValueError:
        trusted = ()
    try:
        resolve_entry(entry, field, trusted)
    except ExportError as e:
        raise ExportError(f"learn.export() would write a file load_learner refuses: {e}") from e
    return entry


def _learner_name(learn: Any) -> str:
    cls = type(learn)
    for key, learner_cls in registered("learner").items():
        if learner_cls is cls:
            return key
    if cls.__module__ == "__main__" or cls.__module__.split(".")[0] == "lamina":
        raise ExportError(f"learn.export() cannot name the Learner class {cls.__qualname__!r}: move it into a module "
                          "of your package (loaded with trusted=('mypkg',)) or register it with "
                          "lamina.registry.register('learner')")
    return _export_name(f"{cls.__module__}:{cls.__qualname__}", "learner")


def _describe(learn: Any) -> dict:
    """The JSON description of ``learn`` (raises ExportError naming what is missing or cannot be loaded)."""
    model = getattr(learn, "model_config", None)
    if not model:
        raise ExportError("learn.export() needs to know how to rebuild the model: this Learner has no `model_config`. "
                          "Learners from lamina's factories (vision_learner, tabular_learner, ...) set it; for a model "
                          "of your own, put its builder in an importable module of yours and set learn.model_config = "
                          "{'factory': 'mypkg.models:build', 'kwargs': {...JSON...}}, then load with "
                          "load_learner(fname, trusted=('mypkg',))")
    data = getattr(learn.dls, "inference", None)
    if not data:
        raise ExportError("learn.export() needs the data's inference pipeline, but `learn.dls.inference` is not set: "
                          "build the DataLoaders with a lamina factory")
    to_config = getattr(learn.loss_func, "to_config", None)
    if to_config is None:
        raise ExportError(f"learn.export() cannot describe the loss {type(learn.loss_func).__name__}: use a lamina loss "
                          "(lamina.losses) or one with a to_config() method")
    model = {**model, "factory": _export_name(model.get("factory"), "model.factory")}
    data = {**data, "builder": _export_name(data.get("builder"), "data.builder")}
    desc = {"format": "lamina-export", "version": FORMAT_VERSION, "learner": _learner_name(learn),
            "model": model, "data": data, "loss": to_config()}
    try:
        _check_json(desc, "")
    except ExportError as e:
        raise ExportError(f"learn.export() cannot write it: {e}. Describe the model and data with JSON values "
                          "(numbers, text, lists, dicts with text keys)") from None
    _check_weights_come_from_file(registered("model").get(model["factory"]), model.get("kwargs") or {})
    return desc


def _check_weights_come_from_file(factory: Any, kwargs: dict) -> None:
    """Refuse the arguments that make lamina's builders download or read weights (torchvision's, timm's
    ``checkpoint_path`` unpickles): an export carries its weights, and a file must not point elsewhere."""
    fetching = {k: kwargs[k] for k in ("pretrained", *_FETCHING_KWARGS) if kwargs.get(k) not in (None, False)}
    if fetching and any(factory is builder for builder in registered("model").values()):
        raise ExportError(f"field 'model.kwargs' asks {factory.__name__} to fetch weights ({fetching}); an export "
                          f"carries its weights, so pretrained must be false and {', '.join(_FETCHING_KWARGS)} null")


def export_learner(learn: Any, fname: str | Path = "export.pkl") -> Path | None:
    """Write ``learn`` to ``learn.path / fname`` (atomically: a failed export keeps the old file).

    Returns:
        the path written, or None on processes other than rank 0.

    Raises:
        ExportError: when the learner cannot be described in a file that `load_learner` accepts.
    """
    from safetensors.torch import save
    if rank_distrib() != 0:
        return None
    description = json.dumps(_describe(learn))
    state = {k: v.detach().cpu().contiguous() for k, v in plain_state_dict(learn.model).items()}
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


# --- reading ---------------------------------------------------------------------------------------------


def _damaged(size: int, expected: int, at_least: bool = False) -> ExportError:
    count = (f"{size} of {'at least ' if at_least else ''}{expected} bytes present" if size < expected else
             f"{size} bytes where its header announces {expected}")
    return ExportError(f"the file is damaged ({count}): it was cut short or altered; copy or export it again")


def _read_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata, after checking the header and that the file has exactly the bytes it announces.

    A safetensors file is an 8-byte little-endian header length, a JSON header (tensor dtypes, shapes and
    byte offsets, plus ``__metadata__``), then the tensor bytes: so the expected size is known exactly.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(9)
        if len(start) < 8:
            raise _damaged(size, 8, at_least=True)
        n = int.from_bytes(start[:8], "little")
        # A header length may begin with byte 0x80 too: only a file without a JSON header is taken for a pickle.
        if start[8:] != b"{" and start.startswith(_PICKLE_MAGIC):
            raise ExportError("it is a pickled fastai/torch file, not a lamina export: pickles run code when loaded, "
                              "so lamina cannot load it safely; re-export the model with lamina (learn.export())")
        if n > _MAX_HEADER:
            raise ExportError(f"it is not a lamina export (no safetensors header: {size} bytes, the first 8 announce "
                              f"a {n}-byte header) or the file is damaged; export the learner again")
        if 8 + n > size:
            raise _damaged(size, 8 + n, at_least=True)
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError) as e:
            raise ExportError(f"the file is damaged (its safetensors header is not valid JSON: {e})") from e
    if not isinstance(header, dict):
        raise ExportError("the file is damaged (its safetensors header is not a JSON object)")
    offsets = [entry.get("data_offsets") if isinstance(entry, dict) else None
               for key, entry in header.items() if key != "__metadata__"]
    ends = [pair[1] if isinstance(pair, list) and len(pair) == 2 else None for pair in offsets]
    if not all(isinstance(end, int) and end >= 0 for end in ends):
        raise ExportError("the file is damaged (its safetensors header has a tensor without valid data_offsets)")
    if size != 8 + n + max(ends, default=0):
        raise _damaged(size, 8 + n + max(ends, default=0))
    metadata = header.get("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise ExportError("the file is damaged (its safetensors __metadata__ is not a dict of strings)")
    return metadata


def _parse(metadata: dict[str, str], key: str, default: str | None = None) -> Any:
    text = metadata.get(key, default)
    if text is None:
        raise ExportError(f"metadata {key!r} is missing (found: {sorted(metadata)}): it is a safetensors file but "
                          "not a lamina export, or the file is damaged")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(f"metadata {key!r} is not valid JSON at line {e.lineno} column {e.colno} ({e.msg}): the "
                          "file is damaged or was edited; export the learner again") from e


def _field(parent: dict, field: str, kind: type, required: bool = True) -> Any:
    """``parent[<last part of field>]``, checked for its type; the error names the dotted field."""
    key = field.rpartition(".")[2]
    if key not in parent and not required:
        return kind()
    if key not in parent:
        raise ExportError(f"field {field!r} is missing: the file is damaged or was edited; export the learner again")
    if not isinstance(parent[key], kind) or isinstance(parent[key], bool) and kind is int:
        expected = {dict: "a JSON object", str: "a string", int: "an integer"}[kind]
        raise ExportError(f"field {field!r} must be {expected}; received {parent[key]!r:.80}")
    return parent[key]


def _description(metadata: dict[str, str]) -> dict:
    """The checked JSON description. Fields it does not know are not read: older exports also hold
    ``"splitter": null`` (a field never filled in, no longer written)."""
    desc = _parse(metadata, _META_KEY)
    if not isinstance(desc, dict):
        raise ExportError(f"metadata {_META_KEY!r} must be a JSON object; received {type(desc).__name__}")
    version = _field(desc, "version", int)
    if version > FORMAT_VERSION:
        raise ExportError(f"it was written by a newer lamina (format {version}; this one reads up to "
                          f"{FORMAT_VERSION}): upgrade lamina")
    for section, entry in (("model", "factory"), ("data", "builder")):
        _field(_field(desc, section, dict), f"{section}.{entry}", str)
        _field(desc[section], f"{section}.kwargs", dict, required=False)
    _field(desc, "learner", str)
    _field(desc, "loss", dict)
    _check_json(desc, "")
    return desc


def _build(builder: Any, kwargs: dict, field: str) -> Any:
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise ExportError(f"field {field!r} could not be rebuilt ({type(e).__name__}: {e}); the file is damaged or "
                          "was written by another lamina version") from e


def load_learner(fname: str | Path, cpu: bool = True, trusted: Sequence[str] | str = ()) -> Any:
    """Load a learner written by ``learn.export`` (never unpickles; only registered builders are called).

    Args:
        fname: the exported file.
        cpu: load on the CPU (else on `default_device()`).
        trusted: packages of your own whose top-level builders the export may name (e.g. ``('mypkg',)``).

    Raises:
        FileNotFoundError: naming the file when it does not exist.
        ExportError: naming the file, when it is not a lamina export (e.g. a fastai pickle), is damaged (how many
            bytes are missing, or which field is bad), or names something outside lamina's registries.
    """
    path = Path(fname)
    if not path.exists():
        raise FileNotFoundError(f"No exported learner at {path}")
    try:
        return _load(path, cpu, _trusted_roots(trusted))
    except ExportError as e:
        raise ExportError(f"Cannot load {path}: {e}") from e.__cause__


def _load(path: Path, cpu: bool, trusted: tuple[str, ...]) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    metadata = _read_metadata(path)
    desc = _description(metadata)
    shared = _parse(metadata, "shared", "{}")
    if not (isinstance(shared, dict) and all(isinstance(v, str) for v in shared.values())):
        raise ExportError("metadata 'shared' must map tensor names to tensor names")
    # Every name is resolved before anything is called.
    learner_cls = resolve_entry(desc["learner"], "learner", trusted)
    factory = resolve_entry(desc["model"]["factory"], "model.factory", trusted)
    builder = resolve_entry(desc["data"]["builder"], "data.builder", trusted)
    _check_weights_come_from_file(factory, desc["model"].get("kwargs", {}))
    from .core import default_device
    from .losses import loss_from_config
    device = torch.device("cpu") if cpu else default_device()
    dls = _build(builder, desc["data"].get("kwargs", {}), "data")
    dls.to(device)
    model = _build(factory, desc["model"].get("kwargs", {}), "model")
    try:
        state = load_file(str(path), device="cpu")
        state.update({alias: state[key] for alias, key in shared.items()})
        model.load_state_dict(fit_state_keys(state, model))
    except SafetensorError as e:
        raise ExportError(f"the file is damaged (its tensors cannot be read: {e})") from e
    except (KeyError, RuntimeError) as e:
        raise ExportError(f"the weights do not fit the model that field 'model' describes ({e}); the file is "
                          "damaged or was edited") from e
    model.to(device).eval()
    learn = learner_cls(dls, model, loss_func=_build(loss_from_config, {"cfg": desc["loss"]}, "loss"))
    learn.model_config = desc["model"]
    return learn
