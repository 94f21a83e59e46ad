"""Tabular data: procs, `TabularPandas`, `TabularDataLoaders` and `tabular_learner`.

Users import the star surface, ``from lamina.tabular.all import *``; the submodules are
``procs`` (FillMissing, Categorify, Normalize), ``preprocess`` (TabularPandas), ``data``
(TabularDataLoaders), ``learner`` (tabular_learner) and ``synth`` (an Adult-like table for examples).
"""
