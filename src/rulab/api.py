"""The Python API: every command-line action is one call here (style-anchors.md §13).

>>> import rulab
>>> run_dir = rulab.train("fmnist-plain", overrides=["train.epochs=1"])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rulab.config import RunCfg, load_config

__all__ = ["train", "config", "study", "results", "report"]


def config(preset: str | None = None, path: str | None = None, overrides: Sequence[str] = ()) -> RunCfg:
    """Resolve and validate a run configuration (preset → YAML → overrides)."""
    return load_config(preset, path, overrides)


def train(cfg: RunCfg | str, resume: bool = False, overrides: Sequence[str] = (), progress: bool = True) -> Path:
    """Train a run (a :class:`RunCfg` or a preset name plus overrides); returns its run directory."""
    from rulab.train.loop import fit

    if isinstance(cfg, str):
        cfg = load_config(cfg, overrides=overrides)
    return fit(cfg, resume=resume, progress=progress)


def study(
    name: Any,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
    db: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    evaluate: Callable[..., Any] | bool | None = None,
    report: bool | None = None,
) -> Any:
    """Run a study (a registered name such as ``"fmnist-default"`` or a :class:`rulab.presets.study.Study`).

    Trains and evaluates every (preset, seed) cell into ``<out_dir>/results.db`` (or ``db``), skipping finished
    cells, then writes ``<out_dir>/report.html``; with ``progress`` it prints the summary table, the report's
    path and the time. Returns a :class:`rulab.study.StudyResult`. See :func:`rulab.study.run_study`.
    """
    from rulab.study import run_study

    return run_study(name, out_dir=out_dir, db=db, seeds=seeds, overrides=overrides, progress=progress, evaluate=evaluate, report=report)


def results(db: str | Path = "runs/results.db", frame: bool = False, **filters: Any) -> Any:
    """Stored results joined with their runs (list of dicts, or a pandas DataFrame with ``frame=True``).

    Filters are column equalities, e.g. ``results(study="fmnist-default", kind="ood", metric="auroc")``; see
    :meth:`rulab.results.store.ResultStore.results`.
    """
    from rulab.errors import StoreError
    from rulab.results.store import ResultStore

    if not Path(db).exists():
        raise StoreError(f"there is no results database at {db}; run a study first (`rulab study fmnist-default`)")
    with ResultStore(db) as store:
        return store.results(frame=frame, **filters)


def report(db: str | Path = "runs/results.db", study: str | None = None, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the single-file HTML report of a results database; returns its path (see :func:`rulab.reports.build_report`)."""
    from rulab.reports import build_report

    return build_report(db, study=study, out=out, **kwargs)
