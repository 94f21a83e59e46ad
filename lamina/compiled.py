"""``learn.compile()``: the model compiled by ``torch.compile`` for training and inference, in place.

``learn.compile(**torch_compile_kwargs)`` calls ``nn.Module.compile`` on ``learn.model``: the module keeps its
class, its submodules (``learn.model[0]``, freezing, hooks) and its state-dict keys, and its calls run the
compiled graph from the next batch on (the first batches of a fit pay the compile time). ``learn.uncompile()``
undoes it. Compiling is only a way of running the model, so every file lamina writes holds the plain model:

- `plain_model` takes off the wrappers a user may have put on: ``torch.compile(model)`` (an
  ``OptimizedModule``, whose keys start with ``_orig_mod.``) and ``DistributedDataParallel`` / ``DataParallel``
  (``module.``);
- `plain_state_dict` is the state dict without those prefixes (``save``, ``export``);
- `fit_state_keys` maps a file's keys onto a model's, so a checkpoint or an export written from a wrapped model
  (``learn.model = torch.compile(learn.model)`` before lamina had ``compile``) loads into a plain one, and back;
- `uncompiled` runs a block on the plain, uncompiled model (``summary`` hooks every layer, ``to_onnx`` traces).

Example:
    >>> learn = vision_learner(dls, resnet18).compile()   # inductor; backend="aot_eager" needs no C compiler
    >>> learn.fine_tune(1)
    >>> learn.export("pets.pkl")                          # the same file as without compile()
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["CompileMixin", "compile_model", "fit_state_keys", "is_compiled", "plain_model", "plain_state_dict",
           "uncompile_model", "uncompiled"]

_COMPILED = "_orig_mod"  # the attribute (and key component) under which torch.compile's wrapper holds the model
_PARALLEL = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def _is_wrapper(model: Any) -> bool:
    """Whether ``model`` is torch.compile's ``OptimizedModule`` (none can exist before dynamo is imported, and
    importing it costs a second, so it is looked up only when loaded)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def plain_model(model: nn.Module) -> nn.Module:
    """``model`` without torch.compile's ``OptimizedModule`` and DDP / DataParallel wrappers, however nested.

    Example:
        >>> plain_model(torch.compile(nn.Linear(2, 2)))
        Linear(in_features=2, out_features=2, bias=True)
    """
    while True:
        if _is_wrapper(model):
            model = getattr(model, _COMPILED)
        elif isinstance(model, _PARALLEL):
            model = model.module
        else:
            return model


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or one of its submodules runs through torch.compile (wrapped, or compiled in place)."""
    return any(_is_wrapper(m) or getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


def _clean_key(key: str) -> str:
    """A state-dict key without torch.compile's ``_orig_mod`` components (at the top or around a submodule)."""
    return ".".join(part for part in key.split(".") if part != _COMPILED)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with the keys the plain model has: no ``_orig_mod.``, no DDP ``module.``."""
    return {_clean_key(k): v for k, v in plain_model(model).state_dict().items()}


def fit_state_keys(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``state`` with its keys renamed to ``model``'s where they differ only by wrapper prefixes.

    A file written from ``torch.compile(model)`` has ``_orig_mod.`` in its keys and one written from DDP starts
    every key with ``module.``; ``model`` itself may be wrapped too. Keys are matched after removing
    ``_orig_mod`` components, and a leading ``module.`` only when every key of the file has it and the model's
    keys do not (a model may have a submodule named ``module``). Keys that match nothing are kept as they are,
    so ``load_state_dict`` still reports them.
    """
    own = list(model.state_dict())
    if set(state) == set(own):
        return state
    keys = {k: _clean_key(k) for k in state}
    prefix = "module."
    if keys and all(k.startswith(prefix) for k in keys.values()) and not all(k.startswith(prefix) for k in own):
        keys = {k: c[len(prefix):] for k, c in keys.items()}
    targets = {_clean_key(k): k for k in own}
    return {targets.get(keys[k], k): v for k, v in state.items()}


def _check_compile_kwargs(kwargs: dict) -> None:
    allowed = [n for n in inspect.signature(torch.compile).parameters if n != "model"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"learn.compile() takes torch.compile's keyword arguments ({', '.join(allowed)}); received "
                        f"unknown: {', '.join(unknown)}")
    backend = kwargs.get("backend") or "inductor"
    if backend == "inductor" and not torch.cuda.is_available() and not _cxx_compiler():
        raise RuntimeError("learn.compile() with backend='inductor' (the default) builds C++ kernels on the CPU, and "
                           "no C++ compiler was found (looked for $CXX, g++, c++, clang++). Install one (Debian: "
                           "apt-get install g++), or pass backend='aot_eager' (no code generation, smaller gains)")


def _cxx_compiler() -> str | None:
    names = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    return next((found for name in names if name and (found := shutil.which(name))), None)


def compile_model(model: nn.Module, **torch_compile_kwargs: Any) -> nn.Module:
    """Compile ``model`` in place with ``nn.Module.compile`` (after taking off a ``torch.compile`` wrapper).

    Returns:
        the module to use: ``model`` itself, or the module a wrapper held.

    Raises:
        TypeError: an argument that ``torch.compile`` does not take, named.
        RuntimeError: inductor on a CPU-only machine without a C++ compiler, with the fix.
    """
    _check_compile_kwargs(torch_compile_kwargs)
    while _is_wrapper(model):
        model = getattr(model, _COMPILED)
    model.compile(**torch_compile_kwargs)
    return model


def uncompile_model(model: nn.Module) -> nn.Module:
    """``model`` running eagerly again: wrappers from ``torch.compile`` taken off, in-place compilation undone."""
    while _is_wrapper(model):
        model = getattr(model, _COMPILED)
    for m in model.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None  # what nn.Module.compile sets; torch has no public way back
    return model


@contextlib.contextmanager
def uncompiled(learn: Any) -> Iterator[nn.Module]:
    """Within the block, ``learn.model`` is the plain model running eagerly; afterwards it is as it was.

    Used where the model is run for something other than its output: ``summary`` (a hook on every layer) and
    ``to_onnx`` (tracing), which a compiled graph would hide or recompile for.
    """
    model = learn.model
    compiled = {m: m._compiled_call_impl for m in model.modules() if getattr(m, "_compiled_call_impl", None)}
    for m in compiled:
        m._compiled_call_impl = None
    learn.model = plain_model(model)
    try:
        yield learn.model
    finally:
        learn.model = model
        for m, impl in compiled.items():
            m._compiled_call_impl = impl


class CompileMixin:
    """``learn.compile()``, ``learn.uncompile()`` and ``learn.is_compiled`` for the Learner."""

    def compile(self, **torch_compile_kwargs: Any) -> Any:
        """Compile ``learn.model`` in place with ``torch.compile`` for training and inference; returns the learner.

        Args:
            **torch_compile_kwargs: passed to ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ``fullgraph``,
                ``options`` ...). The default backend, inductor, generates C++ on the CPU (needs ``g++``) and
                Triton on CUDA. ``mode='reduce-overhead'`` adds CUDA graphs on a GPU.

        Saving, exporting, ``summary`` and ``to_onnx`` work as before and write the plain model's keys; a
        learner loaded from a file is not compiled (call ``compile`` again).

        Example:
            >>> learn = tabular_learner(dls, metrics=accuracy).compile(backend="aot_eager")
        """
        self.model = compile_model(self.model, **torch_compile_kwargs)
        return self

    def uncompile(self) -> Any:
        """Run ``learn.model`` eagerly again (undoes ``compile`` and a ``torch.compile`` wrapper); returns ``self``."""
        self.model = uncompile_model(self.model)
        return self

    @property
    def is_compiled(self) -> bool:
        """Whether ``learn.model`` runs through ``torch.compile``."""
        return is_compiled(self.model)
