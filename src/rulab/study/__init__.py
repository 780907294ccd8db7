"""Studies: a grid of presets × seeds trained and evaluated into one results database, then reported.

:mod:`rulab.study.plan` resolves and validates every cell before anything runs; :mod:`rulab.study.runner` trains,
evaluates and stores them (several processes may share one database) and reports. The study definitions themselves
are data: :class:`rulab.presets.study_spec.Study`, registered in ``STUDIES``.
"""

from rulab.study.plan import StudyCell, get_study, plan_cells
from rulab.study.runner import Evaluator, StudyResult, evaluate_run, run_study

__all__ = ["run_study", "plan_cells", "evaluate_run", "StudyCell", "StudyResult", "get_study", "Evaluator"]
