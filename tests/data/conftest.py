"""Fixtures of the download tests (test_external.py, test_fetch.py): a local HTTP server and a private LAMINA_HOME."""

import pytest

from lamina.data import fetch
from tests.data.http_server import Server


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("LAMINA_HOME", str(path))
    monkeypatch.delenv("LAMINA_DATA_URL", raising=False)
    monkeypatch.setattr(fetch, "RETRY_DELAY", 0.0)
    return path
