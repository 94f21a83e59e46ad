"""`TabularPandas` in `save_pickle` / `load_pickle` (the book's chapter 9 saves one to reuse its processing): its
plain form is the fitted pipeline's JSON description (`TabularProcessor.to_config`), the processed rows and the
split, rebuilt without unpickling any class (`lamina.pickle_forms`).

Example:
    >>> save_pickle(path/'to.pkl', to)
    >>> to = load_pickle(path/'to.pkl')
"""

from __future__ import annotations

from typing import Any

from ..pickle_forms import register_form
from .data import TabularPandas
from .processor import TabularProcessor

__all__: list[str] = []


def _encode(to: TabularPandas) -> dict[str, Any]:
    problem = to.processor.json_problem()
    if problem is not None:
        raise TypeError(f"save_pickle cannot write this TabularPandas: {problem}")
    config = to.processor.to_config()
    try:  # a proc of the user's own is not in lamina's table of procs: it could not be rebuilt
        TabularProcessor.from_config(config)
    except (KeyError, ValueError, TypeError) as e:
        raise TypeError(f"save_pickle cannot write this TabularPandas so that load_pickle rebuilds it: {e}") from None
    return {"processor": config, "items": to.items, "raw": to._raw, "order": to._order,
            "n_train": int(to.n_train), "device": None if to.device is None else str(to.device)}


def _build(data: dict[str, Any]) -> TabularPandas:
    to = object.__new__(TabularPandas)
    to.processor = TabularProcessor.from_config(data["processor"])
    to.items, to._raw, to._order, to.n_train = data["items"], data["raw"], data["order"], data["n_train"]
    to.device = data["device"]
    return to


register_form(TabularPandas, "TabularPandas", _encode, _build)
