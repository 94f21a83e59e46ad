"""The activations a model can be rebuilt with from JSON: one registry for the tabular and collab models.

An activation is described by its class name and the constructor arguments it was built with, so an
exported model comes back with the same activation, settings included (``LeakyReLU(0.5)`` stays
``LeakyReLU(0.5)``). An activation that cannot be described that way is refused with its name, never
replaced by another.

Example:
    >>> spec = activation_config(nn.LeakyReLU(0.5))
    >>> spec
    {'name': 'LeakyReLU', 'kwargs': {'negative_slope': 0.5, 'inplace': False}}
    >>> make_activation(spec)
    LeakyReLU(negative_slope=0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["ACTIVATIONS", "make_activation", "activation_config"]

# Class name -> (class, the constructor arguments read back from an instance's attributes of the same name).
ACTIVATIONS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "ReLU": (nn.ReLU, ("inplace",)), "ReLU6": (nn.ReLU6, ("inplace",)),
    "LeakyReLU": (nn.LeakyReLU, ("negative_slope", "inplace")), "GELU": (nn.GELU, ("approximate",)),
    "SiLU": (nn.SiLU, ("inplace",)), "Mish": (nn.Mish, ("inplace",)), "ELU": (nn.ELU, ("alpha", "inplace")),
    "CELU": (nn.CELU, ("alpha", "inplace")), "SELU": (nn.SELU, ("inplace",)), "Tanh": (nn.Tanh, ()),
    "Sigmoid": (nn.Sigmoid, ()), "Softplus": (nn.Softplus, ("beta", "threshold")),
    "Hardswish": (nn.Hardswish, ("inplace",)), "Hardsigmoid": (nn.Hardsigmoid, ("inplace",)),
}


def _known(name: Any, what: str) -> tuple[type[nn.Module], tuple[str, ...]]:
    if name not in ACTIVATIONS:
        raise ValueError(f"`act_cls` {what} must name one of the activations {sorted(ACTIVATIONS)}; received {name!r}. "
                         "Pass an nn.Module instance instead (a model with it trains, but cannot be exported)")
    return ACTIVATIONS[name]


def make_activation(act: nn.Module | type | str | Mapping[str, Any] | None) -> nn.Module:
    """The activation module described by ``act``.

    Args:
        act: a module (returned as is); a registered class or its name (built as fastai's default,
            ``inplace=True`` where the class has it); ``{'name': ..., 'kwargs': {...}}`` from
            `activation_config`; or None for ``nn.ReLU(inplace=True)``.

    Raises:
        ValueError: for a name or class that is not in `ACTIVATIONS`.
    """
    if isinstance(act, nn.Module):
        return act
    if act is None:
        act = "ReLU"
    if isinstance(act, Mapping):
        cls, _ = _known(act.get("name"), "description")
        return cls(**dict(act.get("kwargs") or {}))
    if isinstance(act, type):
        act = act.__name__ if ACTIVATIONS.get(act.__name__, (None,))[0] is act else repr(act)
    cls, args = _known(act, "name")
    return cls(inplace=True) if "inplace" in args else cls()


def activation_config(act: nn.Module | type | str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON description ``{'name': ..., 'kwargs': {...}}`` that `make_activation` rebuilds exactly.

    Raises:
        ValueError: naming the activation when it is not one of `ACTIVATIONS` (a custom module, a subclass),
            since rebuilding it as something else would change the model.
    """
    module = make_activation(act)
    name = type(module).__name__
    if ACTIVATIONS.get(name, (None,))[0] is not type(module):
        raise ValueError(f"The activation {module!r} ({type(module).__module__}.{type(module).__qualname__}) cannot be "
                         f"described for export: lamina rebuilds only {sorted(ACTIVATIONS)} from a file. Use one of "
                         "those, or save the weights with learn.save() and rebuild the model in code")
    return {"name": name, "kwargs": {arg: getattr(module, arg) for arg in ACTIVATIONS[name][1]}}
