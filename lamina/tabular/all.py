"""``from lamina.tabular.all import *``: tables (procs, `TabularPandas`, `TabularDataLoaders`, `tabular_learner`).

Everything of `lamina.basics` (the Learner, callbacks, losses, metrics, optimizers, ``untar_data``/``URLs``,
``load_learner``, ``np``/``pd``/``torch``/``nn``/``F``/``Path``/``partial``) plus the tabular names (with
``add_datepart``, ``add_elapsed_times`` and ``df_shrink``), the target blocks (``y_block=RegressionBlock()``),
the splitters (``splits=RandomSplitter()(range_of(df))``), `ClassificationInterpretation` (``tensor``, ``get_emb_sz``
and ``Embedding`` come from `lamina.basics`).

Example:
    >>> from lamina.tabular.all import *
    >>> path = untar_data(URLs.ADULT_SAMPLE)
    >>> dls = TabularDataLoaders.from_csv(path/'adult.csv', path=path, y_names="salary",
    ...     cat_names=['workclass', 'education', 'marital-status', 'occupation', 'relationship', 'race'],
    ...     cont_names=['age', 'fnlwgt', 'education-num'], procs=[Categorify, FillMissing, Normalize])
    >>> learn = tabular_learner(dls, metrics=accuracy)
    >>> learn.fit_one_cycle(3)
"""

from ..basics import *  # noqa: F403  (the basics surface's __all__)
from ..basics import __all__ as _basics_all
from ..data.block import CategoryBlock, MultiCategoryBlock, RegressionBlock
from ..data.splitters import IndexSplitter, RandomSplitter
from ..interpret import ClassificationInterpretation
from ..models.layers import LinBnDrop, SigmoidRange, emb_sz_rule
from ..models.tabular import TabularModel, tabular_config
from .data import TabularDataLoaders, TabularPandas, cont_cat_split
from .dates import add_datepart, add_elapsed_times, make_date
from .learner import TabularLearner, TabularRow, tabular_learner
from .processor import TabularProcessor
from .procs import PROCS, Categorify, FillMissing, FillStrategy, Normalize, TabularProc
from .shrink import df_shrink, df_shrink_dtypes
from .synth import adult_like

__all__ = [*_basics_all, "TabularPandas", "TabularProcessor", "TabularProc", "Categorify", "FillMissing",
           "FillStrategy", "Normalize", "PROCS", "cont_cat_split", "TabularDataLoaders",
           "TabularLearner", "TabularRow", "tabular_learner", "TabularModel", "tabular_config",
           "LinBnDrop", "SigmoidRange", "emb_sz_rule", "adult_like",
           "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "IndexSplitter", "RandomSplitter",
           "ClassificationInterpretation",
           # table helpers: date features, smaller dtypes
           "make_date", "add_datepart", "add_elapsed_times", "df_shrink", "df_shrink_dtypes"]
