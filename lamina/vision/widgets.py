"""Notebook widgets for images (ipywidgets, the ``widgets`` extra): `ImageClassifierCleaner` and its parts.

`ImageClassifierCleaner` shows, for the chosen data set (Train / Valid) and category, the images with the
highest losses first, each with a dropdown: ``<Keep>``, ``<Delete>`` or another category. The widget only
records choices; your code acts on them:

Example:
    >>> cleaner = ImageClassifierCleaner(learn)
    >>> cleaner                                   # pick in the notebook, then:
    >>> for idx in cleaner.delete(): cleaner.fns[idx].unlink()
    >>> for idx, cat in cleaner.change(): shutil.move(str(cleaner.fns[idx]), path/cat)

Also exported, as fastai's module has them: ``widgets`` and the ipywidgets classes (``Button``, ``Dropdown``,
``FileUpload``, ``Output``, ``VBox`` ...) that chapter 2's classifier app uses, `widget` and `carousel`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import ipywidgets as widgets
    from ipywidgets import Box, Button, Checkbox, Dropdown, FileUpload, HBox, Label, Layout, Output, VBox
except ImportError as e:  # an optional extra: say how to get it
    raise ImportError("lamina.vision.widgets needs ipywidgets: install it with `pip install 'lamina[widgets]'` "
                      "(or `pip install ipywidgets`)") from e
from PIL import Image

__all__ = ["widgets", "Box", "Button", "Checkbox", "Dropdown", "FileUpload", "HBox", "Label", "Layout", "Output",
           "VBox", "widget", "carousel", "ImagesCleaner", "ImageClassifierCleaner"]

KEEP, DELETE = "<Keep>", "<Delete>"


def _display(obj: Any) -> None:
    from IPython.display import display  # ipywidgets depends on IPython
    display(obj)


def widget(im: Any, **layout: Any) -> widgets.Widget:
    """A widget showing ``im``: an ``Image`` widget (PNG) for a PIL image, else an ``Output`` that displays it."""
    if isinstance(im, Image.Image):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return widgets.Image(value=buf.getvalue(), format="png", layout=layout)
    out = Output(layout=layout)
    with out:
        _display(im)
    return out


def carousel(children: Sequence[widgets.Widget] = (), **layout: Any) -> Box:
    """A horizontally scrolling row of ``children`` (each keeps its natural width)."""
    box = Box([], layout={"overflow": "scroll hidden", "flex_flow": "row", "display": "flex", **layout})
    _set_children(box, children)
    return box


def _set_children(box: Box, children: Sequence[widgets.Widget]) -> None:
    for child in children:
        child.layout.flex = "0 0 auto"
    box.children = tuple(children)


def _thumbnail(fn: Path, height: int, width: int) -> Image.Image:
    with Image.open(fn) as im:
        im = im.copy()
    im.thumbnail((width, height))  # keeps the aspect ratio
    return im.convert("RGBA")


class ImagesCleaner:
    """A carousel of images (``fns``), each above a dropdown: ``<Keep>``, ``<Delete>`` or one of ``opts``.

    Args:
        opts: the other choices (the categories).
        height, width: the largest thumbnail size in pixels.
        max_n: show at most this many images.
    """

    def __init__(self, opts: Sequence[str] = (), height: int = 128, width: int = 256, max_n: int = 30):
        self.opts = (KEEP, DELETE, *[str(o) for o in opts])
        self.height, self.width, self.max_n = height, width, max_n
        self.widget = carousel(width="100%")
        self.fns: list[Path] = []

    def set_fns(self, fns: Sequence[str | os.PathLike]) -> None:
        """Show the first ``max_n`` of ``fns``, every dropdown at ``<Keep>``."""
        self.fns = [Path(fn) for fn in list(fns)[:self.max_n]]
        cells = [VBox([widget(_thumbnail(fn, self.height, self.width), height=f"{self.height}px"),
                       Dropdown(options=self.opts, layout={"width": "max-content"})]) for fn in self.fns]
        _set_children(self.widget, cells)

    def values(self) -> list[str]:
        """The choice of each shown image, in order."""
        return [cell.children[1].value for cell in self.widget.children]

    def delete(self) -> list[int]:
        """Indices (into ``fns``) of the images marked ``<Delete>``."""
        return [i for i, v in enumerate(self.values()) if v == DELETE]

    def change(self) -> list[tuple[int, str]]:
        """``(index into fns, new category)`` of the images given another category."""
        return [(i, v) for i, v in enumerate(self.values()) if v not in (KEEP, DELETE)]

    def _ipython_display_(self) -> None:
        _display(self.widget)


def _item_paths(dataset: Any) -> list[Path]:
    """The file of each item of a lamina image dataset split, in loader order.

    Raises:
        TypeError: when the items are not file paths (the cleaner moves and deletes files).
    """
    all_items, idxs = getattr(dataset, "items", None), getattr(dataset, "idxs", None)
    items = [all_items[i] for i in idxs] if all_items is not None and idxs is not None else [dataset]
    bad = next((item for item in items if not isinstance(item, (str, os.PathLike))), None)
    if bad is not None:
        raise TypeError(f"ImageClassifierCleaner needs data whose items are image files (it shows, deletes and moves "
                        f"them); received items of type {type(bad).__name__}. Build the data from file names, e.g. "
                        "ImageDataLoaders.from_folder / from_name_func / from_path_func")
    return [Path(item) for item in items]


def _top_loss_info(learn: Any, ds_idx: int) -> list[tuple[Path, str, float]]:
    """``(file, label, loss)`` of every item of data set ``ds_idx`` (0 train, 1 valid)."""
    dl = learn.dls[ds_idx].new(shuffle=False, drop_last=False)
    with learn.no_bar():
        _, targs, losses = learn.get_preds(dl=dl, with_loss=True)
    vocab = list(learn.dls.vocab)
    labels = [str(vocab[int(t)]) for t in targs]
    return list(zip(_item_paths(getattr(dl, "dataset", None)), labels, losses.tolist()))


class ImageClassifierCleaner:
    """Review a classifier's data set by category, highest losses first; mark images to delete or relabel.

    Args:
        learn: a trained image classification `Learner` whose data comes from image files.
        **kwargs: arguments of `ImagesCleaner` (``height``, ``width``, ``max_n``).

    Attributes:
        dd_cats, dd_ds: the category and data set (``'Train'``/``'Valid'``) dropdowns.
        iw: the `ImagesCleaner` showing the current selection; ``fns``, ``values``, ``delete`` and
            ``change`` are its own.
        widget: the whole widget (what a notebook shows).

    Raises:
        ValueError: when the data has no vocabulary (not a single-label classification).
    """

    def __init__(self, learn: Any, **kwargs: Any):
        vocab = getattr(learn.dls, "vocab", None)
        if not vocab:
            raise ValueError("ImageClassifierCleaner needs a classifier whose data has a vocabulary (learn.dls.vocab); "
                             "build the data with a CategoryBlock or an ImageDataLoaders factory")
        vocab = [str(v) for v in vocab]
        self.iw = ImagesCleaner(vocab, **kwargs)
        self.dd_cats = Dropdown(options=vocab)
        self.dd_ds = Dropdown(options=("Train", "Valid"))
        self.iwis = (_top_loss_info(learn, 0), _top_loss_info(learn, 1))
        self.dd_ds.observe(self.on_change_ds, "value")
        self.dd_cats.observe(self.on_change_ds, "value")
        self.on_change_ds()
        self.widget = VBox([self.dd_cats, self.dd_ds, self.iw.widget])

    def on_change_ds(self, change: Any = None) -> None:
        """Show the chosen data set's images of the chosen category, highest loss first."""
        info = [o for o in self.iwis[self.dd_ds.index] if o[1] == self.dd_cats.value]
        self.iw.set_fns([fn for fn, _, _ in sorted(info, key=lambda o: o[2], reverse=True)])

    @property
    def fns(self) -> list[Path]:
        """The files shown now, in order (``delete`` and ``change`` index into it)."""
        return self.iw.fns

    def values(self) -> list[str]:
        """The choice of each shown image."""
        return self.iw.values()

    def delete(self) -> list[int]:
        """Indices (into ``fns``) of the shown images marked ``<Delete>``."""
        return self.iw.delete()

    def change(self) -> list[tuple[int, str]]:
        """``(index into fns, new category)`` of the shown images given another category."""
        return self.iw.change()

    def _ipython_display_(self) -> None:
        _display(self.widget)
