"""The older home of `TabularPandas`, `TabularProcessor` and `cont_cat_split`, kept so that imports from here work.

`TabularProcessor` lives in `lamina.tabular.processor`; `TabularPandas` and `cont_cat_split` in
`lamina.tabular.data`, beside `TabularDataLoaders`, which they build and which builds them.
"""

from .data import TabularPandas, cont_cat_split
from .processor import TabularProcessor
from .procs import Categorify, FillMissing, FillStrategy, Normalize, TabularProc

__all__ = ["TabularPandas", "TabularProcessor", "cont_cat_split", "Categorify", "FillMissing", "Normalize",
           "FillStrategy", "TabularProc"]
