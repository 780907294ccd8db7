"""The study runner: a grid of presets × seeds trained and evaluated into one results database, then reported.

:mod:`rulab.study.runner` holds the runner; the study definitions themselves are data in
:mod:`rulab.presets.study_spec` (``Study``) and the ``STUDIES`` registry.
"""

from rulab.study.runner import Cell, Evaluator, StudyResult, evaluate_run, get_study, plan_cells, run_study

__all__ = ["run_study", "plan_cells", "evaluate_run", "Cell", "StudyResult", "get_study", "Evaluator"]
