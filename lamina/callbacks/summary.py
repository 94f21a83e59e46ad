"""``learn.summary()``: a text table of the model's layers, output shapes and parameters, then the optimizer,
the loss, what is frozen and the callbacks in use.

The table comes from one forward pass of a single training item (eval mode, no gradients, the model's modes
restored after) with a hook on every leaf module; shapes are shown with the batch size of a full batch.

Example:
    >>> print(learn.summary())
    XResNet (Input shape: 64 x 3 x 32 x 32)
    ============================================================================
    Layer (type)         Output Shape         Param #    Trainable
    ============================================================================
                         64 x 32 x 16 x 16
    Conv2d                                    864        True
    ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import as_members, to_device
from ..models.bodies import eval_mode
from .hook import Hooks

__all__ = ["PrettyString", "total_params", "layer_info", "module_summary", "learner_summary"]

_WIDTH = 76


class PrettyString(str):
    """A string shown as itself (not quoted) when it is a notebook cell's value."""

    def __repr__(self) -> str:
        return str(self)


def total_params(m: nn.Module) -> tuple[int, bool]:
    """``(number of parameters of m, whether its first parameter is trainable)``; ``(0, False)`` without any."""
    params = list(m.parameters())
    return sum(p.numel() for p in params), bool(params and params[0].requires_grad)


def _shape(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return tuple(o.shape)
    if isinstance(o, (tuple, list)):
        return [_shape(x) for x in o]
    return None


def layer_info(learn: Any, *xb: torch.Tensor) -> list[tuple[str, int | str, bool | str, Any]]:
    """``(layer type, parameters, trainable, output shape)`` of each leaf module, in the order they run,
    from one forward pass of the first item of ``xb``. Layers without parameters show ``''`` for both."""

    def track(m: nn.Module, i: Any, o: Any) -> tuple:
        own = list(m.parameters(recurse=False))
        params, trainable = (sum(p.numel() for p in own), own[0].requires_grad) if own else ("", "")
        rows.append((type(m).__name__, params, trainable, _shape(o)))

    model, rows = learn.model, []
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)  # an empty one (a shortcut) is no layer
    leaves = [m for m in model.modules() if next(m.children(), None) is None and not isinstance(m, containers)]
    p = next(iter(model.parameters()), None)
    first = to_device(tuple(x[:1] for x in xb), p.device if p is not None else "cpu")
    with Hooks(leaves, track), eval_mode(model), torch.no_grad():
        model(*first)
    return rows


def _print_shape(shape: Any, bs: int) -> str:
    if isinstance(shape, tuple):
        return " x ".join(str(s) for s in (bs, *shape[1:]))
    return str([_print_shape(s, bs) for s in shape])


def module_summary(learn: Any, *xb: torch.Tensor) -> PrettyString:
    """The layer table of ``learn.model`` for inputs ``xb`` (a batch), with the parameter totals."""
    bs = xb[0].shape[0]
    inputs = ", ".join(_print_shape(tuple(x.shape), bs) for x in xb)
    lines = [f"{type(learn.model).__name__} (Input shape: {inputs})", "=" * _WIDTH,
             f"{'Layer (type)':<20} {'Output Shape':<20} {'Param #':<10} {'Trainable':<10}", "=" * _WIDTH]
    previous = None
    for kind, params, trainable, shape in layer_info(learn, *xb):
        if shape is None:
            continue
        if shape != previous:  # a new block of the table starts where the output shape changes
            if previous is not None:
                lines.append("_" * _WIDTH)
            lines.append(f"{'':<20} {_print_shape(shape, bs)[:19]:<20}")
            previous = shape
        lines.append(f"{kind:<20} {'':<20} {params!s:<10} {trainable!s:<10}")
    n_all = sum(p.numel() for p in learn.model.parameters())
    n_train = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    lines += ["_" * _WIDTH, "", f"Total params: {n_all:,}", f"Total trainable params: {n_train:,}",
              f"Total non-trainable params: {n_all - n_train:,}", "", ""]
    return PrettyString("\n".join(line.rstrip() for line in lines))


def _frozen_groups(opt: Any) -> int:
    """How many leading param groups are frozen (norm layers kept trainable by ``train_bn`` aside)."""
    keep = getattr(opt, "force_train", set())
    n = 0
    for plist in opt.param_lists:
        if any(p.requires_grad for p in plist if id(p) not in keep):
            break
        n += 1
    return n


def learner_summary(learn: Any) -> PrettyString:
    """What ``learn.summary()`` returns: `module_summary` on a training batch, then the optimizer, the loss,
    the frozen param groups (once an optimizer exists) and the callbacks by order."""
    batch = as_members(learn.dls.train.one_batch())
    n_inp = getattr(learn.dls, "n_inp", None) or max(1, len(batch) - 1)
    res = module_summary(learn, *batch[:n_inp])
    opt_name = getattr(learn.opt_func, "__name__", None) or repr(learn.opt_func)
    res += f"Optimizer used: {opt_name}\nLoss function: {learn.loss_func!r}\n\n"
    if learn.opt is not None:
        frozen = _frozen_groups(learn.opt)
        res += "Model unfrozen\n\n" if frozen == 0 else f"Model frozen up to parameter group #{frozen}\n\n"
    res += "Callbacks:\n" + "\n".join(f"  - {cb!r}" for cb in sorted(learn.cbs, key=lambda c: c.order))
    return PrettyString(res)
