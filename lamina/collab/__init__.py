"""``from lamina.collab import *``: collaborative filtering on ratings tables.

Everything of `lamina.basics` (the Learner, callbacks, losses, metrics, optimizers, ``untar_data``/``URLs``,
``np``/``pd``/``torch``/``nn``/``F``/``Path``/``partial``) plus the collab data, models and learner, `get_emb_sz`,
and (as fastai's collab module re-exports its tabular names) `TabularModel`, `tabular_config`, the target blocks,
the splitters, `range_of`, `ClassificationInterpretation` and ``tensor`` (from `lamina.basics`, used in chapter 8).

Example:
    >>> from lamina.collab import *
    >>> path = untar_data(URLs.ML_SAMPLE)
    >>> dls = CollabDataLoaders.from_csv(path/'ratings.csv')
    >>> learn = collab_learner(dls, y_range=(0.5, 5.5))
    >>> learn.fine_tune(10)
    >>> learn.show_results()
"""

from ..basics import *  # noqa: F403  (the basics surface's __all__)
from ..basics import __all__ as _basics_all
from ..data.block import CategoryBlock, MultiCategoryBlock, RegressionBlock
from ..data.splitters import IndexSplitter, RandomSplitter
from ..interpret import ClassificationInterpretation
from ..models.collab import EmbeddingDotBias, EmbeddingNN
from ..models.layers import LinBnDrop, SigmoidRange, emb_sz_rule
from ..models.tabular import TabularModel, tabular_config
from .data import CollabDataLoaders
from .learner import CollabLearner, collab_learner
from .synth import synth_ratings

__all__ = [*_basics_all, "CollabDataLoaders", "EmbeddingDotBias", "EmbeddingNN", "CollabLearner", "collab_learner",
           "LinBnDrop", "SigmoidRange", "emb_sz_rule", "synth_ratings", "TabularModel", "tabular_config",
           "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "IndexSplitter", "RandomSplitter",
           "ClassificationInterpretation"]
