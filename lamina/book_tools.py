"""fastcore's helpers that the course notebooks call from a star import: `parallel` (a function over items in
worker processes or threads), `delegates` (a signature that shows the keyword arguments passed on with
``**kwargs``), `GetAttr` (attribute access passed to a default object), `num_cpus`, `range_of`, and the shared
`defaults` namespace (``defaults.cpus``).

Example:
    >>> sizes = parallel(lambda f: PILImage.create(f).size, files, n_workers=8, threadpool=True)
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Sized
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any

from .core import usable_cpus
from .foundation import L

__all__ = ["parallel", "delegates", "GetAttr", "num_cpus", "range_of", "defaults", "Defaults"]


def num_cpus() -> int:
    """The CPUs this process may use."""
    return usable_cpus()


class Defaults(types.SimpleNamespace):
    """fastai's ``defaults``: one namespace that settings are read from when objects are built. ``cpus`` (the
    CPUs this process may use) sizes `parallel` and the fastcore-style pools (`lamina.book_helpers`); the text
    applications add their rules and special tokens (``defaults.text_proc_rules``)."""


defaults = Defaults(cpus=num_cpus())


def range_of(x: Sized) -> list[int]:
    """``list(range(len(x)))``: the positions of ``x`` (e.g. the items to split a DataFrame's rows by position:
    ``RandomSplitter(seed=42)(range_of(df))``)."""
    return list(range(len(x)))


def parallel(f: Callable, items: Iterable, *args: Any, n_workers: int | None = None, total: int | None = None,
             progress: bool | None = None, pause: float = 0, method: str | None = None, threadpool: bool = False,
             timeout: float | None = None, chunksize: int = 1, **kwargs: Any) -> L:
    """``f(*args, item, **kwargs)`` for every item (``args`` come first, as in fastcore), in worker processes
    (threads if ``threadpool``), results in the items' order, as an `L`.

    Args:
        f: the function; in processes it must be importable or defined in the main script (Linux forks).
        items: what to call it on.
        n_workers: workers (default ``defaults.cpus``: the usable CPUs); 0 runs in this process, one item after
            the other.
        threadpool: threads instead of processes (for work that waits: downloads, file reads, Pillow).
        timeout: seconds to wait for all the results.
        chunksize: items sent to a process at once.
        total, progress, pause, method: accepted for fastcore compatibility (no bar is shown).
    """
    items = list(items)
    call = partial(f, *args, **kwargs) if args or kwargs else f
    workers = defaults.cpus if n_workers is None else n_workers
    if workers == 0 or len(items) <= 1:
        return L([call(o) for o in items])
    pool_type = ThreadPoolExecutor if threadpool else ProcessPoolExecutor
    with pool_type(max_workers=min(workers, len(items))) as pool:
        extra = {} if threadpool else {"chunksize": chunksize}
        return L(list(pool.map(call, items, timeout=timeout, **extra)))


def delegates(to: Callable | None = None, keep: bool = False, but: Iterable[str] | None = None) -> Callable:
    """Decorator: the signature of the decorated function (a class: its ``__init__``) lists, in place of its
    ``**kwargs``, the keyword arguments with defaults of ``to`` (default: the parent class's ``__init__``) that it
    does not name itself; ``keep`` keeps ``**kwargs`` too, ``but`` leaves some out. Only the signature changes
    (what ``help`` and completion show).

    Example:
        >>> @delegates(TabularModel)
        ... class EmbeddingNN(TabularModel):
        ...     def __init__(self, emb_szs, layers, **kwargs): super().__init__(emb_szs, layers=layers, **kwargs)
    """
    def decorate(f: Any) -> Any:
        target = f.__init__ if isinstance(f, type) else f
        source = to if to is not None else (f.__base__.__init__ if isinstance(f, type) else None)
        if source is None:
            raise TypeError("delegates() on a function needs to= the function its **kwargs go to")
        source = source.__init__ if isinstance(source, type) else source
        sig = inspect.signature(target)
        own = dict(sig.parameters)
        var_kw = next((p for p in own.values() if p.kind == p.VAR_KEYWORD), None)
        if var_kw is None:
            return f
        if not keep:
            own.pop(var_kw.name)
        skip = set(but or ())
        added = {name: p.replace(kind=p.KEYWORD_ONLY) for name, p in inspect.signature(source).parameters.items()
                 if p.default is not p.empty and name not in own and name not in skip}
        ordered = [p for p in own.values() if p.kind != p.VAR_KEYWORD] + list(added.values())
        ordered += [own[var_kw.name]] if keep else []
        target.__signature__ = sig.replace(parameters=ordered)
        target.__delwrap__ = source
        return f
    return decorate


class GetAttr:
    """A base class passing attribute reads it does not answer to ``self.<_default>`` (``default`` unless set):
    ``_xtra`` lists the names passed (default: every public one)."""

    _default = "default"
    _xtra: list[str] | None = None

    def _component_attr_filter(self, name: str) -> bool:
        if name.startswith("__") or name in ("_xtra", self._default):
            return False
        return self._xtra is None or name in self._xtra

    def __getattr__(self, name: str) -> Any:
        if self._component_attr_filter(name):  # (reading the default itself comes back here refused: no loop)
            return getattr(getattr(self, self._default), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        inner = getattr(self, self._default, None)
        extra = [n for n in dir(inner) if self._component_attr_filter(n)] if inner is not None else []
        return sorted(set(super().__dir__()) | set(extra))
