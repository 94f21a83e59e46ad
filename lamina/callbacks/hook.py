"""Hooks: read a model's activations (or their gradients) as it runs, and callbacks built on them.

* `Hook` / `hook_output`: one module; the result of ``hook_func(module, input, output)`` lands in
  ``hook.stored`` after each forward pass (backward pass with ``is_forward=False`` / ``grad=True``, where
  ``input`` and ``output`` are the gradients).
* `Hooks` / `hook_outputs`: several modules; ``hooks.stored`` is the list of their results.
* `HookCallback`: hooks registered for a fit; `ActivationStats` records mean, std and the share of
  near-zero activations of every layer, batch by batch (chapter 13's training diagnostics).
* `model_sizes`, `num_features_model`, `dummy_eval`: shapes found by a dummy forward pass.

Used as context managers, hooks are removed when the block ends, an error included.

Example:
    >>> with hook_output(learn.model[0]) as hook:        # the body of a vision learner
    ...     preds = learn.model.eval()(xb)
    >>> hook.stored.shape                               # (bs, 512, 7, 7) for a resnet34 body at 224 px
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..foundation import L
from ..models.bodies import dummy_eval, num_features_model
from .core import Callback

__all__ = ["Hook", "hook_output", "Hooks", "hook_outputs", "dummy_eval", "model_sizes", "num_features_model",
           "has_params", "HookCallback", "ActivationStats"]


def _detach(o: Any, cpu: bool) -> Any:
    """Tensors in a nested tuple/list detached (and moved to the CPU when ``cpu``); None and others kept."""
    if isinstance(o, torch.Tensor):
        o = o.detach()
        return o.cpu() if cpu else o
    if isinstance(o, (list, tuple)):
        return type(o)(_detach(x, cpu) for x in o)
    return o


class Hook:
    """Register ``hook_func`` on module ``m``; its last result is ``self.stored``.

    Args:
        m: the module.
        hook_func: called as ``hook_func(module, input, output)`` after each forward pass of ``m`` (or,
            with ``is_forward=False``, as ``hook_func(module, grad_input, grad_output)`` in the backward pass).
        is_forward: a forward hook (else a full backward hook).
        detach: detach ``input`` and ``output`` first (no graph is kept alive by what is stored).
        cpu: also move them to the CPU.

    A backward hook cannot sit on a module whose output a later operation modifies in place (an
    ``nn.ReLU(inplace=True)`` right after it): PyTorch refuses that, so hook the in-place layer instead.
    """

    def __init__(self, m: nn.Module, hook_func: Callable, is_forward: bool = True, detach: bool = True,
                 cpu: bool = False):
        if not isinstance(m, nn.Module):
            raise TypeError(f"Hook needs an nn.Module to hook; received: m={m!r}")
        self.hook_func, self.detach, self.cpu = hook_func, detach, cpu
        register = m.register_forward_hook if is_forward else m.register_full_backward_hook
        self.hook = register(self.hook_fn)
        self.stored: Any = None
        self.removed = False

    def hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        """Apply ``hook_func`` (to detached copies when ``detach``) and keep the result in ``stored``."""
        if self.detach:
            input, output = _detach(input, self.cpu), _detach(output, self.cpu)
        self.stored = self.hook_func(module, input, output)

    def remove(self) -> None:
        """Remove the hook from the model (again: nothing happens)."""
        if not self.removed:
            self.hook.remove()
            self.removed = True

    def __enter__(self) -> "Hook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _hook_inner(m: nn.Module, i: Any, o: Any) -> Any:
    return o if isinstance(o, (torch.Tensor, list, tuple)) else list(o)


def hook_output(module: nn.Module, detach: bool = True, cpu: bool = False, grad: bool = False) -> Hook:
    """A `Hook` storing the output of ``module`` (with ``grad``: the gradients of its outputs, a tuple).

    Example:
        >>> with hook_output(model[0], grad=True) as hook_g:
        ...     model(x)[0, cls].backward()
        >>> grads = hook_g.stored[0]
    """
    return Hook(module, _hook_inner, is_forward=not grad, detach=detach, cpu=cpu)


class Hooks:
    """A `Hook` with ``hook_func`` on each module of ``ms``; indexable and iterable; a context manager.

    Args:
        ms: the modules.
        hook_func, is_forward, detach, cpu: as in `Hook`.
    """

    def __init__(self, ms: Iterable[nn.Module], hook_func: Callable, is_forward: bool = True, detach: bool = True,
                 cpu: bool = False):
        self.hooks: list[Hook] = []
        try:
            for m in ms:
                self.hooks.append(Hook(m, hook_func, is_forward, detach, cpu))
        except BaseException:  # a bad module halfway: leave no hook behind
            self.remove()
            raise

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    @property
    def stored(self) -> list:
        """What each hook stored, in the order of the modules."""
        return [h.stored for h in self.hooks]

    def remove(self) -> None:
        """Remove every hook from the model."""
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def hook_outputs(modules: Iterable[nn.Module], detach: bool = True, cpu: bool = False, grad: bool = False) -> Hooks:
    """`Hooks` storing the output (with ``grad``: the output gradients) of each of ``modules``."""
    return Hooks(modules, _hook_inner, is_forward=not grad, detach=detach, cpu=cpu)


def model_sizes(m: nn.Module, size: tuple[int, ...] = (64, 64)) -> list[torch.Size]:
    """The output shape of each child of ``m`` for one dummy input of spatial ``size`` (see `dummy_eval`).

    Examples:
        >>> [s[1:] for s in model_sizes(create_body(resnet18(), pretrained=False), (64, 64))][-1]
        torch.Size([512, 2, 2])
    """
    with hook_outputs(list(m.children())) as hooks:
        dummy_eval(m, size)
        return [h.stored.shape for h in hooks]


def has_params(m: nn.Module) -> bool:
    """Whether ``m`` has at least one parameter."""
    return next(iter(m.parameters()), None) is not None


def _leaves(model: nn.Module, include_paramless: bool) -> list[nn.Module]:
    """The modules without children (those with parameters only, unless ``include_paramless``)."""
    return [m for m in model.modules()
            if next(m.children(), None) is None and (include_paramless or has_params(m))]


class HookCallback(Callback):
    """A callback that puts ``self.hook`` on ``modules`` for a fit (every ``every`` training batches, or always).

    Subclass it and define ``hook(self, module, input, output)``, or pass ``hook=``; what it returns for each
    module is in ``self.hooks.stored`` at ``after_batch``.

    Args:
        modules: the modules to hook (default: every leaf module of ``learn.model`` that has parameters).
        every: hook only every ``every``-th training batch (None: every batch, validation included).
        remove_end: remove the hooks after the fit.
        is_forward, detach, cpu: as in `Hook`.
        include_paramless: the default modules include leaves without parameters (activations, pools).
        hook: the hook function, instead of overriding the method.
    """

    def __init__(self, modules: Sequence[nn.Module] | None = None, every: int | None = None,
                 remove_end: bool = True, is_forward: bool = True, detach: bool = True, cpu: bool = True,
                 include_paramless: bool = False, hook: Callable | None = None):
        super().__init__()
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"`every` must be None or a positive integer; received: every={every!r}")
        self.modules, self.every, self.remove_end = modules, every, remove_end
        self.is_forward, self.detach, self.cpu, self.include_paramless = is_forward, detach, cpu, include_paramless
        self.hooks: Hooks | None = None
        self._hooked = False  # this training batch is hooked (with `every`)
        if hook is not None:
            self.hook = hook

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:
        """What to store for module ``m`` (nothing by default)."""
        return None

    def before_fit(self) -> None:
        if self.modules is None:
            self.modules = _leaves(self.learn.model, self.include_paramless)
        if self.every is None:
            self._register()

    def before_batch(self) -> None:
        # decided here and remembered: by after_batch the training-batch counter has moved on
        learn = self.learn
        self._hooked = self.every is not None and learn.training and learn.train_iter % self.every == 0
        if self._hooked:
            self._register()

    def after_batch(self) -> None:
        if self.every is not None and self._hooked:
            self._remove()
            self._hooked = False

    def after_fit(self) -> None:
        if self.remove_end:
            self._remove()

    def cleanup(self) -> None:
        """Remove the hooks when a fit ends with an error."""
        self._remove()

    def _register(self) -> None:
        self._remove()
        self.hooks = Hooks(self.modules, self.hook, self.is_forward, self.detach, self.cpu)

    def _remove(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()


class ActivationStats(HookCallback):
    """Record, for each hooked layer and training batch, the mean, std and share of activations <= 0.05.

    ``self.stats[batch][layer]`` is ``{'mean', 'std', 'near_zero'}`` (plus ``'hist'``, a 40-bin histogram
    over [0, 10], with ``with_hist``). The statistics are computed where the activations are (``cpu=False``
    by default: only floats come back), so they cost no copy of the activations.

    Args:
        with_hist: also keep a histogram of each layer's activations (for `color_dim`).
        **kwargs: arguments of `HookCallback` (``modules``, ``every`` ...).

    Example:
        >>> learn = Learner(dls, model, cbs=ActivationStats(with_hist=True)); learn.fit(1)
        >>> learn.activation_stats.plot_layer_stats(-2); learn.activation_stats.color_dim(-2)
    """

    order = -20

    def __init__(self, with_hist: bool = False, **kwargs: Any):
        kwargs.setdefault("cpu", False)
        super().__init__(**kwargs)
        self.with_hist = with_hist
        self.stats: L = L()  # an `L` of `L`s, as fastai's: stats.itemgot(0) is the first layer's records

    def before_fit(self) -> None:
        super().before_fit()
        self.stats = L()

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:
        if isinstance(o, (tuple, list)):  # RNNs return (output, state): one record per tensor
            return [self.hook(m, i, t) for t in _flatten(o) if isinstance(t, torch.Tensor)]
        o = o.float()
        res = {"mean": o.mean().item(), "std": o.std().item(), "near_zero": (o <= 0.05).sum().item() / o.numel()}
        if self.with_hist:
            res["hist"] = o.histc(40, 0, 10).cpu()
        return res

    def after_batch(self) -> None:
        if self.learn.training and self.hooks is not None and (self.every is None or self._hooked):
            self.stats.append(L(self.hooks.stored))
        super().after_batch()

    def layer_stats(self, idx: int) -> tuple[list[float], list[float], list[float]]:
        """``(means, stds, near_zero)`` of layer ``idx``, one value per recorded batch."""
        records = [batch[idx] for batch in self.stats]
        return tuple([r[key] for r in records] for key in ("mean", "std", "near_zero"))

    def hist(self, idx: int) -> torch.Tensor:
        """The histograms of layer ``idx`` as a (40 bins, batches) tensor, ``log1p``-scaled.

        Raises:
            ValueError: when the callback was created without ``with_hist=True``.
        """
        if not self.stats or "hist" not in self.stats[0][idx]:
            raise ValueError("No histograms were recorded: create the callback with ActivationStats(with_hist=True) "
                             "and fit before calling hist() or color_dim()")
        return torch.stack([batch[idx]["hist"] for batch in self.stats]).t().float().log1p()

    def color_dim(self, idx: int, figsize: tuple = (10, 5), ax: Any = None) -> Any:
        """The "colorful dimension" plot: histograms of layer ``idx`` over the batches; returns the figure."""
        from ..figures import subplots
        if ax is None:
            ax = subplots(figsize=figsize)[1]
        ax.imshow(self.hist(idx).numpy(), origin="lower")
        ax.axis("off")
        return ax.figure

    def plot_layer_stats(self, idx: int) -> Any:
        """Plot mean, std and share near zero of layer ``idx`` over the batches; returns the figure (three axes)."""
        from ..figures import subplots
        fig, axs = subplots(1, 3, figsize=(12, 3))
        for values, ax, title in zip(self.layer_stats(idx), axs, ("mean", "std", "% near zero")):
            ax.plot(values)
            ax.set_title(title)
        return fig


def _flatten(o: Any) -> list:
    """The leaves of a nested tuple/list."""
    return [leaf for x in o for leaf in (_flatten(x) if isinstance(x, (tuple, list)) else [x])]
