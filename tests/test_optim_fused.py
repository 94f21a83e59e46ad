"""FusedAdam: torch's fused Adam/AdamW kernels with the bookkeeping kept between steps, and the fallback
to torch's own Adam/AdamW where a torch lacks those kernels."""

import pytest
import torch
from torch import nn

import lamina.optim
from lamina.optim import Adam
from lamina.optim_fused import FusedAdam, fused_kernels_available


def params():
    torch.manual_seed(0)
    return [nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))]


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


@pytest.mark.parametrize("to_format", [torch.channels_last, torch.contiguous_format])
def test_fused_adam_follows_a_parameter_moved_to_another_memory_format(to_format):
    # the fused kernel walks its tensors as flat memory: moments kept in the old layout would pair each element
    # with another's gradient (the state of a model converted by to_channelslast/to_contiguous between fits)
    from_format = torch.contiguous_format if to_format is torch.channels_last else torch.channels_last
    torch.manual_seed(0)
    start = torch.randn(4, 3, 3, 5).contiguous(memory_format=from_format)
    moved, kept = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    opts = FusedAdam([moved], lr=0.05), FusedAdam([kept], lr=0.05)
    for it in range(6):
        if it == 3:
            moved.data = moved.data.contiguous(memory_format=to_format)
        grad = torch.randn(start.shape)
        for p, opt in zip((moved, kept), opts):
            p.grad = torch.empty_like(p).copy_(grad)  # in its parameter's layout, as autograd's gradients
            opt.step()
    assert moved.is_contiguous(memory_format=to_format)
    assert torch.allclose(moved, kept, atol=1e-6)
    assert opts[0].state[moved]["exp_avg"].stride() == moved.stride()


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


def test_fused_adam_keeps_its_old_import_path():
    assert lamina.optim.FusedAdam is FusedAdam


@pytest.fixture
def no_fused_kernels(monkeypatch):
    """A torch without the private kernels FusedAdam calls (as some versions may be)."""
    monkeypatch.delattr(torch, "_fused_adamw_")
    assert not fused_kernels_available()


def test_adam_falls_back_to_torch_adamw_when_the_fused_kernels_are_missing(no_fused_kernels):
    ours = [nn.Parameter(p.detach().clone()) for p in params()]
    with pytest.warns(UserWarning, match="lacks the fused Adam kernels"):
        opt = Adam([ours], lr=0.1, wd=0.01, no_wd=[ours[1]])
    assert type(opt.opt) is torch.optim.AdamW
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # norm/bias groups still not decayed
    with pytest.warns(UserWarning):
        assert type(Adam(params(), decouple_wd=False).opt) is torch.optim.Adam  # L2 Adam
    theirs = params()
    ref = torch.optim.AdamW([{"params": theirs[:1]}, {"params": theirs[1:], "weight_decay": 0.0}], lr=0.1,
                            betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    for _ in range(3):
        for p, q in zip(ours, theirs):
            p.grad, q.grad = torch.ones(p.shape), torch.ones(q.shape)
        opt.step()
        ref.step()
    assert all(torch.allclose(p, q) for p, q in zip(ours, theirs))


def test_fused_adam_itself_names_the_missing_kernel(no_fused_kernels):
    with pytest.raises(RuntimeError, match="_fused_adamw_.*use torch.optim.AdamW"):
        FusedAdam(params())


@pytest.mark.parametrize("kwargs", [{"momentum": 0.0}, {"momentum": 0.9, "weight_decay": 0.1},
                                    {"momentum": 0.8, "dampening": 0.3}, {"momentum": 0.9, "nesterov": True}])
def test_fused_sgd_is_torch_sgd_step_for_step(kwargs):
    from lamina.optim_fused import FusedSGD
    ours, theirs = _twin_params()
    ref = torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:]}], lr=0.05, **kwargs)
    opt = FusedSGD([{"params": ours[:2]}, {"params": ours[2:]}], lr=0.05, **kwargs)
    for it in range(9):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            grad = torch.randn(p.shape)
            skip = (i == 1 and it % 4 == 1) or (i == 2 and it < 3)  # a late first step, missed steps
            p.grad, q.grad = (None, None) if skip else (grad.clone(), grad.clone())
        ref.step()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    if kwargs["momentum"]:
        assert all(torch.equal(opt.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"])
                   for p, q in zip(ours, theirs))


def test_fused_sgd_state_dict_loads_into_torch_sgd():
    from lamina.optim import SGD
    from lamina.optim_fused import FusedSGD
    ours, theirs = _twin_params()
    opt = SGD([ours], lr=0.1, mom=0.9)
    assert type(opt.opt) is FusedSGD and type(SGD([theirs], foreach=True).opt) is torch.optim.SGD
    for p in ours:
        p.grad = torch.ones(p.shape)
    opt.step()
    ref = torch.optim.SGD(theirs, lr=0.1, momentum=0.9)
    ref.load_state_dict(opt.opt.state_dict())
    assert torch.equal(ref.state[theirs[0]]["momentum_buffer"], torch.ones(4, 3))


def test_a_first_fit_does_not_import_torch_dynamo():
    # torch's optimizers import torch._dynamo (~1.4 s) on first use; lamina's default optimizers must not
    import subprocess
    import sys
    code = ("import sys, torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
            "from lamina.basics import DataLoaders, Learner, SGD\n"
            "x = torch.randn(64, 3); y = (x[:, 0] > 0).long()\n"
            "dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=16)\n"
            "for opt_func in (None, SGD):\n"
            "    kw = {} if opt_func is None else dict(opt_func=opt_func)\n"
            "    learn = Learner(dls, nn.Linear(3, 2), loss_func=nn.CrossEntropyLoss(), **kw)\n"
            "    with learn.no_bar(), learn.no_logging():\n"
            "        learn.fit_one_cycle(1)\n"
            "    learn.opt.state_dict(); learn.opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_fused_sgd_checks_its_arguments_as_torch_sgd():
    from lamina.optim_fused import FusedSGD
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0 and dampening=0"):
        FusedSGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="dampening=0.5"):
        FusedSGD(params, lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match="lr=-1"):
        FusedSGD(params, lr=-1)
