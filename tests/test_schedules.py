"""Schedules are pure functions of progress."""

import math

import pytest

from lamina.schedules import SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly, combine_scheds, combined_cos


def test_basic_schedules():
    assert SchedLin(0, 10)(0.25) == pytest.approx(2.5)
    assert SchedCos(0, 10)(0.5) == pytest.approx(5)
    assert SchedCos(0, 10)(0) == pytest.approx(0) and SchedCos(0, 10)(1) == pytest.approx(10)
    assert SchedNo(3, 7)(0.9) == 3
    assert SchedExp(1, 100)(0.5) == pytest.approx(10)
    assert SchedPoly(0, 8, 3)(0.5) == pytest.approx(1)


def test_per_group_lists_keep_ratios():
    values = SchedCos([1.0, 10.0], [2.0, 20.0])(0.3)
    assert values[1] == pytest.approx(10 * values[0])


def test_one_cycle_formula():
    pct, lr_max, div, div_final = 0.25, 1e-2, 25, 1e5
    sched = combined_cos(pct, lr_max / div, lr_max, lr_max / div_final)
    for pos in (0, 0.1, 0.25, 0.5, 0.9, 1.0):
        if pos <= pct:
            p = pos / pct
            expected = lr_max / div + (1 + math.cos(math.pi * (1 - p))) * (lr_max - lr_max / div) / 2
        else:
            p = (pos - pct) / (1 - pct)
            expected = lr_max + (1 + math.cos(math.pi * (1 - p))) * (lr_max / div_final - lr_max) / 2
        assert sched(pos) == pytest.approx(expected)
    moms = combined_cos(pct, 0.95, 0.85, 0.95)
    assert moms(0) == pytest.approx(0.95) and moms(pct) == pytest.approx(0.85) and moms(1) == pytest.approx(0.95)


def test_combine_validates():
    with pytest.raises(ValueError, match="sum to 1"):
        combine_scheds([0.5, 0.6], [SchedNo(1), SchedNo(2)])
    with pytest.raises(ValueError, match="same length"):
        combine_scheds([1.0], [SchedNo(1), SchedNo(2)])


def test_lists_broadcast_numbers_and_must_match_in_length():
    assert SchedLin([0.0, 10.0], 20.0)(0.5) == [10.0, 15.0]
    assert SchedCos(1.0, [3.0, 5.0])(1.0) == [3.0, 5.0]
    assert SchedNo([1, 2])(0.3) == [1.0, 2.0]
    with pytest.raises(ValueError, match="same number of values"):
        SchedLin([0.0, 1.0], [1.0, 2.0, 3.0])(0.5)


def test_zero_length_phases_are_skipped():
    sched = combine_scheds([0.0, 0.5, 0.5], [SchedNo(1), SchedNo(2), SchedNo(3)])
    assert [sched(p) for p in (0.0, 0.49, 0.5, 1.0)] == [2, 2, 3, 3]
    warm = combined_cos(0.0, 1.0, 2.0, 0.0)  # no warm-up: starts at the top
    assert warm(0.0) == pytest.approx(2.0)
