"""What a cluster worker runs for one cell (``--launcher slurm`` through submitit, ``--launcher ray``).

:func:`run_cell_job` is the job's entry point. In order, it

1. changes to the driver's working directory (a relative ``--out`` is taken from there; with an absolute one, a node
   without that directory may still run the cell) and checks that it sees the study's run directory: the driver
   leaves a random token in ``<out>/.study/<study>/shared-check`` and the job carries it; a worker on a node that
   does not mount the same file system fails with one line saying so;
2. in a SLURM job of several tasks (``launcher.slurm.tasks_per_node`` or ``gpus_per_node`` > 1, or several nodes),
   sets the variables ``torchrun`` sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
   ``MASTER_ADDR``, ``MASTER_PORT``; :func:`torchrun_env`), so every task joins one DDP process group for training;
   the evaluation then runs in global rank 0 alone;
3. sets the torch threads to the job's CPUs (``cpus_per_task``, ``num_cpus``: the numbers of a run depend on them);
4. writes ``cell-started.json`` (host, PID, job id, which submission) into the run directory, so the driver and
   ``rulab study NAME --status`` can tell a running cell from a queued one;
5. runs :func:`rulab.study.cell.work_cell` (training resumes from the last checkpoint, so a requeued or retried job
   continues where the previous one stopped) and writes the :class:`~rulab.study.cell.CellRecord` atomically to
   ``cell-result.json``. It never opens the results database.

Each step is logged to ``<run_dir>/cell.log`` (appended, with a traceback when the cell fails), which the driver
shows for a failed cell.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rulab.errors import RulabError
from rulab.io import atomic_write_json
from rulab.study.cell import Evaluator, check_run_dir, now_iso, work_cell, write_record
from rulab.study.plan import StudyCell

__all__ = ["CellJob", "run_cell_job", "torchrun_env", "STARTED_FILE", "LOG_FILE", "SHARED_CHECK"]

STARTED_FILE = "cell-started.json"
LOG_FILE = "cell.log"
#: the driver's token file in the study's state directory; a worker that cannot read it cannot see the run directory
SHARED_CHECK = "shared-check"
_TORCHRUN_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class CellJob:
    """One submission of a cell: everything its worker needs (pickled to the worker by the back-end).

    Attributes:
        cell: the planned cell (its config's ``out_dir`` may be relative to ``cwd``).
        study: the study's name.
        evaluate: the evaluator (``rulab.study.runner.evaluate_run`` unless a test injects another).
        cwd: the driver's working directory; the worker runs there.
        state_dir: the absolute path of ``<out>/.study/<study>``.
        token: what ``<state_dir>/shared-check`` holds.
        threads: torch threads (the job's CPUs).
        submission: a unique id of this submission (the started marker names it).
    """

    cell: StudyCell
    study: str
    evaluate: Evaluator
    cwd: str
    state_dir: str
    token: str
    threads: int
    submission: str


def torchrun_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``torchrun`` would set for this task of a submitit job; ``{}`` for a one-task job.

    Reads the job's place from submitit's job environment (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``,
    ``SLURM_JOB_NUM_NODES``, ``SLURM_JOB_NODELIST`` on SLURM; ``SUBMITIT_LOCAL_*`` under the LocalExecutor) with
    :class:`submitit.helpers.TorchDistributedEnvironment`: the master is the job's first node and its port a
    function of the job id (or ``MASTER_PORT`` when set), so every task agrees without talking. Outside a submitit
    job (no ``SUBMITIT_EXECUTOR``), ``{}``.

    Args:
        environ: the environment to read (default ``os.environ``); it is read in place of ``os.environ`` while
            the translation runs.
    """
    env = os.environ if environ is None else environ
    if not env.get("SUBMITIT_EXECUTOR"):
        return {}
    import submitit
    from submitit.helpers import TorchDistributedEnvironment

    saved = dict(os.environ)
    try:
        if environ is not None:
            os.environ.clear()
            os.environ.update(environ)
        if submitit.JobEnvironment().num_tasks <= 1:
            return {}
        d = TorchDistributedEnvironment()
        return {
            "RANK": str(d.rank),
            "LOCAL_RANK": str(d.local_rank),
            "WORLD_SIZE": str(d.world_size),
            "LOCAL_WORLD_SIZE": str(d.local_world_size),
            "MASTER_ADDR": str(d.master_addr),
            "MASTER_PORT": str(d.master_port),
        }
    finally:
        if environ is not None:
            os.environ.clear()
            os.environ.update(saved)


def check_shared(job: CellJob) -> None:
    """Run in the driver's directory and check the study's directory is the driver's (a shared file system).

    Raises:
        RulabError: one line naming the host and the path it cannot see.
    """
    host = socket.gethostname()
    try:
        os.chdir(job.cwd)
    except OSError:
        if not Path(job.cell.cfg.out_dir).is_absolute():  # relative run paths resolve against the driver's directory
            raise RulabError(
                f"the worker on {host} cannot see the study's directory {job.cwd} (the driver's working directory, which "
                "the relative --out is taken from); run the study from a directory on a file system every node mounts at "
                "the same path, or pass an absolute --out there (docs/distributed.md)"
            ) from None
    check = Path(job.state_dir) / SHARED_CHECK
    try:
        seen = check.read_text(encoding="utf-8").strip()
    except OSError:
        seen = ""
    if seen != job.token:
        raise RulabError(
            f"the worker on {host} cannot see the run directory {Path(job.cell.cfg.out_dir).resolve()} "
            f"({check} {'is missing' if not seen else 'holds another driver token'}); put --out on a file system every node mounts "
            "at the same path (docs/distributed.md)"
        )


class _Log:
    """Appends timestamped lines to ``<run_dir>/cell.log`` (and prints them, for the back-end's own log)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.prefix = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, msg: str) -> None:
        line = f"{now_iso()} {self.prefix} {msg}"
        print(line, flush=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass


def _leave_process_group() -> None:
    """After DDP training: wait for every rank, leave the group, and be a one-process program again."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    for key in _TORCHRUN_KEYS:
        os.environ.pop(key, None)


def run_cell_job(job: CellJob, *parents: Any) -> dict[str, Any]:
    """Run one cell in a worker and leave its record in the run directory (see the module docstring).

    Args:
        job: the submission.
        parents: the results of the cell's parents (Ray passes them so the task waits for them; unused).

    Returns:
        ``{"run_id", "record", "host", "pid"}``: where the record is (rank 0), or ``{}`` on another DDP rank.

    Raises:
        RulabError: the worker cannot see the run directory; whatever the cell raises (also logged to ``cell.log``).
    """
    check_shared(job)
    cell = job.cell
    dist_env = torchrun_env()
    os.environ.update(dist_env)
    rank = int(dist_env.get("RANK", "0"))
    torch.set_num_threads(max(int(job.threads), 1))
    log = _Log(cell.run_dir / LOG_FILE)
    try:
        if rank == 0:
            cell.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                cell.run_dir / STARTED_FILE,
                {
                    "submission": job.submission,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started": time.time(),
                    "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", ""),
                    "world_size": int(dist_env.get("WORLD_SIZE", "1")),
                },
            )
            log(
                f"{cell.cfg.name}: started (submission {job.submission}, {job.threads} thread(s)"
                + (f", DDP over {dist_env['WORLD_SIZE']} processes" if dist_env else "")
                + ")"
            )
        if dist_env:
            from rulab.train.loop import fit

            check_run_dir(cell)
            fit(cell.cfg, resume=True, progress=False)  # every rank trains; rank 0 writes the checkpoint
            _leave_process_group()
            if rank != 0:
                return {}
        record = work_cell(cell, job.evaluate, progress=False, log=log)
        path = write_record(cell, record)
        log(f"{cell.cfg.name}: record written to {path}")
        return {"run_id": cell.run_id, "record": str(path), "host": record.host, "pid": record.pid}
    except SystemExit as err:  # submitit's requeue on preemption or time-out exits here
        if rank == 0:
            log(f"{cell.cfg.name}: stopped with exit status {err.code} (requeued or cancelled by the engine)")
        raise
    except BaseException as err:
        if rank == 0:
            log(f"{cell.cfg.name}: failed: {type(err).__name__}: {err}\n{traceback.format_exc()}")
        raise


def read_started(cell: StudyCell) -> dict[str, Any]:
    """The cell's ``cell-started.json`` (``{}`` if none or unreadable)."""
    try:
        data = json.loads((cell.run_dir / STARTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
