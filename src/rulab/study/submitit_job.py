"""The callable a submitit job runs for one cell: :func:`rulab.study.worker.run_cell_job`, made requeueable.

submitit calls :meth:`~submitit.helpers.Checkpointable.checkpoint` when SLURM signals that the job is about to be
preempted or to reach its time limit (``USR2``, ``signal_delay_s`` before the end; the LocalExecutor does the same
at its timeout); the inherited method resubmits the same callable with the same arguments, and the job is requeued
under the same job id. The cell's training then resumes from its last checkpoint (``resume=True``: the training
state saved every ``train.checkpoint_every`` steps and at every epoch end), so a requeued job repeats at most the
steps since that checkpoint; a cell that had finished training is only evaluated. This module imports submitit,
so it is imported only when ``--launcher slurm`` is chosen (and in the job itself).
"""

from __future__ import annotations

from typing import Any

import submitit

from rulab.study.worker import CellJob, run_cell_job

__all__ = ["RequeueableCell"]


class RequeueableCell(submitit.helpers.Checkpointable):
    """``RequeueableCell()(job)`` runs one cell; on preemption or time-out submitit requeues it with the same job."""

    def __call__(self, job: CellJob) -> dict[str, Any]:
        return run_cell_job(job)
