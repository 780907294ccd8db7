"""The driver of a study on a cluster (``--launcher slurm`` or ``--launcher ray``): submit, watch, ingest.

The driver is the only process that writes the results database; the cells run as jobs of the engine
(:mod:`rulab.study.backends`) and each leaves its outcome in its run directory (:mod:`rulab.study.worker`).

1. Before submitting anything, every cell is looked at: finished in the database (with its checkpoint on disk) →
   skipped; its ``cell-result.json`` is there (a job finished while no driver was watching) → ingested now;
   a job a previous driver submitted is still queued or running (its id is in the state file; SLURM and the
   LocalExecutor only) → watched again, not submitted twice; otherwise it waits to be submitted.
2. A cell is submitted once each parent (``{run:PRESET}``) has finished, or — where the engine holds a job until
   its parents succeed (SLURM ``afterok``, Ray object references) — has been submitted.
3. Every ``launcher.poll_s`` seconds the driver looks at its jobs: one that ended with a valid record is ingested
   (:func:`rulab.study.cell.ingest`; idempotent); one whose worker died is submitted again up to
   ``launcher.retries`` times (it resumes from its last checkpoint); one whose code raised an error is marked
   ``failed`` in the database, with the tail of its log, and so are the cells that depend on it. The other cells
   go on.
4. Its state (cells, job ids, attempts, errors) is kept in ``<out>/.study/<study>/state.json`` (rewritten
   atomically), which ``rulab study NAME --status`` reads; a lock file there keeps a second driver of the same
   study away while this one lives.

A driver killed at any moment loses nothing: the database only ever holds complete records, jobs keep running
(SLURM, LocalExecutor; Ray tasks end with their driver and resume from their checkpoints when submitted again),
and the next driver ingests what finished, re-attaches to what is running and submits only what is missing.

One concern, kept in one file: the cluster driver: submit, watch, ingest.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rulab.errors import RulabError
from rulab.io import atomic_write_json, atomic_write_text
from rulab.lock import pid_alive
from rulab.presets.study_spec import LauncherCfg, launcher_dict
from rulab.results.store import ResultStore
from rulab.study.backends import Handle, Poll, make_backend
from rulab.study.cell import CELL_FILE, Evaluator, ingest, read_record
from rulab.study.plan import StudyCell
from rulab.study.worker import SHARED_CHECK, CellJob, read_started

__all__ = ["CellState", "run_cluster", "state_dir_of", "read_state", "DriverLock", "cell_done"]

STATE_FILE = "state.json"
LOCK_FILE = "driver.lock"
ACTIVE = ("queued", "running")


def state_dir_of(out_dir: str | Path, study: str) -> Path:
    """Where a study's driver keeps its state, lock, token and job logs: ``<out>/.study/<study>`` (absolute)."""
    return Path(out_dir).resolve() / ".study" / study


@dataclass
class CellState:
    """What the driver knows about one cell (one entry of the state file).

    ``state``: ``pending`` (not submitted yet), ``queued``, ``running``, ``finished`` or ``failed``.
    """

    name: str
    run_id: str
    run_dir: str
    parents: list[str] = field(default_factory=list)
    state: str = "pending"
    job_id: str = ""
    attempts: int = 0
    submission: str = ""
    host: str = ""
    error: str = ""
    log: str = ""
    note: str = ""


def read_state(state_dir: Path) -> dict[str, Any]:
    """The driver's state file (``{}`` when there is none or it cannot be read)."""
    try:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class DriverLock:
    """One driver per study: ``<state_dir>/driver.lock`` created with ``O_EXCL``, refreshed while the driver lives.

    A lock whose holder ran on this host and no longer exists, or ran on another host and has not been refreshed
    for ``stale_s`` seconds, is taken over.
    """

    def __init__(self, state_dir: Path, study: str, stale_s: float = 600.0) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self.study = study
        self.stale_s = stale_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}

    def _stale(self) -> bool:
        try:
            held = json.loads(self.path.read_text(encoding="utf-8"))
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return True
        if held.get("host") == self.me["host"]:
            return not pid_alive(int(held.get("pid", 0)))
        return age > self.stale_s

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                    continue
                try:
                    held = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    held = {}
                raise RulabError(
                    f"study '{self.study}' is being driven by process {held.get('pid', '?')} on {held.get('host', '?')} "
                    f"({self.path}); wait for it, or stop it and run again (its jobs are kept)"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(self.me, fh)
            return
        raise RulabError(
            f"cannot take the driver lock {self.path}; remove it if no driver of study '{self.study}' is running"
        )

    def refresh(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        try:
            held = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if held.get("token") == self.me["token"]:
            with contextlib.suppress(OSError):
                self.path.unlink()


def cell_done(cell: StudyCell, store: ResultStore) -> bool:
    """Finished in the database (``trained`` for a cell that is only trained) and its checkpoint on disk."""
    run = store.run(cell.run_id)
    if run is None or not cell.checkpoint.exists():
        return False
    return run["status"] == "finished" or (not cell.evaluate and run["status"] == "trained")


def _token(state_dir: Path) -> str:
    """The study's shared-file-system token (created once, kept, so adopted jobs still match it)."""
    path = state_dir / SHARED_CHECK
    try:
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    except OSError:
        pass
    text = uuid.uuid4().hex
    atomic_write_text(path, text + "\n")
    return text


class _Driver:
    def __init__(
        self,
        study: str,
        cells: Sequence[StudyCell],
        launcher: LauncherCfg,
        store: ResultStore,
        evaluate: Evaluator,
        state_dir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.study, self.cells, self.launcher, self.store, self.evaluate = study, list(cells), launcher, store, evaluate
        self.state_dir, self.log = state_dir, log
        self.by_id = {c.run_id: c for c in self.cells}
        self.states = {c.run_id: CellState(c.cfg.name, c.run_id, str(c.run_dir), list(c.parents)) for c in self.cells}
        self.handles: dict[str, Handle] = {}
        self.backend: Any = None
        self.token = ""
        self.ran: list[str] = []
        self.skipped: list[str] = []

    # ----------------------------------------------------------------------------------------- state file

    def save(self) -> None:
        counts = {
            k: sum(s.state == k for s in self.states.values())
            for k in ("pending", "queued", "running", "finished", "failed")
        }
        atomic_write_json(
            self.state_dir / STATE_FILE,
            {
                "study": self.study,
                "launcher": launcher_dict(self.launcher),
                "backend": getattr(self.backend, "name", self.launcher.name),
                "driver": {"host": socket.gethostname(), "pid": os.getpid(), "updated": time.time()},
                "counts": counts,
                "cells": [asdict(self.states[c.run_id]) for c in self.cells],
            },
        )

    def _set(self, s: CellState, state: str, **kw: Any) -> None:
        changed = s.state != state
        s.state = state
        for k, v in kw.items():
            setattr(s, k, v)
        if not changed:
            return
        job = f" (job {s.job_id})" if s.job_id else ""
        if state == "queued":
            self.log(f"{s.name}: queued{job}")
        elif state == "running":
            self.log(f"{s.name}: running{job}" + (f" on {s.host}" if s.host else ""))
        elif state == "finished":
            self.log(f"{s.name}: finished{job}" + (f", {s.note}" if s.note else ""))
        elif state == "failed":
            self.log(f"{s.name}: failed{job}: {s.error}")

    # ------------------------------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Look at every cell before submitting anything (module docstring, step 1)."""
        prev = {c.get("run_id"): c for c in read_state(self.state_dir).get("cells", []) if isinstance(c, dict)}
        for cell in self.cells:
            s = self.states[cell.run_id]
            if cell_done(cell, self.store):
                self.skipped.append(cell.cfg.name)
                self._set(s, "finished", note="finished before, skipped")
                continue
            record = read_record(cell)
            if record is not None:
                ingest(self.store, cell, self.study, record)
                self.skipped.append(cell.cfg.name)
                self._set(s, "finished", note="finished while no driver watched; results stored now", host=record.host)
                continue
            old = prev.get(cell.run_id) or {}
            if old.get("state") in ACTIVE and old.get("job_id"):
                handle = self.backend.adopt(str(old["job_id"]))
                if handle is not None:
                    self.handles[cell.run_id] = handle
                    s.job_id, s.attempts, s.submission, s.log = (
                        handle.job_id,
                        int(old.get("attempts", 1)),
                        str(old.get("submission", "")),
                        handle.log,
                    )
                    self._set(s, "queued", note="submitted by an earlier driver")
                    self.log(f"{s.name}: watching job {s.job_id} again (submitted by an earlier driver)")
                    continue
            s.attempts = 0

    def _parents_state(self, cell: StudyCell) -> str:
        """``ready``, ``wait`` or ``failed`` for submitting ``cell`` now."""
        states = {p: self.states[p].state for p in cell.parents}
        if any(st == "failed" for st in states.values()):
            return "failed"
        if all(st == "finished" for st in states.values()):
            return "ready"
        if self.backend.holds_dependencies and all(
            st == "finished" or (st in ACTIVE and p in self.handles) for p, st in states.items()
        ):
            return "ready"
        return "wait"

    def submit_ready(self) -> None:
        items: list[tuple[CellJob, list[Handle]]] = []
        cells: list[StudyCell] = []
        for cell in self.cells:
            s = self.states[cell.run_id]
            if s.state != "pending":
                continue
            ready = self._parents_state(cell)
            if ready == "failed":
                bad = [self.states[p].name for p in cell.parents if self.states[p].state == "failed"]
                self._fail(cell, f"not run: its parent {', '.join(bad)} failed")
                continue
            if ready != "ready":
                continue
            with contextlib.suppress(OSError):  # a record of an earlier computation (read_record refused it)
                (cell.run_dir / CELL_FILE).unlink()
            s.attempts += 1
            s.submission = uuid.uuid4().hex[:12]
            threads = (
                self.launcher.slurm.cpus_per_task
                if self.launcher.name == "slurm"
                else max(int(self.launcher.ray.num_cpus), 1)
            )
            job = CellJob(
                cell,
                self.study,
                self.evaluate,
                os.getcwd(),
                str(self.state_dir),
                self.token,
                int(threads),
                s.submission,
            )
            parents = [self.handles[p] for p in cell.parents if self.states[p].state in ACTIVE and p in self.handles]
            items.append((job, parents))
            cells.append(cell)
        if not items:
            return
        handles = self.backend.submit(items)
        for cell, handle in zip(cells, handles):
            self.handles[cell.run_id] = handle
            self.states[cell.run_id].job_id = handle.job_id
            self.states[cell.run_id].state = "queued"
        self.save()  # at once: a driver killed now finds these jobs in its state file and does not submit them twice
        for cell, handle in zip(cells, handles):
            self.handles[cell.run_id] = handle
            s = self.states[cell.run_id]
            s.log, s.error, s.state = handle.log, "", "pending"
            self._set(s, "queued", note="" if s.attempts == 1 else f"attempt {s.attempts}")
            if s.attempts > 1:
                self.log(
                    f"{s.name}: submitted again (attempt {s.attempts} of {self.launcher.retries + 1}) as job {s.job_id}"
                )

    def poll(self) -> None:
        for cell in self.cells:
            s = self.states[cell.run_id]
            if s.state not in ACTIVE or cell.run_id not in self.handles:
                continue
            handle = self.handles[cell.run_id]
            p: Poll = self.backend.poll(handle)
            if p.state != "done":
                started = read_started(cell)
                if started.get("submission") == s.submission and p.state == "active":
                    self._set(s, "running", host=str(started.get("host", "")))
                elif p.state == "queued":
                    self._set(s, "queued")
                continue
            self.handles.pop(cell.run_id, None)
            record = read_record(cell)
            if record is not None and not p.error:
                try:
                    ingest(self.store, cell, self.study, record)
                except RulabError as err:
                    self._fail(cell, f"its record could not be stored: {err}")
                    continue
                self.ran.append(cell.cfg.name)
                self._set(s, "finished", host=record.host, note="results stored")
                continue
            error = p.error or "the job ended without writing its record (cell-result.json)"
            parents_failed = [self.states[x].name for x in cell.parents if self.states[x].state == "failed"]
            if parents_failed:
                self._fail(cell, f"not run: its parent {', '.join(parents_failed)} failed")
            elif p.died and not self.backend.retries_itself and s.attempts <= self.launcher.retries:
                self.log(f"{s.name}: job {s.job_id} ended early ({error}); it resumes from its last checkpoint")
                self._requeue_dependents(cell)
                s.state, s.error = "pending", error
            else:
                self._fail(cell, error)

    def _requeue_dependents(self, cell: StudyCell) -> None:
        """Children already submitted against ``cell``'s job (SLURM afterok) wait for the new job instead."""
        for child in self.cells:
            if (
                cell.run_id in child.parents
                and self.states[child.run_id].state in ACTIVE
                and child.run_id in self.handles
            ):
                self.backend.cancel(self.handles.pop(child.run_id))
                cs = self.states[child.run_id]
                cs.state, cs.attempts = "pending", max(cs.attempts - 1, 0)
                self.log(
                    f"{cs.name}: job {cs.job_id} cancelled; submitted again once its parent's new job is submitted"
                )

    def _fail(self, cell: StudyCell, error: str) -> None:
        s = self.states[cell.run_id]
        for child in self.cells:  # children held by the engine would never start
            if cell.run_id in child.parents and child.run_id in self.handles:
                self.backend.cancel(self.handles.pop(child.run_id))
                self._fail(child, f"not run: its parent {s.name} failed")
        with contextlib.suppress(RulabError):
            self.store.start_run(
                cell.cfg,
                run_id=cell.run_id,
                study=self.study,
                parent_run=cell.parents[0] if cell.parents else "",
                checkpoint=str(cell.checkpoint),
            )
            self.store.finish_run(cell.run_id, "failed")
        self._set(s, "failed", error=error)

    def run(self) -> None:
        lock = DriverLock(self.state_dir, self.study)
        lock.acquire()
        try:
            self.token = _token(self.state_dir)
            self.backend = make_backend(self.launcher, self.state_dir, self.study)
            try:
                self.start()
                self.save()
                last = ""
                while any(s.state not in ("finished", "failed") for s in self.states.values()):
                    self.submit_ready()
                    self.poll()
                    self.save()
                    lock.refresh()
                    counts = ", ".join(
                        f"{sum(s.state == k for s in self.states.values())} {k}"
                        for k in ("queued", "running", "finished", "failed")
                    )
                    if counts != last:
                        self.log(counts)
                        last = counts
                    if any(s.state not in ("finished", "failed") for s in self.states.values()):
                        time.sleep(self.launcher.poll_s)
                self.save()
            finally:
                self.backend.close()
        finally:
            lock.release()


def run_cluster(
    study: str,
    cells: Sequence[StudyCell],
    launcher: LauncherCfg,
    store: ResultStore,
    evaluate: Evaluator,
    out_dir: str | Path,
    log: Callable[[str], None],
) -> tuple[list[str], list[str], list[CellState]]:
    """Run ``cells`` on the cluster back-end of ``launcher`` and ingest them into ``store`` (the module docstring).

    Returns:
        ``(ran, skipped, states)``: names of the cells whose results this call stored, of those finished before,
        and every cell's final :class:`CellState`.

    Raises:
        RulabError: the engine is missing or unreachable, or another driver runs the study.
    """
    state_dir = state_dir_of(out_dir, study)
    state_dir.mkdir(parents=True, exist_ok=True)
    driver = _Driver(study, cells, launcher, store, evaluate, state_dir, log)
    driver.run()
    return driver.ran, driver.skipped, [driver.states[c.run_id] for c in cells]
