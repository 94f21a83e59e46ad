"""Gradient accumulation and clipping, mixed precision on the CPU, NaN guard."""

import pytest
import torch

from lamina.callbacks.training import GradientAccumulation, GradientClip, TerminateOnNaNCallback
from lamina.learner import Learner
from lamina.optim import SGD
from lamina.testing import synth_classification, tiny_mlp


def test_gradient_accumulation_equals_one_big_batch():
    dls_small = synth_classification(n=64, bs=8, valid_pct=0.5, seed=3)
    dls_small.train.shuffle = False
    torch.manual_seed(0)
    model_a = tiny_mlp()
    model_b = tiny_mlp()
    model_b.load_state_dict(model_a.state_dict())
    for m in (model_a, model_b):  # batch norm statistics differ per batch: compare without it
        m.body[1] = torch.nn.Identity()
    learn_a = Learner(dls_small, model_a, opt_func=SGD, lr=0.1)
    learn_a.progress.show_bars = False
    learn_a.fit(1, cbs=GradientAccumulation(n_acc=32))  # 4 batches of 8 → one step
    x, y = dls_small.train.tensors
    dls_big = synth_classification(n=64, bs=32, valid_pct=0.5, seed=3)
    dls_big.train.shuffle = False
    learn_b = Learner(dls_big, model_b, opt_func=SGD, lr=0.1)
    learn_b.progress.show_bars = False
    learn_b.fit(1)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_gradient_clip_limits_norm():
    seen = []
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp(), lr=1.0)
    learn.progress.show_bars = False

    from lamina.callbacks.core import Callback

    class Norm(Callback):
        order = 5

        def before_step(self):
            seen.append(torch.nn.utils.get_total_norm([p.grad for p in self.learn.model.parameters() if p.grad is not None]))

    learn.fit(1, cbs=[GradientClip(max_norm=0.01), Norm()])
    assert max(float(n) for n in seen) <= 0.01 + 1e-6


def test_bf16_mixed_precision_on_cpu_trains():
    learn = Learner(synth_classification(n=256, bs=32), tiny_mlp())
    learn.progress.show_bars = False
    learn.to_bf16()
    dtypes = []

    from lamina.callbacks.core import Callback

    class Spy(Callback):
        order = 5

        def after_pred(self):
            dtypes.append(self.learn.pred.dtype)

    learn.fit_one_cycle(2, 1e-2, cbs=Spy())
    assert torch.bfloat16 in dtypes  # autocast was active for the forward pass
    assert learn.recorder.values[-1][1] < learn.recorder.values[0][0]
    assert learn.mixed_precision is not None
    learn.to_fp32()
    assert getattr(learn, "mixed_precision", None) is None


def test_mixed_precision_rejects_unknown_mode():
    from lamina.callbacks.precision import MixedPrecision
    with pytest.raises(ValueError, match="amp_mode"):
        MixedPrecision("fp8")


def test_terminate_on_nan():
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp(), lr=1e30, opt_func=SGD)
    learn.progress.show_bars = False
    learn.fit(3, cbs=TerminateOnNaNCallback())
    assert len(learn.recorder.values) == 0
