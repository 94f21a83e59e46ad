"""Shared test set-up: CPU only, a private LAMINA_HOME per test, a non-interactive plot backend, seeds."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["LAMINA_DEVICE"] = "cpu"

import urllib.error  # noqa: E402

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


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch-hub cache under tmp_path (its ``checkpoints`` folder is returned); downloads fail
    as they would on an offline machine, so tests see the real weight-loading path without a network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder
