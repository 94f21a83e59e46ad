"""A small synthetic table shaped like the Adult census data, for tests and examples (no download).

It has the fifteen Adult columns, text values with a leading space (as in the original CSV), missing
values in ``workclass``, ``occupation`` and ``education-num``, and a ``salary`` label that follows a simple,
learnable rule (marriage, education and age raise the odds of ``'>=50k'``).

Example:
    >>> df = adult_like(600, seed=0)
    >>> df.to_csv(path/'adult.csv', index=False)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["adult_like", "ADULT_CAT_NAMES", "ADULT_CONT_NAMES"]

ADULT_CAT_NAMES = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
ADULT_CONT_NAMES = ["age", "fnlwgt", "education-num"]

_EDUCATION = {"11th": 7, "HS-grad": 9, "Some-college": 10, "Assoc-voc": 11, "Bachelors": 13, "Masters": 14,
              "Prof-school": 15, "Doctorate": 16}
_WORKCLASS = ["Private", "Self-emp-not-inc", "Local-gov", "State-gov", "Self-emp-inc", "Federal-gov"]
_MARITAL = ["Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed"]
_OCCUPATION = ["Prof-specialty", "Craft-repair", "Exec-managerial", "Adm-clerical", "Sales", "Other-service"]
_RACE = ["White", "Black", "Asian-Pac-Islander", "Other"]


def _pick(rng: np.random.Generator, values: list, n: int, p: list | None = None) -> np.ndarray:
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=p)]


def _with_space(values: np.ndarray) -> np.ndarray:
    return np.array([" " + v for v in values], dtype=object)


def adult_like(n: int = 600, seed: int = 0, missing: float = 0.03) -> pd.DataFrame:
    """An Adult-like DataFrame of ``n`` rows (deterministic given ``seed``).

    Args:
        n: number of rows.
        seed: random seed.
        missing: share of missing values in ``workclass``, ``occupation`` and ``education-num``.

    Returns:
        A DataFrame with the Adult columns; ``salary`` is ``'>=50k'`` or ``'<50k'``.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 80, n)
    education = _pick(rng, list(_EDUCATION), n)
    edu_num = np.array([_EDUCATION[e] for e in education], dtype=float)
    marital = _pick(rng, _MARITAL, n, [0.45, 0.3, 0.15, 0.05, 0.05])
    married = marital == "Married-civ-spouse"
    male = rng.random(n) < 0.65
    relationship = np.where(married, np.where(male, "Husband", "Wife"),
                            _pick(rng, ["Not-in-family", "Own-child", "Unmarried"], n))
    occupation = _pick(rng, _OCCUPATION, n)
    score = 2.2 * married + 0.45 * (edu_num - 10) + 0.05 * (age - 38) + 0.8 * (occupation == "Exec-managerial")
    salary = np.where(score + rng.normal(0, 0.5, n) > 1.6, ">=50k", "<50k")
    frame = pd.DataFrame({
        "age": age, "workclass": _with_space(_pick(rng, _WORKCLASS, n, [0.6, 0.1, 0.1, 0.08, 0.07, 0.05])),
        "fnlwgt": rng.integers(20_000, 800_000, n), "education": _with_space(education), "education-num": edu_num,
        "marital-status": _with_space(marital), "occupation": _with_space(occupation),
        "relationship": _with_space(relationship), "race": _with_space(_pick(rng, _RACE, n, [0.8, 0.1, 0.07, 0.03])),
        "sex": _with_space(np.where(male, "Male", "Female")),
        "capital-gain": np.where(rng.random(n) < 0.08, rng.integers(1_000, 20_000, n), 0),
        "capital-loss": np.where(rng.random(n) < 0.05, rng.integers(500, 2_500, n), 0),
        "hours-per-week": rng.integers(20, 61, n),
        "native-country": _with_space(_pick(rng, ["United-States", "Mexico"], n, [0.9, 0.1])),
        "salary": salary})
    for col in ("workclass", "occupation", "education-num"):
        frame.loc[rng.random(n) < missing, col] = np.nan
    return frame
