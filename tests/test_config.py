"""LAMINA_HOME and LAMINA_DATA_URL."""

import pytest

from lamina.config import data_url_base, lamina_home, lamina_path


def test_home_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "h"))
    assert lamina_home() == tmp_path / "h"
    assert lamina_path("models") == tmp_path / "h" / "models" and (tmp_path / "h" / "models").is_dir()
    assert lamina_path("cache") == tmp_path / "h" / "cache"
    with pytest.raises(ValueError, match="`folder` must be one of"):
        lamina_path("tmp")


def test_data_url(monkeypatch):
    monkeypatch.delenv("LAMINA_DATA_URL", raising=False)
    assert data_url_base() is None
    monkeypatch.setenv("LAMINA_DATA_URL", "http://mirror.local/fastai")
    assert data_url_base() == "http://mirror.local/fastai/"
