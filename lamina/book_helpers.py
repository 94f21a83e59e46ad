"""More of what fastai's star import gives the book's and the tutorials' code: fastcore's small helpers
(`uniqueify`, `is_listy`, `true`, `add_props`, `Self`), its process and thread pools whose ``map`` passes extra
arguments on (`ProcessPoolExecutor`, `ThreadPoolExecutor`), `progress_bar`, `TitledStr` and `doc`.

Example:
    >>> vocab, o2i = uniqueify(["dog", "cat", "dog"], sort=True, bidir=True)
    >>> vocab, o2i
    (['cat', 'dog'], {'cat': 0, 'dog': 1})
    >>> list(map(Self.parent.name(), [Path("/data/cats/1.jpg")]))
    ['cats']
"""

from __future__ import annotations

import concurrent.futures
import inspect
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from typing import Any

from .book_tools import defaults
from .foundation import L

__all__ = ["uniqueify", "is_listy", "true", "add_props", "Self", "ProcessPoolExecutor", "ThreadPoolExecutor",
           "progress_bar", "TitledStr", "doc"]


def uniqueify(x: Iterable, sort: bool = False, bidir: bool = False, start: Any = None) -> Any:
    """The distinct items of ``x`` in first-seen order (``start``'s items in front, ``sort``-ed if asked); with
    ``bidir``, also the ``{item: index}`` dictionary."""
    res = list(dict.fromkeys(x))
    if start is not None:
        res = (list(start) if is_listy(start) else [start]) + res
    if sort:
        res.sort()
    return (res, {v: i for i, v in enumerate(res)}) if bidir else res


def is_listy(x: Any) -> bool:
    """Whether ``x`` is a tuple, list, set, `L`, slice or generator (not a string, array or range)."""
    return isinstance(x, (tuple, list, set, frozenset, L, slice, Generator))


def true(x: Any) -> bool:
    """Whether ``x`` is truthy, a collection counting as true when it has items."""
    try:
        return bool(len(x))
    except Exception:  # noqa: BLE001 -- no length (or a failing one): plain truth
        return bool(x)


def add_props(f: Callable, g: Callable | None = None, n: int = 2) -> tuple[property, ...]:
    """``n`` properties: property ``i`` reads ``f(i, self)`` (and writes through ``g(i, self, value)``).

    Example:
        >>> class Pair:
        ...     first, second = add_props(lambda i, self: self.items[i])
    """
    return tuple(property(partial(f, i), partial(g, i) if g is not None else None) for i in range(n))


class _Chain:
    """A recorded chain of attribute reads and calls, applied to an object when the chain is called with it."""

    def __init__(self, steps: tuple = (), ready: bool = False):
        self._steps, self._ready = steps, ready

    def __getattr__(self, name: str) -> _Chain:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Chain(self._steps + ((name, None),), ready=False)

    def __getitem__(self, i: Any) -> _Chain:
        return _Chain(self._steps + (("__getitem__", ((i,), {})),), ready=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ready:  # ``Self.name(args)``: the call of the last attribute read, recorded
            name, _ = self._steps[-1]
            return _Chain(self._steps[:-1] + ((name, (args, kwargs)),), ready=True)
        if len(args) != 1 or kwargs:
            raise TypeError(f"{self!r} is applied to one object: {self!r}(obj)")
        x = args[0]
        for name, call in self._steps:
            x = getattr(x, name)
            if call is not None and callable(x):  # a call recorded on a plain value leaves the value
                x = x(*call[0], **call[1])
        return x

    def __repr__(self) -> str:
        parts = [n + (f"(*{c[0]}, **{c[1]})" if c is not None else "") for n, c in self._steps]
        return "Self." + ".".join(parts)


class _SelfStart:
    """``Self``: ``Self.method(args)`` stands for ``lambda o: o.method(args)``, and ``Self.a.b()`` for
    ``lambda o: o.a.b`` (a call on something that is not callable leaves it as it is), as the book writes
    ``files.map(Self.parent.name())``; ``Self[0]`` stands for ``lambda o: o[0]``."""

    def __getattr__(self, name: str) -> _Chain:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Chain(((name, None),))

    def __getitem__(self, i: Any) -> _Chain:
        return _Chain((("__getitem__", ((i,), {})),), ready=True)

    def __repr__(self) -> str:
        return "Self"


Self = _SelfStart()


def _workers(max_workers: int | None) -> int:
    workers = defaults.cpus if max_workers is None else max_workers
    if workers < 0:
        raise ValueError(f"max_workers must be 0 (run in this process) or more; received: max_workers={workers}")
    return workers


def _returning_exceptions(f: Callable, *args: Any, **kwargs: Any) -> Any:
    try:
        return f(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 -- map(..., return_exceptions=True): the exception is the result
        return e


def _item_call(f: Callable, args: tuple, kwargs: dict, return_exceptions: bool) -> Callable:
    if return_exceptions:
        return partial(_returning_exceptions, f, *args, **kwargs)
    return partial(f, *args, **kwargs) if args or kwargs else f


class _FastcorePool:
    """fastcore's pool behaviour over a standard pool: ``max_workers`` defaults to ``defaults.cpus`` (read when the
    pool is made), and with 0 ``map`` runs in this process; ``map(f, items, *args, **kwargs)`` calls
    ``f(*args, item, **kwargs)``, and ``return_exceptions=True`` gives an item's exception as its result.
    ``on_exc`` and ``pause`` are accepted for fastcore compatibility (exceptions propagate; no pause)."""

    def __init__(self, max_workers: int | None = None, on_exc: Callable = print, pause: float = 0, **kwargs: Any):
        workers = _workers(max_workers)
        self.serial = workers == 0
        super().__init__(max_workers=max(workers, 1), **kwargs)

    def map(self, f: Callable, items: Iterable, *args: Any, timeout: float | None = None, chunksize: int = 1,
            return_exceptions: bool = False, **kwargs: Any) -> Iterable:
        g = _item_call(f, args, kwargs, return_exceptions)
        return map(g, items) if self.serial else super().map(g, items, timeout=timeout, chunksize=chunksize)


class ProcessPoolExecutor(_FastcorePool, concurrent.futures.ProcessPoolExecutor):
    """The standard process pool as fastcore's (see `_FastcorePool`)."""


class ThreadPoolExecutor(_FastcorePool, concurrent.futures.ThreadPoolExecutor):
    """The standard thread pool as fastcore's (see `_FastcorePool`)."""


class progress_bar:  # noqa: N801 -- fastprogress's name
    """``gen`` with a progress bar, with fastprogress's arguments (``parent``, ``master`` and ``txt_len`` are
    accepted; each bar stands alone). Setting ``comment`` shows it beside the bar."""

    def __init__(self, gen: Iterable, total: int | None = None, display: bool = True, leave: bool = True,
                 parent: Any = None, master: Any = None, comment: str = "", txt_len: int = 60):
        from tqdm.auto import tqdm
        self._bar = tqdm(gen, total=total, leave=leave, disable=not display)
        self.gen, self.total, self.comment = gen, self._bar.total, comment

    def __iter__(self) -> Iterator:
        return iter(self._bar)

    def __len__(self) -> int:
        return len(self._bar)

    @property
    def comment(self) -> str:
        return self._comment

    @comment.setter
    def comment(self, text: str) -> None:
        self._comment = text
        self._bar.set_postfix_str(text, refresh=False)


class TitledStr(str):
    """A string that shows itself as a title: on a matplotlib axis (``ctx``, after any title it has), as a
    ``label`` row added to a pandas Series, else printed."""

    def show(self, ctx: Any = None, label: str | None = None, color: str = "black", **kwargs: Any) -> Any:
        if ctx is None:
            print(self)
            return None
        if hasattr(ctx, "set_title"):
            above = ctx.get_title() if hasattr(ctx, "get_title") else ""
            ctx.set_title(f"{above}\n{self}" if above else str(self), color=color)
            return ctx
        import pandas as pd
        if isinstance(ctx, pd.Series):
            return pd.concat([ctx, pd.Series({label if label is not None else "text": str(self)})])
        raise TypeError(f"TitledStr shows on a matplotlib axis or a pandas Series; received ctx={ctx!r}")


def doc(obj: Any) -> None:
    """Print ``obj``'s name, signature and docstring (fastai opens its documentation page)."""
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = ""
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", type(obj).__name__))
    print(f"{name}{sig}\n\n{inspect.getdoc(obj) or '(no documentation)'}")
