"""From raw runs to verdicts: medians, lamina/fastai ratios, targets and quality rules (pure functions).

A task's ``TARGET`` is one rule or a list of rules::

    {"metric": "time", "max_ratio": 0.5}                    # lower is better: lamina/fastai <= 0.5
    {"metric": "img_per_s", "min_ratio": 1.5}               # higher is better: lamina/fastai >= 1.5
    {"metric": "time", "max_ratio": 0.7,
     "quality": [{"name": "error_rate", "better": "lower", "tol": 0.01}]}   # lamina <= fastai + 0.01

A quality rule with ``"better": "higher"`` reads lamina >= fastai - tol.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["RESERVED_KEYS", "normalize_targets", "stats", "metric_names", "quality_names", "ratio_verdict",
           "quality_verdict", "quality_rule_text", "summarize_task", "default_unit"]

# keys of a run's result dict that are not metrics
RESERVED_KEYS = ("quality", "skipped", "info")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_quality_rule(task: str, rule: Any) -> dict:
    if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
        raise ValueError(f"Task {task!r}: each quality rule must be a dict with a 'name'; received {rule!r}")
    better = rule.get("better", "lower")
    if better not in ("lower", "higher"):
        raise ValueError(f"Task {task!r}: quality rule {rule['name']!r} needs 'better' = 'lower' or 'higher'; "
                         f"received {better!r}")
    tol = rule.get("tol", 0.0)
    if not _is_number(tol) or tol < 0:
        raise ValueError(f"Task {task!r}: quality rule {rule['name']!r} needs a 'tol' >= 0; received {tol!r}")
    return {"name": rule["name"], "better": better, "tol": float(tol)}


def normalize_targets(task: str, target: Any) -> list[dict]:
    """Check a task's ``TARGET`` and return it as a list of rules with every key filled in.

    Raises:
        ValueError: naming the task and the faulty key (no metric, both or neither ratio, a bad quality rule).
    """
    if target is None:
        return []
    rules = [target] if isinstance(target, dict) else target
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"Task {task!r}: TARGET must be a dict, a list of dicts or None; received {target!r}")
    out = []
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
            raise ValueError(f"Task {task!r}: each TARGET needs a 'metric' name, e.g. {{'metric': 'time', "
                             f"'max_ratio': 0.5}}; received {rule!r}")
        bounds = [k for k in ("max_ratio", "min_ratio") if k in rule]
        if len(bounds) != 1 or not _is_number(rule[bounds[0]]) or rule[bounds[0]] <= 0:
            raise ValueError(f"Task {task!r}: TARGET for {rule['metric']!r} needs exactly one positive 'max_ratio' "
                             f"(lower is better) or 'min_ratio' (higher is better); received {rule!r}")
        quality = [_check_quality_rule(task, q) for q in rule.get("quality", [])]
        out.append({"metric": rule["metric"], bounds[0]: float(rule[bounds[0]]), "quality": quality})
    return out


def stats(values: list[Any]) -> dict | None:
    """Median, min, max and count of the finite numbers in ``values`` (None when there are none)."""
    nums = [float(v) for v in values if _is_number(v)]
    if not nums:
        return None
    return {"median": statistics.median(nums), "min": min(nums), "max": max(nums), "n": len(nums)}


def metric_names(results: list[dict]) -> list[str]:
    """The metric keys found in ``results``, in first-seen order (reserved keys left out)."""
    names: list[str] = []
    for res in results:
        for key, value in res.items():
            if key not in RESERVED_KEYS and key not in names and (value is None or _is_number(value)):
                names.append(key)
    return names


def quality_names(results: list[dict]) -> list[str]:
    """The quality keys found in ``results``, in first-seen order."""
    names: list[str] = []
    for res in results:
        for key in (res.get("quality") or {}):
            if key not in names:
                names.append(key)
    return names


def default_unit(metric: str) -> str:
    """``'s'`` for metrics named like times, else no unit."""
    timed = metric == "time" or metric.endswith(("_time", "_s", "_latency"))
    return "s" if timed and "_per_" not in metric else ""


def ratio_verdict(lamina: float | None, fastai: float | None, rule: dict | None) -> tuple[float | None, bool | None]:
    """``(lamina / fastai, passed)``; ``passed`` is None without a rule or without both values."""
    if lamina is None or fastai is None or fastai == 0:
        return None, None
    ratio = lamina / fastai
    if rule is None:
        return ratio, None
    if "max_ratio" in rule:
        return ratio, ratio <= rule["max_ratio"]
    return ratio, ratio >= rule["min_ratio"]


def quality_verdict(lamina: float | None, fastai: float | None, rule: dict) -> bool:
    """Whether lamina's quality is within ``tol`` of fastai's in the rule's direction (False if a value is missing)."""
    if lamina is None or fastai is None:
        return False
    # a tiny slack so that equal values printed the same never fail on float rounding
    eps = 1e-12 * max(1.0, abs(fastai))
    if rule["better"] == "lower":
        return lamina <= fastai + rule["tol"] + eps
    return lamina >= fastai - rule["tol"] - eps


def quality_rule_text(rule: dict) -> str:
    """The rule as a reader checks it, e.g. ``lamina <= fastai + 0.01``."""
    if rule["better"] == "lower":
        return f"lamina ≤ fastai + {rule['tol']:g}"
    return f"lamina ≥ fastai − {rule['tol']:g}"


def _skip_notes(results: list[dict], metric: str) -> list[str]:
    return sorted({str(r["skipped"][metric]) for r in results if metric in (r.get("skipped") or {})})


def _median(s: dict | None) -> float | None:
    return s["median"] if s is not None else None


def _metric_row(metric: str, lam: list[dict], fai: list[dict], rule: dict | None, units: dict) -> dict:
    ls, fs = stats([r.get(metric) for r in lam]), stats([r.get(metric) for r in fai])
    ratio, passed = ratio_verdict(_median(ls), _median(fs), rule)
    notes = [f"{lib}: {n}" for lib, runs in (("lamina", lam), ("fastai", fai)) for n in _skip_notes(runs, metric)]
    bound = None if rule is None else {k: rule[k] for k in ("max_ratio", "min_ratio") if k in rule}
    return {"metric": metric, "unit": units.get(metric, default_unit(metric)), "lamina": ls, "fastai": fs,
            "ratio": ratio, "target": bound, "passed": passed, "notes": notes}


def _quality_rows(lam: list[dict], fai: list[dict], targets: list[dict]) -> list[dict]:
    rules = {q["name"]: q for t in targets for q in t["quality"]}
    names = quality_names(lam + fai) + [n for n in rules if n not in quality_names(lam + fai)]
    rows = []
    for name in names:
        ls = stats([(r.get("quality") or {}).get(name) for r in lam])
        fs = stats([(r.get("quality") or {}).get(name) for r in fai])
        rule = rules.get(name)
        rows.append({"name": name, "lamina": ls, "fastai": fs, "rule": quality_rule_text(rule) if rule else None,
                     "passed": quality_verdict(_median(ls), _median(fs), rule) if rule else None})
    return rows


def summarize_task(targets: list[dict], lamina: list[dict], fastai: list[dict], units: dict | None = None) -> dict:
    """Aggregate the successful runs of each library and judge them against the targets.

    Args:
        targets: the task's rules, from `normalize_targets`.
        lamina: the result dicts of lamina's successful runs.
        fastai: the result dicts of fastai's successful runs.
        units: unit per metric name (default: `default_unit`).

    Returns:
        ``{"metrics": [...], "quality": [...], "passed": True | False | None}``: ``passed`` is None when no
        target could be judged (a side was not measured), else whether every judged target holds, its
        quality rules included.
    """
    units = units or {}
    by_metric = {t["metric"]: t for t in targets}
    names = metric_names(lamina + fastai) + [m for m in by_metric if m not in metric_names(lamina + fastai)]
    metrics = [_metric_row(m, lamina, fastai, by_metric.get(m), units) for m in names]
    quality = _quality_rows(lamina, fastai, targets)
    q_pass = {q["name"]: q["passed"] for q in quality}
    verdicts = []
    for row in metrics:
        if row["passed"] is None:
            continue
        rule_q = [q["name"] for q in by_metric[row["metric"]]["quality"]]
        row["ratio_passed"] = row["passed"]
        row["passed"] = row["passed"] and all(q_pass.get(n) for n in rule_q)
        verdicts.append(row["passed"])
    return {"metrics": metrics, "quality": quality, "passed": all(verdicts) if verdicts else None}
