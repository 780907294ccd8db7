"""One cell of a study: train (or resume) and evaluate one (preset, seed) run; every launcher runs this.

:func:`work_cell` is the cell's work, the same under every launcher. What differs is who stores its outcome:

* the ``local`` launcher (:func:`rulab.study.runner.run_study`) runs it in the study process and writes the
  database itself, as it goes (hooks ``on_start`` and ``on_trained``);
* a cluster worker (``slurm``, ``ray``; :mod:`rulab.study.worker`) never opens the database: it writes the
  :class:`CellRecord` atomically into the run directory as ``cell-result.json`` (the file appears whole or not
  at all, so it is also the cell's completion marker), and the driver alone stores it with :func:`ingest`.

:func:`ingest` is idempotent: the record carries the times the cell started and finished, the run's row keeps
them, and a record whose run row already holds its status and finish time is not written again; every row it
writes has a unique key (``results``: run, kind, dataset, shift, severity, detector, metric; ``curves``: run, epoch,
split, metric), so ingesting after an interruption half-way completes the rows without duplicating any.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

import rulab
from rulab.checkpoint import read_meta
from rulab.config import RunCfg, config_hash, from_dict
from rulab.errors import RulabError
from rulab.io import atomic_write_json
from rulab.registry import DATASETS
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable, Row
from rulab.study.plan import StudyCell
from rulab.train.loop import fit, git_commit

__all__ = [
    "duration",
    "CellRecord",
    "CELL_FILE",
    "work_cell",
    "ingest",
    "read_record",
    "write_record",
    "arrays_path",
    "check_run_dir",
    "dataset_checksums",
    "provenance",
]

#: the file a cluster worker leaves in the run directory when its cell is done (the driver ingests it)
CELL_FILE = "cell-result.json"
RECORD_FORMAT = 1
_META_KEYS = ("git_commit", "rulab_version", "torch_version", "device")

#: ``evaluate(run_dir, cfg) -> ResultTable``: what evaluates one trained cell
Evaluator = Callable[[Path, RunCfg], ResultTable]


def now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds (the store's time format)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def arrays_path(run_dir: Path, cfg: RunCfg) -> Path:
    """Where a cell's evaluation arrays live: ``<run_dir>/eval/<benchmark>/arrays.safetensors``."""
    return Path(run_dir) / "eval" / cfg.eval.benchmark / "arrays.safetensors"


def check_run_dir(cell: StudyCell) -> None:
    """Refuse a run directory that holds a run of another configuration (it would be silently reused)."""
    path = cell.run_dir / "config.yaml"
    if not path.exists():
        return
    try:
        old = config_hash(from_dict(RunCfg, yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
    except (RulabError, yaml.YAMLError, TypeError, ValueError):
        return
    if old != config_hash(cell.cfg):
        raise RulabError(
            f"{cell.run_dir} holds a run of another configuration (hash {old}, this study needs {config_hash(cell.cfg)}); "
            "delete that directory or run the study with another --out"
        )


def dataset_checksums(cfg: RunCfg) -> dict[str, str]:
    """``{"<dataset>/<file>": md5}`` of the files the run's dataset was read from (empty where unknown)."""
    out: dict[str, str] = {}
    for split in ("train", "test"):
        try:
            ds = DATASETS.create(cfg.data.dataset, split=split, root=cfg.data.root or None)
        except (RulabError, TypeError):
            continue
        files = (getattr(ds, "meta", None) or {}).get("files") or {}
        for key, info in files.items():
            if isinstance(info, Mapping) and info.get("md5"):
                out[f"{cfg.data.dataset}/{key}"] = str(info["md5"])
    return out


def provenance() -> dict[str, str]:
    """What runs this code: rulab and torch versions, the git commit of the working directory."""
    return {"rulab_version": rulab.__version__, "torch_version": torch.__version__, "git_commit": git_commit()}


@dataclass
class CellRecord:
    """Everything the database holds about one finished cell, as a cluster worker hands it to the driver.

    Attributes:
        run_id, name, config_hash: the cell (checked against the plan when it is read back).
        status: ``finished`` (trained and evaluated) or ``trained`` (a cell that is only trained).
        started_at, finished_at: ISO 8601 UTC times of the cell's work (they become the run row's times).
        provenance: rulab and torch versions and the git commit where the cell ran (:func:`provenance`).
        meta: ``git_commit``, ``rulab_version``, ``torch_version``, ``device`` from the checkpoint's metadata.
        history: the training loop's per-epoch records (the ``curves`` rows).
        dataset_checksums: ``{"<dataset>/<file>": md5}`` of the data read.
        rows: the evaluation's result rows (:class:`rulab.results.table.Row` as dicts; empty when only trained).
        host, pid: where the work ran.
        seconds: wall time of training and of evaluation.
    """

    run_id: str
    name: str
    config_hash: str
    status: str
    started_at: str
    finished_at: str
    provenance: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    dataset_checksums: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    host: str = ""
    pid: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> ResultTable:
        """The result rows as a :class:`~rulab.results.table.ResultTable`."""
        return ResultTable(Row(**r) for r in self.rows)


def work_cell(
    cell: StudyCell,
    evaluate: Evaluator,
    progress: bool = False,
    log: Callable[[str], None] = lambda msg: None,
    on_start: Callable[[dict[str, str]], None] | None = None,
    on_trained: Callable[[dict[str, Any]], None] | None = None,
) -> CellRecord:
    """Train (resuming from the last checkpoint; a trained run is not trained again) and evaluate one cell.

    Args:
        cell: the planned cell.
        evaluate: ``evaluate(run_dir, cfg) -> ResultTable`` (:func:`rulab.study.runner.evaluate_run`).
        progress: the training loop's progress bar.
        log: receives one line per step.
        on_start: called with :func:`provenance` before training (the local launcher records the run there).
        on_trained: called with the checkpoint's metadata once the model is trained.

    Returns:
        The :class:`CellRecord` (the evaluation arrays are saved beside the run, ``eval/<benchmark>/``).

    Raises:
        RulabError: the run directory holds another configuration; whatever training or evaluation raises.
    """
    check_run_dir(cell)
    cfg = cell.cfg
    started = now_iso()
    prov = provenance()
    if on_start is not None:
        on_start(prov)
    if cell.checkpoint.exists():
        log(f"{cfg.name}: trained before, not training again")
    else:
        log(f"{cfg.name}: training" + (" (resuming)" if (cell.run_dir / "checkpoints" / "LATEST").exists() else ""))
    t0 = time.time()
    run_dir = fit(cfg, resume=True, progress=progress)
    t_train = time.time() - t0
    meta = read_meta(run_dir)
    if on_trained is not None:
        on_trained(meta)
    rows: list[dict[str, Any]] = []
    if cell.evaluate:
        log(f"{cfg.name}: evaluating")
        table = evaluate(run_dir, cfg)
        if table.arrays and not arrays_path(run_dir, cfg).exists():
            table.save_arrays(arrays_path(run_dir, cfg))
        rows = [asdict(r) for r in table]
        log(
            f"{cfg.name}: done in {duration(time.time() - t0)} (training {duration(t_train)}, "
            f"evaluation {duration(time.time() - t0 - t_train)})"
        )
    return CellRecord(
        run_id=cell.run_id,
        name=cfg.name,
        config_hash=config_hash(cfg),
        status="finished" if cell.evaluate else "trained",
        started_at=started,
        finished_at=now_iso(),
        provenance=prov,
        meta={k: meta[k] for k in _META_KEYS if meta.get(k)},
        history=list(meta.get("history", [])),
        dataset_checksums=dataset_checksums(cfg),
        rows=rows,
        host=socket.gethostname(),
        pid=os.getpid(),
        seconds={"train": t_train, "evaluate": time.time() - t0 - t_train},
    )


def duration(seconds: float) -> str:
    """Seconds as the study prints them: ``12.3 s``, ``4 min 5 s``, ``1 h 2 min 3 s``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return (f"{h} h " if h else "") + f"{m} min {s} s"


def write_record(cell: StudyCell, record: CellRecord) -> Path:
    """Write ``record`` atomically to ``<run_dir>/cell-result.json`` (NaN and infinities kept as JSON's extensions)."""
    data = {"format": RECORD_FORMAT, **asdict(record)}
    return atomic_write_json(cell.run_dir / CELL_FILE, data)


def read_record(cell: StudyCell) -> CellRecord | None:
    """The cell's ``cell-result.json`` if it is complete and belongs to this cell, else ``None``.

    A file is ignored (``None``) when it cannot be parsed, names another run or configuration, lacks the
    evaluation the cell needs, or when the checkpoint it describes is gone (the cell must be computed again).
    """
    path = cell.run_dir / CELL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.pop("format", None) != RECORD_FORMAT:
        return None
    try:
        record = CellRecord(**data)
    except TypeError:
        return None
    if record.run_id != cell.run_id or record.config_hash != config_hash(cell.cfg) or not cell.checkpoint.exists():
        return None
    if cell.evaluate and record.status != "finished":
        return None
    return record


def ingest(store: ResultStore, cell: StudyCell, study: str, record: CellRecord) -> bool:
    """Store a cell's record in the database (the driver's one write path); ``False`` if it was stored before.

    Writes the run row (config, provenance, data checksums, checkpoint, parent, the record's start time), the
    training curves, the result rows, and last the status (``finished``, or ``trained`` for a cell that is only
    trained) with the record's finish time. Re-ingesting the same record changes nothing; ingesting after an
    interruption completes what is missing (every row is keyed uniquely, nothing is duplicated).
    """
    run = store.run(cell.run_id)
    if run is not None and run["status"] == record.status and run["finished_at"] == record.finished_at:
        return False
    checkpoint = str(cell.checkpoint)
    store.start_run(
        cell.cfg,
        run_id=cell.run_id,
        study=study,
        parent_run=cell.parents[0] if cell.parents else "",
        meta=record.provenance,
        dataset_checksums=record.dataset_checksums,
        checkpoint=checkpoint,
        started_at=record.started_at,
    )
    store.write_curves(cell.run_id, record.history)
    if record.rows:
        store.write_results(cell.run_id, record.table())
    store.finish_run(
        cell.run_id, record.status, checkpoint=checkpoint, meta=record.meta, finished_at=record.finished_at
    )
    return True
