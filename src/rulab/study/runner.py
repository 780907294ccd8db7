"""The study runner: train and evaluate a grid of presets × seeds into one results database, then report.

``run_study("fmnist-default")`` is what ``rulab study fmnist-default`` (the README's first command) runs:

1. Every cell (preset, seed) is resolved and validated before anything runs. For each seed the presets are run in
   the study's order, so a ``{run:PRESET}`` override resolves to the run directory of the same seed's cell.
2. A cell trains (:func:`rulab.train.loop.fit` with ``name = <preset>-s<seed>``, ``resume=True``), then is
   evaluated (:func:`evaluate_run`, the one place that calls the evaluation), then its result rows, training
   curves and provenance go to the database; only then is it marked ``finished``.
3. Re-running the same study skips every finished cell (status ``finished`` in the database *and* its checkpoint
   on disk), resumes an interrupted training from its last checkpoint, and evaluates a trained-but-unevaluated
   cell without training it again.
4. Several study processes may share one database (and output directory): a process claims a cell in the
   ``runs`` table before running it (``claimed_by`` = ``host:pid:token``, ``heartbeat_at`` refreshed every
   ``stale_after / 4`` seconds by a background thread). Cells claimed by another live process are skipped and
   waited for at the end (or when a later cell needs them); a claim whose owner died (same host: its PID is gone)
   or went silent for ``stale_after`` seconds is taken over. See :meth:`ResultStore.claim`.
5. With ``ensemble`` (the study's flag, ``rulab study --ensemble``) each evaluated preset's finished seeds are then
   evaluated as one deep ensemble, and with ``mc_dropout=T`` every evaluated cell whose model has dropout is evaluated
   with MC dropout; each such evaluation is a run of its own in the database (:mod:`rulab.eval.derived`), claimed
   like a cell and skipped when already finished.
6. At the end it prints the summary table (mean ± std over seeds per method, each with its 95% interval), the
   report's path and the time.

One concern, kept in one file: running a study's grid on this machine and summarising it (the cluster driver is
rulab.study.launch).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rulab.checkpoint import load_model
from rulab.config import RunCfg, config_hash
from rulab.errors import RulabError
from rulab.eval.checkpoint import evaluate_checkpoint
from rulab.eval.ensemble import evaluate_ensemble, plan_ensemble
from rulab.models.mc_dropout import dropout_layers
from rulab.presets.study_spec import LauncherCfg, Study, launcher_config
from rulab.reports import build_report
from rulab.results.aggregate import Pivot, summary_pivot
from rulab.results.export import to_text
from rulab.results.replicates import ArrayReplicates
from rulab.results.store import ResultStore, owner_id, run_id_for
from rulab.results.table import ResultTable
from rulab.study.cell import dataset_checksums, duration, work_cell
from rulab.study.plan import StudyCell, get_study, plan_cells

__all__ = ["run_study", "evaluate_run", "StudyResult", "Evaluator"]

#: ``evaluate(run_dir, cfg) -> ResultTable``: what evaluates one trained cell (injectable for tests).
Evaluator = Callable[[Path, RunCfg], ResultTable]


@dataclass
class StudyResult:
    """What :func:`run_study` did.

    Attributes:
        study: the study's name.
        db: the results database.
        run_ids: every cell's run id, in study order.
        ran: names of the cells this call trained and/or evaluated.
        skipped: names of the cells that were already finished (by an earlier call or another process).
        report: the HTML report (``None`` when not written).
        seconds: wall time of the call.
        summary: the per-method summary (mean ± std over seeds).
        launcher: ``local``, ``slurm`` or ``ray``.
        status: the cells' status table (cluster launchers: what the driver printed at the end).
    """

    study: str
    db: Path
    out_dir: Path
    run_ids: list[str]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    summary: Pivot | None = None
    report_error: str = ""
    launcher: str = "local"
    status: str = ""

    def text(self) -> str:
        """The summary table, the report path and the time, as printed at the end of a study."""
        where = "" if self.launcher == "local" else f" on {self.launcher}"
        lines = [
            f"study {self.study}: {len(self.run_ids)} runs{where} ({len(self.ran)} run now, {len(self.skipped)} already finished)"
        ]
        if self.summary is not None and self.summary.columns:
            lines.append(to_text(self.summary).rstrip("\n"))
        else:
            lines.append("(no evaluation results stored)")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        elif self.report_error:
            lines.append(f"report not written: {self.report_error}")
        lines.append(f"results database: {self.db}")
        lines.append(f"total time: {duration(self.seconds)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def evaluate_run(run_dir: Path, cfg: RunCfg) -> ResultTable:
    """Evaluate one trained cell: the single place where the study calls the evaluation.

    Calls :func:`rulab.eval.checkpoint.evaluate_checkpoint` with the cell's evaluation settings (benchmark, shift
    suite, detectors, far-away tests, protocol).
    """
    e = cfg.eval
    return evaluate_checkpoint(
        run_dir,
        benchmark=e.benchmark,
        shift=e.shift,
        detectors=list(e.detectors),
        farconf=e.farconf,
        protocol=e.protocol or None,
    )


@contextlib.contextmanager
def _heartbeat(db: Path, run_id: str, owner: str, interval: float) -> Iterator[None]:
    """Refresh ``owner``'s claim on ``run_id`` every ``interval`` seconds while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        store = ResultStore(db)
        try:
            while not stop.wait(interval):
                with contextlib.suppress(RulabError):
                    store.heartbeat(run_id, owner)
        finally:
            store.close()

    thread = threading.Thread(target=beat, name=f"rulab-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _run_cell(
    cell: StudyCell, store: ResultStore, study: Study, evaluate: Evaluator, progress: bool, log: Callable[[str], None]
) -> None:
    """Train (or resume), evaluate and store one claimed cell (the ``local`` launcher: this process writes the database)."""
    cfg = cell.cfg

    def on_start(prov: dict[str, str]) -> None:
        store.start_run(
            cfg,
            run_id=cell.run_id,
            study=study.name,
            parent_run=cell.parents[0] if cell.parents else "",
            meta=prov,
            dataset_checksums=dataset_checksums(cfg),
            checkpoint=str(cell.checkpoint),
        )

    def on_trained(meta: dict[str, Any]) -> None:
        store.write_curves(cell.run_id, meta.get("history", []))
        store.finish_run(cell.run_id, "trained", checkpoint=str(cell.checkpoint), meta=meta)

    record = work_cell(cell, evaluate, progress=progress, log=log, on_start=on_start, on_trained=on_trained)
    if cell.evaluate:
        store.write_results(cell.run_id, record.table())
        store.finish_run(cell.run_id, "finished", checkpoint=str(cell.checkpoint), meta=record.meta)


def _done(cell: StudyCell, store: ResultStore) -> bool:
    run = store.run(cell.run_id)
    if run is None or not cell.checkpoint.exists():
        return False
    return run["status"] == "finished" or (not cell.evaluate and run["status"] == "trained")


@dataclass(frozen=True)
class _Derived:
    """A derived evaluation of finished cells (an ensemble of a preset's seeds, or MC dropout of one cell)."""

    name: str
    run_id: str
    run: Callable[[], object]


def _derived(
    study: Study,
    cells: Sequence[StudyCell],
    db: Path,
    out_dir: str,
    ensemble: bool,
    mc_dropout: int,
    log: Callable[[str], None],
) -> list[_Derived]:
    """The derived evaluations of the finished, evaluated cells, in study order (MC dropout per cell, then ensembles)."""
    store = ResultStore(db)
    try:
        done = [
            c
            for c in cells
            if c.evaluate and c.checkpoint.exists() and (store.run(c.run_id) or {}).get("status") == "finished"
        ]
    finally:
        store.close()
    jobs: list[_Derived] = []
    if mc_dropout:
        for c in done:
            if not dropout_layers(load_model(c.checkpoint)[0]):
                continue
            mc = replace(c.cfg, eval=replace(c.cfg.eval, mc_dropout=mc_dropout))
            name = f"{c.cfg.name}+mc{mc_dropout}"
            jobs.append(
                _Derived(
                    name,
                    run_id_for(name, config_hash(mc)),
                    lambda c=c: evaluate_checkpoint(
                        c.run_dir, mc_dropout=mc_dropout, db=db, study=study.name, progress=False
                    ),
                )
            )
    if ensemble:
        for preset in study.presets:
            members = [c for c in done if c.preset == preset]
            if len(members) < 2 or len(members) < len([c for c in cells if c.preset == preset and c.evaluate]):
                if members:
                    log(
                        f"{preset}: ensemble left out ({len(members)} finished seed(s); it needs every seed, at least two)"
                    )
                continue
            plan = plan_ensemble([c.run_dir for c in members], out_dir=out_dir)
            e = members[0].cfg.eval
            jobs.append(
                _Derived(
                    plan.name,
                    plan.run_id,
                    lambda m=members, e=e: evaluate_ensemble(
                        [c.run_dir for c in m],
                        benchmark=e.benchmark,
                        shift=e.shift,
                        farconf=e.farconf,
                        protocol=e.protocol or None,
                        db=db,
                        out_dir=out_dir,
                        study=study.name,
                        progress=False,
                    ),
                )
            )
    return jobs


def _run_derived(
    jobs: Sequence[_Derived], db: Path, owner: str, stale_after: float, result: StudyResult, log: Callable[[str], None]
) -> None:
    """Run each derived evaluation that is not finished yet and that no other process holds."""
    store = ResultStore(db)
    try:
        for job in jobs:
            result.run_ids.append(job.run_id)
            if (store.run(job.run_id) or {}).get("status") == "finished":
                result.skipped.append(job.name)
                continue
            if not store.claim(job.run_id, owner, stale_after, name=job.name):
                log(f"{job.name}: being evaluated by another process, left to it")
                continue
            log(f"{job.name}: evaluating")
            t0 = time.time()
            ok = False
            try:
                with _heartbeat(db, job.run_id, owner, max(stale_after / 4.0, 0.5)):
                    job.run()
                ok = True
            finally:
                with contextlib.suppress(RulabError):
                    store.release(job.run_id, owner, status=None if ok else "failed")
            result.ran.append(job.name)
            log(f"{job.name}: done in {duration(time.time() - t0)}")
    finally:
        store.close()


def run_study(
    study: Study | str,
    out_dir: str = "runs",
    db: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    evaluate: Evaluator | bool | None = None,
    report: bool | None = None,
    stale_after: float = 120.0,
    poll_s: float = 5.0,
    launcher: str | LauncherCfg | None = None,
    ensemble: bool | None = None,
    mc_dropout: int | None = None,
) -> StudyResult:
    """Run a study: train and evaluate every (preset, seed) cell, store everything, report, summarise.

    Args:
        study: a :class:`Study`, a registered name (``rulab list studies``) or a study YAML file
            (:func:`rulab.presets.study_spec.load_study`).
        out_dir: where run directories (``<out_dir>/<preset>-s<seed>``) and, by default, the database and the
            report (``<out_dir>/report.html``) go.
        db: the results database (default ``<out_dir>/results.db``).
        seeds: run these seeds instead of the study's.
        overrides: dotted config overrides applied to every cell after the study's own (``train.epochs=1``);
            ``launcher.*`` items set the launcher instead (``launcher.slurm.partition=gpu``).
        progress: progress bars and one line per step; also prints the summary at the end.
        evaluate: ``evaluate(run_dir, cfg) -> ResultTable`` (default :func:`evaluate_run`); ``False`` only trains
            (status ``trained``; a later run with evaluation evaluates those cells without training them again).
        report: write the HTML report (default: the study's ``report`` flag).
        stale_after: seconds without a heartbeat after which another process's claim on a cell is taken over
            (``local`` launcher).
        poll_s: seconds between checks while waiting for cells that other processes run (``local`` launcher; a
            cluster driver polls every ``launcher.poll_s``).
        launcher: ``"local"`` (default), ``"slurm"``, ``"ray"`` or a
            :class:`~rulab.presets.study_spec.LauncherCfg`; default: the study's own ``launcher``. ``slurm`` and
            ``ray`` run each cell as a job of that engine and store the results from this process alone
            (:mod:`rulab.study.launch`; docs/distributed.md, "A study on a cluster").
        ensemble: evaluate each preset's seeds as a deep ensemble (default: the study's ``ensemble`` flag).
        mc_dropout: T > 0 evaluates the cells whose model has dropout with MC dropout over T passes; 0 none (default:
            the study's ``mc_dropout``).

    Returns:
        A :class:`StudyResult` (its ``text()`` is what is printed at the end).

    Raises:
        RulabError: a bad study, preset, override or launcher setting (before anything runs), or a failing cell
            (its status is ``failed`` in the database; re-running the study retries it and skips the finished
            cells). On a cluster the other cells finish first, and the error names every failed cell.
    """
    t0 = time.time()
    study = get_study(study)
    launcher_items = [o for o in overrides if o.lstrip("-").startswith("launcher.")]
    overrides = [o for o in overrides if o not in launcher_items]
    lcfg = launcher_config(
        launcher if isinstance(launcher, LauncherCfg) else study.launcher,
        launcher if isinstance(launcher, str) else None,
        launcher_items,
    )
    cells = plan_cells(study, seeds, out_dir, overrides)
    ens = study.ensemble if ensemble is None else bool(ensemble)
    passes = study.mc_dropout if mc_dropout is None else int(mc_dropout)
    if passes < 0:  # checked before any cell runs
        raise RulabError(f"mc_dropout must be a number of passes >= 0, got {passes}")
    if lcfg.name != "local":
        from rulab.study.backends import require_engine

        require_engine(lcfg)
    if evaluate is False:
        cells = [replace(c, evaluate=False) for c in cells]
    db_path = Path(db) if db is not None else Path(out_dir) / "results.db"
    store = ResultStore(db_path)
    evaluator: Evaluator = evaluate if callable(evaluate) else evaluate_run
    result = StudyResult(study.name, db_path, Path(out_dir), [c.run_id for c in cells], launcher=lcfg.name)

    if lcfg.name == "local":
        _run_local(study, cells, store, db_path, evaluator, result, progress, stale_after, poll_s)
    else:
        _run_on_cluster(study, cells, lcfg, store, evaluator, result, out_dir, progress)

    # derived evaluations of finished cells (deep ensembles, MC dropout): run by this process, under any launcher
    if evaluate is not False and (ens or passes):
        log = _printer(study.name, progress)
        _run_derived(
            _derived(study, cells, db_path, out_dir, ens, passes, log), db_path, owner_id(), stale_after, result, log
        )

    records = store.results(run_id=result.run_ids)
    result.summary = summary_pivot(records, replicates=ArrayReplicates(store.runs(run_id=result.run_ids)))
    if study.report if report is None else report:
        try:
            result.report = build_report(
                db_path, study=study.name, out=Path(out_dir) / "report.html", run_ids=result.run_ids
            )
        except RulabError as err:
            result.report_error = str(err)
    result.seconds = time.time() - t0
    store.close()
    if progress:
        print(result.text())
    return result


def _printer(study: str, progress: bool) -> Callable[[str], None]:
    """The driver's progress lines, ``[study] message``, printed only with ``progress``."""

    def log(msg: str) -> None:
        if progress:
            print(f"[{study}] {msg}", flush=True)

    return log


def _run_on_cluster(
    study: Study,
    cells: list[StudyCell],
    lcfg: LauncherCfg,
    store: ResultStore,
    evaluator: Evaluator,
    result: StudyResult,
    out_dir: str,
    progress: bool,
) -> None:
    """The ``slurm`` and ``ray`` launchers: jobs compute, this process alone stores (:func:`rulab.study.launch.run_cluster`)."""
    from rulab.study.launch import run_cluster
    from rulab.study.status import render_status, status_rows

    log = _printer(study.name, progress)
    ran, skipped, states = run_cluster(study.name, cells, lcfg, store, evaluator, out_dir, log)
    result.ran, result.skipped = ran, skipped
    failed = [s for s in states if s.state == "failed"]
    if progress or failed:
        result.status = render_status(status_rows(cells, store, {"cells": [vars(s) for s in states]}, study.name))
        if progress:
            print(result.status, flush=True)
    if failed:
        store.close()
        raise RulabError(
            f"{len(failed)} of {len(cells)} cells of study '{study.name}' failed ({', '.join(s.name for s in failed)}: {failed[0].error}); "
            f"`rulab study {study.name} --status` shows their logs; running the study again retries them and keeps the finished ones"
        )


def _run_local(
    study: Study,
    cells: list[StudyCell],
    store: ResultStore,
    db_path: Path,
    evaluator: Evaluator,
    result: StudyResult,
    progress: bool,
    stale_after: float,
    poll_s: float,
) -> None:
    """The ``local`` launcher: this process (and any other study process on the database) runs the cells itself."""
    owner = owner_id()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), desc=f"study {study.name}", unit="run", dynamic_ncols=True, disable=None)

    def log(msg: str) -> None:
        if bar is not None:
            bar.write(f"[{study.name}] {msg}")

    pending = list(cells)
    waiting_note: set[str] = set()
    try:
        while pending:
            progressed = False
            for cell in list(pending):
                if _done(cell, store):
                    pending.remove(cell)
                    result.skipped.append(cell.cfg.name)
                    log(f"{cell.cfg.name}: already finished, skipped")
                    if bar is not None:
                        bar.update(1)
                    progressed = True
                    continue
                if any(not _done(p, store) for p in cells if p.run_id in cell.parents):
                    continue
                run = store.run(cell.run_id)
                force = (
                    run is not None and run["status"] == "finished" and not cell.checkpoint.exists()
                )  # checkpoint deleted
                if not store.claim(cell.run_id, owner, stale_after, name=cell.cfg.name, force=force):
                    if cell.run_id not in waiting_note:
                        waiting_note.add(cell.run_id)
                        log(
                            f"{cell.cfg.name}: being run by {store.claim_holder(cell.run_id, stale_after) or 'another process'}, waiting"
                        )
                    continue
                ok = False
                try:
                    with _heartbeat(db_path, cell.run_id, owner, max(stale_after / 4.0, 0.5)):
                        _run_cell(cell, store, study, evaluator, progress, log)
                    ok = True
                finally:
                    if not ok:
                        with contextlib.suppress(RulabError):
                            store.release(cell.run_id, owner, status="failed")
                    else:
                        store.release(cell.run_id, owner)
                result.ran.append(cell.cfg.name)
                pending.remove(cell)
                if bar is not None:
                    bar.update(1)
                progressed = True
            if pending and not progressed:
                time.sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()
