"""Benchmark tasks: one module per task, each with ``TITLE``, ``TARGET``, ``DATA``, ``run_lamina`` and ``run_fastai``."""
