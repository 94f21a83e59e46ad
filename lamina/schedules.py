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


def _map(fn: Callable[[float, float], float], start: Value, end: Value) -> float | list[float]:
    """``fn(start, end)`` for numbers; element-wise (a list) when either is a per-group list.

    Plain Python floats rather than numpy: the same float64 arithmetic, without numpy's per-call cost (a
    schedule is evaluated before every training batch).
    """
    seq = (list, tuple, np.ndarray)
    if not isinstance(start, seq) and not isinstance(end, seq):
        return float(fn(float(start), float(end)))
    n = len(start) if isinstance(start, seq) else len(end)
    starts = [float(v) for v in start] if isinstance(start, seq) else [float(start)] * n
    ends = [float(v) for v in end] if isinstance(end, seq) else [float(end)] * n
    if len(starts) != len(ends):
        raise ValueError(f"`start` and `end` need the same number of values; received {starts} and {ends}")
    return [float(fn(s, e)) for s, e in zip(starts, ends)]


def sched_lin(start: Value, end: Value, pos: float) -> float | list[float]:
    """Linear from ``start`` to ``end``."""
    return _map(lambda s, e: s + pos * (e - s), start, end)


def sched_cos(start: Value, end: Value, pos: float) -> float | list[float]:
    """Half a cosine from ``start`` to ``end``: ``s + (1 + cos(pi(1-pos))) (e - s) / 2``."""
    c = 1 + math.cos(math.pi * (1 - pos))
    return _map(lambda s, e: s + c * (e - s) / 2, start, end)


def sched_no(start: Value, end: Value, pos: float) -> float | list[float]:
    """Constant ``start``."""
    return _map(lambda s, e: s, start, start)


def sched_exp(start: Value, end: Value, pos: float) -> float | list[float]:
    """Exponential from ``start`` to ``end``: ``s (e/s)^pos`` (both must be positive)."""
    return _map(lambda s, e: s * (e / s) ** pos, start, end)


def sched_poly(start: Value, end: Value, pos: float, power: float) -> float | list[float]:
    """Polynomial: ``s + (e - s) pos^power``."""
    return _map(lambda s, e: s + (e - s) * pos ** power, start, end)


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
    pcts = [float(p) for p in pcts]
    bounds = np.cumsum([0.0, *pcts]).tolist()
    # the phases a position can fall in: zero-length phases are skipped, except a last one
    live = [j for j in range(len(scheds)) if pcts[j] > 0 or j == len(scheds) - 1]

    def schedule(pos: float):
        pos = min(max(pos, 0.0), 1.0)
        i = live[0]
        for j in live:  # the last live phase whose start is <= pos
            if bounds[j] <= pos:
                i = j
        local = (pos - bounds[i]) / pcts[i] if pcts[i] > 0 else 1.0
        return scheds[i](min(local, 1.0))
    return schedule


def combined_cos(pct: float, start: Value, middle: Value, end: Value) -> Schedule:
    """Cosine from ``start`` to ``middle`` over ``pct`` of training, then cosine to ``end`` (one-cycle)."""
    return combine_scheds([pct, 1 - pct], [SchedCos(start, middle), SchedCos(middle, end)])
