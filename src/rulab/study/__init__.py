"""Studies: a grid of presets × seeds trained and evaluated into one results database, then reported.

:mod:`rulab.study.plan` resolves and validates every cell before anything runs; :mod:`rulab.study.cell` is one
cell's work (train, evaluate), the same under every launcher; :mod:`rulab.study.runner` runs the cells and reports.
With the ``local`` launcher (default) the study processes of one machine run the cells and share one database;
with ``slurm`` (submitit) or ``ray`` the cells run as jobs of that engine (:mod:`rulab.study.worker`,
:mod:`rulab.study.backends`) and the driver alone stores their results (:mod:`rulab.study.launch`);
:mod:`rulab.study.status` tells where each cell stands. The study definitions themselves are data:
:class:`rulab.presets.study_spec.Study`, registered in ``STUDIES`` or read from a YAML file.
"""

from rulab.study.plan import StudyCell, get_study, plan_cells
from rulab.study.runner import Evaluator, StudyResult, evaluate_run, run_study

__all__ = ["run_study", "plan_cells", "evaluate_run", "StudyCell", "StudyResult", "get_study", "Evaluator"]
