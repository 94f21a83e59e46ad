"""Fixtures of the tabular tests: one intra-op thread (tiny models only lose time to thread hand-offs,
badly so on a busy machine) and small Adult-like tables."""

import pytest
import torch

from lamina.tabular.synth import adult_like


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def adult_df():
    """600 Adult-like rows (text with leading spaces, a few missing values)."""
    return adult_like(600, seed=0)
