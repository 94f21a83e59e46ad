"""The everyday helpers fastai code calls without importing them: ``tensor``, ``to_np``, ``one_hot``, ``first`` ...

fastai users take these from ``fastai.torch_core`` (or from any star-import surface, which re-exports them all):

* tensors: `tensor` (lists, numbers, arrays, DataFrames and PIL images to a tensor, float64 made float32), `to_np`,
  `to_cpu`, `to_device`, `to_detach`, `one_hot`, `sigmoid_range`, and the typed tensors `TensorBase`, `TensorCategory`,
  `TensorMultiCategory` (the image ones, ``TensorImage`` ..., live in `lamina.vision.tensors`, beside showing);
* small functions: `noop`, `first`, `sequential` (with `Lambda`), `subplots`, ``Inf``;
* pickles: `save_pickle`, and `load_pickle`, which loads plain data only (see its docstring): nothing a file
  names is run.

Typed tensors are light ``torch.Tensor`` subclasses: an operation on one returns the same subclass (torch's own
rule for subclasses), so ``isinstance(x, TensorImage)`` and ``x.show()`` work on what a user made. lamina's loaders
do not make them: their batches are plain tensors whose meaning is in ``dls.kinds`` (the subclass dispatch costs a
few microseconds per operation, which the training loop does not pay). See docs/decisions.md.

Example:
    >>> tensor([1, 2, 3]).float().mean(), first(x for x in range(5) if x > 2), one_hot([1, 3], 5)
    (tensor(2.), 3, tensor([0, 1, 0, 1, 0], dtype=torch.uint8))
"""

from __future__ import annotations

import io
import math
import numbers
import pickle
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .core import to_cpu, to_device
from .foundation import L
from .pickle_forms import from_plain, to_plain

__all__ = ["tensor", "to_np", "to_cpu", "to_device", "to_detach", "pca", "one_hot", "sigmoid_range", "Inf", "noop",
           "first", "Lambda", "sequential", "subplots", "save_pickle", "load_pickle", "PICKLE_SAFE", "TensorBase",
           "TensorCategory", "TensorMultiCategory"]

Inf = math.inf


def tensor(x: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """``x`` as a tensor: ``tensor(1, 2, 3)``, ``tensor([[1, 2]])``, an array, a pandas object, a PIL image (its
    pixels, HxW or HxWxC) or a tensor (returned as it is). Float64 becomes float32, as models expect.

    Raises:
        TypeError: for something with no numeric array form.
    """
    if rest:
        x = (x, *rest)
    if isinstance(x, torch.Tensor):
        out = x.to(**kwargs) if kwargs else x
    elif isinstance(x, (tuple, list, numbers.Number)):
        # a list of arrays or tensors is stacked (torch.tensor would read it number by number)
        out = torch.tensor(x, **kwargs) if not _holds_arrays(x) else torch.stack([tensor(o, **kwargs) for o in x])
    elif hasattr(x, "to_numpy"):  # a pandas Series or DataFrame
        out = torch.tensor(x.to_numpy(), **kwargs)  # a copy: pandas may hand out a read-only array
    else:
        array = np.asarray(x)  # a PIL image gives its pixels
        if array.dtype == object:
            raise TypeError(f"tensor() takes numbers, lists, arrays, pandas objects or images; received "
                            f"{type(x).__name__}")
        array = np.array(array) if not array.flags.writeable else np.ascontiguousarray(array)
        out = torch.as_tensor(array, **kwargs)
    return out.float() if out.dtype == torch.float64 else out


def _holds_arrays(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and any(isinstance(o, (torch.Tensor, np.ndarray)) for o in x)


def to_np(x: Any) -> Any:
    """Tensors (in nested lists, tuples and dicts) as numpy arrays, detached and on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, Mapping):
        return {k: to_np(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_np(o) for o in x) if not hasattr(x, "_fields") else type(x)(*map(to_np, x))
    return x


def to_detach(b: Any, cpu: bool = True, gather: bool = True) -> Any:
    """Every tensor in ``b`` (nested tuples, lists, dicts) detached, moved to the CPU if ``cpu``, and, in a
    data-parallel job when ``gather``, concatenated with every process's along the first dimension (rank order).

    Example:
        >>> preds = to_detach(learn.pred)  # in a callback: the batch's predictions, on the CPU, out of the graph
    """
    from .distributed import all_gather_cat

    def one(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.detach()
            x = all_gather_cat(x) if gather and x.ndim > 0 else x
            return x.cpu() if cpu else x
        if isinstance(x, Mapping):
            return {k: one(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            values = [one(v) for v in x]
            return type(x)(*values) if hasattr(x, "_fields") else type(x)(values)
        return x
    return one(b)


def pca(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    """The ``k`` principal components of the rows of ``x`` (N, D): the centred rows projected on the ``k``
    directions of largest variance, (N, k). The star surfaces also make it a tensor method, ``x.pca(3)``, as fastai
    does (chapter 8 plots the movie factors with it)."""
    centred = x - x.mean(0)
    directions = torch.linalg.svd(centred.T, full_matrices=False)[0]
    return centred @ directions[:, :k]


def patch_tensor_pca() -> None:
    """Give ``torch.Tensor`` the method ``pca`` (idempotent; an existing ``pca`` is kept)."""
    if not hasattr(torch.Tensor, "pca"):
        torch.Tensor.pca = pca


def one_hot(x: Any, c: int) -> torch.Tensor:
    """A uint8 vector of length ``c`` with ones at the positions ``x`` (an int, a list or a tensor of ints).

    Raises:
        IndexError: naming a position outside ``0 .. c-1``.
    """
    positions = L(x.tolist() if isinstance(x, torch.Tensor) else x)
    bad = [p for p in positions if not 0 <= int(p) < c]
    if bad:
        raise IndexError(f"one_hot: positions {bad[:5]} are outside 0..{c - 1} (c={c}); pass a larger `c`")
    out = torch.zeros(c, dtype=torch.uint8)
    out[[int(p) for p in positions]] = 1
    return out


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``sigmoid(x)`` scaled to ``(low, high)`` (a rating model's output, ``y_range``)."""
    return torch.sigmoid(x) * (high - low) + low


def noop(x: Any = None, *args: Any, **kwargs: Any) -> Any:
    """Return ``x`` unchanged (the do-nothing default of getters and transforms)."""
    return x


def first(x: Iterable, f: Callable[[Any], bool] | None = None, negate: bool = False) -> Any:
    """The first item of ``x`` (a list, a generator, a `DataLoader`: its first batch), or the first for which
    ``f`` is true (false with ``negate``); None when there is none."""
    items = iter(x)
    if f is not None:
        items = (o for o in items if bool(f(o)) != negate)
    return next(items, None)


class Lambda(nn.Module):
    """A function as a module, so that `sequential` (and ``nn.Sequential``) can hold it.

    Example:
        >>> sequential(nn.Linear(4, 2), lambda x: x * 2)(torch.ones(1, 4)).shape
        torch.Size([1, 2])
    """

    def __init__(self, func: Callable[[Any], Any]):
        super().__init__()
        self.func = func

    def forward(self, x: Any) -> Any:
        return self.func(x)

    def extra_repr(self) -> str:
        return getattr(self.func, "__name__", repr(self.func))


def sequential(*args: Any) -> nn.Sequential:
    """``nn.Sequential(*args)`` where a plain function becomes a `Lambda` module."""
    return nn.Sequential(*[a if isinstance(a, nn.Module) else Lambda(a) for a in args])


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple | None = None, imsize: float = 3,
             suptitle: str | None = None, **kwargs: Any) -> tuple[Any, np.ndarray]:
    """A matplotlib figure and its axes (always an array, even of one), ``imsize`` inches per plot by default."""
    import matplotlib.pyplot as plt
    if figsize is None:
        height = nrows * imsize if suptitle is None or imsize > 2 else nrows * imsize + 0.6
        figsize = (ncols * imsize, height)
    fig, ax = plt.subplots(nrows, ncols, figsize=figsize, **kwargs)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig, (ax if isinstance(ax, np.ndarray) else np.array([ax]))


# --- pickles ---------------------------------------------------------------------------------------------

# The only classes `load_pickle` will rebuild: containers, paths (``pathlib._local`` is where Python 3.13 pickles
# them), and what numpy arrays and scalars are made of.
# Anything else in a pickle (a function, a class with a __reduce__ that runs code) is refused.
PICKLE_SAFE = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "range"), ("builtins", "bytearray"), ("collections", "OrderedDict"), ("_codecs", "encode"),
    ("pathlib", "Path"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"), *(("pathlib._local", n) for n in ("Path", "PosixPath", "WindowsPath",
                                                                      "PurePosixPath", "PureWindowsPath")),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("lamina.foundation", "L"),
})


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only the classes in `PICKLE_SAFE`."""

    def __init__(self, file: Any, name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PICKLE_SAFE:
            raise pickle.UnpicklingError(
                f"load_pickle refused {self.name}: it asks to rebuild {module}.{name}, and load_pickle only loads "
                "plain data (lists, dicts, tuples, sets, numbers, strings, paths, numpy arrays, and the DataFrames, "
                "tensors and TabularPandas that lamina's save_pickle writes), so that opening a file never runs "
                "code. Save models with learn.save or torch.save and load them with torch.load(fn, "
                "weights_only=True); if you trust this file, open it with pickle yourself")
        return super().find_class(module, name)


def save_pickle(fn: str | Path, o: Any) -> None:
    """Write ``o`` to ``fn`` with pickle (read it back with `load_pickle`). DataFrames, Series, tensors and
    `TabularPandas` objects, alone or in lists, tuples, dicts and `L`s, are written in their plain forms
    (`lamina.pickle_forms`), which `load_pickle` rebuilds without unpickling any pandas or lamina class.
    What `load_pickle` would refuse is refused here (TypeError), and the file is replaced only once the whole
    pickle is written (through a symbolic link, keeping the file's mode)."""
    data = pickle.dumps(to_plain(o))
    try:  # what load_pickle would refuse is refused now, before a file changes
        _PlainUnpickler(io.BytesIO(data), repr(str(fn))).load()
    except pickle.UnpicklingError as e:
        raise TypeError(f"save_pickle cannot write this object so that load_pickle reads it back: {e}") from None
    atomic_write(Path(fn), lambda f: f.write(data), size_hint=len(data), what="pickle")


def load_pickle(fn: str | Path) -> Any:
    """Read a pickle of plain data: containers, numbers, strings, paths, numpy arrays (`PICKLE_SAFE`), and the
    plain forms `save_pickle` writes for DataFrames, Series, tensors and `TabularPandas`.

    Raises:
        pickle.UnpicklingError: naming the file and the class, when the pickle holds anything else (code
            could run while it is rebuilt).
    """
    with open(fn, "rb") as f:
        return from_plain(_PlainUnpickler(f, repr(str(fn))).load(), repr(str(fn)))


# --- typed tensors ---------------------------------------------------------------------------------------

class TensorBase(torch.Tensor):
    """A tensor that says what it holds (fastai's typed tensors); operations keep the subclass.

    ``TensorBase(x)`` takes what `tensor` takes, and shares the memory of a tensor it is given.
    """

    def __new__(cls, x: Any, **kwargs: Any) -> "TensorBase":
        return tensor(x, **kwargs).as_subclass(cls)


class TensorCategory(TensorBase):
    """Class indices."""


class TensorMultiCategory(TensorCategory):
    """One-hot (or several-hot) class vectors."""
