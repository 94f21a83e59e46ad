"""The path of fastai.tabular.core: `TabularPandas`, the procs, ``cont_cat_split`` and the date and dtype helpers.

lamina's homes are `lamina.tabular.data` (``TabularPandas``), `lamina.tabular.procs` (``Categorify``,
``FillMissing``, ``Normalize``), `lamina.tabular.dates` and `lamina.tabular.shrink`; nothing is defined here.
"""

from .data import TabularPandas, cont_cat_split
from .dates import add_datepart, add_elapsed_times, make_date
from .processor import TabularProcessor
from .procs import Categorify, FillMissing, FillStrategy, Normalize, TabularProc
from .shrink import df_shrink, df_shrink_dtypes

__all__ = ["TabularPandas", "TabularProcessor", "TabularProc", "Categorify", "FillMissing", "FillStrategy", "Normalize",
           "cont_cat_split", "make_date", "add_datepart", "add_elapsed_times", "df_shrink", "df_shrink_dtypes"]
