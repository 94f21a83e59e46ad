"""LaminaFigure: a notebook shows a returned figure once (the backend draws it, its value displays nothing)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lamina.figures import LaminaFigure, figure_of, new_figure, subplots  # noqa: E402


def test_value_display_is_silent_while_pyplot_holds_the_figure(monkeypatch):
    pytest.importorskip("IPython", reason="IPython is not installed")
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append(a))
    fig, ax = subplots()
    ax.plot([0, 1])
    assert isinstance(fig, LaminaFigure) and fig.held_by_pyplot()
    fig._ipython_display_()
    assert shown == []  # the inline backend draws it when the cell ends; the value adds nothing
    plt.close(fig)
    fig._ipython_display_()  # typed again in a later cell: shown as a PNG
    (image,), = shown
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_new_figure_and_figure_of():
    fig = new_figure(figsize=(2, 3))
    assert isinstance(fig, LaminaFigure) and tuple(fig.get_size_inches()) == (2, 3)
    _, ax = plt.subplots()
    assert figure_of(ax) is ax.figure and not isinstance(ax.figure, LaminaFigure)
    plt.close("all")
