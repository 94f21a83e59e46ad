"""lamina: a layered deep-learning library on PyTorch.

Import the surface for your task: ``from lamina.vision.all import *``,
``from lamina.tabular.all import *``, ``from lamina.collab import *`` or ``from lamina.basics import *``.
"""

__version__ = "0.1.0"
