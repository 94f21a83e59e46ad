"""Hyper-parameter schedules: pure functions of training progress ``pos`` in [0, 1].

A schedule maps ``pos`` to a value. ``start``/``end`` may be numbers or per-param-group
lists; lists are scheduled element-wise, so discriminative learning rates keep their ratios.

Example:
    >>> sched = combined_cos(0.25, 1e-4, 1e-3, 1e-8)   # the one-cycle learning rate
    >>> round(sched(0.25), 6)
    0.001
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["sched_lin", "sched_cos", "sched_no", "sched_exp", "sched_poly", "SchedLin", "SchedCos",
           "SchedNo", "SchedExp", "SchedPoly", "combine_scheds", "combined_cos", "Schedule"]

Value = float | Sequence[float]
Schedule = Callable[[float], object]


def _arr(v: Value) -> float | np.ndarray:
    return np.asarray(v, dtype=np.float64) if isinstance(v, (list, tuple, np.ndarray)) else float(v)


def _out(v: float | np.ndarray) -> float | list[float]:
    return v.tolist() if isinstance(v, np.ndarray) else float(v)


def sched_lin(start: Value, end: Value, pos: float) -> float | list[float]:
    """Linear from ``start`` to ``end``."""
    s, e = _arr(start), _arr(end)
    return _out(s + pos * (e - s))


def sched_cos(start: Value, end: Value, pos: float) -> float | list[float]:
    """Half a cosine from ``start`` to ``end``: ``s + (1 + cos(pi(1-pos))) (e - s) / 2``."""
    s, e = _arr(start), _arr(end)
    return _out(s + (1 + math.cos(math.pi * (1 - pos))) * (e - s) / 2)


def sched_no(start: Value, end: Value, pos: float) -> float | list[float]:
    """Constant ``start``."""
    return _out(_arr(start))


def sched_exp(start: Value, end: Value, pos: float) -> float | list[float]:
    """Exponential from ``start`` to ``end``: ``s (e/s)^pos`` (both must be positive)."""
    s, e = _arr(start), _arr(end)
    return _out(s * (e / s) ** pos)


def sched_poly(start: Value, end: Value, pos: float, power: float) -> float | list[float]:
    """Polynomial: ``s + (e - s) pos^power``."""
    s, e = _arr(start), _arr(end)
    return _out(s + (e - s) * pos ** power)


def _bind(fn: Callable, start: Value, end: Value, **kw) -> Schedule:
    def schedule(pos: float):
        return fn(start, end, pos, **kw)
    schedule.start, schedule.end = start, end  # kept for plotting and for tests
    return schedule


def SchedLin(start: Value, end: Value) -> Schedule:
    """A linear schedule as a function of ``pos``."""
    return _bind(sched_lin, start, end)


def SchedCos(start: Value, end: Value) -> Schedule:
    """A cosine schedule as a function of ``pos``."""
    return _bind(sched_cos, start, end)


def SchedNo(start: Value, end: Value = None) -> Schedule:
    """A constant schedule as a function of ``pos``."""
    return _bind(sched_no, start, end)


def SchedExp(start: Value, end: Value) -> Schedule:
    """An exponential schedule as a function of ``pos``."""
    return _bind(sched_exp, start, end)


def SchedPoly(start: Value, end: Value, power: float) -> Schedule:
    """A polynomial schedule as a function of ``pos``."""
    return _bind(sched_poly, start, end, power=power)


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Schedule:
    """Chain schedules: ``scheds[i]`` runs over the fraction ``pcts[i]`` of training.

    Raises:
        ValueError: if ``pcts`` and ``scheds`` differ in length or ``pcts`` does not sum to 1.
    """
    if len(pcts) != len(scheds):
        raise ValueError(f"`pcts` and `scheds` must have the same length; received {len(pcts)} and {len(scheds)}")
    if abs(sum(pcts) - 1) > 1e-6 or min(pcts) < 0:
        raise ValueError(f"`pcts` must be non-negative and sum to 1; received: pcts={list(pcts)}")
    bounds = np.cumsum([0.0, *pcts])

    def schedule(pos: float):
        pos = min(max(pos, 0.0), 1.0)
        # the last phase whose start is <= pos; zero-length phases are skipped
        i = max(j for j in range(len(scheds)) if bounds[j] <= pos and (pcts[j] > 0 or j == len(scheds) - 1))
        local = (pos - bounds[i]) / pcts[i] if pcts[i] > 0 else 1.0
        return scheds[i](min(local, 1.0))
    return schedule


def combined_cos(pct: float, start: Value, middle: Value, end: Value) -> Schedule:
    """Cosine from ``start`` to ``middle`` over ``pct`` of training, then cosine to ``end`` (one-cycle)."""
    return combine_scheds([pct, 1 - pct], [SchedCos(start, middle), SchedCos(middle, end)])
