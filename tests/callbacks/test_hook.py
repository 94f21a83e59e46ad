"""Hooks (forward and backward, detach, cpu, removal), model_sizes, HookCallback, ActivationStats and
learn.summary()."""

import pytest
import torch
from torch import nn

from lamina.callbacks.core import Callback
from lamina.callbacks.hook import (ActivationStats, Hook, HookCallback, Hooks, dummy_eval, has_params, hook_output,
                                   hook_outputs, model_sizes, num_features_model)
from lamina.learner import Learner
from lamina.testing import body_head_splitter, synth_classification, tiny_mlp


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def test_hook_output_stores_detached_activations_and_is_removed():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with hook_output(model[2]) as hook:
        model(x)
    expected = model[2](model[1](model[0](x)))
    assert torch.allclose(hook.stored, expected) and not hook.stored.requires_grad
    assert hook.removed and no_hooks_left(model)
    before = hook.stored
    model(torch.randn(2, 3, 8, 8))
    assert hook.stored is before  # removed: nothing stored any more
    kept = hook_output(model[0], detach=False)
    model(x)
    assert kept.stored.requires_grad
    kept.remove()
    kept.remove()  # a second remove is harmless
    assert no_hooks_left(model)


def test_hooks_are_removed_when_the_block_raises():
    model = small_cnn()
    with pytest.raises(RuntimeError, match="boom"):
        with hook_outputs([model[0], model[2]]) as hooks:
            model(torch.randn(1, 3, 8, 8))
            raise RuntimeError("boom")
    assert len(hooks) == 2 and [h.stored.shape[1] for h in hooks] == [4, 8]
    assert no_hooks_left(model)
    with pytest.raises(TypeError, match="Hook needs an nn.Module"):
        Hooks([model[0], "not a module"], lambda m, i, o: o)
    assert no_hooks_left(model)  # the hook already put on model[0] was taken off again


def test_backward_hook_stores_output_gradients():
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8)
    with hook_output(model[2], grad=True) as hook_g, hook_output(model[2]) as hook_a:
        out = model(x)
        out[:, 1].sum().backward()
    act = hook_a.stored.clone().requires_grad_(True)
    manual = torch.autograd.grad(model[5](model[4](model[3](act)))[:, 1].sum(), act)[0]
    assert isinstance(hook_g.stored, tuple) and torch.allclose(hook_g.stored[0], manual, atol=1e-6)
    assert no_hooks_left(model)


def test_hook_with_a_function_on_cpu():
    model = small_cnn()
    means = Hook(model[0], lambda m, i, o: (i[0].shape, o.mean().item(), o.device.type), cpu=True)
    model(torch.ones(1, 3, 8, 8))
    shape, mean, device = means.stored
    assert shape == (1, 3, 8, 8) and device == "cpu" and isinstance(mean, float)
    means.remove()


def test_model_sizes_num_features_and_dummy_eval():
    model = small_cnn()
    model.train()
    sizes = model_sizes(model, (16, 16))
    assert [tuple(s) for s in sizes] == [(1, 4, 16, 16), (1, 4, 16, 16), (1, 8, 8, 8), (1, 8, 1, 1), (1, 8),
                                         (1, 2)]
    assert model.training and no_hooks_left(model)  # the dummy pass restores the mode and takes its hooks off
    assert num_features_model(model[:3]) == 8
    assert dummy_eval(model[:3], (10, 10)).shape == (1, 8, 5, 5)
    assert has_params(model[0]) and not has_params(model[1])


def test_hook_callback_every_n_batches_and_removal():
    dls = synth_classification(n=64, bs=8, seed=0)  # 6 training batches
    model = tiny_mlp()
    seen = []
    cb = HookCallback(modules=[model.head], every=2, hook=lambda m, i, o: o.shape)
    watch = Callback(after_pred=lambda learn: seen.append((learn.training, cb.hooks and not cb.hooks[0].removed)))
    learn = Learner(dls, model, cbs=[cb, watch])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    train = [hooked for training, hooked in seen if training]
    assert train == [True, False, True, False, True, False]
    assert no_hooks_left(model)
    with pytest.raises(ValueError, match="`every` must be None or a positive integer"):
        HookCallback(every=0)


def test_hook_callback_removes_hooks_when_the_fit_fails():
    dls = synth_classification(n=64, bs=8)
    model = tiny_mlp()

    def fail(learn):
        raise RuntimeError("bad batch")

    learn = Learner(dls, model, cbs=[HookCallback(hook=lambda m, i, o: 1), Callback(after_loss=fail)])
    with pytest.raises(RuntimeError, match="bad batch"), learn.no_bar():
        learn.fit(1)
    assert no_hooks_left(model)


def test_activation_stats_records_each_training_batch():
    dls = synth_classification(n=64, bs=8, seed=1)
    model = tiny_mlp(hidden=8)
    inputs = []
    learn = Learner(dls, model, cbs=[ActivationStats(with_hist=True),
                                     Callback(after_pred=lambda l: l.training and inputs.append(l.xb[0].clone()))])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr=0.0)  # weights stay put, so each record can be recomputed
    stats = learn.activation_stats
    assert len(stats.stats) == 6 and len(stats.stats[0]) == 3  # Linear, BatchNorm1d, head Linear
    assert stats.stats.itemgot(0).itemgot("mean")[0] == stats.stats[0][0]["mean"]  # L of L, as fastai's
    means, stds, near_zero = stats.layer_stats(0)
    first = model.body[0](inputs[0])
    assert means[0] == pytest.approx(first.mean().item(), abs=1e-6)
    assert stds[0] == pytest.approx(first.std().item(), abs=1e-6)
    assert near_zero[0] == pytest.approx((first <= 0.05).float().mean().item())
    assert stats.hist(0).shape == (40, 6)
    assert len(stats.plot_layer_stats(1).axes) == 3 and len(stats.color_dim(-1).axes[0].images) == 1
    assert no_hooks_left(model)
    plain = ActivationStats(every=2)
    learn = Learner(dls, tiny_mlp(), cbs=plain)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert len(plain.stats) == 3 and all(len(batch) == 3 for batch in plain.stats)  # batches 0, 2 and 4
    assert no_hooks_left(learn.model)
    with pytest.raises(ValueError, match="with_hist=True"):
        plain.hist(0)


def test_summary_table_optimizer_and_callbacks():
    dls = synth_classification(n=64, n_in=2, bs=16)
    model = tiny_mlp(hidden=16)
    learn = Learner(dls, model, splitter=body_head_splitter)
    model.train()
    text = learn.summary()
    assert repr(text) == str(text)  # shown as the table in a notebook
    assert text.startswith("TinyMLP (Input shape: 16 x 2)")
    lines = text.splitlines()
    assert "Layer (type)         Output Shape         Param #    Trainable" in lines
    assert "                     16 x 16" in lines and "                     16 x 2" in lines
    rows = [line.split() for line in lines if line.startswith(("Linear", "BatchNorm1d", "ReLU"))]
    assert rows == [["Linear", "48", "True"], ["BatchNorm1d", "32", "True"], ["ReLU"], ["Linear", "34", "True"]]
    assert "Total params: 114" in text and "Total non-trainable params: 0" in text
    assert "Optimizer used: Adam" in text and "Loss function: CrossEntropyLossFlat" in text
    assert text.endswith("Callbacks:\n  - TrainEvalCallback\n  - Recorder\n  - ProgressCallback")
    assert model.training and no_hooks_left(model)
    learn.freeze()
    frozen = learn.summary()
    assert "Model frozen up to parameter group #1" in frozen
    assert "Total trainable params: 66" in frozen  # the body's Linear is frozen; train_bn keeps its norm
    assert ["Linear", "48", "False"] in [line.split() for line in frozen.splitlines()]
