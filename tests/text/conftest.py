"""Text test set-up: one torch thread (small LSTMs run several times slower with two threads on a busy
machine), tiny model configs and a tiny review table."""

import pytest
import torch

from lamina.models.awd_lstm import awd_lstm_clas_config, awd_lstm_lm_config
from lamina.text.synth import synth_reviews

TINY = dict(emb_sz=32, n_hid=64, n_layers=2)  # the LM and classifier share it: encoders move between them


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def lm_config():
    return {**awd_lstm_lm_config, **TINY}


@pytest.fixture
def clas_config():
    return {**awd_lstm_clas_config, **TINY}


@pytest.fixture
def reviews():
    return synth_reviews(160, seed=0)
