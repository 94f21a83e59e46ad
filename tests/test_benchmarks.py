"""The benchmark harness's own logic: targets, summaries, the plan, task discovery, the worker protocol, reports.

No fastai and no timing here: the runs are fake result dicts, the tasks small files written to tmp_path.
"""

import json
import sys
import types

import pytest

from benchmarks import harness, report, summary, tasks_api, worker

TASK_TEXT = '''
TITLE = "A fake task"
TARGET = {"metric": "time", "max_ratio": 0.5, "quality": [{"name": "error_rate", "better": "lower", "tol": 0.01}]}
DATA = "some/folder"

def run_lamina(data_dir, opts):
    return {"time": 1.0, "quality": {"error_rate": 0.1}}

def run_fastai(data_dir, opts):
    return {"time": 4.0, "quality": {"error_rate": 0.1}}
'''


def _runs(times, quality=None, **extra):
    return [{"time": t, "quality": dict(quality or {}), **extra} for t in times]


# --- targets ---------------------------------------------------------------------------------
def test_normalize_targets_accepts_dict_list_and_none():
    assert summary.normalize_targets("t", None) == []
    one = summary.normalize_targets("t", {"metric": "time", "max_ratio": 0.5})
    assert one == [{"metric": "time", "max_ratio": 0.5, "quality": []}]
    two = summary.normalize_targets("t", [{"metric": "img_per_s", "min_ratio": 1.5,
                                          "quality": [{"name": "acc", "better": "higher", "tol": 0.005}]},
                                         {"metric": "latency", "max_ratio": 0.2}])
    assert two[0]["quality"] == [{"name": "acc", "better": "higher", "tol": 0.005}]
    assert two[1] == {"metric": "latency", "max_ratio": 0.2, "quality": []}


@pytest.mark.parametrize("target, match", [
    ({"max_ratio": 0.5}, "needs a 'metric' name"),
    ({"metric": "time"}, "exactly one positive 'max_ratio'"),
    ({"metric": "time", "max_ratio": 0.5, "min_ratio": 2}, "exactly one positive"),
    ({"metric": "time", "max_ratio": -1}, "exactly one positive"),
    ({"metric": "time", "max_ratio": 0.5, "quality": [{"name": "mse", "better": "up"}]}, "'lower' or 'higher'"),
    ({"metric": "time", "max_ratio": 0.5, "quality": [{"name": "mse", "tol": -0.1}]}, "'tol' >= 0"),
    ("time", "TARGET must be a dict"),
])
def test_normalize_targets_rejects_malformed_rules(target, match):
    with pytest.raises(ValueError, match=match):
        summary.normalize_targets("my_task", target)


def test_ratio_verdict_in_both_directions():
    assert summary.ratio_verdict(1.0, 4.0, {"max_ratio": 0.5}) == (0.25, True)
    assert summary.ratio_verdict(3.0, 4.0, {"max_ratio": 0.5}) == (0.75, False)
    assert summary.ratio_verdict(300.0, 100.0, {"min_ratio": 1.5}) == (3.0, True)
    assert summary.ratio_verdict(120.0, 100.0, {"min_ratio": 1.5}) == (1.2, False)
    assert summary.ratio_verdict(1.0, 2.0, None) == (0.5, None)
    assert summary.ratio_verdict(None, 2.0, {"max_ratio": 0.5}) == (None, None)


def test_quality_verdict_tolerances():
    lower = {"name": "error_rate", "better": "lower", "tol": 0.01}
    assert summary.quality_verdict(0.11, 0.10, lower)
    assert not summary.quality_verdict(0.12, 0.10, lower)
    higher = {"name": "accuracy", "better": "higher", "tol": 0.005}
    assert summary.quality_verdict(0.896, 0.90, higher)
    assert not summary.quality_verdict(0.89, 0.90, higher)
    no_worse = {"name": "valid_loss", "better": "lower", "tol": 0.0}
    assert summary.quality_verdict(0.3, 0.3, no_worse)
    assert not summary.quality_verdict(None, 0.3, no_worse)


def test_stats_median_min_max_ignore_missing_values():
    assert summary.stats([3.0, 1.0, None, 2.0, float("nan")]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert summary.stats([None, None]) is None


# --- summaries -------------------------------------------------------------------------------
def test_summarize_task_medians_ratio_and_pass():
    targets = summary.normalize_targets("t", {"metric": "time", "max_ratio": 0.5})
    out = summary.summarize_task(targets, _runs([2.0, 1.0, 9.0]), _runs([4.0, 5.0, 6.0]))
    row = out["metrics"][0]
    assert row["lamina"] == {"median": 2.0, "min": 1.0, "max": 9.0, "n": 3}
    assert row["ratio"] == pytest.approx(0.4)
    assert row["passed"] is True and out["passed"] is True
    assert row["unit"] == "s"


def test_summarize_task_fails_on_quality_even_when_fast():
    targets = summary.normalize_targets("t", {"metric": "time", "max_ratio": 0.5,
                                              "quality": [{"name": "error_rate", "better": "lower", "tol": 0.01}]})
    out = summary.summarize_task(targets, _runs([1.0], {"error_rate": 0.2}), _runs([4.0], {"error_rate": 0.1}))
    row, q = out["metrics"][0], out["quality"][0]
    assert row["ratio_passed"] is True and row["passed"] is False and out["passed"] is False
    assert q["passed"] is False and q["rule"] == "lamina ≤ fastai + 0.01"
    assert report.ratio_text(row)[2] == "**FAIL** (quality)"


def test_summarize_task_higher_is_better_and_untargeted_metrics():
    targets = summary.normalize_targets("t", {"metric": "img_per_s", "min_ratio": 1.5})
    lam = [{"img_per_s": 300.0, "load_time": 1.0}]
    fai = [{"img_per_s": 100.0, "load_time": 2.0}]
    out = summary.summarize_task(targets, lam, fai, units={"img_per_s": "img/s"})
    rows = {r["metric"]: r for r in out["metrics"]}
    assert rows["img_per_s"]["ratio"] == 3.0 and rows["img_per_s"]["passed"] is True
    assert rows["img_per_s"]["unit"] == "img/s"
    assert rows["load_time"]["ratio"] == 0.5 and rows["load_time"]["passed"] is None


def test_summarize_task_skipped_metric_is_not_measured():
    targets = summary.normalize_targets("t", {"metric": "vision", "max_ratio": 0.6})
    lam = [{"vision": None, "tabular": 1.0, "skipped": {"vision": "lamina.vision.all does not exist yet"}}]
    fai = [{"vision": 3.0, "tabular": 2.0}]
    out = summary.summarize_task(targets, lam, fai)
    vision = out["metrics"][0]
    assert vision["ratio"] is None and vision["passed"] is None and out["passed"] is None
    assert vision["notes"] == ["lamina: lamina.vision.all does not exist yet"]
    assert report.ratio_text(vision) == ("—", "≤ 0.6×", "not measured")


# --- plan, environment, worker protocol ------------------------------------------------------
def test_interleaved_plan_alternates_the_order():
    assert harness.interleaved_plan(3) == [(0, "lamina"), (0, "fastai"), (1, "fastai"), (1, "lamina"),
                                           (2, "lamina"), (2, "fastai")]
    assert harness.interleaved_plan(2, ("lamina",)) == [(0, "lamina"), (1, "lamina")]
    with pytest.raises(ValueError, match="`repeats` must be an integer >= 1"):
        harness.interleaved_plan(0)


def test_bench_env_drops_python_paths_and_pins_threads():
    env = harness.bench_env(2, base={"PYTHONPATH": "/x", "VIRTUAL_ENV": "/v", "HOME": "/h"})
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env and env["HOME"] == "/h"
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"


def test_bench_env_at_default_threads_leaves_torch_to_choose():
    env = harness.bench_env(None, base={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HOME": "/h"})
    assert "OMP_NUM_THREADS" not in env and "MKL_NUM_THREADS" not in env and env["HOME"] == "/h"


def test_prepare_sets_threads_only_when_asked():
    import torch

    from benchmarks.common import prepare
    before = torch.get_num_threads()
    try:
        prepare({"threads": None, "seed": 0})
        assert torch.get_num_threads() == before
        prepare({"threads": 1, "seed": 0})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_run_parses_threads_and_one_thread_rounds():
    from benchmarks import run
    args = run.parse_args([])
    assert args.threads is None and args.one_thread_rounds == 1
    assert run.threads_text(None).startswith("default (") and run.threads_text(3) == "3"
    assert run.parse_args(["--threads", "2", "--one-thread-rounds", "0"]).threads == 2
    with pytest.raises(SystemExit):
        run.parse_args(["--threads", "two"])


def test_parse_worker_output_takes_the_result_line():
    out = 'epoch 0 ...\n{"not": "ours"}\n{"result": {"time": 1.5}, "versions": {}}\n'
    assert harness.parse_worker_output(out) == {"result": {"time": 1.5}, "versions": {}}
    assert "printed no result" in harness.parse_worker_output("Traceback ...\n")["error"]


def test_scrub_paths_hides_local_folders():
    from pathlib import Path
    text = f'File "{harness.REPO_ROOT}/benchmarks/worker.py", line 1; {Path.home()}/.cache/x'
    assert harness.scrub_paths(text) == 'File "benchmarks/worker.py", line 1; ~/.cache/x'


def test_worker_refuses_a_run_that_imports_the_other_library(monkeypatch):
    def run_lamina(data_dir, opts):
        monkeypatch.setitem(sys.modules, "fastai", types.ModuleType("fastai"))
        return {"time": 1.0}
    task = tasks_api.Task("fake", "Fake", [], (), module=types.SimpleNamespace(run_lamina=run_lamina))
    monkeypatch.setattr(worker, "load_task", lambda name: task)
    out = worker.run("fake", "lamina", {"data_dir": "."})
    assert "imported fastai" in out["error"]


def test_worker_reports_exceptions_and_bad_returns(monkeypatch):
    def boom(data_dir, opts):
        raise RuntimeError("kaput")
    module = types.SimpleNamespace(run_lamina=boom, run_fastai=lambda d, o: [1.0])
    monkeypatch.setattr(worker, "load_task", lambda name: tasks_api.Task("fake", "Fake", [], (), module=module))
    assert "RuntimeError: kaput" in worker.run("fake", "lamina", {"data_dir": "."})["error"]
    assert "returned list, expected a dict" in worker.run("fake", "fastai", {"data_dir": "."})["error"]
    assert "lib must be one of" in worker.run("fake", "torch", {"data_dir": "."})["error"]


def test_run_one_speaks_to_a_fresh_process():
    task = tasks_api.load_task("loop_overhead")
    out = harness.run_one(task, "nope", sys.executable, {"threads": 1, "data_dir": "."})
    assert "lib must be one of" in out["error"] and out["wall_s"] > 0


# --- task discovery --------------------------------------------------------------------------
def test_discover_load_and_select_tasks(tmp_path):
    (tmp_path / "fake.py").write_text(TASK_TEXT)
    (tmp_path / "_helpers.py").write_text("X = 1\n")
    assert tasks_api.discover_tasks(tmp_path) == ["fake"]
    task = tasks_api.load_task("fake", tmp_path)
    assert task.title == "A fake task" and task.data == ("some/folder",)
    assert task.targets[0]["quality"][0]["name"] == "error_rate"
    assert task.runner("fastai")("d", {}) == {"time": 4.0, "quality": {"error_rate": 0.1}}
    assert tasks_api.select_tasks(["a", "b", "c"], "c,a") == ["c", "a"]
    assert tasks_api.select_tasks(["a", "b"], None) == ["a", "b"]
    with pytest.raises(ValueError, match=r"Unknown benchmark task\(s\) \['z'\].*available: a, b"):
        tasks_api.select_tasks(["a", "b"], "a,z")


def test_load_task_names_what_is_missing(tmp_path):
    (tmp_path / "notitle.py").write_text(TASK_TEXT.replace('TITLE = "A fake task"', ""))
    with pytest.raises(ValueError, match="notitle.py must define TITLE"):
        tasks_api.load_task("notitle", tmp_path)
    (tmp_path / "norun.py").write_text(TASK_TEXT.replace("def run_fastai", "def other"))
    with pytest.raises(ValueError, match=r"norun.py must define run_fastai\(data_dir, opts\)"):
        tasks_api.load_task("norun", tmp_path)
    (tmp_path / "absdata.py").write_text(TASK_TEXT.replace('"some/folder"', '"/abs/folder"'))
    with pytest.raises(ValueError, match="DATA must hold paths relative to the data folder"):
        tasks_api.load_task("absdata", tmp_path)
    with pytest.raises(FileNotFoundError, match="No benchmark task 'ghost'"):
        tasks_api.load_task("ghost", tmp_path)


def test_missing_data_names_the_path(tmp_path):
    (tmp_path / "fake.py").write_text(TASK_TEXT)
    task = tasks_api.load_task("fake", tmp_path)
    assert "data not found: some/folder" in tasks_api.missing_data(task, tmp_path)
    (tmp_path / "some" / "folder").mkdir(parents=True)
    assert tasks_api.missing_data(task, tmp_path) is None


def test_every_real_task_meets_the_contract():
    names = tasks_api.discover_tasks()
    assert {"loop_overhead", "import_time"} <= set(names)
    for name in names:
        task = tasks_api.load_task(name)
        assert task.title and callable(task.runner("lamina")) and callable(task.runner("fastai"))


def test_run_task_skips_a_task_without_its_data(tmp_path):
    (tmp_path / "fake.py").write_text(TASK_TEXT)
    task = tasks_api.load_task("fake", tmp_path)
    messages = []
    entry = harness.run_task(task, {"lamina": sys.executable}, {"threads": 1}, 1, tmp_path, log=messages.append)
    assert entry["status"] == "skipped" and "some/folder" in entry["reason"] and entry["runs"] == []
    assert "skipped" in messages[0]


def test_summarize_runs_keeps_errors_and_successes(tmp_path):
    (tmp_path / "fake.py").write_text(TASK_TEXT)
    task = tasks_api.load_task("fake", tmp_path)
    runs = [{"lib": "lamina", "round": 0, "result": {"time": 1.0, "quality": {"error_rate": 0.1}}},
            {"lib": "fastai", "round": 0, "error": "Traceback\nValueError: bad"},
            {"lib": "fastai", "round": 1, "result": {"time": 4.0, "quality": {"error_rate": 0.1}}}]
    out = harness.summarize_runs(task, runs)
    assert out["status"] == "ok" and out["reason"] == "fastai round 1: ValueError: bad"
    assert out["passed"] is True and out["metrics"][0]["ratio"] == 0.25


# --- reports ---------------------------------------------------------------------------------
def _entry(name, status="ok", **fields):
    run = {"date": "2025-01-01T00:00:00+00:00", "command": "python benchmarks/run.py", "threads": 1, "repeats": 3,
           "device": "cpu", "machine": {"cpu": "Some CPU", "cpus": 2, "os": "Linux", "python": "3.11"},
           "versions": {"lamina": {"lamina": "0.1.0", "torch": "2.14.1"}}}
    return {"name": name, "title": f"Title of {name}", "status": status, "reason": None, "runs": [],
            "metrics": [], "quality": [], "run": run, **fields}


def test_merge_results_replaces_only_the_tasks_that_ran():
    old = {"tasks": [_entry("a", note="old"), _entry("b", note="old"), _entry("gone")]}
    new = {"fastai_version": "2.8.12", "tasks": [_entry("b", note="new")]}
    merged = report.merge_results(old, new, ["a", "b"])
    assert [(t["name"], t["note"]) for t in merged["tasks"]] == [("a", "old"), ("b", "new")]
    assert merged["fastai_version"] == "2.8.12"


def test_render_markdown_tables_and_skips():
    targets = summary.normalize_targets("t", {"metric": "time", "max_ratio": 0.5,
                                              "quality": [{"name": "accuracy", "better": "higher", "tol": 0.01}]})
    summ = summary.summarize_task(targets, _runs([1.0, 1.2], {"accuracy": 0.9}), _runs([4.0, 5.0], {"accuracy": 0.9}))
    results = {"fastai_version": "2.8.12", "tasks": [
        _entry("fast", **summ),
        _entry("adult", status="skipped", reason="data not found: adult_sample"),
    ]}
    text = report.render_markdown(results)
    assert "| fast | time | 1 | 1.1 s [1–1.2] | 4.5 s [4–5] | 0.24× | — | ≤ 0.5× | **pass** |" in text
    assert "| adult | — | — | — | — | — | — | — | skipped: data not found: adult_sample |" in text
    assert "| accuracy | 0.9 | 0.9 | lamina ≥ fastai − 0.01 | **pass** |" in text
    assert "Command: `python benchmarks/run.py`" in text and "Some CPU, 2 CPUs" in text


def test_render_markdown_shows_the_one_thread_ratio_beside_the_main_one():
    targets = summary.normalize_targets("t", {"metric": "time", "max_ratio": 0.5})
    main = summary.summarize_task(targets, _runs([1.0]), _runs([4.0]))
    one = summary.summarize_task(targets, _runs([2.0]), _runs([5.0]))
    text = report.render_markdown({"fastai_version": "2.8.12", "tasks": [_entry("fast", one_thread=one, **main)]})
    assert "| fast | time | 1 | 1 s | 4 s | 0.25× | 0.40× | ≤ 0.5× | **pass** |" in text
    assert "| time (s) | 1 | 4 | 0.25× | 0.40× | ≤ 0.5× | **pass** |" in text


def test_write_reports_merges_with_the_file_on_disk(tmp_path):
    report.write_reports({"fastai_version": "2.8.12", "tasks": [_entry("a")]}, tmp_path, ["a", "b"])
    report.write_reports({"fastai_version": "2.8.12", "tasks": [_entry("b")]}, tmp_path, ["a", "b"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [t["name"] for t in saved["tasks"]] == ["a", "b"]
    assert "## Title of a (`a`)" in (tmp_path / "RESULTS.md").read_text()


def test_profile_fit_splits_a_fit_into_phases_that_add_up(monkeypatch):
    from benchmarks import profile_fit
    from lamina.learner import Learner
    from lamina.testing import synth_classification, tiny_mlp
    task = types.ModuleType("benchmarks.tasks.fake_profile")

    def run_lamina(data_dir, opts):
        learn = Learner(synth_classification(n=256, bs=32), tiny_mlp())
        learn.logger = lambda *a: None
        learn.fit(2, 1e-2)
        learn.fit(1, 1e-2)  # every fit call of the task is profiled
    task.run_lamina = run_lamina
    monkeypatch.setitem(sys.modules, "benchmarks.tasks.fake_profile", task)
    totals, spent = profile_fit.profile("fake_profile", ".", None)
    phases = {phase for _, phase in totals}
    assert {"forward", "backward", "optimizer step", "loader wait", "first batch"} <= phases
    assert {kind for kind, _ in totals} == {"train", "valid", "fit"}
    assert {phase for kind, phase in totals if kind == "fit"} >= {"fit end", "epoch start (before_epoch callbacks)"}
    assert ("train", "pass end") in totals and ("valid", "pass end") in totals
    assert sum(totals.values()) == pytest.approx(spent, rel=1e-6)  # the phases cover the fit calls' time
    assert all(seconds >= 0 for seconds in totals.values())
    assert Learner.fit.__name__ == "fit" and Learner.fit.__module__ == "lamina.learner"  # put back afterwards
    text = profile_fit.report("fake_profile", totals, spent, None)
    assert "| train | backward |" in text and "Fit calls:" in text


def test_the_machine_line_names_the_cpus_widest_matrix_instructions():
    from benchmarks.run import cpu_isa, machine
    assert cpu_isa("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile".split()) == "AMX"
    assert cpu_isa("fpu avx2 avx512f avx512_bf16".split()) == "AVX-512 BF16"
    assert cpu_isa("fpu avx2 avx512f".split()) == "AVX-512"
    assert cpu_isa("fpu sse4_2 avx2".split()) == "AVX2"
    assert cpu_isa(["neon"]) == ""
    assert machine()["cpus"] >= 1 and machine()["cpu"]
