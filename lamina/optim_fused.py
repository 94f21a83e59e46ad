"""`FusedAdam`: Adam and AdamW through torch's fused kernel, with the per-step bookkeeping kept between steps.

The kernels (``torch._fused_adam_`` / ``torch._fused_adamw_``) are private to torch: `fused_kernels_available`
says whether this torch has them, and lamina's `Adam` factory uses ``torch.optim.Adam``/``AdamW`` instead
when it does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import optimizer as _torch_optimizer

__all__ = ["FusedAdam", "fused_kernels_available"]

_KERNELS = ("_fused_adam_", "_fused_adamw_")


def fused_kernels_available() -> bool:
    """Whether this torch has the private fused Adam/AdamW kernels `FusedAdam` calls."""
    return all(callable(getattr(torch, name, None)) for name in _KERNELS)


class FusedAdam(torch.optim.Optimizer):
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

    def step(self, closure: Any = None) -> Any:
        """One Adam step for every parameter that has a gradient (``closure`` re-evaluates the loss first)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update()
        return loss

    def has_step_hooks(self) -> bool:
        """Whether step hooks are registered (on this optimizer or globally): `update` would skip them."""
        hook_dicts = (getattr(self, "_optimizer_step_pre_hooks", None),
                      getattr(self, "_optimizer_step_post_hooks", None),
                      getattr(_torch_optimizer, "_global_optimizer_pre_hooks", None),
                      getattr(_torch_optimizer, "_global_optimizer_post_hooks", None))
        return any(hooks is None or len(hooks) > 0 for hooks in hook_dicts)  # not found: assume there are

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
        """The group's tensor lists, rebuilt when its parameters with gradients or the state object change."""
        params = [p for p in group["params"] if p.grad is not None]
        ids = tuple(map(id, params))  # compared by identity: tensors' == is elementwise
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
            buckets.setdefault((p.device, p.dtype, float(state["step"])), []).append(p)
        plan = []
        for (device, _, count), ps in buckets.items():
            shared = torch.tensor(count, dtype=torch.float32, device=device)
            for p in ps:
                self.state[p]["step"] = shared
            plan.append((list(ps), [self.state[p]["exp_avg"] for p in ps],
                         [self.state[p]["exp_avg_sq"] for p in ps], [shared] * len(ps)))
        return plan
