"""``results.json`` (every task's latest measurement) and ``RESULTS.md`` (the same, for reading).

A run of some tasks replaces only their entries: the other tasks keep their last measurement,
each with its own date, machine and command.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["merge_results", "render_markdown", "write_reports", "fmt", "ratio_text"]

HEADER = """# Benchmarks: lamina vs fastai {fastai}

Written by `python benchmarks/run.py`; do not edit by hand. Each task ran with lamina and with fastai in the
same run, in fresh processes, interleaved round by round (lamina, fastai, then fastai, lamina, ...). Numbers are
medians over the rounds, with [min–max]. The ratio is lamina / fastai: below 1 means lamina's number is smaller
(faster, for times), above 1 larger (more images per second, for throughputs).

Times are what a user waits for: torch's default thread count, the loader workers the task's user code asks
for, and the wall clock from the fit call to its return (the optimizer is created inside it). The column
"at 1 thread" is the same task again with one torch thread, fewer rounds, for comparison with older runs.
The "threads" column says what each task's last run used: a number means it was run with `--threads N`.
"""


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ('—' for None)."""
    return "—" if value is None else f"{value:.{digits}g}"


def _stat_text(s: dict | None, unit: str = "") -> str:
    if s is None:
        return "—"
    unit = f" {unit}" if unit else ""
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{fmt(s['median'])}{unit}"
    return f"{fmt(s['median'])}{unit} [{fmt(s['min'])}–{fmt(s['max'])}]"


def ratio_text(row: dict) -> tuple[str, str, str]:
    """``(ratio, target, verdict)`` cells of a metric row."""
    ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
    target = row.get("target") or {}
    bound = (f"≤ {target['max_ratio']:g}×" if "max_ratio" in target
             else f"≥ {target['min_ratio']:g}×" if "min_ratio" in target else "—")
    if row["passed"] is None:
        verdict = "not measured" if target else "—"
    elif row["passed"]:
        verdict = "**pass**"
    else:
        verdict = "**FAIL** (quality)" if row.get("ratio_passed") else "**FAIL**"
    return ratio, bound, verdict


def merge_results(old: dict | None, new: dict, known_tasks: list[str]) -> dict:
    """``new``'s task entries over ``old``'s, ordered as ``known_tasks`` (entries of removed tasks dropped)."""
    entries = {t["name"]: t for t in (old or {}).get("tasks", [])}
    entries.update({t["name"]: t for t in new["tasks"]})
    tasks = [entries[name] for name in known_tasks if name in entries]
    return {**new, "tasks": tasks}


def _machine_line(run: dict) -> str:
    m = run["machine"]
    versions = ", ".join(f"{lib} {v.get(lib, '?')} (torch {v.get('torch', '?')})"
                         for lib, v in run.get("versions", {}).items())
    return (f"{run['date']}: {m.get('cpu', 'unknown CPU')}, {m.get('cpus', '?')} CPUs, {m.get('os', '')}, "
            f"Python {m.get('python', '?')}, torch threads {run.get('threads', '?')}, device {run.get('device', '?')}, "
            f"{run.get('repeats', '?')} rounds, load {run.get('load') or '?'}; {versions}")


def one_thread_ratio(t: dict, metric: str) -> str:
    """The lamina/fastai ratio of ``metric`` in the task's 1-thread rounds ('—' when not measured)."""
    rows = (t.get("one_thread") or {}).get("metrics") or []
    row = next((r for r in rows if r["metric"] == metric), None)
    return "—" if row is None or row["ratio"] is None else f"{row['ratio']:.2f}×"


def _summary_table(tasks: list[dict]) -> list[str]:
    lines = ["| task | metric | threads | lamina | fastai | lamina/fastai | at 1 thread | target | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in tasks:
        if t["status"] == "skipped" or not t.get("metrics"):
            lines.append(f"| {t['name']} | — | — | — | — | — | — | — | {t['status']}: {t.get('reason') or ''} |")
            continue
        threads = (t.get("run") or {}).get("threads") or "default"
        for row in t["metrics"]:
            if not row.get("target"):
                continue
            ratio, bound, verdict = ratio_text(row)
            lines.append(f"| {t['name']} | {row['metric']} | {threads} | {_stat_text(row['lamina'], row['unit'])} | "
                         f"{_stat_text(row['fastai'], row['unit'])} | {ratio} | {one_thread_ratio(t, row['metric'])} | "
                         f"{bound} | {verdict} |")
    return lines


def _task_section(t: dict) -> list[str]:
    lines = [f"## {t['title']} (`{t['name']}`)", ""]
    run = t.get("run")
    if run:
        lines += [f"Measured {_machine_line(run)}.", "", f"Command: `{run['command']}`", ""]
    if t["status"] == "skipped":
        return lines + [f"Skipped: {t['reason']}", ""]
    if t["status"] == "error":
        lines += [f"Error: {t['reason']}", ""]
    lines += ["| metric | lamina | fastai | lamina/fastai | at 1 thread | target | result |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in t.get("metrics", []):
        ratio, bound, verdict = ratio_text(row)
        unit = f" ({row['unit']})" if row["unit"] else ""
        lines.append(f"| {row['metric']}{unit} | {_stat_text(row['lamina'])} | {_stat_text(row['fastai'])} | "
                     f"{ratio} | {one_thread_ratio(t, row['metric'])} | {bound} | {verdict} |")
    if t.get("quality"):
        lines += ["", "| quality | lamina | fastai | rule | result |", "| --- | --- | --- | --- | --- |"]
        for q in t["quality"]:
            verdict = "—" if q["passed"] is None else ("**pass**" if q["passed"] else "**FAIL**")
            lines.append(f"| {q['name']} | {_stat_text(q['lamina'])} | {_stat_text(q['fastai'])} | "
                         f"{q['rule'] or '—'} | {verdict} |")
    notes = [f"{row['metric']}: {n}" for row in t.get("metrics", []) for n in row.get("notes", [])]
    if t["status"] != "error" and t.get("reason"):
        notes.append(f"some runs failed: {t['reason']}")
    notes += _info_notes(t)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return lines + [""]


def _info_notes(t: dict) -> list[str]:
    """Each library's ``info`` dict (from its first successful run), as notes."""
    notes = []
    for lib in ("lamina", "fastai"):
        first = next((r["result"] for r in t.get("runs", []) if r["lib"] == lib and "result" in r), None)
        info = (first or {}).get("info")
        if info:
            notes.append(f"{lib}: " + "; ".join(f"{k}: {v}" for k, v in info.items()))
    return notes


def render_markdown(results: dict) -> str:
    """The text of ``RESULTS.md`` for a merged ``results.json`` dict."""
    lines = [HEADER.format(fastai=results.get("fastai_version", "")), "## Summary", ""]
    lines += _summary_table(results["tasks"]) + [""]
    for t in results["tasks"]:
        lines += _task_section(t)
    return "\n".join(lines).rstrip() + "\n"


def write_reports(new: dict, out_dir: Path, known_tasks: list[str]) -> dict:
    """Merge ``new`` into ``out_dir/results.json`` and rewrite ``out_dir/RESULTS.md``; returns the merged dict.

    Two runs of different tasks may finish together: the read-merge-write holds a lock on ``results.json`` meanwhile.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.json", "a") as lock:  # the file itself is the lock (advisory)
        _lock(lock)
        return _merge_and_write(new, out_dir, known_tasks)


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): runs there are not expected to overlap
        return
    fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes


def _merge_and_write(new: dict, out_dir: Path, known_tasks: list[str]) -> dict:
    json_path = out_dir / "results.json"
    old = None
    if json_path.exists():
        try:
            old = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            old = None  # an empty or damaged file is replaced by this run's results
    merged = merge_results(old, new, known_tasks)
    json_path.write_text(json.dumps(merged, indent=1) + "\n")
    (out_dir / "RESULTS.md").write_text(render_markdown(merged))
    return merged
