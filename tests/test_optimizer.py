"""fastai's stepper `Optimizer`: the same numbers as torch's optimizers where they overlap, and a Learner's
``opt_func`` with schedules, freezing, checkpoints and lr_find."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from lamina.learner import Learner
from lamina.optim import SGD as FusedSGD
from lamina.optimizer import (Lamb, Larc, Lookahead, Optimizer, QHAdam, StepperAdam, StepperRAdam, StepperRMSProp,
                              StepperSGD, average_grad, momentum_step, ranger, sgd_step, weight_decay)
from lamina.testing import body_head_splitter, synth_classification, tiny_mlp

N_STEPS = 10  # enough for RAdam to take both of its branches (rectified from step 6 with sqr_mom=0.99)


def twin_params() -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Two identical sets of float64 parameters (float64: the comparison is of formulas, not of rounding)."""
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)]
    return [nn.Parameter(v.clone()) for v in values], [nn.Parameter(v.clone()) for v in values]


def run_both(ours, theirs, mine: list[nn.Parameter], other: list[nn.Parameter]) -> None:
    """Feed both optimizers the same gradients for N_STEPS steps, then compare the parameters."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(N_STEPS):
        for p, q in zip(mine, other):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for p, q in zip(mine, other):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-6, rtol=0)


def test_sgd_with_momentum_and_l2_matches_torch():
    mine, other = twin_params()
    run_both(StepperSGD(mine, lr=0.1, mom=0.9, wd=0.01, decouple_wd=False), torch.optim.SGD(
        other, lr=0.1, momentum=0.9, weight_decay=0.01), mine, other)


def test_sgd_with_decoupled_decay_matches_lamina_sgd():
    mine, other = twin_params()
    run_both(StepperSGD(mine, lr=0.1, mom=0.9, wd=0.1), FusedSGD(other, lr=0.1, mom=0.9, wd=0.1), mine, other)


@pytest.mark.parametrize("decouple_wd", [True, False])
def test_adam_matches_torch_adamw_and_adam(decouple_wd):
    mine, other = twin_params()
    torch_cls = torch.optim.AdamW if decouple_wd else torch.optim.Adam
    run_both(StepperAdam(mine, lr=0.01, wd=0.05, decouple_wd=decouple_wd),
             torch_cls(other, lr=0.01, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.05), mine, other)


def test_rmsprop_matches_torch():
    mine, other = twin_params()
    run_both(StepperRMSProp(mine, lr=0.01, sqr_mom=0.9, eps=1e-8),
             torch.optim.RMSprop(other, lr=0.01, alpha=0.9, eps=1e-8), mine, other)


def test_radam_matches_torch_in_both_branches():
    mine, other = twin_params()
    run_both(StepperRAdam(mine, lr=0.01, wd=0.1, eps=1e-8),
             torch.optim.RAdam(other, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1,
                               decoupled_weight_decay=True), mine, other)


def test_qhadam_with_both_nus_at_one_is_adam():
    mine, other = twin_params()
    run_both(QHAdam(mine, lr=0.01, nu_1=1.0, nu_2=1.0, mom=0.9, sqr_mom=0.99, eps=1e-5),
             StepperAdam(other, lr=0.01, eps=1e-5, wd=0.0), mine, other)


@pytest.mark.parametrize("make", [partial(Lamb, lr=0.05), partial(Larc, lr=0.5), partial(QHAdam, lr=0.05),
                                  partial(ranger, lr=0.2)])
def test_other_optimizers_descend_a_quadratic(make):
    p = nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = make([p])
    for _ in range(60):
        p.grad = 2 * p.detach()
        opt.step()
    assert p.detach().norm() < 0.5 * 13**0.5


def test_larc_clips_its_layer_lr_to_lr():
    p = nn.Parameter(torch.tensor([100.0]))  # a large weight and a small gradient: the local lr would exceed lr
    opt = Larc([p], lr=0.1, mom=0.0, trust_coeff=1.0)
    p.grad = torch.tensor([0.01])
    opt.step()
    assert opt.state[p]["local_lr"] == pytest.approx(0.1) and p.item() == pytest.approx(100 - 0.1 * 0.01)


# --- the Optimizer class --------------------------------------------------------------------------------
def test_steppers_compose_and_defaults_merge():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = Optimizer([p], [weight_decay, average_grad, momentum_step], lr=0.1)
    assert opt.hypers == [{"wd": 0.0, "mom": 0.9, "lr": 0.1}]  # the steppers' defaults, then the arguments
    for _ in range(2):
        p.grad = torch.tensor([1.0])
        opt.step()
    assert p.item() == pytest.approx(1 - 0.1 * 1 - 0.1 * 1.9) and opt.state[p]["grad_avg"].item() == pytest.approx(1.9)
    with pytest.raises(NotImplementedError, match="no closure"):
        opt.step(lambda: 0.0)


def test_hypers_per_group_slices_and_errors():
    a, b, c = (nn.Parameter(torch.ones(1)) for _ in range(3))
    opt = Optimizer([[a], [b], [c]], sgd_step, lr=1.0)
    opt.set_hyper("lr", slice(1e-3, 1e-1))
    assert [h["lr"] for h in opt.hypers] == pytest.approx([1e-3, 1e-2, 1e-1])
    opt.set_hyper("lr", slice(0.3))
    assert [h["lr"] for h in opt.hypers] == pytest.approx([0.03, 0.03, 0.3])
    opt.set_hypers(lr=[1, 2, 3], mom=0.5)
    assert [h["lr"] for h in opt.hypers] == [1, 2, 3] and opt.param_groups[2] == {"params": [c], "lr": 3, "mom": 0.5}
    with pytest.raises(ValueError, match="one value per param group"):
        opt.set_hyper("lr", [1, 2])
    with pytest.raises(ValueError, match="no parameters"):
        Optimizer([], sgd_step)
    with pytest.raises(TypeError, match="received a dict"):
        Optimizer([{"params": [a]}], sgd_step)


def test_no_wd_force_train_freezing_and_clear_state():
    body, head, norm = (nn.Parameter(torch.ones(2)) for _ in range(3))
    opt = StepperAdam([[body, norm], [head]], lr=0.1, wd=0.5, no_wd=[norm], force_train=[norm])
    opt.freeze()
    assert not body.requires_grad and norm.requires_grad and head.requires_grad and opt.frozen_idx == 1
    for p in (norm, head):
        p.grad = torch.zeros(2)
    opt.step()
    assert torch.equal(norm.detach(), torch.ones(2))  # no decay on no_wd parameters
    assert torch.allclose(head.detach(), torch.full((2,), 1 - 0.1 * 0.5))
    opt.clear_state()
    assert opt.state[norm] == {"do_wd": False, "force_train": True} and opt.state[head] == {}
    opt.unfreeze()
    assert body.requires_grad


def test_state_dict_round_trip_and_mismatch():
    mine, _ = twin_params()
    opt = StepperAdam(mine, lr=0.01)
    for p in mine:
        p.grad = torch.ones_like(p)
    opt.step()
    saved = opt.state_dict()
    fresh = StepperAdam(mine, lr=0.5)
    fresh.load_state_dict(saved)
    assert fresh.hypers[0]["lr"] == 0.01 and fresh.state[mine[0]]["step"] == 1
    torch.testing.assert_close(fresh.state[mine[1]]["grad_avg"], opt.state[mine[1]]["grad_avg"])
    with pytest.raises(ValueError, match="1 param groups and 2 parameters"):
        StepperAdam([mine[0]], lr=0.01).load_state_dict(saved)


def test_grad_scaler_unscales_and_skips_overflowing_steps():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = StepperSGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    scaler.scale(p.sum()).backward()  # a gradient of 1, scaled by 8
    assert p.grad.item() == 8.0
    opt.step(scaler=scaler)
    scaler.update()
    assert p.item() == pytest.approx(0.9)
    opt.zero_grad()
    scaler.scale(p.sum() * float("inf")).backward()
    opt.step(scaler=scaler)
    scaler.update()
    assert p.item() == pytest.approx(0.9) and scaler.get_scale() < 8.0


def test_lookahead_pulls_the_fast_weights_back_every_k_steps():
    p = nn.Parameter(torch.tensor([0.0]))
    opt = Lookahead(Optimizer([p], sgd_step, lr=1.0), k=3, alpha=0.5)
    for i in range(1, 4):
        p.grad = torch.tensor([-1.0])  # each inner step adds 1
        opt.step()
        if i < 3:
            assert p.item() == pytest.approx(i)
    assert p.item() == pytest.approx(1.5) and opt.slow_weights[0][0].item() == pytest.approx(1.5)
    saved = opt.state_dict()
    opt.clear_state()
    assert opt.count == 0 and opt.slow_weights is None
    opt.load_state_dict(saved)
    assert opt.count == 3 and opt.slow_weights[0][0].item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="k >= 1"):
        Lookahead(opt.opt, k=0)


# --- with a Learner ----------------------------------------------------------------------------------------
def learner(opt_func, **kwargs) -> Learner:
    torch.manual_seed(0)
    return Learner(synth_classification(n=256, bs=32), tiny_mlp(), opt_func=opt_func, lr=1e-2, **kwargs)


def test_partial_optimizer_with_sgd_step_trains_with_a_one_cycle_schedule():
    learn = learner(partial(Optimizer, cbs=[sgd_step]))
    learn.fit_one_cycle(3, 0.5)
    assert isinstance(learn.opt, Optimizer)
    losses = [row[0] for row in learn.recorder.values]
    assert losses[-1] < losses[0]
    lrs = learn.recorder.lrs
    assert max(lrs) == pytest.approx(0.5, rel=0.02) and lrs[0] < 0.5 / 10 and lrs[-1] < 0.02
    assert "mom" in learn.opt.hypers[0]  # the schedule's momentum reaches the hypers (sgd_step ignores it)


def test_ranger_as_opt_func_freezes_saves_loads_and_lr_finds(tmp_path):
    learn = learner(ranger, splitter=body_head_splitter, path=tmp_path)
    learn.freeze()
    frozen = [p.detach().clone() for p in learn.model.body[0].parameters()]
    learn.fit_one_cycle(1)
    assert isinstance(learn.opt, Lookahead) and learn.opt.count > 0
    assert all(torch.equal(a, b) for a, b in zip(frozen, learn.model.body[0].parameters()))
    valid_loss = learn.recorder.values[-1][1]
    learn.unfreeze()
    learn.fit_flat_cos(3, 3e-2)
    assert learn.recorder.values[-1][1] < valid_loss * 0.9
    learn.save("ranger")
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    count, slow = learn.opt.count, [t.clone() for t in learn.opt.slow_weights[1]]
    learn.lr_find(num_it=10, show_plot=False)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in weights.items())
    learn.fit(1)
    learn.load("ranger")
    assert learn.opt.count == count and all(torch.equal(a, b) for a, b in zip(slow, learn.opt.slow_weights[1]))
