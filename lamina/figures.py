"""The figures lamina's plots return: shown once in a notebook, quiet as a return value.

In Jupyter, the inline backend draws every figure a cell created when the cell ends, through IPython's
``display``. A plot function that returned a plain matplotlib `Figure` (or a list of axes) as a cell's last
value would have it shown twice (or would print ``[<Axes: ...>]`` above it). `LaminaFigure` is a `Figure` whose
notebook display draws it as a PNG and hands it back to pyplot (closes it): whichever comes first, the cell's
value or the backend's end-of-cell drawing, shows it, and the other finds nothing left to show. ``fig`` typed
again in a later cell shows it once more. Interactive backends (a window, ``%matplotlib widget``) show it
themselves, so there its display does nothing. Elsewhere it is an ordinary figure: ``fig.savefig(...)``,
``fig.axes``, ``plt.show()``.

This module imports matplotlib at its top; lamina imports it only inside the functions that draw, so that
``import lamina`` stays fast.

Example:
    >>> fig = learn.show_results(max_n=4)      # shown once; nothing printed
    >>> fig.savefig('results.png')
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["LaminaFigure", "new_figure", "subplots"]


class LaminaFigure(Figure):
    """A matplotlib figure that a notebook shows once (see the module docstring)."""

    def _ipython_display_(self) -> None:
        held = self.held_by_pyplot()
        if held and "inline" not in matplotlib.get_backend():
            return  # an interactive backend shows it in its own window or widget
        from IPython.display import Image, display
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        display(Image(data=buffer.getvalue(), format="png"))
        if held:
            plt.close(self)  # shown: the backend's drawing at the end of the cell must not show it again

    def held_by_pyplot(self) -> bool:
        """True while pyplot manages this figure (it has not been closed)."""
        return any(manager.canvas.figure is self for manager in plt._pylab_helpers.Gcf.get_all_fig_managers())


def new_figure(**fig_kwargs: Any) -> LaminaFigure:
    """A new pyplot figure of class `LaminaFigure` (``fig_kwargs``: ``figsize``, ``dpi`` ...)."""
    return plt.figure(FigureClass=LaminaFigure, **fig_kwargs)


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[LaminaFigure, Any]:
    """`plt.subplots` making a `LaminaFigure`."""
    return plt.subplots(nrows, ncols, FigureClass=LaminaFigure, **kwargs)
