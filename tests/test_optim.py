"""Optimizers: fastai's hyper names over torch.optim, decoupled weight decay, freezing."""

import pytest
import torch
from torch import nn

from lamina.optim import SGD, Adam, OptimWrapper, RAdam, RMSProp


def params():
    torch.manual_seed(0)
    return [nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))]


def test_adam_matches_the_formula():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Adam([p], lr=0.1, wd=0.01)
    grad = torch.tensor([0.5, 0.25])
    p.grad = grad.clone()
    opt.step()
    # decoupled decay first, then the bias-corrected Adam step with fastai's eps and sqr_mom
    expected = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.01)
    m, v = 0.1 * grad, 0.01 * grad ** 2
    expected -= 0.1 / (1 - 0.9) * m / ((v / (1 - 0.99)).sqrt() + 1e-5)
    assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_sgd_decoupled_weight_decay():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = SGD([p], lr=0.1, wd=0.5)
    p.grad = torch.tensor([0.0])
    opt.step()
    assert p.item() == pytest.approx(1 - 0.1 * 0.5)
    q = nn.Parameter(torch.tensor([1.0]))
    opt = SGD([q], lr=0.1, wd=0.5, decouple_wd=False)
    q.grad = torch.tensor([0.0])
    opt.step()
    assert q.item() == pytest.approx(1 - 0.1 * 0.5)  # without momentum L2 and decoupled agree


def test_set_hyper_per_group_and_names():
    a, b = params()
    opt = Adam([[a], [b]], lr=1e-3)
    opt.set_hyper("lr", [1e-4, 1e-3])
    opt.set_hyper("mom", 0.8)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    assert all(g["betas"][0] == 0.8 for g in opt.param_groups)
    with pytest.raises(ValueError, match="one value per param group"):
        opt.set_hyper("lr", [1, 2, 3])
    with pytest.raises(ValueError, match="`name` must be one of"):
        opt.set_hyper("momentum", 0.9)
    sgd = SGD([a], lr=0.1, mom=0.9)
    sgd.set_hyper("mom", 0.5)
    assert sgd.param_groups[0]["momentum"] == 0.5
    rms = RMSProp([a], lr=0.1)
    rms.set_hyper("sqr_mom", 0.9)
    assert rms.param_groups[0]["alpha"] == 0.9


@pytest.mark.parametrize("decouple_wd", [True, False])
def test_no_wd_params_never_decay(decouple_wd):
    a, b = params()
    a0, b0 = a.detach().clone(), b.detach().clone()
    opt = SGD([[a, b]], lr=0.1, wd=0.3, no_wd=[b], decouple_wd=decouple_wd)
    a.grad, b.grad = torch.zeros(3), torch.zeros(2)
    opt.step()
    assert torch.allclose(a.detach(), a0 * (1 - 0.1 * 0.3)) and torch.equal(b.detach(), b0)
    assert len(opt.param_groups) == (1 if decouple_wd else 2)


def test_freeze_to_and_force_train():
    a, b = params()
    c = nn.Parameter(torch.zeros(1))
    opt = Adam([[a, c], [b]], force_train=[c])
    opt.freeze()
    assert not a.requires_grad and c.requires_grad and b.requires_grad
    opt.unfreeze()
    assert a.requires_grad


def test_state_dict_round_trip():
    a, b = params()
    opt = RAdam([[a], [b]], lr=0.01)
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    opt.set_hyper("lr", [0.5, 0.25])
    state = opt.state_dict()
    fresh = RAdam([[a], [b]], lr=0.01)
    fresh.load_state_dict(state)
    assert [h["lr"] for h in fresh.hypers] == [0.5, 0.25] and fresh.param_groups[0]["lr"] == 0.5
    assert isinstance(fresh, OptimWrapper)


def test_radam_beta_unsupported():
    with pytest.raises(ValueError, match="beta"):
        RAdam(params(), beta=0.5)


@pytest.mark.parametrize("opt_func", [Adam, SGD])  # decay inside the kernel (Adam), by the wrapper (SGD)
def test_a_scaler_step_with_inf_gradients_changes_nothing_not_even_decay(opt_func):
    model = nn.Linear(3, 2)
    opt = opt_func(list(model.parameters()), lr=0.1, wd=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    before = [p.detach().clone() for p in model.parameters()]
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()
    model.weight.grad[0, 0] = float("inf")
    opt.step(scaler=scaler)
    scaler.update()
    assert scaler.get_scale() < 4.0
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    opt.zero_grad()
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()  # finite now: a real step, decay included
    opt.step(scaler=scaler)
    assert not any(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_unscale_grads_before_the_step_is_not_repeated_by_it():
    # a callback that clips gradients unscales them first; the scaler's step must then not unscale again
    model = nn.Linear(3, 2)
    twin = nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    results = []
    for m, unscale_first in ((model, True), (twin, False)):
        opt = SGD(list(m.parameters()), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
        scaler.scale(m(torch.ones(1, 3)).sum()).backward()
        if unscale_first:
            opt.unscale_grads(scaler)
            opt.unscale_grads(scaler)  # a second call (another callback) does nothing
            assert torch.allclose(m.bias.grad, torch.ones(2))  # true gradients, not 8x
        opt.step(scaler=scaler)  # torch would raise if it unscaled twice before update()
        scaler.update()
        results.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
