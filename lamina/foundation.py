"""Foundations the fastai book's code leans on: the list `L`, `Path.ls()`, and `Module`.

* `L` is a ``list`` with the helpers the book calls (``map``, ``filter``, ``itemgot``, ``sorted`` ...), indexing by
  a list, mask or tensor of indices, and a short repr with the length first: ``(#3) [1,2,3]``. Being a ``list``,
  it works wherever a list does (pandas, numpy, JSON, ``isinstance(x, list)``).
* `patch_path_ls` gives ``pathlib.Path`` an ``ls()`` method returning an `L`. It is the one place where lamina
  changes a class it does not own; the star-import surfaces apply it (see docs/decisions.md).
* `Module` is an ``nn.Module`` whose subclasses need not call ``super().__init__()``.

Example:
    >>> L(3, 1, 2).sorted()
    (#3) [1,2,3]
    >>> files = get_image_files(path); files.map(lambda f: f.suffix).unique()
"""

from __future__ import annotations

import functools
import itertools
import mimetypes
import operator
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["L", "patch_path_ls", "path_ls", "Module"]

# The repr shows this many items, then "..." (a listing of 7390 files stays one line).
_REPR_ITEMS = 10


def _as_items(obj: Any) -> list:
    """What `L(obj)` holds: nothing for None; one item for a string, an array, a tensor or a pandas object
    (as fastai's L: ``L(tensor)`` is a list of one tensor); else the iterable's items, or ``obj`` alone."""
    if obj is None:
        return []
    if isinstance(obj, (str, bytes, bytearray)) or hasattr(obj, "__array__") or hasattr(obj, "iloc"):
        return [obj]
    return list(obj) if isinstance(obj, Iterable) else [obj]


def _positions(index: Any, n: int) -> list[int]:
    """The positions that a list, array or tensor ``index`` picks from ``n`` items: a boolean mask of length
    ``n`` picks where it is True; anything else lists the positions themselves."""
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    values = np.asarray(index)
    if values.dtype == bool:
        if values.shape != (n,):
            raise IndexError(f"a boolean mask must have one value per item ({n}); received shape {values.shape}")
        return np.flatnonzero(values).tolist()
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise IndexError(f"L indices must be integers, a boolean mask, a slice, or a list/array/tensor of those; "
                         f"received values of dtype {values.dtype}")
    return values.reshape(-1).astype(np.int64).tolist()


class L(list):
    """A list with fastai's helpers. ``L(1, 2, 3)``, ``L([1, 2, 3])`` and ``L(range(1, 4))`` are the same list;
    ``L(None)`` is empty and ``L('abc')`` holds one string.

    Helpers that build a new list return an `L`, so calls chain: ``files.map(f).filter(g).sorted()``.
    Indexing by an int gives the item; by a slice, a list/array/tensor of positions or a boolean mask, an `L`.

    Example:
        >>> L(5, 6, 7)[[0, 2]], L(5, 6, 7)[np.array([True, False, True])]
        ((#2) [5,7], (#2) [5,7])
    """

    def __init__(self, items: Any = None, *rest: Any):
        super().__init__(_as_items((items, *rest) if rest else items))

    @classmethod
    def range(cls, a: int | Iterable, b: int | None = None, step: int | None = None) -> "L":
        """``L(range(a, b, step))``; a collection ``a`` stands for its length (``L.range(items)``: its positions)."""
        if not isinstance(a, int):
            a = len(a)
        return cls(range(a) if b is None else range(a, b, step or 1))

    # --- list behaviour that keeps the type -----------------------------------------------------
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return super().__getitem__(index)
        if isinstance(index, torch.Tensor) and index.ndim == 0 and index.dtype != torch.bool:
            return super().__getitem__(int(index))
        if isinstance(index, slice):
            return L(super().__getitem__(index))
        return L([list.__getitem__(self, i) for i in _positions(index, len(self))])

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, (int, np.integer, slice)):
            super().__setitem__(index, value)
            return
        positions = _positions(index, len(self))
        many = isinstance(value, Iterable) and not isinstance(value, (str, bytes))
        values = list(value) if many else [value] * len(positions)
        if len(values) != len(positions):
            raise ValueError(f"assigning {len(values)} values to {len(positions)} positions of an L")
        for i, v in zip(positions, values):
            super().__setitem__(i, v)

    def __add__(self, other: Iterable) -> "L":
        return L(itertools.chain(self, other))

    def __radd__(self, other: Iterable) -> "L":
        return L(itertools.chain(other, self))

    def __mul__(self, n: int) -> "L":
        return L(super().__mul__(n))

    __rmul__ = __mul__

    def copy(self) -> "L":
        return L(self)

    def __repr__(self) -> str:
        shown = ",".join(repr(o) for o in itertools.islice(self, _REPR_ITEMS))
        return f"(#{len(self)}) [{shown}{'...' if len(self) > _REPR_ITEMS else ''}]"

    # --- fastai's helpers -------------------------------------------------------------------------
    def map(self, f: Callable, *args: Any, **kwargs: Any) -> "L":
        """``f(item, *args, **kwargs)`` for every item."""
        return L(f(o, *args, **kwargs) for o in self)

    def starmap(self, f: Callable, *args: Any, **kwargs: Any) -> "L":
        """``f(*item, *args, **kwargs)`` for every item (items are tuples)."""
        return L(f(*o, *args, **kwargs) for o in self)

    def filter(self, f: Callable | None = None, negate: bool = False) -> "L":
        """The items where ``f(item)`` is true (false with ``negate``); without ``f``, the truthy items."""
        f = f or bool
        return L(o for o in self if bool(f(o)) != negate)

    def argwhere(self, f: Callable, negate: bool = False) -> "L":
        """The positions of the items where ``f(item)`` is true (false with ``negate``)."""
        return L(i for i, o in enumerate(self) if bool(f(o)) != negate)

    def itemgot(self, *idxs: Any) -> "L":
        """``item[i]`` for every item; several indices go deeper: ``itemgot(0, 1)`` is ``item[0][1]``."""
        out = self
        for idx in idxs:
            out = L(o[idx] for o in out)
        return out

    def attrgot(self, name: str, default: Any = None) -> "L":
        """Attribute ``name`` of every item (the key ``name`` of dict items); ``default`` where it is missing."""
        return L(o.get(name, default) if isinstance(o, Mapping) else getattr(o, name, default) for o in self)

    def sorted(self, key: Callable | str | int | None = None, reverse: bool = False) -> "L":
        """A sorted copy; ``key`` may be a function, an attribute name or an item index."""
        if isinstance(key, str):
            key = operator.attrgetter(key)
        elif isinstance(key, int):
            key = operator.itemgetter(key)
        return L(sorted(self, key=key, reverse=reverse))

    def unique(self, sort: bool = False) -> "L":
        """The distinct items in order of first appearance (sorted with ``sort``)."""
        distinct = L(dict.fromkeys(self))
        return distinct.sorted() if sort else distinct

    def enumerate(self) -> "L":
        """``(position, item)`` pairs."""
        return L(enumerate(self))

    def zip(self) -> "L":
        """The items (sequences) zipped together: ``L([1, 2], [3, 4]).zip()`` is ``[(1, 3), (2, 4)]``."""
        return L(zip(*self))

    def concat(self) -> "L":
        """The items joined end to end, an item that is not a list counting as a list of one."""
        return L(itertools.chain.from_iterable(_as_items(o) for o in self))

    def reduce(self, f: Callable[[Any, Any], Any], initial: Any = None) -> Any:
        """``functools.reduce(f, self)``, starting from ``initial`` when given."""
        return functools.reduce(f, self) if initial is None else functools.reduce(f, self, initial)

    def sum(self) -> Any:
        """The sum of the items (0 when empty)."""
        return self.reduce(operator.add, 0)

    def product(self) -> Any:
        """The product of the items (1 when empty)."""
        return self.reduce(operator.mul, 1)


# --- Path.ls -----------------------------------------------------------------------------------------
def _wanted_extensions(file_type: str | None, file_exts: str | Iterable[str] | None) -> set[str]:
    exts = [file_exts] if isinstance(file_exts, str) else list(file_exts or [])
    if file_type:
        exts += [ext for ext, kind in mimetypes.types_map.items() if kind.startswith(f"{file_type}/")]
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts}


def path_ls(self: Path, n_max: int | None = None, file_type: str | None = None,
            file_exts: str | Iterable[str] | None = None) -> L:
    """The entries of the folder ``self``, sorted by name, as an `L` (``Path.ls`` after `patch_path_ls`).

    Unlike a bare ``iterdir()`` the listing is sorted, so it is the same on every machine.

    Args:
        n_max: keep only the first ``n_max`` entries.
        file_type: keep files whose MIME type is of this kind (``'image'``, ``'text'``).
        file_exts: keep files with these extensions (``'.csv'`` or ``'csv'``, case-insensitive).

    Raises:
        FileNotFoundError: naming ``self`` when it does not exist. NotADirectoryError: when it is a file.
    """
    if not self.exists():
        raise FileNotFoundError(f"Cannot list {self}: it does not exist")
    if not self.is_dir():
        raise NotADirectoryError(f"Cannot list {self}: it is a file, not a folder")
    wanted = _wanted_extensions(file_type, file_exts)
    found = sorted(p for p in self.iterdir() if not wanted or p.suffix.lower() in wanted)
    return L(found if n_max is None else found[:n_max])


def patch_path_ls() -> None:
    """Give ``pathlib.Path`` the method ``ls`` (`path_ls`), as fastai code expects: ``path.ls().sorted()``.

    Idempotent: a second call changes nothing, and an ``ls`` that another library installed first is left in
    place (its callers keep the behaviour they rely on).
    """
    if not hasattr(Path, "ls"):
        Path.ls = path_ls


# --- Module ----------------------------------------------------------------------------------------
class Module(nn.Module):
    """An ``nn.Module`` whose subclasses may skip ``super().__init__()``, as the fastai book writes models.

    ``nn.Module.__init__`` runs in ``__new__``, before the subclass's ``__init__``, so assigning layers and
    parameters in ``__init__`` works straight away. Calling ``super().__init__()`` anyway is harmless.

    Example:
        >>> class DotProduct(Module):
        ...     def __init__(self, n_users, n_items, n_factors):
        ...         self.users, self.items = nn.Embedding(n_users, n_factors), nn.Embedding(n_items, n_factors)
        ...     def forward(self, x):
        ...         return (self.users(x[:, 0]) * self.items(x[:, 1])).sum(dim=1)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "Module":
        module = super().__new__(cls)
        nn.Module.__init__(module)
        return module

    def __init__(self) -> None:
        """Nothing left to do: ``__new__`` set the module up (re-running it would drop registered layers)."""
