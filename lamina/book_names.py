"""The names fastai's star imports put in a notebook beyond its own API, which the fastai book's code uses without
importing them: standard-library modules (``re``, ``random``, ``os``, ``json`` ...), ``copy``/``deepcopy``,
``Counter``/``defaultdict``, ``reduce``, ``set_trace``, ``plt`` (imported on first use), and small helpers
(``coll_repr``, ``ifnone``, ``listify``, ``tuplify``, ``store_attr``, ``patch``, ``params``, ``flatten_model``,
``apply_init``, ``trunc_normal_``, ``flatten_check``). `lamina.basics` re-exports them, so every ``*.all``
surface has them.

Example:
    >>> from lamina.vision.all import *
    >>> re.findall(r'(.+)_\\d+.jpg$', 'great_pyrenees_173.jpg')
    ['great_pyrenees']
    >>> coll_repr(range(20), 3)
    '(#20) [0,1,2...]'
"""

from __future__ import annotations

import bz2
import collections
import csv
import functools
import glob
import hashlib
import importlib
import inspect
import io
import itertools
import json
import mimetypes
import numbers
import operator
import os
import pickle
import random
import re
import shutil
import string
import sys
import tarfile
import tempfile
import threading
import time
import types
import typing
import urllib
import warnings
import zipfile
from collections import Counter, OrderedDict, defaultdict, namedtuple
from copy import copy, deepcopy
from functools import reduce
from pdb import set_trace
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["bz2", "collections", "csv", "functools", "glob", "hashlib", "inspect", "io", "itertools", "json",
           "mimetypes", "numbers", "operator", "os", "pickle", "random", "re", "shutil", "string", "sys", "tarfile",
           "tempfile", "threading", "time", "types", "typing", "urllib", "warnings", "zipfile", "Counter",
           "OrderedDict", "defaultdict", "namedtuple", "copy", "deepcopy", "reduce", "set_trace", "plt",
           "coll_repr", "ifnone", "listify", "tuplify", "store_attr", "patch", "params", "flatten_model",
           "apply_init", "trunc_normal_", "flatten_check", "LazyModule"]


class LazyModule(types.ModuleType):
    """A stand-in for the module ``name`` that imports it on first attribute access (``plt.subplots()``), so
    a surface can offer ``plt`` without paying matplotlib's import where nothing plots."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_target"] = name

    def _module(self) -> types.ModuleType:
        return importlib.import_module(self.__dict__["_target"])

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._module())

    def __repr__(self) -> str:
        return f"<module {self.__dict__['_target']!r}, imported on first use>"


plt = LazyModule("matplotlib.pyplot")

_SCALARS = (str, bytes, bytearray, dict, torch.Tensor)


def coll_repr(c: Iterable, max_n: int = 10) -> str:
    """``c``'s length and its first ``max_n`` items, as `L` shows them: ``(#20) [0,1,2...]``."""
    items = list(c)
    shown = ",".join(repr(o) for o in items[:max_n])
    return f"(#{len(items)}) [{shown}{'...' if len(items) > max_n else ''}]"


def ifnone(a: Any, b: Any) -> Any:
    """``b`` when ``a`` is None, else ``a``."""
    return b if a is None else a


def listify(o: Any = None, *rest: Any) -> list:
    """``o`` as a list: [] for None, the items of a list, tuple, range, generator or other iterable, and a
    one-item list for a string, dict, tensor, array or any other single object. Several arguments: their list."""
    if rest:
        return [o, *rest]
    if o is None:
        return []
    if isinstance(o, list):
        return o
    if isinstance(o, _SCALARS) or hasattr(o, "__array__") or not isinstance(o, Iterable):
        return [o]
    return list(o)


def tuplify(o: Any, use_list: bool = False, match: Any = None) -> tuple:
    """``listify(o)`` as a tuple (a list with ``use_list``); a single item is repeated to ``len(match)``."""
    items = listify(o)
    if match is not None and len(items) == 1:
        items = items * len(match)
    return list(items) if use_list else tuple(items)


def store_attr(names: str | Iterable[str] | None = None, but: str | Iterable[str] = (), **attrs: Any) -> None:
    """In a method (``__init__``), store its arguments on ``self``: all of them, those of ``names`` (a list or a
    comma-separated string), less those of ``but``; keyword arguments are stored as given instead.

    Example:
        >>> class Scaler:
        ...     def __init__(self, a, b=2): store_attr()
        >>> Scaler(1).b
        2
    """
    frame = sys._getframe(1)
    try:
        args = frame.f_locals
        if "self" not in args:
            raise TypeError("store_attr() stores a method's arguments on `self`: call it inside a method whose "
                            "first argument is named self (or pass values: store_attr(a=1))")
        target = args["self"]
        if attrs:
            for k, v in attrs.items():
                setattr(target, k, v)
            return
        code = frame.f_code
        wanted = _names(names) if names is not None else list(code.co_varnames[1:code.co_argcount
                                                                                 + code.co_kwonlyargcount])
        for name in wanted:
            if name not in _names(but):
                setattr(target, name, args[name])
    finally:
        del frame


def _names(names: str | Iterable[str]) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()] if isinstance(names, str) else list(names)


def patch(f: Callable) -> Callable:
    """Add ``f`` as a method to the class its first argument is annotated with (``def show(self: Learner)``);
    a union (``Learner | Recorder``) adds it to each. Returns ``f``."""
    first = next(iter(inspect.signature(f).parameters), None)
    frame = sys._getframe(1)
    try:  # a string annotation (``from __future__ import annotations``) may name a class local to the caller
        hints = typing.get_type_hints(f, localns=dict(frame.f_locals)) if first is not None else {}
    finally:
        del frame
    if first not in hints:
        raise TypeError(f"@patch adds {f.__name__} to the class of its first argument's annotation: write "
                        f"def {f.__name__}(self: SomeClass, ...)")
    cls = hints[first]
    classes = typing.get_args(cls) if typing.get_args(cls) else (cls,)
    for c in classes:
        setattr(c, f.__name__, f)
    return f


def params(m: nn.Module) -> list[nn.Parameter]:
    """All the parameters of ``m``, as a list."""
    return list(m.parameters())


def flatten_model(m: nn.Module) -> list[nn.Module]:
    """The modules of ``m`` that have no children, in order."""
    children = list(m.children())
    return [leaf for c in children for leaf in flatten_model(c)] if children else [m]


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def apply_init(m: nn.Module, func: Callable = nn.init.kaiming_normal_) -> None:
    """Initialise every trainable leaf module of ``m`` but normalisation layers: ``func`` on its weight, zeros in
    its bias."""
    for leaf in flatten_model(m):
        if isinstance(leaf, _NORMS) or not any(p.requires_grad for p in leaf.parameters()):
            continue
        weight, bias = getattr(leaf, "weight", None), getattr(leaf, "bias", None)
        if func is not None and isinstance(weight, torch.Tensor):
            func(weight)
        if isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias.fill_(0.0)


def trunc_normal_(x: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Fill ``x`` in place with a normal draw folded into (-2, 2) (``fmod``), scaled by ``std``, shifted by
    ``mean`` (the initialisation fastai's embeddings use)."""
    with torch.no_grad():
        return x.normal_().fmod_(2).mul_(std).add_(mean)


def flatten_check(inp: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``inp`` and ``targ`` flattened, checked to hold as many values (a metric's first step)."""
    inp, targ = inp.contiguous().view(-1), targ.contiguous().view(-1)
    if len(inp) != len(targ):
        raise ValueError(f"The predictions and the targets hold different numbers of values ({len(inp)} and "
                         f"{len(targ)}): a metric compares one prediction per target value")
    return inp, targ
