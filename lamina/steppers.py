"""The steppers of fastai's `Optimizer`: small functions that each do one part of an optimizer step.

`lamina.optimizer.Optimizer` calls every stepper, in order, for each parameter with a gradient, as
``stepper(p, **state, **hypers)``. A stepper either changes ``p`` (or its gradient) in place, or returns a dict
of new per-parameter state (``grad_avg``, ``sqr_avg``, ``step`` ...) that the next steppers, and the next step,
receive as keyword arguments. Its ``defaults`` attribute, when present, gives default hyper-parameters.

Writing your own is how the book extends the optimizer:

Example:
    >>> def clipped_sgd_step(p, lr, clip=1.0, **kwargs):
    ...     p.data.add_(p.grad.data.clamp(-clip, clip), alpha=-lr)
    >>> opt_func = partial(Optimizer, cbs=[weight_decay, clipped_sgd_step])

Steppers change ``p.data`` rather than ``p`` so that they also run outside ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["sgd_step", "weight_decay", "l2_reg", "average_grad", "average_sqr_grad", "momentum_step",
           "rms_prop_step", "step_stat", "debias", "adam_step", "radam_step", "qhadam_step", "larc_layer_lr",
           "larc_step", "lamb_step"]


def sgd_step(p: torch.Tensor, lr: float, **kwargs: Any) -> None:
    """Plain gradient descent: ``p -= lr * grad``."""
    p.data.add_(p.grad.data, alpha=-lr)


def weight_decay(p: torch.Tensor, lr: float, wd: float, do_wd: bool = True, **kwargs: Any) -> None:
    """Decoupled weight decay (AdamW's): ``p *= 1 - lr * wd``, unless ``do_wd`` is False (norm layers, biases)."""
    if do_wd and wd != 0:
        p.data.mul_(1 - lr * wd)


weight_decay.defaults = {"wd": 0.0}


def l2_reg(p: torch.Tensor, lr: float, wd: float, do_wd: bool = True, **kwargs: Any) -> None:
    """L2 regularisation: ``grad += wd * p`` (the decay then passes through the running averages)."""
    if do_wd and wd != 0:
        p.grad.data.add_(p.data, alpha=wd)


l2_reg.defaults = {"wd": 0.0}


def average_grad(p: torch.Tensor, mom: float, dampening: bool = False, grad_avg: torch.Tensor | None = None,
                 **kwargs: Any) -> dict:
    """Running average of the gradient: ``grad_avg = mom * grad_avg + (1 - mom if dampening else 1) * grad``."""
    if grad_avg is None:
        grad_avg = torch.zeros_like(p.grad.data)
    grad_avg.mul_(mom).add_(p.grad.data, alpha=1 - mom if dampening else 1.0)
    return {"grad_avg": grad_avg}


average_grad.defaults = {"mom": 0.9}


def average_sqr_grad(p: torch.Tensor, sqr_mom: float, dampening: bool = True, sqr_avg: torch.Tensor | None = None,
                     **kwargs: Any) -> dict:
    """Running average of the squared gradient: ``sqr_avg = sqr_mom * sqr_avg + (1 - sqr_mom) * grad**2``."""
    if sqr_avg is None:
        sqr_avg = torch.zeros_like(p.grad.data)
    sqr_avg.mul_(sqr_mom).addcmul_(p.grad.data, p.grad.data, value=1 - sqr_mom if dampening else 1.0)
    return {"sqr_avg": sqr_avg}


average_sqr_grad.defaults = {"sqr_mom": 0.99}


def momentum_step(p: torch.Tensor, lr: float, grad_avg: torch.Tensor, **kwargs: Any) -> None:
    """SGD with momentum: ``p -= lr * grad_avg``."""
    p.data.add_(grad_avg, alpha=-lr)


def rms_prop_step(p: torch.Tensor, lr: float, sqr_avg: torch.Tensor, eps: float,
                  grad_avg: torch.Tensor | None = None, **kwargs: Any) -> None:
    """RMSProp: ``p -= lr * g / (sqrt(sqr_avg) + eps)``, ``g`` the gradient or its average when kept."""
    denom = sqr_avg.sqrt().add_(eps)
    p.data.addcdiv_(grad_avg if grad_avg is not None else p.grad.data, denom, value=-lr)


rms_prop_step.defaults = {"eps": 1e-8}


def step_stat(p: torch.Tensor, step: int = 0, **kwargs: Any) -> dict:
    """Count the steps this parameter has taken (the debiasing of Adam-like steppers needs it)."""
    return {"step": step + 1}


def debias(mom: float, damp: float, step: int) -> float:
    """The weight a running average has gathered after ``step`` steps: ``damp * (1 - mom**step) / (1 - mom)``.

    With ``damp = 1 - mom`` (a dampened average) this is ``1 - mom**step``, Adam's bias correction.
    """
    return damp * (1 - mom**step) / (1 - mom)


def _debiased(mom: float, sqr_mom: float, step: int) -> tuple[float, float]:
    return debias(mom, 1 - mom, step), debias(sqr_mom, 1 - sqr_mom, step)


def adam_step(p: torch.Tensor, lr: float, mom: float, step: int, sqr_mom: float, grad_avg: torch.Tensor,
              sqr_avg: torch.Tensor, eps: float, **kwargs: Any) -> None:
    """Adam: ``p -= lr / debias1 * grad_avg / (sqrt(sqr_avg / debias2) + eps)``."""
    debias1, debias2 = _debiased(mom, sqr_mom, step)
    p.data.addcdiv_(grad_avg, (sqr_avg / debias2).sqrt() + eps, value=-lr / debias1)


adam_step.defaults = {"eps": 1e-5}


def radam_step(p: torch.Tensor, lr: float, mom: float, step: int, sqr_mom: float, grad_avg: torch.Tensor,
               sqr_avg: torch.Tensor, eps: float, beta: float = 0.0, **kwargs: Any) -> None:
    """Rectified Adam: an Adam step scaled by the variance rectifier once the estimate of the squared-gradient
    average is trusted (``r > 5``), SGD with (debiased) momentum before that. ``beta`` > 0 smooths the
    denominator with ``softplus``."""
    debias1, debias2 = _debiased(mom, sqr_mom, step)
    r_inf = 2 / (1 - sqr_mom) - 1
    r = r_inf - 2 * step * sqr_mom**step / (1 - sqr_mom**step)
    if r <= 5:  # with sqr_mom=0.99 the first 5 steps: too few squared gradients to trust their average
        p.data.add_(grad_avg, alpha=-lr / debias1)
        return
    rectifier = math.sqrt((r - 4) * (r - 2) * r_inf / ((r_inf - 4) * (r_inf - 2) * r))
    denom = (sqr_avg / debias2).sqrt()
    if eps:
        denom += eps
    if beta:
        denom = F.softplus(denom, beta)
    p.data.addcdiv_(grad_avg, denom, value=-lr * rectifier / debias1)


radam_step.defaults = {"eps": 1e-5}


def qhadam_step(p: torch.Tensor, lr: float, mom: float, sqr_mom: float, sqr_avg: torch.Tensor, nu_1: float,
                nu_2: float, step: int, grad_avg: torch.Tensor, eps: float, **kwargs: Any) -> None:
    """Quasi-hyperbolic Adam: the numerator mixes the gradient and its debiased average by ``nu_1``, the
    denominator the squared gradient and its debiased average by ``nu_2``."""
    debias1, debias2 = _debiased(mom, sqr_mom, step)
    grad = p.grad.data
    numer = (1 - nu_1) * grad + nu_1 * (grad_avg / debias1)
    denom = ((1 - nu_2) * grad**2 + nu_2 * (sqr_avg / debias2)).sqrt() + eps
    p.data.addcdiv_(numer, denom, value=-lr)


qhadam_step.defaults = {"eps": 1e-8}


def larc_layer_lr(p: torch.Tensor, lr: float, trust_coeff: float, wd: float, eps: float, clip: bool = True,
                  **kwargs: Any) -> dict:
    """LARC's per-layer learning rate: ``lr * trust_coeff * |p| / (|grad| + wd * |p| + eps)``, at most ``lr``
    with ``clip``."""
    p_norm, g_norm = float(torch.norm(p.data)), float(torch.norm(p.grad.data))
    local_lr = lr * trust_coeff * p_norm / (g_norm + p_norm * wd + eps)
    return {"local_lr": min(lr, local_lr) if clip else local_lr}


larc_layer_lr.defaults = {"trust_coeff": 0.02, "wd": 0.0, "eps": 1e-8}


def larc_step(p: torch.Tensor, local_lr: float, grad_avg: torch.Tensor | None = None, **kwargs: Any) -> None:
    """LARC: ``p -= local_lr * g``, ``g`` the gradient or its average when kept."""
    p.data.add_(p.grad.data if grad_avg is None else grad_avg, alpha=-local_lr)


def lamb_step(p: torch.Tensor, lr: float, mom: float, step: int, sqr_mom: float, grad_avg: torch.Tensor,
              sqr_avg: torch.Tensor, eps: float, **kwargs: Any) -> None:
    """LAMB: the Adam update rescaled by the trust ratio ``rms(p) / rms(update)`` (at most 10; 1 when either is 0)."""
    debias1, debias2 = _debiased(mom, sqr_mom, step)
    update = (grad_avg / debias1) / ((sqr_avg / debias2).sqrt() + eps)
    r1, r2 = float(p.data.pow(2).mean().sqrt()), float(update.pow(2).mean().sqrt())
    trust = 1.0 if r1 == 0 or r2 == 0 else min(r1 / r2, 10.0)
    p.data.add_(update, alpha=-lr * trust)


lamb_step.defaults = {"eps": 1e-5}
