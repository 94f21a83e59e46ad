"""Optimizers: fastai's hyper names over torch.optim, decoupled weight decay, freezing."""

import pytest
import torch
from torch import nn

from lamina.optim import SGD, Adam, FusedAdam, OptimWrapper, RAdam, RMSProp


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


def _twin_params(shapes=((4, 3), (3,), (5, 2))):
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(s)) for s in shapes]
    return a, [nn.Parameter(p.detach().clone()) for p in a]


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_is_torch_adam_step_for_step(decoupled):
    ours, theirs = _twin_params()
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = torch_cls([{"params": theirs[:2]}, {"params": theirs[2:]}], lr=0.01, betas=(0.9, 0.99), eps=1e-5,
                    weight_decay=0.1, fused=True)
    opt = FusedAdam([{"params": ours[:2]}, {"params": ours[2:]}], lr=0.01, betas=(0.9, 0.99), eps=1e-5,
                    weight_decay=0.1, decoupled_weight_decay=decoupled)
    for it in range(12):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            grad = torch.randn(p.shape)
            skip = i == 1 and it % 5 == 2  # one parameter misses some steps: its step count falls behind
            p.grad, q.grad = (None, None) if skip else (grad.clone(), grad.clone())
        for o in (ref, opt):
            for g in o.param_groups:
                g["lr"], g["betas"] = 0.01 * (1 + it % 3), (0.85 + 0.01 * (it % 4), 0.99)
        ref.step()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    steps = [float(opt.state[p]["step"]) for p in ours]
    assert steps == [float(ref.state[q]["step"]) for q in theirs] == [12.0, 10.0, 12.0]


def test_fused_adam_state_dict_round_trip_continues_identically():
    import io
    ours, theirs = _twin_params()
    a = FusedAdam(ours, lr=0.05)
    b = FusedAdam(theirs, lr=0.05)
    for p in ours + theirs:
        p.grad = torch.ones(p.shape)
    a.step(), b.step()
    buffer = io.BytesIO()
    torch.save(b.state_dict(), buffer)
    buffer.seek(0)
    b = FusedAdam(theirs, lr=0.05)
    b.load_state_dict(torch.load(buffer))
    for _ in range(3):
        a.step(), b.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    assert float(b.state[theirs[0]]["step"]) == 4.0


def test_fused_adam_refuses_sparse_gradients():
    p = nn.Parameter(torch.zeros(4, 2))
    p.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        FusedAdam([p]).step()


def test_adam_uses_fused_adam_unless_asked_for_torch_options():
    assert type(Adam(params()).opt) is FusedAdam
    assert type(Adam(params(), fused=True).opt) is FusedAdam
    assert type(Adam(params(), fused=False).opt) is torch.optim.Adam
    amsgrad = Adam(params(), amsgrad=True).opt
    assert type(amsgrad) is torch.optim.Adam and amsgrad.defaults["amsgrad"]


def test_adam_keeps_norm_and_bias_out_of_decay_and_honours_step_hooks():
    a, b = params()
    opt = Adam([[a, b]], lr=0.1, wd=0.5, no_wd=[b])
    assert [(g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [(0.5, 1), (0.0, 1)]
    assert not opt.opt.has_step_hooks()
    calls = []
    handle = opt.opt.register_step_post_hook(lambda *args: calls.append(1))
    assert opt.opt.has_step_hooks()
    a.grad, b.grad = torch.zeros(3), torch.zeros(2)
    opt.step()
    assert calls == [1]  # a hook makes the wrapper go through torch's step
    handle.remove()
    opt.step()
    assert calls == [1]


def test_fused_adam_survives_pickling_and_forgets_replaced_state():
    import pickle
    from collections import defaultdict
    ours, theirs = _twin_params()
    opt = FusedAdam([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.1, weight_decay=0.1,
                    decoupled_weight_decay=True)
    for p in ours:
        p.grad = torch.ones(p.shape)
    opt.step()
    old_state = opt.state
    opt.state = defaultdict(dict)  # as OptimWrapper.clear_state does
    opt.step()
    assert all(cached[0] is opt.state for cached in opt._plans.values()) and old_state is not opt.state
    assert float(opt.state[ours[0]]["step"]) == 1.0  # a fresh start
    copy = pickle.loads(pickle.dumps(opt))
    assert copy.param_groups[0]["decoupled_weight_decay"] and copy._plans == {}
    for p in copy.param_groups[0]["params"] + copy.param_groups[1]["params"]:
        p.grad = torch.ones(p.shape)
    copy.step()
    assert float(next(iter(copy.state.values()))["step"]) == 2.0
