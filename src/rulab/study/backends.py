"""The engines a cluster study submits its cells to: SLURM through submitit, and Ray.

Each back-end does four things for the driver (:mod:`rulab.study.launch`): submit cells (with their parents'
jobs, where the engine can hold a job back until they succeed), report whether a job is still active or how it
ended, re-attach to a job a previous driver submitted, and cancel a job. The engines are optional
(``pip install 'rulab[cluster]'``) and imported only when their launcher is chosen.

* :class:`SubmititBackend` (``--launcher slurm``): one job per cell, or one job array per dependency level with
  ``launcher.slurm.array_parallelism``; a cell's parents become ``--dependency=afterok:<job ids>`` with
  ``--kill-on-invalid-dep=yes`` (a child of a failed parent is cancelled rather than left pending). With
  ``launcher.slurm.executor=local`` the same code runs through submitit's LocalExecutor, which cannot hold a job
  back: the driver then submits a cell only once its parents have finished.
* :class:`RayBackend` (``--launcher ray``): one task per cell, its parents' object references passed as arguments
  (Ray starts it once they have succeeded), ``num_cpus``/``num_gpus`` per task, and Ray's own retries of a task
  whose worker died (``max_retries = launcher.retries``; an error raised by the cell is not retried).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulab.errors import RulabError
from rulab.presets.study_spec import LauncherCfg
from rulab.study.worker import CellJob, run_cell_job

__all__ = ["Handle", "Poll", "SubmititBackend", "RayBackend", "make_backend", "missing_engine", "require_engine"]


def missing_engine(package: str, launcher: str) -> RulabError:
    """The one error for a launcher whose engine is not installed."""
    return RulabError(
        f"--launcher {launcher} needs the '{package}' package, which is not installed; install it with: pip install 'rulab[cluster]'"
    )


@dataclass
class Handle:
    """A submitted job: the engine's id (shown to the user, kept in the driver's state file) and its object."""

    job_id: str
    obj: Any = None
    log: str = ""  # the engine's log file of the job ("" where there is none)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Poll:
    """How a job stands: ``state`` is ``queued`` (waiting for resources or its parents), ``active`` (started or
    starting; the driver tells running from queued by the cell's started marker) or ``done``.

    ``error`` is one line when a done job failed (``""`` when it ended normally); ``died`` says the worker ended
    without finishing (killed, lost node, out of memory) rather than by an error the cell raised.
    """

    state: str
    error: str = ""
    died: bool = False


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    errs = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return (errs[-1] if errs else lines[-1] if lines else "").strip()


class SubmititBackend:
    """SLURM (or submitit's LocalExecutor) through submitit's ``AutoExecutor``.

    Args:
        cfg: the launcher config (``cfg.slurm`` holds the job's resources).
        folder: submitit's folder for job scripts, pickles and logs (``<out>/.study/<study>/jobs``).
        study: the study's name (job names are ``<study>:<cell>``).
    """

    _ACTIVE = {
        "PENDING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "STAGE_OUT",
        "PREEMPTED",
    }

    def __init__(self, cfg: LauncherCfg, folder: Path, study: str) -> None:
        try:
            import submitit
        except ImportError:
            raise missing_engine("submitit", "slurm") from None
        from rulab.study.submitit_job import RequeueableCell

        self.submitit = submitit
        self.fn = RequeueableCell()
        self.cfg = cfg.slurm
        self.cluster = "local" if self.cfg.executor == "local" else "slurm"
        self.name = "slurm" if self.cluster == "slurm" else "slurm (LocalExecutor)"
        #: SLURM holds a job until its parents succeed (afterok); the LocalExecutor cannot
        self.holds_dependencies = self.cluster == "slurm"
        self.retries_itself = False
        self.folder = Path(folder) / "%j"
        self.study = study
        try:
            self.executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        except RuntimeError as err:  # e.g. no sbatch on this machine
            raise RulabError(
                f"cannot submit SLURM jobs from {socket.gethostname()} ({err}); run the study on a SLURM login node"
            ) from None
        self.executor.update_parameters(**self.parameters())

    def parameters(self, dependency: Sequence[str] = ()) -> dict[str, Any]:
        """submitit's parameters for a cell job (``dependency``: job ids it waits for, ``afterok``)."""
        s = self.cfg
        tasks = s.tasks_per_node or max(s.gpus_per_node, 1)
        p: dict[str, Any] = {
            "timeout_min": int(s.timeout_min),
            "nodes": int(s.nodes),
            "tasks_per_node": int(tasks),
            "cpus_per_task": int(s.cpus_per_task),
            "gpus_per_node": int(s.gpus_per_node),
            "slurm_array_parallelism": int(s.array_parallelism) or 256,
            "slurm_additional_parameters": {"kill-on-invalid-dep": "yes", **dict(s.additional)},
        }
        if s.mem_gb:
            p["mem_gb"] = float(s.mem_gb)
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(s, key):
                p[f"slurm_{key}"] = getattr(s, key)
        if s.setup:
            p["slurm_setup"] = list(s.setup)
            p["local_setup"] = list(s.setup)
        p["slurm_dependency"] = "afterok:" + ":".join(dependency) if dependency else None
        return p

    def submit(self, items: Sequence[tuple[CellJob, Sequence[Handle]]]) -> list[Handle]:
        """Submit cells, each with its parents' handles.

        One job per cell, waiting (``afterok``) for its own parents; with ``array_parallelism``, the cells of one call
        (the driver submits one dependency level at a time) as one job array waiting for all their parents.
        """

        def deps(parents: Sequence[Handle]) -> list[str]:
            return sorted({p.job_id for p in parents}) if self.holds_dependencies else []

        if self.cfg.array_parallelism and len(items) > 1:
            groups = [(list(range(len(items))), sorted({d for _, parents in items for d in deps(parents)}))]
        else:
            groups = [([i], deps(parents)) for i, (_, parents) in enumerate(items)]
        handles: list[Handle] = []
        for idx, dependency in groups:
            self.executor.update_parameters(**self.parameters(dependency))
            if len(idx) == 1:
                self.executor.update_parameters(name=f"{self.study}:{items[idx[0]][0].cell.cfg.name}")
                jobs = [self.executor.submit(self.fn, items[idx[0]][0])]
            else:
                self.executor.update_parameters(name=f"{self.study}:cells")
                with self.executor.batch():
                    jobs = [self.executor.submit(self.fn, items[i][0]) for i in idx]
            for job in jobs:
                if self.cluster == "local":
                    job._results_timeout_s = 1  # a local job's result file is written before its process ends
                handles.append(Handle(str(job.job_id), job, str(job.paths.stderr)))
        return handles

    def adopt(self, job_id: str) -> Handle | None:
        """Re-attach to a job a previous driver submitted (``None`` if it is gone)."""
        if self.cluster == "local":
            from submitit.local.local import LocalJob

            job = LocalJob(self.folder, job_id)
            job._results_timeout_s = 1
            return Handle(job_id, job, str(job.paths.stderr), {"pid": int(job_id)} if job_id.isdigit() else {})
        from submitit.slurm.slurm import SlurmJob

        job = SlurmJob(self.folder, job_id)
        return Handle(job_id, job, str(job.paths.stderr))

    def _local_alive(self, handle: Handle) -> bool:
        """An adopted LocalExecutor job is alive while its controller process exists (checked by its command)."""
        pid = handle.meta.get("pid")
        if not pid:
            return False
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            try:
                os.kill(pid, 0)
            except OSError:
                return False
            return True
        return b"submitit" in cmd

    def poll(self, handle: Handle) -> Poll:
        job = handle.obj
        if "pid" in handle.meta:  # adopted local job: its Popen belongs to the dead driver
            if self._local_alive(handle):
                return Poll("active")
        else:
            state = str(job.state).upper()
            if state in ("PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED"):
                return Poll("queued")
            if not job.done():
                return Poll("active")
        try:
            exc = job.exception()
        except Exception as err:  # noqa: BLE001  # a job the engine no longer knows
            return Poll("done", f"the job's outcome is unknown ({type(err).__name__}: {err})", died=True)
        if exc is None:
            return Poll("done")
        if isinstance(exc, self.submitit.core.utils.FailedJobError):
            return Poll(
                "done", _last_line(str(exc).split("----------------------")[1] if "------" in str(exc) else str(exc))
            )
        state = ""
        try:
            state = str(job.state)
        except Exception:  # noqa: BLE001
            pass
        return Poll(
            "done",
            f"the job ended without a result (state {state or 'unknown'}: killed, timed out or its node failed)",
            died=True,
        )

    def cancel(self, handle: Handle) -> None:
        try:
            if "pid" in handle.meta:
                os.kill(int(handle.meta["pid"]), 2)
            elif handle.obj is not None:
                handle.obj.cancel(check=False)
        except Exception:  # noqa: BLE001  # cancelling a job that has ended
            pass

    def close(self) -> None:
        pass


class RayBackend:
    """Ray tasks, on a cluster given by ``launcher.ray.address`` or on a local instance started for the study.

    A local instance is started without the dashboard and without usage statistics (it works offline) and is
    stopped by :meth:`close`; its processes end with the driver.
    """

    def __init__(self, cfg: LauncherCfg) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
        try:
            import ray
        except ImportError:
            raise missing_engine("ray", "ray") from None
        self.ray = ray
        self.cfg = cfg.ray
        self.retries = int(cfg.retries)
        self.name = "ray"
        self.holds_dependencies = True
        self.retries_itself = True
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            if self.cfg.address:
                kw["address"] = self.cfg.address
            else:
                kw.update(include_dashboard=False, num_cpus=self.cfg.local_cpus or None)
            try:
                ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"the Ray cluster at {self.cfg.address}" if self.cfg.address else "a local Ray instance"
                raise RulabError(
                    f"cannot start or join {where} ({_last_line(str(err))}); check launcher.ray.address"
                ) from None
            self.started = True
        self.remote = ray.remote(run_cell_job)

    def submit(self, items: Sequence[tuple[CellJob, Sequence[Handle]]]) -> list[Handle]:
        out = []
        for job, parents in items:
            ref = self.remote.options(
                num_cpus=self.cfg.num_cpus,
                num_gpus=self.cfg.num_gpus,
                max_retries=self.retries,
                retry_exceptions=False,
                name=f"{job.study}:{job.cell.cfg.name}",
            ).remote(job, *[p.obj for p in parents])
            out.append(Handle(ref.task_id().hex()[:16], ref))
        return out

    def adopt(self, job_id: str) -> Handle | None:
        return None  # a task belongs to the driver that submitted it and ends with it

    def poll(self, handle: Handle) -> Poll:
        ray = self.ray
        ready, _ = ray.wait([handle.obj], timeout=0)
        if not ready:
            return Poll("active")
        try:
            ray.get(handle.obj)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            text = f"{type(cause).__name__}: {cause}" if cause is not None else _last_line(str(err))
            return Poll("done", text.splitlines()[0] if text else "the task failed")
        except ray.exceptions.RayError as err:
            return Poll(
                "done", f"the worker died ({type(err).__name__}; Ray retried it {self.retries} time(s))", died=True
            )
        return Poll("done")

    def cancel(self, handle: Handle) -> None:
        try:
            self.ray.cancel(handle.obj, force=True)
        except Exception:  # noqa: BLE001  # a finished task
            pass

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def require_engine(cfg: LauncherCfg) -> None:
    """Fail at once, before anything runs, when the chosen launcher's engine is not installed."""
    import importlib

    package = {"slurm": "submitit", "ray": "ray"}.get(cfg.name)
    if package:
        try:
            importlib.import_module(package)
        except ImportError:
            raise missing_engine(package, cfg.name) from None


def make_backend(cfg: LauncherCfg, state_dir: Path, study: str) -> SubmititBackend | RayBackend:
    """The back-end of ``cfg.name`` (``slurm`` or ``ray``)."""
    if cfg.name == "slurm":
        return SubmititBackend(cfg, Path(state_dir) / "jobs", study)
    if cfg.name == "ray":
        return RayBackend(cfg)
    raise RulabError(f"launcher '{cfg.name}' has no cluster back-end; use slurm or ray")
