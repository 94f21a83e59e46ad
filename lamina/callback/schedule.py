"""The path of fastai.callback.schedule: `ParamScheduler`, `LRFinder` and its suggestions, the schedules."""

from ..callbacks.schedule import (LRFinder, ParamScheduler, SuggestedLRs, SuggestionMethod, minimum, plot_lr_find,
                                  slide, steep, valley)
from ..schedules import SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly, combine_scheds, combined_cos

__all__ = ["ParamScheduler", "LRFinder", "SuggestedLRs", "SuggestionMethod", "valley", "slide", "minimum", "steep",
           "plot_lr_find", "SchedCos", "SchedExp", "SchedLin", "SchedNo", "SchedPoly", "combine_scheds", "combined_cos"]
