"""Benchmark lamina against fastai: ``python benchmarks/run.py [--tasks a,b] [--repeats N]``.

Creates (or reuses) a separate fastai environment, runs every task with lamina (this interpreter) and
with fastai (that environment) in interleaved rounds, each run in a fresh process, then writes
``benchmarks/RESULTS.md`` and ``benchmarks/results.json``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` (and lamina) importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fastai_env import FASTAI_VERSION, default_venv_dir, display_path, ensure_fastai_venv  # noqa: E402
from benchmarks.harness import REPO_ROOT, run_task  # noqa: E402
from benchmarks.report import write_reports  # noqa: E402
from benchmarks.tasks_api import LIBS, discover_tasks, load_task, select_tasks  # noqa: E402

BENCH_DIR = REPO_ROOT / "benchmarks"
WORK_DIR = BENCH_DIR / "_work"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark lamina against fastai, side by side in one run.")
    p.add_argument("--tasks", help="comma-separated task names (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per task (default 3)")
    # torch's default thread count by default: what a user's script gets; one thread is measured beside it
    p.add_argument("--threads", default="default", help="torch threads for both libraries: a count, or 'default' "
                                                        "(torch's own choice, one per core; the default)")
    p.add_argument("--one-thread-rounds", type=int, default=1,
                   help="after each task, this many interleaved rounds again with 1 thread, reported beside the "
                        "main numbers (default 1; 0: none)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None, help="device for both libraries (default: cuda if available, else cpu)")
    p.add_argument("--data", default=None, help="data folder (default: $LAMINA_BENCH_DATA, else ../shared/data "
                                                 "relative to the repository)")
    p.add_argument("--libs", default=",".join(LIBS), help="libraries to run (default: lamina,fastai)")
    p.add_argument("--quick", action="store_true", help="smaller workloads, to check that tasks run (results "
                                                        "go to benchmarks/_work unless --out is given)")
    p.add_argument("--out", default=None, help="folder for RESULTS.md and results.json (default: benchmarks/, "
                                               "or benchmarks/_work for --quick or a single library)")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    args = p.parse_args(argv)
    libs = tuple(x.strip() for x in args.libs.split(",") if x.strip())
    if not libs or any(x not in LIBS for x in libs):
        p.error(f"--libs must name lamina and/or fastai; received {args.libs!r}")
    if args.threads == "default":
        args.threads = None
    elif not args.threads.isdigit() or int(args.threads) < 1:
        p.error(f"--threads must be a count >= 1 or 'default'; received {args.threads!r}")
    else:
        args.threads = int(args.threads)
    if args.repeats < 1 or args.one_thread_rounds < 0:
        p.error("--repeats must be at least 1 and --one-thread-rounds at least 0")
    args.libs = libs
    return args


def data_dir(arg: str | None) -> Path:
    """``--data``, else ``$LAMINA_BENCH_DATA``, else ``../shared/data`` next to the repository."""
    chosen = arg or os.environ.get("LAMINA_BENCH_DATA")
    return Path(chosen).expanduser().resolve() if chosen else (REPO_ROOT.parent / "shared" / "data").resolve()


def shown_path(path: Path) -> str:
    """A path as reports show it: relative to the repository when close to it, else under ``~``."""
    rel = os.path.relpath(path, REPO_ROOT)
    return rel if not rel.startswith("../../") else display_path(path)


def machine() -> dict:
    """What the numbers were measured on: the CPU's name and its widest matrix instructions (`cpu_isa`)."""
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
        flags = next((line.split(":", 1)[1] for line in lines if line.startswith("flags")), "")
    except OSError:
        pass
    isa = cpu_isa(flags.split())
    return {"cpu": f"{cpu} ({isa})" if isa else cpu, "cpus": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def cpu_isa(flags: list[str]) -> str:
    """The widest of AMX, AVX-512 BF16, AVX-512 and AVX2 among a CPU's flags (``/proc/cpuinfo``), or ""; it
    decides the kernels both libraries get, and lamina's default precision for CNNs and text models."""
    names = {"amx_bf16": "AMX", "avx512_bf16": "AVX-512 BF16", "avx512f": "AVX-512", "avx2": "AVX2"}
    return next((name for flag, name in names.items() if flag in flags), "")


def _auto_device() -> str:
    """The device both libraries get unless ``--device`` says otherwise: CUDA when available, else CPU."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def first_versions(runs: list[dict]) -> dict:
    """The versions each library's first successful run reported."""
    out = {}
    for r in runs:
        if "versions" in r and r["lib"] not in out:
            out[r["lib"]] = r["versions"]
    return out


def _load() -> str | None:
    """The machine's load averages over 1, 5 and 15 minutes when the task ended (None where unknown)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return None


def one_thread_entry(task, pythons: dict, opts: dict, rounds: int, data: Path, log_dir: Path) -> dict | None:
    """The task again at 1 thread for ``rounds`` rounds (None when ``rounds`` is 0 or threads are already 1)."""
    if rounds < 1 or opts["threads"] == 1:
        return None
    entry = run_task(task, pythons, {**opts, "threads": 1}, rounds, data, log_dir)
    return {k: entry.get(k) for k in ("status", "reason", "metrics", "quality", "passed")} | {"repeats": rounds}


def interpreters(libs: tuple[str, ...]) -> dict[str, str]:
    """The python of each library: this one for lamina, the fastai environment's (created if needed) for fastai."""
    found = {"lamina": sys.executable}
    if "fastai" in libs:
        found["fastai"] = str(ensure_fastai_venv(default_venv_dir()))
    return {lib: found[lib] for lib in libs}


def threads_text(threads: int | None) -> str:
    """How reports name a thread setting: the count, or torch's default and what it is on this machine."""
    if threads is not None:
        return str(threads)
    import torch
    return f"default ({torch.get_num_threads()})"


def run_record(args: argparse.Namespace, command: str, device: str, data: Path, runs: list[dict]) -> dict:
    """When, where, how and with which versions a task was measured."""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command,
            "machine": machine(), "threads": threads_text(args.threads), "repeats": args.repeats, "device": device,
            "load": _load(),
            "quick": args.quick, "data": shown_path(data), "versions": first_versions(runs)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    available = discover_tasks()
    if args.list:
        for name in available:
            print(f"{name:<20} {load_task(name).title}")
        return 0
    try:
        tasks = [load_task(n) for n in select_tasks(available, args.tasks)]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    pythons = interpreters(args.libs)
    data, device = data_dir(args.data), args.device or _auto_device()
    out_dir = Path(args.out) if args.out else (WORK_DIR if args.quick or len(args.libs) < 2 else BENCH_DIR)
    log_dir = WORK_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in given)
    opts = {"threads": args.threads, "seed": args.seed, "quick": args.quick, "device": device, "data_dir": str(data)}
    extra = f", then {args.one_thread_rounds} round(s) at 1 thread" if args.threads != 1 else ""
    print(f"data: {shown_path(data)}; {len(tasks)} task(s); {args.repeats} round(s); "
          f"{threads_text(args.threads)} thread(s){extra}")
    entries = []
    for task in tasks:
        entry = run_task(task, pythons, opts, args.repeats, data, log_dir)
        one = one_thread_entry(task, pythons, opts, args.one_thread_rounds, data, log_dir)
        entries.append({**entry, "one_thread": one, "run": run_record(args, command, device, data, entry["runs"])})
        # written after every task, so that an interrupted run keeps what it measured
        write_reports({"fastai_version": FASTAI_VERSION, "tasks": entries}, out_dir, available)
    print(f"wrote {shown_path(out_dir / 'RESULTS.md')} and results.json (run logs in {shown_path(log_dir)})")
    return 1 if any(e["status"] == "error" for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
