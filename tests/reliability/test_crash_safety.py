"""Files that survive crashes and full disks: `learn.save` / `learn.export` killed mid-write, a full disk,
leftover temporary files, and resuming from a checkpoint that cannot resume."""

import errno
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from lamina.callbacks.tracker import SaveModelCallback
from lamina.checkpoint import atomic_write
from lamina.export import load_learner
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp

# 384 inputs x 8192 hidden: about 13 MB of weights, written (with fsync) in about 10-30 ms
BIG = {"n_in": 384, "n_out": 2, "hidden": 8192}
SMALL = {"n_in": 2, "n_out": 2, "hidden": 64}

WRITER = r"""
import sys, torch
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp
mode, folder, kwargs = sys.argv[1], sys.argv[2], {kwargs!r}
torch.manual_seed(0)
model = tiny_mlp(**kwargs)
learn = Learner(synth_classification(n=64, n_in=kwargs["n_in"], bs=16), model, path=folder)
learn.model_config = {{"factory": "lamina.testing:tiny_mlp", "kwargs": kwargs}}
print("ready", flush=True)
if sys.stdin.readline() != "go\n":  # wait for the go: the writer before this one must be dead first
    sys.exit()
while True:
    learn.save("ckpt", with_opt=False) if mode == "save" else learn.export("model.pkl")
    print("saved", flush=True)
"""


def make_learner(tmp_path, kwargs, seed=0):
    torch.manual_seed(seed)
    model = tiny_mlp(**kwargs)
    learn = Learner(synth_classification(n=64, n_in=kwargs["n_in"], bs=16), model, path=tmp_path)
    learn.model_config = {"factory": "lamina.testing:tiny_mlp", "kwargs": kwargs}
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def temp_files(folder):
    return {p.name for p in folder.iterdir() if p.name.endswith(".tmp")} if folder.exists() else set()


def same_weights(model, expected):
    return all(torch.equal(expected[k], v) for k, v in model.state_dict().items())


def spawn_writer(mode, folder):
    code = WRITER.format(kwargs=BIG)
    return subprocess.Popen([sys.executable, "-c", code, mode, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)


def read_line(proc, expected):
    line = proc.stdout.readline()
    if line != expected + "\n":
        proc.kill()
        pytest.fail(f"writer said {line!r} instead of {expected!r}: {proc.stderr.read()[-2000:]}")


def kill_9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        pipe.close()


def kill_at_a_random_point_of_a_write(proc, folder, rng):
    """Wait until the writer is mid-write (its temporary file exists), then SIGKILL it up to 10 ms later."""
    deadline = time.monotonic() + 5
    while not any(f".{proc.pid}." in name for name in temp_files(folder)) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(rng.uniform(0, 0.01))  # mostly mid-write, at any stage of it; sometimes just after
    kill_9(proc)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["save", "export"])
def test_kill_9_mid_write_keeps_the_previous_file_and_the_next_write_removes_the_leftover(tmp_path, mode):
    folder = tmp_path / "models" if mode == "save" else tmp_path
    learn = make_learner(tmp_path, BIG, seed=1)  # other weights than the writers'
    torch.manual_seed(0)
    expected = tiny_mlp(**BIG).state_dict()
    rng, leftovers, interrupted, kills = random.Random(0), set(), 0, 5
    writers = [spawn_writer(mode, tmp_path)]
    try:
        for i in range(kills):
            if i < kills - 1:
                writers.append(spawn_writer(mode, tmp_path))  # the next one imports torch meanwhile
            proc = writers[i]
            read_line(proc, "ready")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            read_line(proc, "saved")  # a whole write done: it began by removing the dead writers' leftovers
            assert not leftovers & temp_files(folder), "a dead writer's temporary file outlived the next write"
            kill_at_a_random_point_of_a_write(proc, folder, rng)
            leftovers = temp_files(folder)
            interrupted += bool(leftovers)
            if mode == "save":  # the previous file is whole: it loads, with the writers' weights
                learn.load("ckpt", with_opt=False)
                assert same_weights(learn.model, expected)
            else:
                assert same_weights(load_learner(tmp_path / "model.pkl").model, expected)
    finally:
        for proc in writers:
            if proc.poll() is None:
                kill_9(proc)
    assert interrupted >= 1, "no kill landed mid-write: the test did not exercise an interrupted write"
    if leftovers:
        with pytest.warns(UserWarning, match=rf"Removed {len(leftovers)} temporary file\(s\) \([\d.]+ (bytes|kB|MB)\)"):
            learn.save("ckpt") if mode == "save" else learn.export("model.pkl")
    assert temp_files(folder) == set()


def test_next_write_removes_only_leftovers_of_dead_writers_of_that_file(tmp_path):
    from lamina.atomic import _temp_name
    target = tmp_path / "ckpt.pth"
    live = _temp_name("ckpt.pth")  # this process's own name: a live writer
    prefix, host, pid, start, token, suffix = live.rsplit(".", 5)
    dead_pid = int(open("/proc/sys/kernel/pid_max").read()) + 1 if os.path.exists("/proc") else 2**22 + 1
    names = {
        "dead": f"{prefix}.{host}.{dead_pid}.{start}.{token}.tmp",
        "dead, no start time": f"{prefix}.{host}.{dead_pid}.0.{token}.tmp",
        "live": live,
        "other host": f"{prefix}.elsewhere.{dead_pid}.{start}.{token}.tmp",
        "other file": f".ckpt.pth.bak.{host}.{dead_pid}.{start}.{token}.tmp",
        "unrelated": "notes.txt",
        "older naming": ".ckpt.pth.k2x8_q1a.tmp",
    }
    if int(start):  # Linux: our pid with another start time is a dead writer whose pid was reused
        names["pid reused"] = f"{prefix}.{host}.{pid}.{int(start) + 1}.{token}.tmp"
    for name in names.values():
        (tmp_path / name).write_bytes(b"x" * 100)
    removed = [k for k in names if k.startswith("dead") or k == "pid reused"]
    with pytest.warns(UserWarning, match=rf"Removed {len(removed)} temporary file\(s\) \({100 * len(removed)} bytes\)"):
        atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert {p.name for p in tmp_path.iterdir()} == {"ckpt.pth"} | {v for k, v in names.items() if k not in removed}


@pytest.mark.parametrize("mode", ["save", "export"])
def test_disk_full_during_write_names_the_mount_and_keeps_the_previous_file(tmp_path, monkeypatch, mode):
    learn = make_learner(tmp_path, SMALL)
    path = learn.save("ckpt") if mode == "save" else learn.export("model.pkl")
    good = path.read_bytes()
    real_write = os.write

    def full_disk_write(fd, data):  # the temporary file's disk is full after 50 bytes
        if any(os.path.samestat(os.fstat(fd), p.stat()) for p in path.parent.glob(".*.tmp")):
            room = 50 - os.fstat(fd).st_size
            if room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = memoryview(data)[:room]
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_write)
    what = "checkpoint" if mode == "save" else "export"
    with pytest.raises(OSError, match=rf"No space left on .+ while saving {what} .*{path.name} \(about .* needed, "
                                      rf".* free\); the previous {what} is intact") as info:
        learn.save("ckpt") if mode == "save" else learn.export("model.pkl")
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == good
    assert temp_files(path.parent) == set()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs mounted under tmp_path (Linux, as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs Linux and root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_save_on_a_full_small_filesystem(small_tmpfs):
    small = make_learner(small_tmpfs, SMALL)
    path = small.save("ckpt")
    good = path.read_bytes()
    big = make_learner(small_tmpfs, BIG)  # about 13 MB: more than the 2 MB file system holds
    with pytest.raises(OSError, match=rf"No space left on tmpfs mounted at {re.escape(str(small_tmpfs))} while saving "
                                      r"checkpoint .*ckpt\.pth \(about 1\d\.\d MB needed, .* free\); the previous "
                                      r"checkpoint is intact"):
        big.save("ckpt")
    assert path.read_bytes() == good
    assert temp_files(path.parent) == set()
    small.load("ckpt", with_opt=False)


def test_resume_from_a_checkpoint_without_optimizer_state_is_an_error(tmp_path):
    learn = make_learner(tmp_path, SMALL)
    learn.fit(1, 1e-2, cbs=SaveModelCallback())  # fastai's default: with_opt=False
    fresh = make_learner(tmp_path, SMALL, seed=3)
    before = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"model\.pth holds no optimizer state .*resume=True cannot continue.*"
                                         r"learn\.save\(name, with_opt=True\) or SaveModelCallback\(with_opt=True\)"):
        fresh.load("model", resume=True)
    assert same_weights(fresh.model, before) and not hasattr(fresh, "epochs_done")
    fresh.load("model", with_opt=False)  # weights for fine-tuning still load
    assert same_weights(fresh.model, learn.model.state_dict())


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process states come from Linux's /proc")
def test_a_killed_writer_not_yet_reaped_counts_as_dead(tmp_path):
    from lamina.atomic import _process_stat, _temp_name
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        zombie.send_signal(signal.SIGKILL)
        while _process_stat(zombie.pid)[0] != "Z":  # killed; its parent (this test) has not waited for it yet
            time.sleep(0.001)
        prefix, host, _, _, token, _ = _temp_name("ckpt.pth").rsplit(".", 5)
        leftover = tmp_path / f"{prefix}.{host}.{zombie.pid}.{_process_stat(zombie.pid)[1]}.{token}.tmp"
        leftover.write_bytes(b"x" * 10)
        with pytest.warns(UserWarning, match=r"Removed 1 temporary file\(s\) \(10 bytes\)"):
            atomic_write(tmp_path / "ckpt.pth", lambda f: f.write(b"new"))
        assert not leftover.exists()
    finally:
        zombie.wait()


def test_atomic_write_goes_through_a_link_and_keeps_the_permissions(tmp_path):
    target, link = tmp_path / "model.pth", tmp_path / "latest.pth"
    atomic_write(target, lambda f: f.write(b"old"))
    target.chmod(0o640)
    link.symlink_to(target)
    atomic_write(link, lambda f: f.write(b"new"))
    assert link.is_symlink() and target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o640
