"""Optimizers: `torch.optim` seen through the splitter's param groups, with fastai's hyper-parameter names.

`OptimWrapper` holds one *logical* group per entry of the splitter (body, head, ...). Each
logical group becomes one or two torch param groups: parameters that take weight decay and, apart,
norm and bias parameters that never do (unless ``wd_bn_bias``). Schedules and `fit_*` talk to the
wrapper in fastai's names (``lr``, ``mom``, ``sqr_mom``, ``wd``, ``eps``), one value per logical group.

Example:
    >>> opt = Adam([list(body.parameters()), list(head.parameters())], lr=1e-3)
    >>> opt.set_hyper("lr", [1e-4, 1e-3]); opt.freeze_to(1)   # body frozen, head trains
"""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .compiled import plain_model
from .optim_fused import DirectOptimizer, FusedAdam, FusedSGD, fused_kernels_available, lay_out_state_like_params

__all__ = ["OptimWrapper", "OptimizerMixin", "FusedAdam", "FusedSGD", "Adam", "SGD", "RAdam", "RMSProp", "norm_bias_params",
           "params_of", "trainable_params", "NORM_TYPES"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
HYPERS = ("lr", "mom", "sqr_mom", "wd", "eps")


def params_of(obj: nn.Module | Iterable) -> list[nn.Parameter]:
    """The parameters of a module, or a list of parameters/modules flattened to parameters."""
    if isinstance(obj, nn.Module):
        return list(obj.parameters())
    out = []
    for o in obj:
        out.extend(o.parameters() if isinstance(o, nn.Module) else [o])
    return out


def trainable_params(model: nn.Module) -> list[list[nn.Parameter]]:
    """The default splitter: one group holding every parameter that requires a gradient."""
    return [[p for p in model.parameters() if p.requires_grad]]


def norm_bias_params(model: nn.Module, with_bias: bool = True) -> list[nn.Parameter]:
    """Parameters of normalisation layers, and (if ``with_bias``) every bias."""
    found: dict[int, nn.Parameter] = {}
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            found.update((id(p), p) for p in m.parameters(recurse=False))
        elif with_bias and getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
            found[id(m.bias)] = m.bias
    return list(found.values())


def _torch_keys(group: dict) -> dict[str, tuple[str, int | None]]:
    """Where each fastai hyper lives in a torch param group: (key, index into a tuple or None)."""
    keys = {"lr": ("lr", None), "wd": ("weight_decay", None), "eps": ("eps", None)}
    if "betas" in group:
        keys.update(mom=("betas", 0), sqr_mom=("betas", 1))
    else:
        if "momentum" in group:
            keys["mom"] = ("momentum", None)
        if "alpha" in group:
            keys["sqr_mom"] = ("alpha", None)
    return {k: v for k, v in keys.items() if v[0] in group}


class OptimWrapper:
    """A torch optimizer driven per logical param group with fastai's hyper names.

    Args:
        params: a list of parameter lists (one per logical group), or a flat list/iterator of parameters.
        opt: the torch optimizer class, e.g. ``torch.optim.AdamW``.
        no_wd: parameters that never take weight decay (norm layers and biases by default in a Learner).
        force_train: parameters that stay trainable when their group is frozen (norm layers when ``train_bn``).
        manual_wd: apply decoupled weight decay here (``p *= 1 - lr*wd`` before the step, exactly as AdamW
            does) with the torch optimizer's own ``weight_decay`` at 0. Each logical group is then one torch
            group (one fused kernel call per group); otherwise decayed and non-decayed parameters are two
            torch groups and ``weight_decay`` is the optimizer's (an L2 penalty for SGD/Adam/RMSprop; decoupled
            for AdamW and for `FusedAdam` with ``decoupled_weight_decay``).
        **kwargs: the torch optimizer's arguments (``lr``, ``betas``, ``momentum``, ``weight_decay``, ...).
    """

    def __init__(self, params: Iterable, opt: type[torch.optim.Optimizer] = torch.optim.AdamW,
                 no_wd: Iterable[nn.Parameter] = (), force_train: Iterable[nn.Parameter] = (),
                 manual_wd: bool = False, **kwargs: Any):
        params = list(params)
        groups = params if params and isinstance(params[0], (list, tuple)) else [params]
        self.param_lists = [params_of(g) for g in groups]
        self.no_wd = {id(p) for p in no_wd}
        self.force_train = {id(p) for p in force_train}
        self.manual_wd = manual_wd
        self.opt_cls = opt
        self._unscaled_by: Any = None  # the grad scaler that has unscaled this step's gradients
        # with manual decay, the parameters to decay per logical group (the rest: norm layers, biases)
        self.decayed = [[p for p in plist if id(p) not in self.no_wd] for plist in self.param_lists]
        torch_groups = []
        for i, plist in enumerate(self.param_lists):
            if manual_wd:
                if plist:
                    torch_groups.append({"params": plist, "group": i, "do_wd": True})
                continue
            for do_wd in (True, False):
                ps = [p for p in plist if (id(p) not in self.no_wd) == do_wd]
                if ps:
                    torch_groups.append({"params": ps, "group": i, "do_wd": do_wd})
        if not torch_groups:
            raise ValueError("The optimizer got no parameters: the model (or the splitter's groups) is empty")
        self.opt = opt(torch_groups, **kwargs)
        # where each hyper lives in each torch group does not change: found once
        self._keys = [_torch_keys(g) for g in self.opt.param_groups]
        keys = _torch_keys(self.opt.param_groups[0])
        wd = kwargs.get("weight_decay", 0.0)
        base = {name: self._read(self.opt.param_groups[0], key) for name, key in keys.items()}
        base["wd"] = wd
        self.hypers = [dict(base) for _ in self.param_lists]
        for i in range(len(self.param_lists)):
            self._apply(i)

    # --- hyper-parameters -------------------------------------------------------------------
    @staticmethod
    def _read(group: dict, key: tuple[str, int | None]) -> float:
        value = group[key[0]]
        return float(value[key[1]] if key[1] is not None else value)

    def _apply(self, i: int, names: Sequence[str] | None = None) -> None:
        """Write logical group ``i``'s hypers (all, or only ``names``) into its torch groups."""
        hypers = self.hypers[i]
        for group, keys in zip(self.opt.param_groups, self._keys):
            if group["group"] != i:
                continue
            for name in keys if names is None else names:
                value = hypers.get(name)
                if value is None or name not in keys:
                    continue
                key, idx = keys[name]
                if name == "wd":  # norm/bias groups never decay; manual decay is done in `step`
                    value = value if group["do_wd"] and not self.manual_wd else 0.0
                if idx is None:
                    group[key] = value
                else:
                    as_list = list(group[key])
                    as_list[idx] = value
                    group[key] = tuple(as_list)

    def set_hyper(self, name: str, value: float | Sequence[float]) -> None:
        """Set hyper ``name`` to one value for all groups, or a list with one value per group.

        Raises:
            ValueError: for an unknown hyper or a list whose length is not the number of groups.
        """
        if name not in HYPERS:
            raise ValueError(f"`name` must be one of {HYPERS}; received: name={name!r}")
        values = list(value) if isinstance(value, (list, tuple)) else [value] * len(self.hypers)
        if len(values) != len(self.hypers):
            raise ValueError(f"{name} needs one value per param group ({len(self.hypers)} groups); "
                             f"received {len(values)} values: {values}")
        for i, v in enumerate(values):
            self.hypers[i][name] = float(v)
            self._apply(i, (name,))

    def set_hypers(self, **kwargs: float | Sequence[float]) -> None:
        """`set_hyper` for several names at once."""
        for name, value in kwargs.items():
            self.set_hyper(name, value)

    @property
    def param_groups(self) -> list[dict]:
        """The torch optimizer's param groups (two per logical group when some params skip weight decay)."""
        return self.opt.param_groups

    # --- freezing -----------------------------------------------------------------------------
    def freeze_to(self, n: int) -> None:
        """Freeze the logical groups before ``n`` (``force_train`` params excepted); unfreeze the rest."""
        n_groups = len(self.param_lists)
        start = n if n >= 0 else n_groups + n
        for i, plist in enumerate(self.param_lists):
            for p in plist:
                p.requires_grad_(i >= start or id(p) in self.force_train)

    def freeze(self) -> None:
        """Freeze every group but the last."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Make every group trainable."""
        self.freeze_to(0)

    # --- stepping and state -------------------------------------------------------------------
    @torch.no_grad()
    def step(self, scaler: Any = None) -> None:
        """One optimizer step (with decoupled decay first when ``manual_wd``), through ``scaler`` if given.

        With an enabled ``scaler`` (fp16), the gradients are unscaled first; when they hold inf/NaN the scaler
        skips the step, and the decay is skipped with it (the weights stay exactly as they were).
        """
        if scaler is not None and scaler.is_enabled():
            self.unscale_grads(scaler)
            self._unscaled_by = None  # the next step's gradients come scaled again
            if any(found.item() for found in scaler._found_inf_per_device(self.opt).values()):
                scaler.step(self.opt)  # records the skipped step for scaler.update()
                return
        if self.manual_wd:
            for hypers, decayed in zip(self.hypers, self.decayed):
                if hypers["wd"]:
                    with_grad = [p for p in decayed if p.grad is not None]
                    if with_grad:
                        torch._foreach_mul_(with_grad, 1 - hypers["lr"] * hypers["wd"])
        if scaler is not None:
            scaler.step(self.opt)
        elif isinstance(self.opt, DirectOptimizer) and not self.opt.has_step_hooks():
            self.opt.update()
        else:
            self.opt.step()

    def unscale_grads(self, scaler: Any) -> None:
        """Divide the gradients by ``scaler``'s loss scale (fp16), once per step: a callback that clips or
        reads the gradients before the step needs their true values. `step` then does not unscale again
        (torch refuses a second ``unscale_`` before the scaler's ``update``). A disabled scaler does nothing.
        """
        if scaler.is_enabled() and self._unscaled_by is not scaler:
            scaler.unscale_(self.opt)
            self._unscaled_by = scaler

    def zero_grad(self) -> None:
        """Drop the gradients (set to None: cheaper than zeroing, and no trip through torch's wrapper)."""
        self._unscaled_by = None
        for group in self.opt.param_groups:
            for p in group["params"]:
                p.grad = None

    def clear_state(self) -> None:
        """Forget the running averages (done after freezing or unfreezing, as fastai does)."""
        self.opt.state = defaultdict(dict)

    def match_layouts(self) -> None:
        """Lay the state out like the parameters after their memory format changed (`lay_out_state_like_params`):
        torch's fused kernels pair elements by their place in memory."""
        lay_out_state_like_params(self.opt)

    def state_dict(self) -> dict:
        """The torch optimizer's state plus the per-group hypers."""
        return {"opt": self.opt.state_dict(), "hypers": [dict(h) for h in self.hypers]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` (its moments take their parameters' memory layout)."""
        self.opt.load_state_dict(state["opt"])
        self.match_layouts()
        self.hypers = [dict(h) for h in state["hypers"]]
        for i in range(len(self.hypers)):
            self._apply(i)

    def __repr__(self) -> str:
        return f"OptimWrapper({self.opt_cls.__name__}, {len(self.param_lists)} groups, hypers={self.hypers[0]})"


def Adam(params: Iterable, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
         wd: float = 0.01, decouple_wd: bool = True, **kwargs: Any) -> OptimWrapper:
    """Adam with fastai's defaults: decoupled weight decay 0.01 (AdamW), betas (0.9, 0.99), eps 1e-5.

    ``decouple_wd=False`` gives Adam with an L2 penalty. ``kwargs`` go to `OptimWrapper` (``no_wd``,
    ``force_train``) and torch. By default the step is `FusedAdam` (torch's fused kernel, about 2.5x
    faster than the per-tensor step on CPU for the same arithmetic, without torch's per-parameter
    bookkeeping); ``fused=False`` or another torch Adam argument (``amsgrad``, ``foreach`` ...) uses
    ``torch.optim.Adam`` itself. A torch without the fused kernels gets ``torch.optim.AdamW`` (or ``Adam``
    with ``decouple_wd=False``), the same arithmetic, with a warning.
    """
    torch_kwargs = {k: v for k, v in kwargs.items() if k not in ("no_wd", "force_train", "fused")}
    if kwargs.get("fused", True) and not torch_kwargs:
        kwargs.pop("fused", None)
        if not fused_kernels_available():
            warnings.warn(f"torch {torch.__version__} lacks the fused Adam kernels FusedAdam calls: lamina's Adam "
                          "uses torch.optim.AdamW/Adam instead (same results, slower steps on small models)")
            opt = torch.optim.AdamW if decouple_wd else torch.optim.Adam  # both decay norm/bias groups by 0
            return OptimWrapper(params, opt, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd, **kwargs)
        # the kernel decays the weights itself (decoupled): norm and bias parameters go in groups with wd 0
        return OptimWrapper(params, FusedAdam, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd,
                            decoupled_weight_decay=decouple_wd, **kwargs)
    kwargs.setdefault("fused", True)
    return OptimWrapper(params, torch.optim.Adam, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd,
                        manual_wd=decouple_wd, **kwargs)


def SGD(params: Iterable, lr: float = 1e-3, mom: float = 0.0, wd: float = 0.0, decouple_wd: bool = True,
        **kwargs: Any) -> OptimWrapper:
    """SGD (with momentum ``mom``); decoupled weight decay unless ``decouple_wd=False`` (L2).

    The step is `FusedSGD` (torch's SGD arithmetic through foreach kernels, without the ``torch._dynamo``
    import a first ``torch.optim.SGD`` costs); a torch SGD argument (``foreach``, ``fused``, ``maximize`` ...)
    uses ``torch.optim.SGD`` itself.
    """
    torch_kwargs = {k: v for k, v in kwargs.items() if k not in ("no_wd", "force_train", "dampening", "nesterov")}
    opt = torch.optim.SGD if torch_kwargs else FusedSGD
    return OptimWrapper(params, opt, lr=lr, momentum=mom, weight_decay=wd,
                        manual_wd=decouple_wd, **kwargs)


def RMSProp(params: Iterable, lr: float = 1e-3, mom: float = 0.0, sqr_mom: float = 0.99, eps: float = 1e-8,
            wd: float = 0.0, decouple_wd: bool = True, **kwargs: Any) -> OptimWrapper:
    """RMSProp; decoupled weight decay unless ``decouple_wd=False`` (L2)."""
    return OptimWrapper(params, torch.optim.RMSprop, lr=lr, momentum=mom, alpha=sqr_mom, eps=eps,
                        weight_decay=wd, manual_wd=decouple_wd, **kwargs)


def RAdam(params: Iterable, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
          wd: float = 0.0, beta: float = 0.0, decouple_wd: bool = True, **kwargs: Any) -> OptimWrapper:
    """Rectified Adam (torch's implementation); ``beta`` is accepted for compatibility and must be 0."""
    if beta:
        raise ValueError(f"`beta` (fastai's RAdam smoothing) is not supported; received: beta={beta}. Use beta=0.")
    return OptimWrapper(params, torch.optim.RAdam, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd,
                        manual_wd=decouple_wd, **kwargs)


class OptimizerMixin:
    """The Learner's optimizer: built over the splitter's groups, frozen and unfrozen by group, lrs per group."""

    def param_groups(self) -> list[list[nn.Parameter]]:
        """The splitter's groups as lists of parameters."""
        return [params_of(g) for g in self.splitter(plain_model(self.model))]

    def create_opt(self) -> None:
        """Build the optimizer over the splitter's groups (norm/bias params kept out of weight decay).

        ``opt_func`` is a lamina optimizer factory (`Adam`, `SGD` ...); a ``torch.optim`` class works too,
        wrapped in `OptimWrapper` (its own defaults then apply, e.g. AdamW's weight decay 0.01).
        """
        no_wd = [] if self.wd_bn_bias else norm_bias_params(self.model)
        force_train = norm_bias_params(self.model, with_bias=False) if self.train_bn else []
        opt_func = self.opt_func
        if isinstance(opt_func, type) and issubclass(opt_func, torch.optim.Optimizer):
            opt_func = functools.partial(OptimWrapper, opt=opt_func)
        self.opt = opt_func(self.param_groups(), lr=self.lr, no_wd=no_wd, force_train=force_train)

    def freeze_to(self, n: int) -> None:
        """Freeze the param groups before ``n`` (norm layers stay trainable when ``train_bn``)."""
        if self.opt is None:
            self.create_opt()
        n_groups = len(self.opt.param_lists)
        if n >= n_groups:
            warnings.warn(f"freeze_to({n}) freezes all {n_groups} param groups: nothing will train")
        self.opt.freeze_to(n)
        self.opt.clear_state()

    def freeze(self) -> None:
        """Train only the last param group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every param group."""
        self.freeze_to(0)

    def lr_per_group(self, lr: float | slice | list) -> list[float]:
        """One learning rate per param group: ``slice(a, b)`` spaced geometrically, ``slice(b)`` = b/10 then b."""
        n = len(self.opt.param_lists) if self.opt is not None else len(self.param_groups())
        if isinstance(lr, slice):
            if lr.start is None:
                return [lr.stop / 10] * (n - 1) + [lr.stop]
            if n == 1:
                return [lr.stop]
            step = (lr.stop / lr.start) ** (1 / (n - 1))
            return [lr.start * step ** i for i in range(n)]
        if isinstance(lr, (list, tuple)):
            if len(lr) != n:
                raise ValueError(f"`lr` needs one value per param group ({n}); received {len(lr)}: {list(lr)}")
            return [float(v) for v in lr]
        return [float(lr)] * n
