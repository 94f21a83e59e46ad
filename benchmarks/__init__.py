"""lamina's benchmark harness: the same tasks timed with lamina and with fastai, side by side.

Run ``python benchmarks/run.py``; see ``benchmarks/README.md`` for the task contract.
"""
