"""`collab_learner` and `CollabLearner`: train on ratings, predict new (user, item) pairs, read what was learned.

Example:
    >>> dls = CollabDataLoaders.from_csv(path/'ratings.csv')
    >>> learn = collab_learner(dls, y_range=(0.5, 5.5))
    >>> learn.fine_tune(10)
    >>> learn.show_results()                         # userId, movieId, rating, rating_pred
    >>> learn.predict((73, 1097))                    # (3.9, tensor([3.9]), tensor([3.9]))
    >>> learn.predict_df(new_pairs, unknown='bias')  # a copy of new_pairs with a rating_pred column
    >>> learn.top_items(5); learn.plot_item_pca()    # the fastai book's chapter-8 reading of the model
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..core import user_stacklevel
from ..learner import Learner
from ..losses import MSELossFlat
from ..export import ExportError
from ..models.activations import activation_config
from ..models.collab import EmbeddingDotBias, EmbeddingNN, embedding_dot_bias, lookup_codes
from ..models.layers import emb_sz_rule
from ..optim import Adam
from ..registry import register
from .data import CollabDataLoaders, show_table

__all__ = ["CollabLearner", "collab_learner"]


@register("learner")
class CollabLearner(Learner):
    """A `Learner` for ratings: pair-level `predict`, `predict_df`, `show_results`, and the model's reading
    (`top_items`, `bottom_items`, `item_pca`, `plot_item_pca`).

    Attributes:
        unexportable: why `export` must refuse (e.g. an activation JSON cannot describe), or None.
    """

    unexportable: str | None = None

    # --- prediction -------------------------------------------------------------------------------
    def predict_df(self, df: Any, unknown: str = "error", bs: int | None = None) -> pd.DataFrame:
        """Predicted ratings for many (user, item) pairs.

        Args:
            df: a DataFrame with the user and item columns (others are kept), or a list of pairs.
            unknown: what to do with users or items never seen in training: ``'error'`` raises a KeyError
                naming them; ``'bias'`` predicts from the known side alone (an unknown user gets the item's
                bias through ``y_range``; dot-product model only); ``'na'`` uses the ``'#na#'`` embedding.
            bs: batch size of the pass (default: the validation batch size).

        Returns:
            a copy of the pairs with a ``rating_pred`` column.
        """
        x, pairs = self.dls.encode_pairs(df, unknown=unknown)
        if unknown == "bias" and not isinstance(self.model, EmbeddingDotBias):
            raise ValueError("unknown='bias' needs the dot-product model (use_nn=False); the neural model has no "
                             "biases: pass unknown='na' to use its '#na#' embedding instead")
        pairs = pairs.copy()
        pairs["rating_pred"] = self._predict_codes(x, unknown, bs).tolist()
        return pairs

    def _predict_codes(self, x: torch.Tensor, unknown: str, bs: int | None) -> torch.Tensor:
        if len(x) == 0:
            return torch.zeros(0)
        dl = self.dls.valid.new((x,), shuffle=False, drop_last=False, **({"bs": bs} if bs else {}))
        preds = self.get_preds(dl=dl)[0].reshape(-1)
        unseen = x == 0
        rows = unseen.any(1)
        if unknown == "bias" and rows.any():
            self.model.eval()
            device = next(self.model.parameters()).device
            with torch.no_grad():
                fallback = self.model.forward_bias_only(x[rows].to(device), ~unseen[rows, 0], ~unseen[rows, 1])
            preds[rows] = fallback.float().cpu()
        return preds

    def predict(self, item: Any, with_input: bool = False, unknown: str = "error") -> tuple:
        """Predict the rating of one (user, item) pair.

        Args:
            item: a ``(user, item)`` tuple, or a dict/Series with the user and item columns.
            with_input: also return the pair's codes (first).
            unknown: see `predict_df`.

        Returns:
            ``(rating, tensor([rating]), tensor([rating]))``, prefixed by the codes if ``with_input``.
        """
        if not isinstance(item, (tuple, list, Mapping, pd.Series)):
            raise TypeError(f"`item` must be a (user, item) tuple, or a dict or Series with the columns "
                            f"{self.dls.user_name!r} and {self.dls.item_name!r}; received: {type(item).__name__}")
        x, _ = self.dls.encode_pairs([item], unknown=unknown)
        if unknown == "bias" and not isinstance(self.model, EmbeddingDotBias):
            raise ValueError("unknown='bias' needs the dot-product model (use_nn=False); pass unknown='na' instead")
        with self.no_bar():
            pred = self._predict_codes(x, unknown, None)[:1]
        out = (self.dls.decode_prediction(pred), pred, pred)
        return (x[0], *out) if with_input else out

    def show_results(self, ds_idx: int = 1, dl: Any = None, max_n: int = 9, shuffle: bool = True,
                     **kwargs: Any) -> None:
        """Show ``max_n`` rows of a loader (default: validation) as a table: user, item, rating and ``rating_pred``.

        Like fastai's show functions it shows and returns None: displayed in a notebook, printed elsewhere
        (`predict_df` returns predictions as a DataFrame).

        Args:
            ds_idx: which of ``dls`` (1: validation) when ``dl`` is not given.
            dl: a loader, e.g. ``dls.test_dl(df, with_labels=True)``.
            max_n: how many rows.
            shuffle: random rows (else the first ones).

        Raises:
            ValueError: when the loader holds no rows (e.g. a loaded learner: use `predict_df`).
        """
        show_table(self._results_frame(self.dls[ds_idx] if dl is None else dl, max_n, shuffle))

    def _results_frame(self, dl: Any, max_n: int, shuffle: bool) -> pd.DataFrame:
        tensors = getattr(dl, "tensors", ())
        if not tensors or len(tensors[0]) == 0:
            raise ValueError("show_results needs rows with ratings, and this loader has none (a loaded learner keeps "
                             "no data): pass dl=learn.dls.test_dl(df, with_labels=True), or use learn.predict_df(df)")
        n = len(tensors[0])
        pick = torch.randperm(n)[:max_n] if shuffle else torch.arange(min(n, max_n))
        picked = tuple(t[pick.to(t.device)] for t in tensors)
        with self.no_bar():
            preds, targs = self.get_preds(dl=dl.new(picked, shuffle=False, drop_last=False))[:2]
        df = self.dls.decode_codes(picked[0])
        if targs is not None:
            df[self.dls.rating_name] = targs.reshape(-1).tolist()
        df["rating_pred"] = preds.reshape(-1).tolist()
        return df

    def export(self, fname: str | Path = "export.pkl") -> Path | None:
        """Write this learner for inference (see `Learner.export`).

        Raises:
            ExportError: when the model cannot be described as JSON (e.g. a custom activation, named), or the
                ids are values JSON cannot store.
        """
        if self.unexportable:
            raise ExportError(self.unexportable)
        for name, vocab in self.dls.classes.items():
            bad = next((v for v in vocab.to_list() if not isinstance(v, (str, int, float, bool))), None)
            if bad is not None:
                raise ExportError(f"Column {name!r} holds ids an export cannot store as JSON, e.g. {bad!r} "
                                  f"({type(bad).__name__}); convert the column to text before building the data: "
                                  f"ratings[{name!r}] = ratings[{name!r}].astype(str)")
        return super().export(fname)

    # --- reading the model (fastai book, chapter 8) -------------------------------------------------
    def _dot_model(self, what: str) -> EmbeddingDotBias:
        if not isinstance(self.model, EmbeddingDotBias):
            raise TypeError(f"{what} reads the item biases of the dot-product model; this learner's model is "
                            f"{type(self.model).__name__}. Build the learner with collab_learner(dls, use_nn=False)")
        return self.model

    def _items_by_bias(self, n: int, largest: bool, what: str) -> pd.DataFrame:
        bias = self._dot_model(what).i_bias.weight.detach()[1:, 0].float().cpu()  # row 0 is '#na#'
        values, idx = bias.topk(min(n, len(bias)), largest=largest)
        vocab = self.dls.classes[self.dls.item_name]
        return pd.DataFrame({self.dls.item_name: vocab.decode((idx + 1).tolist()), "bias": values.tolist()})

    def top_items(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` items with the largest bias: liked even by users whose tastes they do not match."""
        return self._items_by_bias(n, True, "top_items")

    def bottom_items(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` items with the smallest bias: disliked even by users whose tastes they match."""
        return self._items_by_bias(n, False, "bottom_items")

    def _item_factors(self) -> torch.Tensor:
        if isinstance(self.model, EmbeddingDotBias):
            return self.model.i_weight.weight.detach().float().cpu()
        if isinstance(self.model, EmbeddingNN):
            return self.model.embeds[1].weight.detach().float().cpu()
        raise TypeError(f"item_pca reads the item embeddings of EmbeddingDotBias or EmbeddingNN; received a "
                        f"{type(self.model).__name__}")

    def most_rated_items(self, n: int = 1000) -> list:
        """The ``n`` items with the most ratings in the training set, most rated first."""
        tensors = getattr(self.dls.train, "tensors", ())
        if not tensors or len(tensors[0]) == 0:
            raise ValueError("most_rated_items counts the training ratings, and this learner has none (a loaded "
                             "learner keeps no data): pass the items yourself")
        counts = torch.bincount(tensors[0][:, 1].cpu(), minlength=len(self.dls.classes[self.dls.item_name]))
        counts[0] = -1  # never '#na#'
        order = counts.argsort(descending=True, stable=True)[:min(n, len(counts) - 1)]
        return self.dls.classes[self.dls.item_name].decode(order.tolist())

    def item_pca(self, items: Sequence | None = None, n_components: int = 3) -> pd.DataFrame:
        """Principal components of the item factors (centred), one row per item.

        Args:
            items: raw item ids or titles (default: the 1000 most-rated training items).
            n_components: how many components.

        Returns:
            a DataFrame indexed by item with columns ``pc0, pc1, ...``, the first explaining the most variance.

        Raises:
            KeyError: naming items never seen in training.
        """
        items = list(items) if items is not None else self.most_rated_items(1000)
        name = self.dls.item_name
        codes = lookup_codes(self.dls.classes[name], items, name, "item")
        factors = self._item_factors()[codes]
        if not 1 <= n_components <= min(factors.shape):
            raise ValueError(f"`n_components` must be between 1 and {min(factors.shape)} (items × factors); "
                             f"received: n_components={n_components}")
        centred = factors - factors.mean(0)
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
        proj = (u[:, :n_components] * s[:n_components]).numpy()
        return pd.DataFrame(proj, index=pd.Index(items, name=name), columns=[f"pc{i}" for i in range(n_components)])

    def plot_item_pca(self, items: Sequence | None = None, n_label: int = 50, components: tuple[int, int] = (0, 1),
                      figsize: tuple[float, float] = (12, 12), ax: Any = None) -> Any:
        """Scatter the items on two principal components of their factors, each point labelled.

        Args:
            items: raw item ids or titles (default: the most-rated training items).
            n_label: how many of ``items`` (the first ones) to plot.
            components: which two components go on the x and y axes.
            figsize: figure size when ``ax`` is None.
            ax: a matplotlib Axes to draw on.

        Returns:
            The figure (``ax``'s when given), shown once in a notebook.
        """
        import matplotlib.pyplot as plt

        from ..figures import subplots
        pca = self.item_pca(items, n_components=max(components) + 1).iloc[:n_label]
        xs, ys = pca[f"pc{components[0]}"].to_numpy(), pca[f"pc{components[1]}"].to_numpy()
        ax = ax if ax is not None else subplots(figsize=figsize)[1]
        ax.scatter(xs, ys, s=12)
        colors = plt.get_cmap("tab10")
        for i, (label, x, y) in enumerate(zip(pca.index, xs, ys)):
            ax.text(x, y, str(label), color=colors(i % 10), fontsize=11)
        ax.set_xlabel(f"component {components[0]}")
        ax.set_ylabel(f"component {components[1]}")
        return ax.figure


def collab_learner(dls: CollabDataLoaders, n_factors: int = 50, use_nn: bool = False,
                   emb_szs: Mapping[Any, int] | None = None, layers: Sequence[int] | None = None,
                   config: Mapping[str, Any] | None = None, y_range: tuple[float, float] | None = None,
                   loss_func: Any = None, **learner_kwargs: Any) -> CollabLearner:
    """A learner for ratings: dot product of factors plus biases, or (``use_nn``) an MLP over embeddings.

    Example:
        >>> learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5))
        >>> learn.fit_one_cycle(5, 5e-3, wd=0.1)

    Args:
        dls: `CollabDataLoaders`.
        n_factors: width of the factor vectors (dot model); the default hidden size of the MLP.
        use_nn: use `EmbeddingNN` instead of `EmbeddingDotBias`.
        emb_szs: embedding widths per column for the MLP, e.g. ``{'userId': 74}`` (default `emb_sz_rule`).
        layers: hidden sizes of the MLP (default ``[n_factors]``).
        config: other `EmbeddingNN` arguments, as from `tabular_config` (``ps``, ``embed_p``, ``use_bn``,
            ``bn_final``, ``act_cls`` (a module or its name), ``lin_first``; ``bn_cont`` changes nothing).
        y_range: ``(low, high)`` of the predictions (overrides ``config['y_range']``).
        loss_func: the loss (default `MSELossFlat`).
        **learner_kwargs: `Learner` arguments (``opt_func``, ``lr``, ``metrics``, ``wd``, ``cbs`` ...); ``opt_func``
            defaults to `Adam` with torch's fused kernel.

    Raises:
        TypeError: when ``dls`` is not collab data.
        ValueError: for ``config`` keys `EmbeddingNN` does not take.

    Warns:
        UserWarning: with their count, when ratings of ``dls`` lie outside ``y_range`` (the model cannot reach them).
    """
    if not isinstance(dls, CollabDataLoaders):
        raise TypeError(f"`dls` must be CollabDataLoaders (from CollabDataLoaders.from_df or from_csv); received: "
                        f"{type(dls).__name__}")
    model, factory, kwargs = _collab_model(dls, n_factors, use_nn, emb_szs, layers, config, y_range)
    _warn_ratings_outside(dls, kwargs.get("y_range"))
    # The step updates every row of the embedding tables (dense gradients, as in fastai), so the optimizer's
    # arithmetic dominates a collab batch: torch's fused AdamW kernel does it ~2.5x faster than the per-tensor
    # loop on a CPU (MovieLens 100k: ~0.4 ms instead of ~1.1 ms per step), with the same maths.
    learner_kwargs.setdefault("opt_func", partial(Adam, fused=True))
    learn = CollabLearner(dls, model, loss_func=loss_func if loss_func is not None else MSELossFlat(),
                          **learner_kwargs)
    if use_nn:
        try:  # the model keeps the user's activation; its JSON description is needed only to export
            kwargs["act_cls"] = activation_config(kwargs["act_cls"])
        except ValueError as e:
            learn.unexportable = str(e)
            return learn
    learn.model_config = {"factory": factory, "kwargs": kwargs}
    return learn


def _collab_model(dls: CollabDataLoaders, n_factors: int, use_nn: bool, emb_szs: Mapping[Any, int] | None,
                  layers: Sequence[int] | None, config: Mapping[str, Any] | None,
                  y_range: tuple[float, float] | None) -> tuple[torch.nn.Module, str, dict]:
    """The model of `collab_learner`, its factory's name and the arguments an export rebuilds it from."""
    y_range = [float(v) for v in y_range] if y_range is not None else None
    if use_nn:
        kwargs = _nn_kwargs(dls, n_factors, emb_szs, layers, config, y_range)
        return EmbeddingNN(**kwargs), "EmbeddingNN", kwargs
    kwargs = {"n_factors": n_factors, "user_name": dls.user_name, "item_name": dls.item_name,
              "user_classes": dls.classes[dls.user_name].to_list(),
              "item_classes": dls.classes[dls.item_name].to_list(), "y_range": y_range}
    return embedding_dot_bias(**kwargs), "embedding_dot_bias", kwargs


def _warn_ratings_outside(dls: CollabDataLoaders, y_range: Sequence[float] | None) -> None:
    """Warn when ratings lie outside ``y_range``: predictions squashed into it can never reach them.

    (A 1-5 star table with ``y_range=(0, 1)``: every prediction stays below 1, and the loss stays high.)
    """
    if y_range is None:
        return
    ratings = [dl.tensors[1] for dl in (dls.train, dls.valid) if len(getattr(dl, "tensors", ())) > 1]
    ratings = [r for r in ratings if len(r)]  # a loaded learner's loaders hold no rows
    low, high = y_range
    n_outside = sum(int(((r < low) | (r > high)).sum()) for r in ratings)
    if not n_outside:
        return
    lo, hi = min(float(r.min()) for r in ratings), max(float(r.max()) for r in ratings)
    margin = (hi - lo) / 8 or 0.5  # fastai's 1-5 stars -> y_range=(0.5, 5.5)
    warnings.warn(f"{n_outside} of the {sum(len(r) for r in ratings)} ratings lie outside y_range=({low:g}, {high:g}): "
                  f"the ratings run from {lo:g} to {hi:g}, and predictions squashed into y_range can never reach "
                  f"those, so the loss stays high. Pass a y_range a little wider than the ratings, e.g. "
                  f"y_range=({lo - margin:g}, {hi + margin:g}) (for 1-5 stars: y_range=(0.5, 5.5))",
                  stacklevel=user_stacklevel())


_NN_CONFIG = ("ps", "embed_p", "y_range", "use_bn", "bn_final", "bn_cont", "act_cls", "lin_first")


def _nn_kwargs(dls: CollabDataLoaders, n_factors: int, emb_szs: Mapping[Any, int] | None,
               layers: Sequence[int] | None, config: Mapping[str, Any] | None, y_range: list | None) -> dict:
    """`EmbeddingNN` arguments, JSON-safe except ``act_cls`` (the activation itself)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(_NN_CONFIG))
    if unknown:
        raise ValueError(f"`config` keys must be among {list(_NN_CONFIG)} (see tabular_config); received unknown "
                         f"{unknown}")
    config.setdefault("act_cls", "ReLU")
    if y_range is not None:
        config["y_range"] = y_range
    elif config.get("y_range") is not None:
        config["y_range"] = [float(v) for v in config["y_range"]]
    if config.get("ps") is not None and not isinstance(config["ps"], (int, float)):
        config["ps"] = [float(p) for p in config["ps"]]
    sizes = dict(emb_szs or {})
    emb = [[len(dls.classes[c]), int(sizes.get(c, emb_sz_rule(len(dls.classes[c]))))]
           for c in (dls.user_name, dls.item_name)]
    return {"emb_szs": emb, "layers": [int(n) for n in (layers if layers is not None else [n_factors])], **config}
