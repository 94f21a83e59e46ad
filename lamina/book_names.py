"""The names fastai's star imports put in a notebook beyond its own API, which the fastai book's code uses without
importing them: standard-library modules (``re``, ``random``, ``os``, ``json`` ...), ``copy``/``deepcopy``,
``Counter``/``defaultdict``, ``reduce``, ``set_trace``, ``plt`` (imported on first use), and small helpers
(``coll_repr``, ``ifnone``, ``listify``, ``tuplify``, ``store_attr``, ``patch``, ``params``, ``flatten_model``,
``apply_init``, ``trunc_normal_``, ``flatten_check``, and from `lamina.book_tools` ``parallel``, ``delegates``,
``GetAttr``, ``num_cpus``, ``range_of``, the shared ``defaults``), ``attrgetter``/``itemgetter``/``methodcaller``,
and from `lamina.book_helpers` ``uniqueify``, ``is_listy``, ``true``, ``add_props``, ``Self``, fastcore's
``ProcessPoolExecutor``/``ThreadPoolExecutor``, ``progress_bar``, ``TitledStr`` and ``doc``. `lamina.basics`
re-exports them, so every ``*.all`` surface has them.

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

from operator import attrgetter, itemgetter, methodcaller

import torch
from torch import nn

from .book_helpers import (ProcessPoolExecutor, Self, ThreadPoolExecutor, TitledStr, add_props, doc, is_listy,
                           progress_bar, true, uniqueify)
from .book_tools import GetAttr, defaults, delegates, num_cpus, parallel, range_of

__all__ = ["bz2", "collections", "csv", "functools", "glob", "hashlib", "inspect", "io", "itertools", "json",
           "mimetypes", "numbers", "operator", "os", "pickle", "random", "re", "shutil", "string", "sys", "tarfile",
           "tempfile", "threading", "time", "types", "typing", "urllib", "warnings", "zipfile", "Counter",
           "OrderedDict", "defaultdict", "namedtuple", "copy", "deepcopy", "reduce", "set_trace", "plt",
           "coll_repr", "ifnone", "listify", "tuplify", "store_attr", "patch", "params", "flatten_model",
           "apply_init", "trunc_normal_", "flatten_check", "parallel", "delegates", "GetAttr", "num_cpus",
           "range_of", "LazyModule", "attrgetter", "itemgetter", "methodcaller", "defaults", "uniqueify", "is_listy",
           "true", "add_props", "Self", "ProcessPoolExecutor", "ThreadPoolExecutor", "progress_bar", "TitledStr",
           "doc"]


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


def coll_repr(c: Iterable, max_n: int = 10) -> str:
    """``c``'s length and its first ``max_n`` items, as `L` shows them: ``(#20) [0,1,2...]``."""
    n = len(c) if hasattr(c, "__len__") else None
    if n is None:
        c = list(c)
        n = len(c)
    shown = ",".join(repr(o) for o in itertools.islice(c, max_n))
    return f"(#{n}) [{shown}{'...' if n > max_n else ''}]"


def ifnone(a: Any, b: Any) -> Any:
    """``b`` when ``a`` is None, else ``a``."""
    return b if a is None else a


def listify(o: Any = None, *rest: Any, use_list: bool = False, match: Any = None) -> list:
    """``o`` as a list: [] for None, a list itself, a one-item list for a string, bytes or an array (a tensor
    too), the items of any other iterable (a dict's keys), else ``[o]``. Several arguments: their list.
    ``use_list``: ``list(o)`` whatever ``o`` is. ``match`` (a length or a collection): a single item is repeated
    to that length, and any other length must equal it."""
    if rest:
        o = (o, *rest)
    if use_list:
        res = list(o)
    elif o is None:
        res = []
    elif isinstance(o, list):
        res = o
    elif isinstance(o, (str, bytes, bytearray)) or hasattr(o, "__array__") or not isinstance(o, Iterable):
        res = [o]
    else:
        res = list(o)
    if match is not None:
        n = match if isinstance(match, int) else len(match)
        if len(res) == 1:
            res = res * n
        elif len(res) != n:
            raise ValueError(f"{len(res)} values where {n} are needed: give one value, or one per item")
    return res


def tuplify(o: Any, use_list: bool = False, match: Any = None) -> tuple:
    """`listify` (with the same ``use_list`` and ``match``) as a tuple."""
    return tuple(listify(o, use_list=use_list, match=match))


def store_attr(names: str | Iterable[str] | None = None, but: str | Iterable[str] = (), **attrs: Any) -> None:
    """In a method (``__init__``), store its arguments on the object it was called on (its first argument):
    all of them, or those of ``names`` (a list or a comma-separated string), less those of ``but``; keyword
    arguments are stored as given, besides (``but`` applies to them too).

    Example:
        >>> class Scaler:
        ...     def __init__(self, a, b=2): store_attr()
        >>> Scaler(1).b
        2
    """
    frame = sys._getframe(1)
    try:
        code, args = frame.f_code, frame.f_locals
        if code.co_argcount + code.co_kwonlyargcount == 0 or code.co_varnames[0] not in args:
            raise TypeError("store_attr() stores a method's arguments on its object: call it inside a method "
                            "such as __init__")
        target = args[code.co_varnames[0]]
        params = code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]
        wanted = _names(names) if names is not None else params
        unknown = [name for name in wanted if name not in args]
        if unknown:
            raise NameError(f"store_attr({names!r}): {unknown} are not arguments of {code.co_name}; name its "
                            f"arguments ({', '.join(params)}), or pass values as keywords: store_attr(x=...)")
        values = {name: args[name] for name in wanted}
        skip = set(_names(but))
        for name, value in {**values, **attrs}.items():
            if name not in skip:
                setattr(target, name, value)
    finally:
        del frame


def _names(names: str | Iterable[str]) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()] if isinstance(names, str) else list(names)


def patch(f: Callable) -> Callable:
    """Add ``f`` as a method to the class its first argument is annotated with (``def show(self: Learner)``);
    a union (``Learner | Recorder``) adds it to each. Returns ``f``."""
    first = next(iter(inspect.signature(f).parameters), None)
    ann = f.__annotations__.get(first) if first is not None else None
    if ann is None:
        raise TypeError(f"@patch adds {f.__name__} to the class of its first argument's annotation: write "
                        f"def {f.__name__}(self: SomeClass, ...)")
    if isinstance(ann, str):  # ``from __future__ import annotations``: the caller's own source, as typing does
        frame = sys._getframe(1)
        try:
            ann = eval(ann, f.__globals__, dict(frame.f_locals))  # noqa: S307
        finally:
            del frame
    classes = typing.get_args(ann) or (ann,)
    for cls in classes:
        if cls is not type(None):
            setattr(cls, f.__name__, f)
    return f


def params(m: nn.Module) -> list[nn.Parameter]:
    """All the parameters of ``m``, as a list."""
    return list(m.parameters())


def flatten_model(m: nn.Module) -> list[nn.Module]:
    """The modules of ``m`` that have no children, in order."""
    return [leaf for leaf in m.modules() if next(leaf.children(), None) is None]


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def apply_init(m: nn.Module, func: Callable = nn.init.kaiming_normal_) -> None:
    """Initialise ``m`` and each of its modules, but normalisation layers and frozen modules: ``func`` on the
    module's own ``weight``, zeros in its own ``bias``."""
    for leaf in m.modules():
        first = next(leaf.parameters(), None)
        if isinstance(leaf, _NORMS) or first is None or not first.requires_grad:
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
    if inp.numel() != targ.numel():
        raise ValueError(f"predictions and targets must have the same number of elements; received shapes "
                         f"{tuple(inp.shape)} and {tuple(targ.shape)}")
    return inp.reshape(-1), targ.reshape(-1)
