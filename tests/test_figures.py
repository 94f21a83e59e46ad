"""LaminaFigure: a notebook shows a returned figure once (the backend draws it, its value displays nothing)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from lamina.figures import LaminaFigure, new_figure, subplots


def shown_by_display(monkeypatch) -> list:
    pytest.importorskip("IPython", reason="IPython is not installed")
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append(a))
    return shown


def test_inline_backend_shows_it_once_whoever_displays_it_first(monkeypatch):
    shown = shown_by_display(monkeypatch)
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "module://matplotlib_inline.backend_inline")
    fig, ax = subplots()
    ax.plot([0, 1])
    assert isinstance(fig, LaminaFigure) and fig.held_by_pyplot()
    fig._ipython_display_()  # the cell's value (or the backend's end-of-cell display, whichever comes first)
    (image,), = shown
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not fig.held_by_pyplot()  # so the backend's end-of-cell drawing finds nothing more to show
    fig._ipython_display_()  # typed again in a later cell: shown again
    assert len(shown) == 2


def test_interactive_backends_show_it_themselves(monkeypatch):
    shown = shown_by_display(monkeypatch)
    fig, _ = subplots()  # Agg here: not inline, so the value displays nothing while pyplot holds the figure
    fig._ipython_display_()
    assert shown == [] and fig.held_by_pyplot()
    plt.close(fig)
    fig._ipython_display_()
    assert len(shown) == 1


def test_new_figure_and_a_callers_axis():
    fig = new_figure(figsize=(2, 3))
    assert isinstance(fig, LaminaFigure) and tuple(fig.get_size_inches()) == (2, 3)
    from lamina.callbacks.schedule import plot_lr_find
    own = plot_lr_find([1e-3, 1e-2], [1.0, 0.5], skip_end=0)
    assert isinstance(own, LaminaFigure) and len(own.axes[0].lines) == 1
    _, ax = plt.subplots()  # an axis the caller passed in: the plot draws there and returns the caller's figure
    assert plot_lr_find([1e-3, 1e-2], [1.0, 0.5], skip_end=0, ax=ax) is ax.figure
    assert not isinstance(ax.figure, LaminaFigure) and len(ax.lines) == 1
    plt.close("all")
