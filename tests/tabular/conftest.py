"""Fixtures of the tabular tests: small Adult-like tables, and one intra-op thread for the tests that train."""

import pytest
import torch

from lamina.tabular.synth import adult_like


@pytest.fixture
def one_thread():
    """One intra-op thread while a test trains: tiny models only lose time to thread hand-offs, badly so on a
    busy machine. Opt-in (``@pytest.mark.usefixtures("one_thread")``); the thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def adult_df():
    """600 Adult-like rows (text with leading spaces, a few missing values)."""
    return adult_like(600, seed=0)
