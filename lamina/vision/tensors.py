"""fastai's typed image tensors: `TensorImage`, `TensorImageBW`, `TensorMask`, `TensorPoint`, each able to show itself.

They are light subclasses of `lamina.torch_core.TensorBase` (operations keep the subclass), for the code users write
(``TensorImage(x).show()``, a ``Transform`` whose ``encodes`` is annotated ``x: TensorImage``). lamina's loaders yield
plain tensors and say what each batch member is in ``dls.kinds`` (see `lamina.torch_core`).

Example:
    >>> img = TensorImage(torch.rand(3, 16, 16)); ax = img.show(title="noise")
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from ..torch_core import TensorBase
from .points import TensorPoint  # the pipeline's point type (item stage), shown by `show_points`
from .show import show_image

__all__ = ["TensorImageBase", "TensorImage", "TensorImageBW", "TensorMask", "TensorPoint"]


class TensorImageBase(TensorBase):
    """An image as a tensor (CxHxW, or a batch of them)."""

    kind = "image"  # what it is to batch transforms (a mid-level `TfmdLists` reads it)

    _show_kwargs: MappingProxyType = MappingProxyType({})

    def show(self, ctx: Any = None, **kwargs: Any) -> Any:
        """Draw on the matplotlib axis ``ctx`` (a new figure if None); see `show_image`. Returns the axis."""
        return show_image(self.as_subclass(TensorBase), ctx=ctx, **{**self._show_kwargs, **kwargs})


class TensorImage(TensorImageBase):
    """An RGB image tensor."""


class TensorImageBW(TensorImage):
    """A grayscale image tensor."""

    _show_kwargs = MappingProxyType({"cmap": "gray"})


class TensorMask(TensorImageBase):
    """A segmentation mask tensor (HxW class indices)."""

    kind = "mask"

    _show_kwargs = MappingProxyType({"alpha": 0.5, "cmap": "tab20"})
