"""`FusedAdam` and `FusedSGD`: torch's fused/foreach kernels called directly, with the per-step bookkeeping
kept between steps.

The Adam kernels (``torch._fused_adam_`` / ``torch._fused_adamw_``) are private to torch:
`fused_kernels_available` says whether this torch has them, and lamina's `Adam` factory uses
``torch.optim.Adam``/``AdamW`` instead when it does not.

Both classes derive from `DirectOptimizer`, which reaches torch's ``add_param_group``, ``zero_grad``,
``state_dict`` and ``load_state_dict`` without their compile-aware wrappers: those wrappers import
``torch._dynamo`` on first use, about 1.4 s of a process's first fit for an optimizer that never runs
under ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import optimizer as _torch_optimizer

__all__ = ["DirectOptimizer", "FusedAdam", "FusedSGD", "fused_kernels_available", "lay_out_state_like_params"]

_KERNELS = ("_fused_adam_", "_fused_adamw_")


def fused_kernels_available() -> bool:
    """Whether this torch has the private fused Adam/AdamW kernels `FusedAdam` calls."""
    return all(callable(getattr(torch, name, None)) for name in _KERNELS)


def _unwrapped(name: str) -> Any:
    """``torch.optim.Optimizer.<name>`` without its dynamo-disabling wrapper (the method itself if unwrapped)."""
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class DirectOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose bookkeeping methods skip torch's compile-aware wrappers.

    torch wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` so that
    ``torch.compile`` does not trace them; the wrapper imports ``torch._dynamo`` (~1.4 s) on its first call,
    even in a process that never compiles. The methods here run torch's own code, unwrapped. Subclasses
    implement `update` (the step without torch's hook and profiler wrapper) and `has_step_hooks`.
    """

    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group`` (checks and defaults), without the dynamo import."""
        _unwrapped("add_param_group")(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``, without the dynamo import."""
        _unwrapped("zero_grad")(self, set_to_none)

    def state_dict(self) -> dict:
        """torch's ``state_dict`` (the same format), without the dynamo import."""
        return _unwrapped("state_dict")(self)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, without the dynamo import."""
        _unwrapped("load_state_dict")(self, state_dict)

    def step(self, closure: Any = None) -> Any:
        """One step for every parameter that has a gradient (``closure`` re-evaluates the loss first)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update()
        return loss

    def update(self) -> None:
        """The step itself; `OptimWrapper` calls it directly when no step hook is registered."""
        raise NotImplementedError

    def has_step_hooks(self) -> bool:
        """Whether step hooks are registered (on this optimizer or globally): `update` would skip them."""
        hook_dicts = (getattr(self, "_optimizer_step_pre_hooks", None),
                      getattr(self, "_optimizer_step_post_hooks", None),
                      getattr(_torch_optimizer, "_global_optimizer_pre_hooks", None),
                      getattr(_torch_optimizer, "_global_optimizer_post_hooks", None))
        return any(hooks is None or len(hooks) > 0 for hooks in hook_dicts)  # not found: assume there are


def _laid_out_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its elements lie in memory in the order of ``like``'s, else a copy of ``t`` in that order.

    The fused Adam kernel walks the parameter, gradient and state tensors as flat memory: a moment kept
    channels-first for a parameter since moved to channels-last (``learn.to_channelslast()`` after a fit, or
    ``to_contiguous()`` after a channels-last one) would be updated with another element's gradient, silently.
    """
    if all(a == b for a, b, n in zip(t.stride(), like.stride(), like.shape) if n > 1):  # size-1 dims: any stride
        return t
    return torch.empty_strided(like.shape, like.stride(), dtype=t.dtype, device=t.device).copy_(t)


def lay_out_state_like_params(opt: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor of ``opt`` shaped like its parameter the parameter's memory layout.

    torch's fused CPU kernels (``Adam(fused=True)``, ``SGD(fused=True)``, `FusedAdam`) walk a parameter, its
    gradient and its state as flat memory. Autograd gives gradients their parameter's layout, but state made
    before a model changed memory format (channels-last and back) or loaded from a checkpoint of another format
    keeps the old one: each element would be updated with another's moments. Called where lamina changes a
    model's format and when an optimizer state is loaded; the values stay, only their order in memory changes.
    """
    replaced = False
    for p, state in getattr(opt, "state", {}).items():
        if not isinstance(p, torch.Tensor) or not isinstance(state, dict):
            continue
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                laid_out = _laid_out_like(value, p)
                replaced |= laid_out is not value
                state[key] = laid_out
    if replaced and isinstance(opt, FusedAdam):
        opt._plans = {}  # they hold the tensors just replaced


class FusedAdam(DirectOptimizer):
    """Adam through torch's fused kernel, with one kernel call and one step counter per param group.

    ``torch.optim.Adam(fused=True)`` runs the same kernel, but each step it gathers every parameter's state
    again, sorts the tensors by device and increments one step counter per parameter: on a small model (a
    tabular MLP) that bookkeeping costs more than the arithmetic. Here each group's tensor lists are kept
    between steps, and the parameters that step together share one counter. The state (``exp_avg``,
    ``exp_avg_sq``, ``step`` per parameter) and the results are those of torch's Adam.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate.
        betas: ``(beta1, beta2)``, fastai's ``(mom, sqr_mom)``.
        eps: added to the denominator.
        weight_decay: weight decay: an L2 penalty added to the gradient, or with ``decoupled_weight_decay``
            (AdamW) the weights shrunk by ``lr * weight_decay`` in the same kernel.
        decoupled_weight_decay: decay the weights directly instead of through the gradient.

    Raises:
        RuntimeError: when this torch lacks the fused kernels (`fused_kernels_available`).
        ValueError: for a gradient that is sparse (use ``torch.optim.SparseAdam``).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False):
        if not fused_kernels_available():
            raise RuntimeError(f"FusedAdam needs torch.{_KERNELS[0]} and torch.{_KERNELS[1]}, which torch "
                               f"{torch.__version__} lacks: use torch.optim.AdamW (or lamina's Adam, which "
                               "falls back to it)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))
        self._plans: dict[int, tuple] = {}

    def __setstate__(self, state: dict) -> None:
        # `load_state_dict` (and unpickling) come through here with new groups and state: plans start afresh
        super().__setstate__(state)
        self._plans = {}

    @torch.no_grad()
    def update(self) -> None:
        """The step itself, without torch's step wrapper (hooks, profiler label): `OptimWrapper` calls it
        directly when no hook is registered, which saves a noticeable share of a small model's step."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            decoupled = group.get("decoupled_weight_decay", self.defaults["decoupled_weight_decay"])
            kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
            for params, exp_avgs, exp_avg_sqs, steps in self._plan(group):
                steps[0].add_(1)  # the counter the group's parameters share
                kernel(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"],
                       beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                       amsgrad=False, maximize=False)

    def _plan(self, group: dict) -> list[tuple]:
        """The group's tensor lists, rebuilt when its parameters with gradients, their memory layouts or the state
        object change."""
        params = [p for p in group["params"] if p.grad is not None]
        # compared by identity (tensors' == is elementwise) and strides: a model moved to channels-last keeps
        # its Parameter objects but not their layout
        ids = (tuple(map(id, params)), tuple(map(torch.Tensor.stride, params)))
        cached = self._plans.get(id(group))
        if cached is not None and cached[0] is self.state and cached[1] == ids:
            return cached[2]
        # forget the plans of replaced groups or state: they hold tensors of the old state
        self._plans = {key: cached for key, cached in self._plans.items()
                       if cached[0] is self.state and any(cached[3] is g for g in self.param_groups)}
        plan = self._build_plan(params)
        self._plans[id(group)] = (self.state, ids, plan, group)  # the group is kept so its id stays unique
        return plan

    def _build_plan(self, params: list[nn.Parameter]) -> list[tuple]:
        """Bucket the parameters by device, dtype and step count; each bucket shares one step tensor."""
        buckets: dict[tuple, list] = {}
        for p in params:
            if p.grad.is_sparse:
                raise ValueError("FusedAdam does not support sparse gradients: use torch.optim.SparseAdam, or an "
                                 "embedding with sparse=False")
            state = self.state[p]
            if not state:  # lazily, as torch's Adam does
                state.update(step=0.0, exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                             exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = _laid_out_like(state[key], p)
            buckets.setdefault((p.device, p.dtype, float(state["step"])), []).append(p)
        plan = []
        for (device, _, count), ps in buckets.items():
            shared = torch.tensor(count, dtype=torch.float32, device=device)
            for p in ps:
                self.state[p]["step"] = shared
            plan.append((list(ps), [self.state[p]["exp_avg"] for p in ps],
                         [self.state[p]["exp_avg_sq"] for p in ps], [shared] * len(ps)))
        return plan


class FusedSGD(DirectOptimizer):
    """SGD (momentum, dampening, Nesterov, L2 weight decay) through torch's foreach kernels.

    The arithmetic is that of ``torch.optim.SGD``, op for op, so the results are identical; the state is
    its ``momentum_buffer`` per parameter, and `state_dict` has torch's format.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate.
        momentum: momentum factor (0: plain SGD, no buffer kept).
        dampening: dampening of the momentum.
        weight_decay: an L2 penalty added to the gradient (`OptimWrapper` decouples decay itself).
        nesterov: Nesterov momentum.

    Raises:
        ValueError: for a negative ``lr``, ``momentum`` or ``weight_decay``, Nesterov without momentum or with
            dampening (as ``torch.optim.SGD``), or a sparse gradient (use ``torch.optim.SGD``).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr, momentum and weight_decay of at least 0; received lr={lr!r}, "
                             f"momentum={momentum!r}, weight_decay={weight_decay!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum needs momentum > 0 and dampening=0; received momentum={momentum!r}, "
                             f"dampening={dampening!r}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    @torch.no_grad()
    def update(self) -> None:
        """The step itself, as ``torch.optim.SGD`` computes it, one foreach call per operation."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise ValueError("FusedSGD does not support sparse gradients: use torch.optim.SGD, or an "
                                 "embedding with sparse=False")
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["momentum"]:
                grads = self._momentum(group, params, grads)
            torch._foreach_add_(params, grads, alpha=-group["lr"])

    def _momentum(self, group: dict, params: list, grads: list) -> list:
        """Update the momentum buffers (a copy of the gradient on a parameter's first step); the direction."""
        momentum, dampening = group["momentum"], group["dampening"]
        bufs, old, old_grads = [], [], []
        for p, g in zip(params, grads):
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.clone(g).detach()
            else:
                old.append(buf)
                old_grads.append(g)
            bufs.append(buf)
        if old:
            torch._foreach_mul_(old, momentum)
            torch._foreach_add_(old, old_grads, alpha=1 - dampening)
        if group["nesterov"]:
            return torch._foreach_add(grads, bufs, alpha=momentum)
        return bufs
