"""Shared test set-up: CPU only, a private LAMINA_HOME per test, a non-interactive plot backend, seeds."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["LAMINA_DEVICE"] = "cpu"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets an empty LAMINA_HOME, so nothing reads or writes the user's ~/.lamina."""
    home = tmp_path_factory.mktemp("lamina_home")
    monkeypatch.setenv("LAMINA_HOME", str(home))
    monkeypatch.delenv("LAMINA_DATA_URL", raising=False)
    torch.manual_seed(0)
    yield home
