"""fastai's stepper-based `Optimizer`: the readable optimizer the book teaches, built from small steppers.

lamina trains with `torch.optim` kernels by default (`lamina.optim`: `Adam`, `SGD` ... in fastai's names and
defaults). This module is for composing steppers (`lamina.steppers`) yourself, and for the optimizers fastai
builds that way: `QHAdam`, `Larc`, `Lamb`, `Lookahead` and `ranger`. `StepperSGD`, `StepperRMSProp`,
`StepperAdam` and `StepperRAdam` are fastai's ``SGD``/``RMSProp``/``Adam``/``RAdam`` built from steppers; the names
``SGD``, ``Adam`` ... keep meaning lamina's torch-kernel factories, re-exported here.

Every optimizer here works as a Learner's ``opt_func`` (schedules, freezing, checkpoints and ``lr_find``
included): the Learner calls ``opt_func(param_groups, lr=lr, no_wd=[...], force_train=[...])``.

Example:
    >>> learn = Learner(dls, model, opt_func=partial(Optimizer, cbs=[sgd_step]))
    >>> learn = Learner(dls, model, opt_func=ranger)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from .foundation import L
from .optim import SGD, Adam, OptimWrapper, RAdam, RMSProp, params_of
from .steppers import (adam_step, average_grad, average_sqr_grad, debias, l2_reg, lamb_step, larc_layer_lr,
                       larc_step, momentum_step, qhadam_step, radam_step, rms_prop_step, sgd_step, step_stat,
                       weight_decay)

__all__ = ["Optimizer", "Lookahead", "StepperSGD", "StepperRMSProp", "StepperAdam", "StepperRAdam", "QHAdam",
           "Larc", "Lamb", "ranger",
           # the steppers, and lamina's torch-kernel factories under fastai's names
           "sgd_step", "weight_decay", "l2_reg", "average_grad", "average_sqr_grad", "momentum_step",
           "rms_prop_step", "step_stat", "debias", "adam_step", "radam_step", "qhadam_step", "larc_layer_lr",
           "larc_step", "lamb_step", "SGD", "Adam", "RAdam", "RMSProp", "OptimWrapper"]

# Per-parameter state that survives `clear_state` (it is set by the Learner, not learnt).
_KEEP_ON_CLEAR = ("force_train", "do_wd")


def _stepper_defaults(cbs: list[Callable]) -> dict:
    """The ``defaults`` of every stepper (of the function a ``partial`` wraps), later steppers winning."""
    merged: dict = {}
    for cb in cbs:
        merged.update(getattr(cb.func if isinstance(cb, partial) else cb, "defaults", {}))
    return merged


def _plain(value: Any) -> Any:
    """numpy and 0-d tensor numbers as Python numbers, so hypers save and load as plain data."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.ndim == 0):
        return value.item()
    return value


class Optimizer:
    """Steps each parameter with a list of steppers, with fastai's hyper-parameters per param group.

    Args:
        params: a list of parameter lists (one per param group) or one list/iterator of parameters; modules
            stand for their parameters.
        cbs: the steppers, called in order for every parameter with a gradient (see `lamina.steppers`).
        no_wd: parameters that never take weight decay (their state has ``do_wd=False``).
        force_train: parameters that stay trainable when their group is frozen (norm layers, ``train_bn``).
        **defaults: starting hyper-parameters (``lr``, ``mom``, ``wd`` ...), over the steppers' own defaults.

    Attributes:
        param_lists: the parameters of each group. hypers: one dict of hyper-parameters per group.
        state: each parameter's state (``grad_avg``, ``step`` ...), keyed by the parameter.

    Raises:
        ValueError: when ``params`` holds no parameter. TypeError: when it holds something else.
    """

    def __init__(self, params: Iterable, cbs: Callable | Iterable[Callable], no_wd: Iterable[nn.Parameter] = (),
                 force_train: Iterable[nn.Parameter] = (), **defaults: Any):
        params = list(params)
        groups = params if params and isinstance(params[0], (list, tuple)) else [params]
        self.param_lists = [params_of(group) for group in groups]
        if not any(self.param_lists):
            raise ValueError("The optimizer got no parameters: the model (or the splitter's groups) is empty")
        odd = next((p for plist in self.param_lists for p in plist if not isinstance(p, torch.Tensor)), None)
        if odd is not None:
            raise TypeError(f"`params` must hold parameters or modules (or lists of them, one per group); "
                            f"received a {type(odd).__name__} (torch-style param-group dicts are not supported)")
        self.cbs = list(cbs) if isinstance(cbs, (list, tuple, L)) else [cbs]
        self.state: defaultdict = defaultdict(dict)
        self.hypers: list[dict] = [{} for _ in self.param_lists]
        self.set_hypers(**{**_stepper_defaults(self.cbs), **defaults})
        self.frozen_idx = 0
        mine = {id(p) for plist in self.param_lists for p in plist}
        for key, value, chosen in (("do_wd", False, no_wd), ("force_train", True, force_train)):
            for p in chosen:
                if id(p) in mine:
                    self.state[p][key] = value

    # --- parameters and hyper-parameters ------------------------------------------------------------
    def all_params(self, n: slice | int = slice(None), with_grad: bool = False) -> L:
        """``(param, its group, its state, the group's hypers)`` for the groups ``n`` (all by default)."""
        groups = zip(self.param_lists[n], self.hypers[n]) if isinstance(n, slice) else \
            [(self.param_lists[n], self.hypers[n])]
        return L([(p, plist, self.state[p], hyper) for plist, hyper in groups for p in plist
                  if not with_grad or p.grad is not None])

    def set_hyper(self, name: str, value: Any) -> None:
        """Set hyper ``name`` to one value for every group, a list with one value per group, or a ``slice``
        (``slice(a, b)``: spaced geometrically from a to b; ``slice(b)``: b/10 for all groups but the last).

        Raises:
            ValueError: for a list whose length is not the number of groups.
        """
        n = len(self.param_lists)
        if isinstance(value, slice):
            if value.start:
                value = list(np.geomspace(value.start, value.stop, n)) if n > 1 else [value.stop]
            else:
                value = [value.stop / 10] * (n - 1) + [value.stop]
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n
        if len(values) != n:
            raise ValueError(f"{name} needs one value per param group ({n} groups); "
                             f"received {len(values)} values: {values}")
        for hyper, v in zip(self.hypers, values):
            hyper[name] = _plain(v)

    def set_hypers(self, **kwargs: Any) -> None:
        """`set_hyper` for several names at once."""
        for name, value in kwargs.items():
            self.set_hyper(name, value)

    @property
    def param_groups(self) -> list[dict]:
        """One dict per group: ``{'params': [...], **hypers}`` (what a torch grad scaler walks)."""
        return [{"params": plist, **hyper} for plist, hyper in zip(self.param_lists, self.hypers)]

    @param_groups.setter
    def param_groups(self, groups: list[dict]) -> None:
        for hyper, group in zip(self.hypers, groups):
            hyper.update({k: v for k, v in group.items() if k != "params"})

    @property
    def opt(self) -> "Optimizer":
        """The object whose gradients a grad scaler unscales: this optimizer (`OptimWrapper.opt` is torch's)."""
        return self

    # --- freezing -------------------------------------------------------------------------------------
    def freeze_to(self, n: int) -> None:
        """Freeze the groups before ``n`` (``force_train`` params excepted); unfreeze the rest."""
        self.frozen_idx = n if n >= 0 else len(self.param_lists) + n
        for i, plist in enumerate(self.param_lists):
            for p in plist:
                p.requires_grad_(i >= self.frozen_idx or self.state[p].get("force_train", False))

    def freeze(self) -> None:
        """Freeze every group but the last."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Make every group trainable."""
        self.freeze_to(0)

    # --- stepping and state ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable | None = None, scaler: Any = None) -> None:
        """Run the steppers on every parameter with a gradient; through ``scaler`` (a torch grad scaler) if given,
        which unscales the gradients first and skips the step when they hold inf/NaN.

        Raises:
            NotImplementedError: for a ``closure`` (steppers see one gradient per step).
        """
        if closure is not None:
            raise NotImplementedError("Optimizer.step takes no closure: compute the loss and gradients first")
        if scaler is not None:
            scaler.step(self)  # comes back here without the scaler, unless the gradients overflowed
            return
        for p, _, state, hyper in self.all_params(with_grad=True):
            for cb in self.cbs:
                new = cb(p, **{**state, **hyper})
                if isinstance(new, dict):
                    state.update(new)

    def zero_grad(self) -> None:
        """Drop the gradients (set to None, as torch's optimizers do by default)."""
        for plist in self.param_lists:
            for p in plist:
                p.grad = None

    def clear_state(self) -> None:
        """Forget the running averages and step counts (``do_wd`` and ``force_train`` stay)."""
        for p, _, state, _ in self.all_params():
            self.state[p] = {k: state[k] for k in _KEEP_ON_CLEAR if k in state}

    def state_dict(self) -> dict:
        """Every parameter's state, in group order, and the hypers."""
        return {"state": [dict(state) for _, _, state, _ in self.all_params()],
                "hypers": [dict(h) for h in self.hypers]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a `state_dict` (its tensors move to each parameter's device).

        Raises:
            ValueError: when it was saved with other groups or another number of parameters.
        """
        states, hypers = state_dict["state"], state_dict["hypers"]
        params = [p for p, *_ in self.all_params()]
        if len(hypers) != len(self.param_lists) or len(states) != len(params):
            raise ValueError(f"The optimizer state holds {len(hypers)} param groups and {len(states)} parameters; "
                             f"this optimizer has {len(self.param_lists)} groups and {len(params)} parameters")
        self.hypers = [dict(h) for h in hypers]
        self.state = defaultdict(dict, {p: {k: v.to(p.device) if isinstance(v, torch.Tensor) else v
                                            for k, v in s.items()} for p, s in zip(params, states)})

    def __repr__(self) -> str:
        names = ", ".join(getattr(cb, "__name__", None) or getattr(getattr(cb, "func", None), "__name__", repr(cb))
                          for cb in self.cbs)
        return f"Optimizer([{names}], {len(self.param_lists)} groups, hypers={self.hypers[0]})"


class Lookahead:
    """Lookahead: every ``k`` steps of the inner optimizer, the slow weights move ``alpha`` of the way to the
    fast ones, and the fast weights restart from there.

    The interface is the inner optimizer's (hypers, freezing, steps, state), so it works as an ``opt_func``
    result (`ranger` is Lookahead over `StepperRAdam`); the inner optimizer is ``opt``.

    Args:
        opt: the inner optimizer (an `Optimizer` or an `OptimWrapper`).
        k: inner steps between synchronisations.
        alpha: how far the slow weights move towards the fast ones, in (0, 1].

    Raises:
        ValueError: for ``k`` < 1 or ``alpha`` outside (0, 1].
    """

    def __init__(self, opt: Any, k: int = 6, alpha: float = 0.5):
        if int(k) < 1 or not 0 < alpha <= 1:
            raise ValueError(f"Lookahead needs k >= 1 and 0 < alpha <= 1; received: k={k}, alpha={alpha}")
        self.opt, self.k, self.alpha = opt, int(k), float(alpha)
        self.count, self.slow_weights = 0, None

    @property
    def param_lists(self) -> list[list[nn.Parameter]]:
        return self.opt.param_lists

    @property
    def hypers(self) -> list[dict]:
        return self.opt.hypers

    @property
    def param_groups(self) -> list[dict]:
        return self.opt.param_groups

    def set_hyper(self, name: str, value: Any) -> None:
        self.opt.set_hyper(name, value)

    def set_hypers(self, **kwargs: Any) -> None:
        self.opt.set_hypers(**kwargs)

    def freeze_to(self, n: int) -> None:
        self.opt.freeze_to(n)

    def freeze(self) -> None:
        self.opt.freeze()

    def unfreeze(self) -> None:
        self.opt.unfreeze()

    def zero_grad(self) -> None:
        self.opt.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable | None = None, scaler: Any = None) -> None:
        """One inner step; every ``k``-th one, ``slow += alpha * (fast - slow)`` and ``fast = slow``."""
        if closure is not None:
            raise NotImplementedError("Lookahead.step takes no closure: compute the loss and gradients first")
        if self.slow_weights is None:
            self.slow_weights = [[p.detach().clone() for p in plist] for plist in self.param_lists]
        if scaler is not None:
            self.opt.step(scaler=scaler)
        else:
            self.opt.step()
        self.count += 1
        if self.count % self.k:
            return
        for slow_list, fast_list in zip(self.slow_weights, self.param_lists):
            for slow, fast in zip(slow_list, fast_list):
                slow.add_(fast.detach() - slow, alpha=self.alpha)
                fast.data.copy_(slow)

    def clear_state(self) -> None:
        """Clear the inner optimizer's state and start the slow weights afresh at the next step."""
        self.opt.clear_state()
        self.count, self.slow_weights = 0, None

    def state_dict(self) -> dict:
        """The inner optimizer's state, the step count and the slow weights (so a resumed fit continues exactly)."""
        return {"opt": self.opt.state_dict(), "count": self.count, "slow_weights": self.slow_weights}

    def match_layouts(self) -> None:
        """The inner optimizer's `match_layouts`, where it has one."""
        match = getattr(self.opt, "match_layouts", None)
        if match is not None:
            match()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a `state_dict` (the slow weights move to each parameter's device)."""
        self.opt.load_state_dict(state_dict["opt"])
        self.count, slow = int(state_dict["count"]), state_dict["slow_weights"]
        self.slow_weights = None if slow is None else [
            [s.to(p.device) for s, p in zip(slow_list, plist)] for slow_list, plist in zip(slow, self.param_lists)]

    def __repr__(self) -> str:
        return f"Lookahead({self.opt!r}, k={self.k}, alpha={self.alpha})"


# --- fastai's optimizers, built from steppers ------------------------------------------------------------
def _decay(decouple_wd: bool) -> Callable:
    return weight_decay if decouple_wd else l2_reg


def StepperSGD(params: Iterable, lr: float, mom: float = 0.0, wd: float = 0.0, decouple_wd: bool = True,
               **kwargs: Any) -> Optimizer:
    """fastai's ``SGD`` from steppers: decay, then a plain step or (``mom`` > 0) an undampened momentum step.
    ``kwargs`` go to `Optimizer` (``no_wd``, ``force_train``)."""
    cbs = [_decay(decouple_wd)] + ([average_grad, momentum_step] if mom != 0 else [sgd_step])
    return Optimizer(params, cbs, lr=lr, mom=mom, wd=wd, **kwargs)


def StepperRMSProp(params: Iterable, lr: float, mom: float = 0.0, sqr_mom: float = 0.99, eps: float = 1e-8,
                   wd: float = 0.0, decouple_wd: bool = True, **kwargs: Any) -> Optimizer:
    """fastai's ``RMSProp`` from steppers (with ``mom`` > 0 the gradient's average replaces the gradient)."""
    averages = [average_sqr_grad] if mom == 0 else [average_grad, average_sqr_grad]
    return Optimizer(params, [_decay(decouple_wd), *averages, rms_prop_step], lr=lr, mom=mom, sqr_mom=sqr_mom,
                     eps=eps, wd=wd, **kwargs)


def StepperAdam(params: Iterable, lr: float, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
                wd: float = 0.01, decouple_wd: bool = True, **kwargs: Any) -> Optimizer:
    """fastai's ``Adam`` from steppers: AdamW (decoupled decay 0.01) with betas (0.9, 0.99) and eps 1e-5."""
    cbs = [_decay(decouple_wd), partial(average_grad, dampening=True), average_sqr_grad, step_stat, adam_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, **kwargs)


def StepperRAdam(params: Iterable, lr: float, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
                 wd: float = 0.0, beta: float = 0.0, decouple_wd: bool = True, **kwargs: Any) -> Optimizer:
    """fastai's ``RAdam`` from steppers (``beta`` > 0 smooths the denominator with softplus)."""
    cbs = [_decay(decouple_wd), partial(average_grad, dampening=True), average_sqr_grad, step_stat, radam_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, beta=beta, **kwargs)


def QHAdam(params: Iterable, lr: float, mom: float = 0.999, sqr_mom: float = 0.999, nu_1: float = 0.7,
           nu_2: float = 1.0, eps: float = 1e-8, wd: float = 0.0, decouple_wd: bool = True,
           **kwargs: Any) -> Optimizer:
    """Quasi-hyperbolic Adam (Ma & Yarats, 2019) with fastai's defaults."""
    cbs = [_decay(decouple_wd), partial(average_grad, dampening=True), average_sqr_grad, step_stat, qhadam_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, nu_1=nu_1, nu_2=nu_2, eps=eps, wd=wd, **kwargs)


def Larc(params: Iterable, lr: float, mom: float = 0.9, clip: bool = True, trust_coeff: float = 0.02,
         eps: float = 1e-8, wd: float = 0.0, decouple_wd: bool = True, **kwargs: Any) -> Optimizer:
    """LARC: SGD (with momentum) at a per-layer learning rate (``clip``: never above ``lr``)."""
    cbs = [_decay(decouple_wd)] + ([average_grad] if mom != 0 else []) + [partial(larc_layer_lr, clip=clip), larc_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, trust_coeff=trust_coeff, eps=eps, wd=wd, **kwargs)


def Lamb(params: Iterable, lr: float, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5, wd: float = 0.0,
         decouple_wd: bool = True, **kwargs: Any) -> Optimizer:
    """LAMB: Adam with each layer's update rescaled by its trust ratio."""
    cbs = [_decay(decouple_wd), partial(average_grad, dampening=True), average_sqr_grad, step_stat, lamb_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, **kwargs)


def ranger(params: Iterable, lr: float, mom: float = 0.95, wd: float = 0.01, eps: float = 1e-6, k: int = 6,
           alpha: float = 0.5, **kwargs: Any) -> Lookahead:
    """Ranger: `Lookahead` over `StepperRAdam`. ``kwargs`` go to `StepperRAdam` (``sqr_mom``, ``beta``, ``no_wd`` ...).

    Example:
        >>> learn = Learner(dls, model, opt_func=ranger); learn.fit_flat_cos(5, 4e-3)
    """
    return Lookahead(StepperRAdam(params, lr=lr, mom=mom, wd=wd, eps=eps, **kwargs), k=k, alpha=alpha)
