"""Showing images, batches and results with matplotlib (imported inside the functions that draw).

The layout follows the batch's kinds: classification draws each image with its label as title
(results: target / prediction, green when right, red when wrong), multi-label joins the labels,
segmentation draws each image with its mask over it in colour (results: target beside prediction).

Example:
    >>> dls.show_batch(max_n=9)                       # goes through `show_batch`
    >>> show_results(dls, batch, decoded_preds, max_n=6, figsize=(7, 8))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["show_image", "show_images", "get_grid", "show_titled_image", "show_batch", "show_results",
           "unique_batch", "mask_kwargs", "MASK_CMAP", "IMSHOW_KWARGS"]

MASK_CMAP = "tab20"
RIGHT, WRONG = "green", "red"


def _to_array(im: Any) -> np.ndarray:
    """HxW or HxWxC for imshow: floats in [0, 1] (clamped), integers as they are."""
    if isinstance(im, torch.Tensor):
        t = im.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)
        if t.ndim == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        return t.float().clamp(0, 1).numpy() if t.is_floating_point() else t.numpy()
    return np.asarray(im)


def show_image(im: Any, ax: Any = None, figsize: tuple | None = None, title: str | None = None, ctx: Any = None,
               cmap: str | None = None, title_color: str | None = None, **kwargs: Any) -> Any:
    """Draw an image (PIL image, CxHxW or HxW tensor, array) on ``ax`` (a new figure if None).

    Args:
        im: the image; float tensors are taken in [0, 1].
        ax: the matplotlib axis (``ctx`` is fastai's name for it).
        figsize: the size of a new figure.
        title: the axis title; ``title_color`` its colour.
        cmap: the colour map (grayscale images default to ``'gray'``).
        **kwargs: passed to ``imshow`` (``alpha``, ``vmin``, ``vmax`` ...).

    Returns:
        The axis.
    """
    import matplotlib.pyplot as plt
    ax = ax if ax is not None else ctx
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    array = _to_array(im)
    if cmap is None and array.ndim == 2:
        cmap = "gray"
    ax.imshow(array, cmap=cmap, **kwargs)
    if title is not None:
        ax.set_title(title, **({"color": title_color} if title_color else {}))
    ax.axis("off")
    return ax


def show_images(ims: Sequence[Any], nrows: int | None = None, ncols: int | None = None,
                titles: Sequence[str] | None = None, figsize: tuple | None = None, **kwargs: Any) -> list:
    """Show several images in a grid; returns the figure (``fig.axes``: one per image)."""
    axes = _grid(len(ims), nrows, ncols, figsize, titled="all" if titles else None)
    for i, (im, ax) in enumerate(zip(ims, axes)):
        show_image(im, ax=ax, title=titles[i] if titles else None, **kwargs)
    return axes[0].figure


def get_grid(n: int, nrows: int | None = None, ncols: int | None = None, figsize: tuple | None = None,
             double: bool = False, title: str | None = None, return_fig: bool = False, flatten: bool = True,
             **kwargs: Any) -> Any:
    """``n`` matplotlib axes in a grid (fastai's helper for writing a ``show_batch``): ``nrows`` x ``ncols``
    (square-ish by default), twice as many columns when ``double``, ``title`` above. ``flatten`` and ``kwargs``
    are accepted for compatibility (the axes are always a flat list).

    Returns:
        The axes, or ``(figure, axes)`` when ``return_fig``.
    """
    axes = _grid(n * (2 if double else 1), nrows, ncols * 2 if (double and ncols) else ncols, figsize,
                 suptitle=title)
    return (axes[0].figure, axes) if return_fig else axes


def show_titled_image(o: tuple, **kwargs: Any) -> Any:
    """`show_image` of ``o[0]`` titled ``o[1]``."""
    return show_image(o[0], title=str(o[1]), **kwargs)


def _grid(n: int, nrows: int | None, ncols: int | None, figsize: tuple | None, imsize: float = 3.0,
          ctxs: Sequence | None = None, suptitle: str | None = None, aspect: float = 1.0,
          titled: str | None = None, legend_rows: int = 0) -> list:
    """``n`` axes: ``ctxs`` when given, else a new ``nrows`` x ``ncols`` grid.

    A new grid gives each cell ``imsize`` inches of width and the images' height/width ``aspect`` of height
    (plus a title line when ``titled`` is ``"all"``; ``"first"``: above the first row only), so wide or tall
    images leave no blank bands between rows;
    ``legend_rows`` lines are kept free under the grid for a legend.
    """
    if ctxs is not None:
        return list(ctxs)[:n]
    from ..figures import subplots
    n = max(n, 1)
    ncols = ncols or (math.ceil(n / nrows) if nrows else math.ceil(math.sqrt(n)))
    nrows = nrows or math.ceil(n / ncols)
    title_height = 0.3 if titled == "all" else 0.0
    top, bottom = (0.4 if suptitle else 0.0) + (0.3 if titled == "first" else 0.0), 0.3 * legend_rows
    size = figsize or (ncols * imsize, nrows * (imsize * aspect + title_height) + top + bottom)
    fig, axes = subplots(nrows, ncols, figsize=size, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01 + bottom / size[1], top=0.99 - top / size[1],
                        wspace=0.05, hspace=0.05 + title_height / (imsize * aspect))
    if suptitle:
        fig.suptitle(suptitle)
    axes = list(axes.flatten())
    for ax in axes[n:]:
        ax.remove()  # so that ``fig.axes`` are the cells drawn
    return axes[:n]


def _aspect(images: Any) -> float:
    """Height over width of a batch of CxHxW images (1 when unknown)."""
    shape = getattr(images, "shape", None)
    return float(shape[-2]) / float(shape[-1]) if shape is not None and len(shape) >= 3 and shape[-1] else 1.0


# what may reach matplotlib's imshow; anything else a user passes is refused by name (`_check_kwargs`)
IMSHOW_KWARGS = {"cmap", "alpha", "vmin", "vmax", "interpolation", "aspect", "norm", "origin", "extent",
                 "resample", "filternorm", "filterrad", "interpolation_stage"}
_GRID_KWARGS = {"imsize", "suptitle"}


def _check_kwargs(kwargs: dict, caller: str) -> tuple[dict, dict]:
    """``kwargs`` split into grid options and imshow options.

    Raises:
        TypeError: naming the arguments that are neither, instead of letting matplotlib fail on them later.
    """
    unknown = sorted(set(kwargs) - IMSHOW_KWARGS - _GRID_KWARGS)
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword arguments {unknown}. It takes b, max_n, nrows, ncols, "
                        f"figsize, imsize, suptitle, ctxs{', show, unique' if caller == 'show_batch' else ''} and "
                        f"the image options {sorted(IMSHOW_KWARGS)}")
    grid = {k: v for k, v in kwargs.items() if k in _GRID_KWARGS}
    return grid, {k: v for k, v in kwargs.items() if k in IMSHOW_KWARGS}


def _label(target: Any, kind: str | None, vocab: Sequence | None) -> str:
    """A target or prediction as text."""
    if kind == "category" and vocab is not None:
        return str(vocab[int(target)])
    if kind == "multicategory" and vocab is not None:
        flags = target > 0.5 if target.is_floating_point() else target.bool()
        return ";".join(str(vocab[i]) for i in torch.nonzero(flags).flatten().tolist())
    if isinstance(target, torch.Tensor):
        values = target.flatten().tolist()
        return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values[:4])
    return str(target)


def _target_vocabs(dls: Any, kinds: Sequence[str], n_inp: int, n_members: int) -> dict[int, Any]:
    """The vocabulary of each target member: with several category targets, ``dls.vocab`` lists one per target."""
    vocab = getattr(dls, "vocab", None)
    labelled = [j for j in range(n_inp, n_members) if j < len(kinds) and kinds[j] in ("category", "multicategory")]
    several = vocab is not None and len(labelled) > 1 and len(vocab) == len(labelled) and all(
        hasattr(v, "__len__") and hasattr(v, "__getitem__") and not isinstance(v, str) for v in vocab)
    per_target = dict(zip(labelled, vocab)) if several else {}
    return {j: per_target.get(j, vocab) for j in range(n_inp, n_members)}


def _decoded(dls: Any, batch: tuple) -> tuple[tuple, tuple[str, ...], int]:
    """The batch with normalisation undone, its kinds and n_inp."""
    dl = dls.valid
    batch = dl.decode(tuple(batch))
    return batch, tuple(dl.kinds), dls.n_inp or 1


def mask_kwargs(n_codes: int) -> dict:
    """imshow options drawing a mask of ``n_codes`` classes half-transparently over its image."""
    return {"cmap": MASK_CMAP, "alpha": 0.5, "vmin": 0, "vmax": max(n_codes - 1, 1), "interpolation": "nearest"}


def _show_mask(mask: Any, ax: Any, dls: Any) -> None:
    """A mask over the image on ``ax``; values beyond the codes (a void value such as 255) stay transparent."""
    n_codes = len(dls.vocab) if getattr(dls, "vocab", None) is not None else 20
    codes = mask.detach().cpu().float() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    codes = torch.where(codes < n_codes, codes.float(), float("nan"))
    show_image(codes.numpy(), ax=ax, **mask_kwargs(n_codes))


def unique_batch(dl: Any, n: int) -> tuple:
    """The first item of ``dl``'s dataset ``n`` times, each through the loader's random item and batch
    transforms (``show_batch(unique=True)``: what the augmentations do to one image)."""
    if hasattr(dl, "tensors"):  # a TensorDataLoader: no item transforms, batch ones only
        first = torch.zeros(n, dtype=torch.long)
        loader = dl.new(tuple(t[first.to(t.device)] for t in dl.tensors), bs=n, shuffle=False, drop_last=False)
    else:
        from torch.utils.data import Subset
        loader = dl.new(Subset(dl.dataset, [0] * n), bs=n, shuffle=False, drop_last=False, num_workers=0)
    return next(iter(loader))


def _codes_present(dls: Any, *mask_sets: Any) -> list[int]:
    """The codes (below the vocabulary's length) that appear in any of ``mask_sets``, ascending."""
    vocab = getattr(dls, "vocab", None)
    if vocab is None:
        return []
    found: set[int] = set()
    for masks in mask_sets:
        if masks is not None:
            found.update(int(v) for v in torch.unique(torch.as_tensor(masks).detach().cpu()).tolist())
    return sorted(c for c in found if 0 <= c < len(vocab))


LEGEND_COLUMNS = 6


def _mask_legend(fig: Any, dls: Any, codes: list[int]) -> None:
    """A legend under the grid: the colour of each code in ``codes`` beside the code's name."""
    if not codes:
        return
    from matplotlib import colormaps
    from matplotlib.patches import Patch
    options = mask_kwargs(len(dls.vocab))
    cmap, top = colormaps[options["cmap"]], options["vmax"] - options["vmin"]
    handles = [Patch(facecolor=cmap((c - options["vmin"]) / top), alpha=options["alpha"], edgecolor="grey",
                     label=str(dls.vocab[c])) for c in codes]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), LEGEND_COLUMNS), frameon=False,
               borderaxespad=0.1, handlelength=1.2, columnspacing=1.0)


def _legend_rows(codes: list[int]) -> int:
    return math.ceil(len(codes) / LEGEND_COLUMNS)


def show_batch(dls: Any, batch: tuple, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
               figsize: tuple | None = None, ctxs: Sequence | None = None, show: bool = True, unique: bool = False,
               **kwargs: Any) -> Any:
    """Show the first ``max_n`` items of ``batch``: images with their labels, or with their masks over them
    (and a legend naming the colour of each code shown).

    Args:
        dls: the DataLoaders (kinds, vocabulary, decoding).
        batch: the batch to show.
        max_n: how many items.
        nrows, ncols, figsize: the grid (default: as square as possible, ``imsize`` = 3 inches per image wide,
            as high as the images' aspect needs).
        ctxs: axes to draw on instead of a new grid.
        show: False returns the decoded batch without drawing.
        unique: show the first training item ``max_n`` times with its training augmentations (``batch`` unused).
        **kwargs: ``imsize``, ``suptitle``, and image options for ``imshow`` (`IMSHOW_KWARGS`).

    Returns:
        The figure (a `lamina.figures.LaminaFigure`, shown once in a notebook; ``fig.axes`` are its cells),
        or the decoded batch when ``show=False``.

    Raises:
        TypeError: naming keyword arguments it does not take.
    """
    grid, image_kwargs = _check_kwargs(kwargs, "show_batch")
    if unique:
        batch = unique_batch(dls.train, max_n)
    batch, kinds, n_inp = _decoded(dls, batch)
    if not show:
        return batch
    images = batch[0]
    n = min(len(images), max_n)
    target_kind = kinds[n_inp] if len(kinds) > n_inp and len(batch) > n_inp else None
    codes = _codes_present(dls, batch[n_inp][:n]) if target_kind == "mask" and ctxs is None else []
    targets = _target_vocabs(dls, kinds, n_inp, len(batch))
    axes = _grid(n, nrows, ncols, figsize, ctxs=ctxs, aspect=_aspect(images),
                 titled=None if target_kind in (None, "mask") else "all", legend_rows=_legend_rows(codes), **grid)
    for i, ax in enumerate(axes):
        show_image(images[i], ax=ax, **image_kwargs)
        if target_kind == "mask":
            _show_mask(batch[n_inp][i], ax, dls)
        elif target_kind in ("point", "bbox"):
            _show_geometry(batch, kinds, n_inp, i, ax, dls)
        elif target_kind is not None:
            ax.set_title("; ".join(_label(batch[j][i], kinds[j], vocab) for j, vocab in targets.items()))
    _mask_legend(axes[0].figure, dls, codes)
    return axes[0].figure


# the order of the titles of show_results and plot_top_losses, as fastai's plot_top_losses writes them
RESULTS_LEGEND = "prediction/actual (green: right, red: wrong)"
TOP_LOSSES_LEGEND = "prediction/actual / loss / probability"


def show_results(dls: Any, batch: tuple, preds: Any, decoded: Any = None, max_n: int = 9, losses: Any = None,
                 nrows: int | None = None, ncols: int | None = None, figsize: tuple | None = None,
                 ctxs: Sequence | None = None, **kwargs: Any) -> Any:
    """Show targets and predictions for the first ``max_n`` items of ``batch``.

    Classification: one image per cell titled ``prediction/actual`` (green when they agree, red otherwise),
    under a line saying so; with ``losses`` (``plot_top_losses``) ``prediction/actual / loss / probability``.
    Segmentation: one row per item, the target mask beside the predicted mask, and a legend of the codes.

    Args:
        dls: the DataLoaders (for the vocabulary, kinds and decoding).
        batch: ``(inputs, targets)`` as the loader gives them (targets may be None).
        preds: the activated predictions (probabilities), one per item.
        decoded: the decoded predictions (class indices, multi-label flags or masks); default ``preds``.
        losses: per-item losses to print in the titles.
        **kwargs: as `show_batch`'s (``suptitle`` replaces the line that explains the titles).

    Returns:
        The figure (a `lamina.figures.LaminaFigure`, shown once in a notebook).
    """
    grid, kwargs = _check_kwargs(kwargs, "show_results")
    grid["ctxs"] = ctxs
    decoded = preds if decoded is None else decoded
    batch, kinds, n_inp = _decoded(dls, batch)
    images, targets = batch[0], batch[n_inp] if len(batch) > n_inp else None
    kind = kinds[n_inp] if len(kinds) > n_inp else None
    n = min(len(images), max_n)
    if kind == "mask":
        return _show_mask_results(dls, images, targets, decoded, n, losses, figsize, grid, **kwargs)
    if kind in ("point", "bbox"):
        return _show_geometry_results(dls, batch, kinds, n_inp, decoded, n, (nrows, ncols, figsize), grid, **kwargs)
    if ctxs is None and targets is not None:
        grid.setdefault("suptitle", TOP_LOSSES_LEGEND if losses is not None else RESULTS_LEGEND)
    axes = _grid(n, nrows, ncols, figsize, aspect=_aspect(images), titled="all", **grid)
    for i, ax in enumerate(axes):
        pred = _label(decoded[i], kind, dls.vocab)
        target = _label(targets[i], kind, dls.vocab) if targets is not None else None
        colour = None if target is None else (RIGHT if target == pred else WRONG)
        title = pred if target is None else f"{pred}/{target}"
        if losses is not None:
            prob = preds[i][int(decoded[i])] if kind == "category" else preds[i].max()
            title = f"{title} / {float(losses[i]):.2f} / {float(prob):.2f}"
        show_image(images[i], ax=ax, title=title, title_color=colour, **kwargs)
    return axes[0].figure


def _show_mask_results(dls: Any, images: Any, targets: Any, decoded: Any, n: int, losses: Any,
                       figsize: tuple | None, grid: dict, **kwargs: Any) -> Any:
    """Rows of (image + target mask, image + predicted mask), a legend of the codes under them."""
    codes = _codes_present(dls, targets[:n] if targets is not None else None, decoded[:n]) \
        if grid.get("ctxs") is None else []
    axes = _grid(2 * n, n, 2, figsize, aspect=_aspect(images), titled="first" if losses is None else "all",
                 legend_rows=_legend_rows(codes),
                 **grid)
    for i in range(n):
        for col, (masks, title) in enumerate(((targets, "target"), (decoded, "prediction"))):
            ax = axes[2 * i + col]
            if losses is not None and col == 1:
                title = f"prediction / loss {float(losses[i]):.2f}"
            show_image(images[i], ax=ax, title=title if i == 0 or losses is not None else None, **kwargs)
            if masks is not None:
                _show_mask(masks[i], ax, dls)
    _mask_legend(axes[0].figure, dls, codes)
    return axes[0].figure


def _show_geometry(batch: tuple, kinds: Sequence[str], n_inp: int, i: int, ax: Any, dls: Any,
                   color: str | None = None) -> None:
    """Item ``i``'s points or boxes (with their labels) over its image on ``ax``."""
    from .bboxes import show_boxes
    from .points import show_points
    hw = tuple(batch[0][i].shape[-2:])
    kind, target = kinds[n_inp], batch[n_inp][i]
    if kind == "point":
        show_points(target, ctx=ax, hw=hw, **({"color": color} if color else {}))
        return
    labels = None
    if "bbox_label" in kinds[:len(batch)] and getattr(dls, "vocab", None) is not None:
        labels = [str(dls.vocab[int(c)]) for c in batch[kinds.index("bbox_label")][i]]
    show_boxes(target, ctx=ax, labels=labels, hw=hw, **({"color": color} if color else {}))


def _show_geometry_results(dls: Any, batch: tuple, kinds: tuple, n_inp: int, decoded: Any, n: int, layout: tuple,
                           grid: dict, **kwargs: Any) -> Any:
    """Each image with its target points or boxes (green) and the predicted ones (red) when they have the
    target's shape."""
    nrows, ncols, figsize = layout
    axes = _grid(n, nrows, ncols, figsize, **grid)
    targets = batch[n_inp] if len(batch) > n_inp else None
    predicted = None
    if decoded is not None and targets is not None and decoded.numel() == targets.numel():
        predicted = (*batch[:n_inp], decoded.reshape(targets.shape).to(targets.device), *batch[n_inp + 1:])
    for i, ax in enumerate(axes):
        show_image(batch[0][i], ax=ax, **kwargs)
        if targets is not None:
            _show_geometry(batch, kinds, n_inp, i, ax, dls, color=RIGHT)
        if predicted is not None:
            _show_geometry(predicted, kinds, n_inp, i, ax, dls, color=WRONG)
    return axes[0].figure
