"""Tabular data: procs, `TabularPandas`, `TabularDataLoaders` and `tabular_learner`.

Users import the star surface, ``from lamina.tabular.all import *``; the submodules are
``procs`` (FillMissing, Categorify, Normalize), ``processor`` (TabularProcessor, the fitted pipeline),
``data`` (TabularPandas, TabularDataLoaders), ``learner`` (tabular_learner) and ``synth`` (an Adult-like
table for examples). ``preprocess`` is the older home of TabularPandas and re-exports it.
"""

from . import pickling  # noqa: F401,E402  (TabularPandas in save_pickle / load_pickle)
