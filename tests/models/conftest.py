"""Fixtures of the model tests."""

import pytest


@pytest.fixture
def count_routes(monkeypatch):
    """``count_routes(module, name)`` wraps the route function ``module.name`` (one that returns None where torch's
    own kernel should run) and returns a dict whose ``"routed"`` counts the calls it answered."""
    def install(module, name):
        calls = {"routed": 0}
        real = getattr(module, name)

        def counting(*args, **kwargs):
            out = real(*args, **kwargs)
            calls["routed"] += out is not None
            return out
        monkeypatch.setattr(module, name, counting)
        return calls
    return install
