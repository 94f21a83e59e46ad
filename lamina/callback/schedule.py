"""The path of fastai.callback.schedule: `ParamScheduler`, `LRFinder` and its suggestions, the schedules."""

from ..callbacks.schedule import *  # noqa: F403
from ..callbacks.schedule import __all__ as _schedule_all
from ..schedules import SchedCos, SchedExp, SchedLin, SchedNo, SchedPoly, combine_scheds, combined_cos

__all__ = [*_schedule_all, "SchedCos", "SchedExp", "SchedLin", "SchedNo", "SchedPoly", "combine_scheds", "combined_cos"]
