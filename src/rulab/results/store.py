"""The results database: one SQLite file (``runs/results.db`` by default) that reports, exports and outside tools
read (docs/results-store.md; convention 7 in docs/conventions.md).

Schema (version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``):

* ``runs``: ``run_id`` (primary key), ``name``, ``preset``, ``method``, ``model``, ``dataset`` (the training set),
  ``seed``, ``config_json``, ``config_hash``, ``git_commit``, ``rulab_version``, ``torch_version``, ``device``,
  ``checkpoint`` (path of ``model.safetensors``), ``parent_run``, ``status``, ``started_at``, ``finished_at``,
  ``dataset_checksums`` (JSON ``{"<dataset>/<file>": md5}``), ``study``, plus the claim columns ``claimed_by``
  (``host:pid:token``) and ``heartbeat_at`` used by concurrent study processes (see :meth:`ResultStore.claim`).
* ``results``: ``run_id``, ``kind``, ``dataset``, ``shift``, ``severity``, ``detector``, ``metric``, ``value``, ``n``,
  ``extra_json``, and (schema 2) ``ci_low``, ``ci_high`` (a 95% interval around ``value``, NULL when there is none)
  and ``ci_method`` (how it was computed, e.g. ``bootstrap-percentile-1000``; ``''`` when none); unique on
  ``(run_id, kind, dataset, shift, severity, detector, metric)``; ``''`` (never NULL) means "none" in the key columns.
* ``curves``: ``run_id``, ``epoch``, ``split``, ``metric``, ``value``; unique on the first four (training and
  validation curves, from the loop's ``metrics.jsonl`` history).

Conventions:

* values are fractions (0.873), never percent;
* a NaN value (an undefined metric) is stored as SQL ``NULL`` and read back as ``nan``; ``+inf``/``-inf`` are stored
  as SQLite's REAL infinities and read back as ``inf``/``-inf``;
* times (``started_at``, ``finished_at``) are ISO 8601 UTC strings with microseconds; ``heartbeat_at`` is Unix time;
* ``status`` is ``running`` (claimed or training), ``trained`` (checkpoint written, not yet evaluated),
  ``finished`` (trained, evaluated and stored) or ``failed``;
* ``run_id`` is ``<name>-<config_hash>`` (:func:`run_id_for`), so a re-run of the same configuration finds its row.

Concurrency: the file is opened in WAL journal mode with a busy timeout (30 s by default), and every write is one
``BEGIN IMMEDIATE`` transaction, so several processes can write at once; a writer waits for the lock instead of
failing, and a transaction either lands whole or not at all (an interrupted process loses no stored row).

One cohesive concern, which is why the module is longer than most: the results database. Every SQL statement
rulab runs is here (schema and version, runs, results, curves, the claims that let study processes share one
file), so the schema and the code that reads and writes it are read and changed together.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rulab.checks import INT64_MAX, INT64_MIN, brief
from rulab.config import config_hash, to_dict
from rulab.errors import RulabWarning, StoreError
from rulab.lock import pid_alive
from rulab.results.rows import MalformedRow, ReadReport, parse_curve, parse_result, parse_run
from rulab.results.table import KEY_COLUMNS, ResultTable, Row

__all__ = [
    "ResultStore",
    "SCHEMA_VERSION",
    "DEFAULT_DB",
    "RUN_COLUMNS",
    "RESULT_COLUMNS",
    "CI_COLUMNS",
    "STATUSES",
    "run_id_for",
    "curve_points",
    "owner_id",
]

SCHEMA_VERSION = 2
DEFAULT_DB = "runs/results.db"
STATUSES = ("running", "trained", "finished", "failed")

RUN_COLUMNS = (
    "run_id",
    "name",
    "preset",
    "method",
    "model",
    "dataset",
    "seed",
    "config_json",
    "config_hash",
    "git_commit",
    "rulab_version",
    "torch_version",
    "device",
    "checkpoint",
    "parent_run",
    "status",
    "started_at",
    "finished_at",
    "dataset_checksums",
    "study",
    "claimed_by",
    "heartbeat_at",
)
RESULT_COLUMNS = ("run_id", *KEY_COLUMNS, "value", "n", "extra_json", "ci_low", "ci_high", "ci_method")
CI_COLUMNS = ("ci_low", "ci_high", "ci_method")
_ADD_CI = (  # schema 1 -> 2: the interval columns (docs/results-store.md, "Versions and migration")
    "ALTER TABLE results ADD COLUMN ci_low REAL",
    "ALTER TABLE results ADD COLUMN ci_high REAL",
    "ALTER TABLE results ADD COLUMN ci_method TEXT NOT NULL DEFAULT ''",
)
CURVE_COLUMNS = ("run_id", "epoch", "split", "metric", "value")

_SCHEMA = """
CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    preset            TEXT NOT NULL DEFAULT '',
    method            TEXT NOT NULL DEFAULT '',
    model             TEXT NOT NULL DEFAULT '',
    dataset           TEXT NOT NULL DEFAULT '',
    seed              INTEGER,
    config_json       TEXT NOT NULL DEFAULT '{}',
    config_hash       TEXT NOT NULL DEFAULT '',
    git_commit        TEXT NOT NULL DEFAULT '',
    rulab_version     TEXT NOT NULL DEFAULT '',
    torch_version     TEXT NOT NULL DEFAULT '',
    device            TEXT NOT NULL DEFAULT '',
    checkpoint        TEXT NOT NULL DEFAULT '',
    parent_run        TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL DEFAULT 'running',
    started_at        TEXT,
    finished_at       TEXT,
    dataset_checksums TEXT NOT NULL DEFAULT '{}',
    study             TEXT NOT NULL DEFAULT '',
    claimed_by        TEXT NOT NULL DEFAULT '',
    heartbeat_at      REAL
);
CREATE INDEX runs_study ON runs (study, preset, seed);
CREATE TABLE results (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    dataset    TEXT NOT NULL DEFAULT '',
    shift      TEXT NOT NULL DEFAULT '',
    severity   TEXT NOT NULL DEFAULT '',
    detector   TEXT NOT NULL DEFAULT '',
    metric     TEXT NOT NULL,
    value      REAL,
    n          INTEGER NOT NULL DEFAULT 0,
    extra_json TEXT NOT NULL DEFAULT '{}',
    ci_low     REAL,
    ci_high    REAL,
    ci_method  TEXT NOT NULL DEFAULT '',
    UNIQUE (run_id, kind, dataset, shift, severity, detector, metric)
);
CREATE INDEX results_metric ON results (metric, kind, detector);
CREATE TABLE curves (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch  INTEGER NOT NULL,
    split  TEXT NOT NULL,
    metric TEXT NOT NULL,
    value  REAL,
    UNIQUE (run_id, epoch, split, metric)
);
"""


def run_id_for(name: str, config_hash: str) -> str:
    """The deterministic id of a run: ``<name>-<config_hash>`` (same name and config → same row)."""
    return f"{name}-{config_hash}" if config_hash else name


def owner_id() -> str:
    """A claim owner for this process: ``host:pid:token`` (the token tells two stores of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _value_in(v: Any, what: str = "value") -> float | None:
    """A value to store: a real number (NaN → ``NULL``); anything else is refused before the write."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        raise StoreError(
            f"cannot store the {what} {brief(v)}: it is not a number; rows hold real numbers (NaN for undefined), so nothing was written"
        )
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise StoreError(
            f"cannot store the {what} {brief(v)}: it is not a real number; rows hold real numbers (NaN for undefined), so nothing was written"
        ) from None
    return None if math.isnan(f) else f


def _text_in(v: Any, column: str, required: bool = False) -> str:
    """A key column to store: text (``None`` → ``''``, "none"); anything else is refused before the write."""
    if required and not v:
        raise StoreError(
            f"cannot store a row without a {column} name; every row needs a kind and a metric name; nothing was written"
        )
    if v is None:
        return ""
    if not isinstance(v, str):
        raise StoreError(f"cannot store {column} {brief(v)}: key columns hold text")
    if "\x00" in v:
        raise StoreError(f"cannot store {column} {brief(v)}: it holds a NUL byte")
    return v


def _n_in(v: Any, what: str = "count n") -> int:
    """An integer column to store (``n``, ``seed``): SQLite's INTEGER is signed 64-bit."""
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or not INT64_MIN <= v <= INT64_MAX:
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
            return int(v)
        raise StoreError(f"cannot store the {what} {brief(v, 40)}: it must be an integer that fits in 64 bits")
    return v


def _extra_in(extra: Any) -> str:
    if not extra:
        return "{}"
    if not isinstance(extra, Mapping):
        raise StoreError(f"cannot store extra = {brief(extra)}: it must be a mapping (stored as a JSON object)")
    try:
        return json.dumps(extra, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError) as err:
        raise StoreError(
            f"cannot store extra = {brief(extra)} as JSON ({type(err).__name__}); give plain numbers, text, lists and mappings"
        ) from None


def _claim_live(claimed_by: str, heartbeat_at: float | None, stale_after: float) -> bool:
    """Whether a claim still belongs to a running process (same host: its PID exists; always: a fresh heartbeat)."""
    if not claimed_by:
        return False
    if heartbeat_at is None or time.time() - heartbeat_at > stale_after:
        return False
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return pid_alive(int(pid_text))
    return True


def curve_points(history: Iterable[Mapping[str, Any]]) -> list[tuple[int, str, str, float]]:
    """Turn the training loop's per-epoch records into ``(epoch, split, metric, value)`` points.

    ``train_loss`` → (``train``, ``loss``), ``val_acc`` → (``val``, ``acc``); other numbers (``lr``, ``step``,
    ``time``) go to split ``train`` under their own name. Non-numeric entries are skipped.
    """
    out = []
    for rec in history:
        epoch = int(rec.get("epoch", 0))
        for key, value in rec.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            split, _, metric = key.partition("_")
            if split not in ("train", "val", "test") or not metric:
                split, metric = "train", key
            out.append((epoch, split, metric, float(value)))
    return out


def _config_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if is_dataclass(cfg):
        return to_dict(cfg)
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"start_run needs a RunCfg or a config mapping, got {type(cfg).__name__}")


class ResultStore:
    """The SQLite results database (see the module docstring for the schema and conventions).

    Args:
        path: the database file (created with its parent directory if missing); default ``runs/results.db``.
        timeout: seconds a writer waits for another process's lock before giving up.
        read_only: open for reading only (``rulab results``, ``rulab report``): the file must exist and is never
            created, migrated or changed. This works on a read-only file system or a full disk too: the file is
            opened with SQLite's ``mode=ro``, and where even that fails because the write-ahead log's index
            (``-shm``) cannot be created beside it, as ``immutable`` (then with a warning if a ``-wal`` file holds
            rows that cannot be read without it).

    Raises:
        StoreError: the file is not a SQLite database, was written by a newer rulab, or cannot be created.

    Example:
        >>> store = ResultStore("runs/results.db")
        >>> run_id = store.start_run(cfg, study="fmnist-default")
        >>> store.write_results(run_id, table)
        >>> store.finish_run(run_id)
    """

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_DB, timeout: float = 30.0, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self.read_only = bool(read_only)
        #: what the last read skipped or emptied (:class:`rulab.results.rows.ReadReport`); also given as a warning
        self.last_read: ReadReport = ReadReport(str(self.path))
        self._con_obj: sqlite3.Connection | None = None
        self._pid = -1
        self._con()  # open (and create or migrate) now, so a bad file fails here with a clear message

    # ------------------------------------------------------------------------------------------- connection

    def _bad_file(self, err: Exception) -> StoreError:
        """The one-sentence error for a failed SQLite call. Only a file SQLite itself calls damaged or foreign
        (``SQLITE_NOTADB``, ``SQLITE_CORRUPT``) is "not a readable rulab results database"; a full disk, a
        read-only file system, a missing permission or an I/O error say so and leave the file alone."""
        code = getattr(err, "sqlite_errorname", "") or ""
        text = str(err)
        if code.startswith("SQLITE_FULL") or "disk is full" in text:
            return StoreError(
                f"no space left on the device while writing the results database {self.path}; free some disk space or pass another --db "
                "(this write was not stored; earlier rows are kept)"
            )
        if code.startswith("SQLITE_READONLY") or "readonly database" in text:
            return StoreError(
                f"cannot write the results database {self.path} (read-only or no permission); make it writable or pass another --db"
            )
        if code.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or "unable to open" in text:
            return StoreError(
                f"cannot open the results database {self.path} for writing (its directory is read-only, not writable by you, or missing); "
                "make it writable or pass another --db (nothing in it was changed)"
            )
        if code.startswith("SQLITE_IOERR") or "disk I/O error" in text:
            return StoreError(
                f"a disk I/O error ({text}) stopped the use of the results database {self.path} (a full disk or a read-only file system?); "
                "check the disk and run again, or pass another --db (the file was left as it is)"
            )
        if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text or "malformed" in text:
            return StoreError(
                f"{self.path} is not a readable rulab results database ({err}); move it aside (nothing is deleted) and run again, or pass another --db"
            )
        return StoreError(
            f"the results database {self.path} failed ({text}); check the file and the disk, or pass another --db"
        )

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection (see ``read_only`` in the class docstring); nothing is created or written."""
        if not self.path.is_file():
            raise StoreError(
                f"there is no results database at {self.path}; run `rulab study fmnist-default` first or pass --db"
            )
        uri = "file:" + quote(str(self.path.resolve()))
        errors: list[sqlite3.Error] = []
        for params in ("?mode=ro", "?immutable=1"):
            try:
                con = sqlite3.connect(
                    uri + params, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as err:
                errors.append(err)
                continue
            try:
                con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                version = con.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as err:
                con.close()
                errors.append(err)
                code = getattr(err, "sqlite_errorname", "") or ""
                if code.startswith(
                    ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_PERM")
                ) or "unable to open" in str(err):
                    continue  # the -shm index cannot be made here (read-only directory, full disk): try immutable
                break
            if params == "?immutable=1":
                wal = self.path.with_name(self.path.name + "-wal")
                if wal.is_file() and wal.stat().st_size > 0:
                    warnings.warn(
                        f"read {self.path} without its write-ahead log {wal.name} (the directory cannot be written), so the newest rows "
                        "may be missing; copy the database with its -wal and -shm files to a writable directory to read them all",
                        RulabWarning,
                        stacklevel=4,
                    )
            if version > SCHEMA_VERSION:
                con.close()
                raise StoreError(
                    f"{self.path} was written by a newer rulab (schema {version}, this one reads {SCHEMA_VERSION}); upgrade rulab or use another --db"
                )
            if version == 0:
                con.close()
                raise StoreError(
                    f"{self.path} is a SQLite file without rulab results (no rulab schema); pass the --db that `rulab study` or `rulab eval --db` wrote"
                )
            return con
        raise self._bad_file(errors[-1]) from None

    def _con(self) -> sqlite3.Connection:
        if self._con_obj is not None and self._pid == os.getpid():
            return self._con_obj
        if self.read_only:
            self._con_obj, self._pid = self._open_read_only(), os.getpid()
            return self._con_obj
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise self._bad_file(err) from None
        except OSError as err:
            raise StoreError(
                f"cannot open the results database {self.path} ({err.strerror or err}); check the path and its permissions"
            ) from None
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._retry(lambda: con.execute("PRAGMA journal_mode = WAL").fetchone())
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA foreign_keys = ON")
            self._migrate(con)
        except sqlite3.DatabaseError as err:
            con.close()
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise self._locked() from None
            raise self._bad_file(err) from None
        self._con_obj, self._pid = con, os.getpid()
        return con

    def _locked(self) -> StoreError:
        return StoreError(
            f"the results database {self.path} stayed locked by another process for {self.timeout:g} s; wait for it to finish or use another --db"
        )

    def _retry(self, fn: Any) -> Any:
        """Run ``fn``, retrying 'database is locked' until the timeout (for pragmas that skip the busy handler)."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Create a new file's schema; refuse a newer one. An older file (schema 1) is left as it is until the first
        write (:meth:`_upgrade`), so that reading never changes a file."""
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if 1 <= version <= SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer rulab (schema {version}, this one reads {SCHEMA_VERSION}); upgrade rulab or use another --db"
            )
        self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have created it meanwhile
            if version == 0:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables & {"runs", "results", "curves"}:
                    raise StoreError(
                        f"{self.path} holds tables named runs/results/curves that rulab did not create; pass another --db"
                    )
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        if self._con_obj is not None and self._pid == os.getpid():
            self._con_obj.close()
        self._con_obj = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _upgrade(con: sqlite3.Connection) -> None:
        """Inside a write transaction: migrate a schema-1 file to the current schema (adds the interval columns)."""
        if con.execute("PRAGMA user_version").fetchone()[0] == 1:
            for stmt in _ADD_CI:
                con.execute(stmt)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _has_ci(self) -> bool:
        """Whether the file has the interval columns (schema 2); a schema-1 file is read without them."""
        return any(r["name"] == "ci_low" for r in self._read("PRAGMA table_info(results)"))

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: waits for other writers, then holds the lock); an older file is
        migrated in place first, within the same transaction."""
        if self.read_only:
            raise StoreError(
                f"the results database {self.path} was opened read-only; open it with ResultStore(path) to write"
            )
        con = self._con()
        try:
            self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as err:
            raise self._locked() if "locked" in str(err) or "busy" in str(err) else self._bad_file(err) from None
        try:
            self._upgrade(con)
            yield con
            con.execute("COMMIT")
        except BaseException as err:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise self._locked() from None
            if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.IntegrityError):
                raise self._bad_file(err) from None
            raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        con = self._con()
        try:
            cur = con.execute(sql, tuple(args))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        except sqlite3.OperationalError as err:
            raise self._locked() if "locked" in str(err) else self._bad_file(err) from None
        except sqlite3.DatabaseError as err:
            raise self._bad_file(err) from None

    # ------------------------------------------------------------------------------------------------ runs

    @staticmethod
    def run_id_of(cfg: Any) -> str:
        """The run id of a :class:`~rulab.config.RunCfg` (``<name>-<config_hash>``)."""
        return run_id_for(cfg.name, config_hash(cfg))

    def start_run(
        self,
        cfg: Any = None,
        *,
        run_id: str | None = None,
        name: str | None = None,
        study: str = "",
        parent_run: str = "",
        checkpoint: str = "",
        meta: Mapping[str, Any] | None = None,
        dataset_checksums: Mapping[str, str] | None = None,
        status: str = "running",
        started_at: str | None = None,
    ) -> str:
        """Create or update the row of a run and mark it ``status``; returns its ``run_id``.

        Args:
            cfg: the run's :class:`~rulab.config.RunCfg` (or its dict); fills name, preset, method, model, dataset,
                seed, config_json and config_hash.
            run_id: defaults to :func:`run_id_for` (name, config hash).
            name: overrides ``cfg.name``.
            study: the study the run belongs to.
            parent_run: run id of the checkpoint this run was initialised from.
            checkpoint: path of the run's ``model.safetensors``.
            meta: provenance (``rulab_version``, ``torch_version``, ``git_commit``, ``device``), e.g.
                :func:`rulab.train.loop.provenance` or a checkpoint's metadata.
            dataset_checksums: ``{"<dataset>/<file>": md5}`` of the data it trained on.
            started_at: when the run started (ISO 8601 UTC; default now), e.g. a cluster worker's start time.

        A re-started run keeps its first ``started_at``; ``finished_at`` is cleared until :meth:`finish_run`.
        """
        if status not in STATUSES:
            raise StoreError(f"run status must be one of {', '.join(STATUSES)}, got '{status}'")
        d = _config_dict(cfg)
        if cfg is not None and is_dataclass(cfg):
            chash = config_hash(cfg)
        else:
            chash = str(d.get("config_hash", "")) if d else ""
        name = name or str(d.get("name", "")) or (run_id or "")
        run_id = run_id or run_id_for(name, chash)
        meta = dict(meta or {})
        values = {
            "run_id": run_id,
            "name": name,
            "preset": str(d.get("preset", "")),
            "method": str((d.get("method") or {}).get("name", ""))
            if isinstance(d.get("method"), Mapping)
            else str(d.get("method", "")),
            "model": str((d.get("model") or {}).get("name", ""))
            if isinstance(d.get("model"), Mapping)
            else str(d.get("model", "")),
            "dataset": str((d.get("data") or {}).get("dataset", "")) if isinstance(d.get("data"), Mapping) else "",
            "seed": None if d.get("seed") is None else _n_in(d.get("seed"), "seed"),
            "config_json": json.dumps(d, sort_keys=True, default=str) if d else "{}",
            "config_hash": chash,
            "git_commit": str(meta.get("git_commit", "")),
            "rulab_version": str(meta.get("rulab_version", "")),
            "torch_version": str(meta.get("torch_version", "")),
            "device": str(meta.get("device", "")),
            "checkpoint": str(checkpoint),
            "parent_run": parent_run,
            "status": status,
            "started_at": started_at or _now(),
            "finished_at": None,
            "dataset_checksums": json.dumps(dict(dataset_checksums or {}), sort_keys=True),
            "study": study,
        }
        cols = list(values)
        keep_if_empty = (
            "git_commit",
            "rulab_version",
            "torch_version",
            "device",
            "checkpoint",
            "parent_run",
            "study",
            "preset",
            "method",
            "model",
            "dataset",
        )
        updates = []
        for c in cols:
            if c in ("run_id", "started_at"):
                continue
            if c in keep_if_empty:
                updates.append(f"{c} = CASE WHEN excluded.{c} = '' THEN runs.{c} ELSE excluded.{c} END")
            elif c == "dataset_checksums":
                updates.append(f"{c} = CASE WHEN excluded.{c} = '{{}}' THEN runs.{c} ELSE excluded.{c} END")
            elif c == "config_json":
                updates.append(f"{c} = CASE WHEN excluded.{c} = '{{}}' THEN runs.{c} ELSE excluded.{c} END")
            else:
                updates.append(f"{c} = excluded.{c}")
        updates.append("started_at = COALESCE(runs.started_at, excluded.started_at)")
        sql = (
            f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {', '.join(updates)}"
        )
        with self._write() as con:
            con.execute(sql, [values[c] for c in cols])
        return run_id

    def finish_run(
        self,
        run_id: str,
        status: str = "finished",
        checkpoint: str | None = None,
        meta: Mapping[str, Any] | None = None,
        finished_at: str | None = None,
    ) -> None:
        """Mark a run ``status`` (``finished``, ``trained`` or ``failed``) and stamp ``finished_at``; ``finished`` and
        ``failed`` also drop its claim (``trained`` keeps it: evaluation follows).

        Args:
            checkpoint: path of the run's ``model.safetensors`` (kept if ``None``).
            meta: provenance to record (``rulab_version``, ``torch_version``, ``git_commit``, ``device``), e.g.
                the checkpoint's metadata, which names the device the run really used.
            finished_at: when it finished (ISO 8601 UTC; default now), e.g. a cluster worker's finish time.
        """
        if status not in STATUSES:
            raise StoreError(f"run status must be one of {', '.join(STATUSES)}, got '{status}'")
        sets: dict[str, Any] = {
            "status": status,
            "finished_at": (finished_at or _now()) if status in ("finished", "trained", "failed") else None,
        }
        if status in ("finished", "failed"):
            sets["claimed_by"] = ""
        if checkpoint is not None:
            sets["checkpoint"] = str(checkpoint)
        for key in ("git_commit", "rulab_version", "torch_version", "device"):
            if meta and meta.get(key):
                sets[key] = str(meta[key])
        with self._write() as con:
            cur = con.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE run_id = ?", [*sets.values(), run_id]
            )
            if cur.rowcount == 0:
                raise StoreError(f"run '{run_id}' is not in {self.path}; call start_run first")

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The row of one run (``config`` and ``dataset_checksums`` parsed), or ``None``."""
        rows = self.runs(run_id=run_id)
        return rows[0] if rows else None

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows of ``runs`` matching column filters (a list/tuple value means "any of"), in insertion order.

        Each dict has every column, plus ``config`` (the parsed ``config_json``) and ``dataset_checksums`` parsed.
        """
        where, args = _where(filters, RUN_COLUMNS, "runs")
        report = ReadReport(str(self.path))
        rows = [parse_run(r, report) for r in self._read(f"SELECT * FROM runs{where} ORDER BY rowid", args)]
        self._report(report)
        return rows

    def _parsed(self, raw: list[dict[str, Any]], parse: Any, what: str) -> list[dict[str, Any]]:
        """``parse`` applied to every raw row; malformed rows are skipped, counted and reported (:mod:`rulab.results.rows`)."""
        report = ReadReport(str(self.path))
        out = []
        for i, r in enumerate(raw):
            try:
                out.append(parse(r))
            except MalformedRow as err:
                where = f"run '{r.get('run_id')}'" + (
                    f", metric '{r.get('metric')}'" if isinstance(r.get("metric"), str) else ""
                )
                report.skipped.append(f"{what} row {i + 1} of the query ({where}): {err}")
        self._report(report)
        return out

    def _report(self, report: ReadReport) -> None:
        self.last_read = report
        if report:
            warnings.warn(report.message(), RulabWarning, stacklevel=4)

    # ------------------------------------------------------------------------------------------------ claims

    def claim(self, run_id: str, owner: str, stale_after: float = 120.0, name: str = "", force: bool = False) -> bool:
        """Atomically claim a run for ``owner`` (see :func:`owner_id`); ``False`` if it cannot be claimed.

        It cannot be claimed while another process holds a live claim on it, nor (unless ``force``) once it is
        ``finished``. A claim is live while its owner's heartbeat (:meth:`heartbeat`) is younger than
        ``stale_after`` seconds and, on the same host, the owner's PID still exists; a dead or silent owner's claim
        is taken over, so a killed study's cells are picked up again. Claiming sets status ``running``; the claim
        is dropped by :meth:`release` or by :meth:`finish_run` with ``finished``/``failed``.
        """
        now = time.time()
        with self._write() as con:
            row = con.execute(
                "SELECT claimed_by, heartbeat_at, status FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO runs (run_id, name, status, claimed_by, heartbeat_at, started_at) VALUES (?, ?, 'running', ?, ?, ?)",
                    (run_id, name or run_id, owner, now, _now()),
                )
                return True
            claimed_by, heartbeat_at, status = row
            if claimed_by not in ("", owner) and _claim_live(claimed_by, heartbeat_at, stale_after):
                return False
            if status == "finished" and not force:
                return False
            con.execute(
                "UPDATE runs SET claimed_by = ?, heartbeat_at = ?, status = 'running' WHERE run_id = ?",
                (owner, now, run_id),
            )
            return True

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Refresh ``owner``'s claim on a run; ``False`` if the claim was lost (taken over as stale)."""
        with self._write() as con:
            cur = con.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND claimed_by = ?", (time.time(), run_id, owner)
            )
            return cur.rowcount == 1

    def release(self, run_id: str, owner: str, status: str | None = None) -> None:
        """Drop ``owner``'s claim on a run (and set ``status`` if given)."""
        with self._write() as con:
            if status is None:
                con.execute("UPDATE runs SET claimed_by = '' WHERE run_id = ? AND claimed_by = ?", (run_id, owner))
            else:
                con.execute(
                    "UPDATE runs SET claimed_by = '', status = ? WHERE run_id = ? AND claimed_by = ?",
                    (status, run_id, owner),
                )

    def claim_holder(self, run_id: str, stale_after: float = 120.0) -> str:
        """The live owner of a run's claim, or ``""``."""
        rows = self._read("SELECT claimed_by, heartbeat_at FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return ""
        r = rows[0]
        return r["claimed_by"] if _claim_live(r["claimed_by"], r["heartbeat_at"], stale_after) else ""

    # --------------------------------------------------------------------------------------------- results

    def write_results(self, run_id: str, table: ResultTable | Iterable[Row]) -> int:
        """Insert or replace the rows of ``table`` for ``run_id`` in one transaction; returns the row count.

        A row whose key (run_id, kind, dataset, shift, severity, detector, metric) exists replaces the stored one.

        Raises:
            StoreError: the run is not in the database (call :meth:`start_run` first).
        """
        rows = [
            (
                run_id,
                _text_in(r.kind, "kind", required=True),
                _text_in(r.dataset, "dataset"),
                _text_in(r.shift, "shift"),
                _text_in(r.severity, "severity"),
                _text_in(r.detector, "detector"),
                _text_in(r.metric, "metric", required=True),
                _value_in(r.value, f"value of metric '{r.metric}'"),
                _n_in(r.n),
                _extra_in(r.extra),
                _value_in(getattr(r, "ci_low", math.nan), f"interval of metric '{r.metric}'"),
                _value_in(getattr(r, "ci_high", math.nan), f"interval of metric '{r.metric}'"),
                _text_in(getattr(r, "ci_method", "") or "", "ci_method"),
            )
            for r in table
        ]
        sql = (
            f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' for _ in RESULT_COLUMNS)}) "
            "ON CONFLICT (run_id, kind, dataset, shift, severity, detector, metric) "
            "DO UPDATE SET value = excluded.value, n = excluded.n, extra_json = excluded.extra_json, "
            "ci_low = excluded.ci_low, ci_high = excluded.ci_high, ci_method = excluded.ci_method"
        )
        return self._upsert(sql, rows, run_id, "results")

    def _upsert(self, sql: str, rows: Sequence[tuple[Any, ...]], run_id: str, what: str) -> int:
        """Run the insert-or-update ``sql`` over ``rows`` of run ``run_id`` in one transaction; returns ``len(rows)``.

        Raises:
            StoreError: the run is not in the database, or a row breaks a constraint (``what`` names the rows in
                the message: ``"results"``, ``"curves"``); nothing is written.
        """
        try:
            with self._write() as con:
                con.executemany(sql, rows)
        except sqlite3.IntegrityError as err:
            if "FOREIGN KEY" in str(err):
                raise StoreError(
                    f"run '{run_id}' is not in {self.path}; call start_run before writing its {what}"
                ) from None
            raise StoreError(
                f"cannot store the {what} of run '{run_id}' ({err}); every row needs a kind and a metric name; nothing was written"
            ) from None
        return len(rows)

    def write_curves(self, run_id: str, history: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace training/validation curves from the loop's per-epoch records (see :func:`curve_points`)."""
        points = [(run_id, e, s, m, _value_in(v, f"curve value '{s}_{m}'")) for e, s, m, v in curve_points(history)]
        sql = (
            f"INSERT INTO curves ({', '.join(CURVE_COLUMNS)}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, epoch, split, metric) DO UPDATE SET value = excluded.value"
        )
        return self._upsert(sql, points, run_id, "curves")

    def results(self, frame: bool = False, **filters: Any) -> Any:
        """Stored results joined with their run, as a list of dicts (or a pandas DataFrame with ``frame=True``).

        Filters are column equalities (a list/tuple means "any of") on the result columns (``kind``, ``dataset``,
        ``shift``, ``severity``, ``detector``, ``metric``, ``run_id``) or the run columns (``study``, ``preset``,
        ``method``, ``model``, ``seed``, ``name``, ``status``; ``train_dataset`` is the run's training set).

        Each record: ``run_id, name, preset, method, model, seed, study, train_dataset, status, kind, dataset, shift,
        severity, detector, metric, value`` (NaN for a stored NULL), ``n``, ``extra`` (dict), ``ci_low``, ``ci_high``
        (NaN when there is no interval, and in a schema-1 file, which is read as it is) and ``ci_method`` (``''``).
        """
        res_filters = {k: v for k, v in filters.items() if k in RESULT_COLUMNS}
        run_filters = {
            ("dataset" if k == "train_dataset" else k): v for k, v in filters.items() if k not in RESULT_COLUMNS
        }
        w1, a1 = _where(res_filters, RESULT_COLUMNS, "r")
        w2, a2 = _where(run_filters, RUN_COLUMNS, "u")
        where = " AND ".join(x for x in (w1.replace(" WHERE ", "", 1), w2.replace(" WHERE ", "", 1)) if x)
        sql = (
            "SELECT r.run_id, u.name, u.preset, u.method, u.model, u.seed, u.study, u.dataset AS train_dataset, u.status, "
            "r.kind, r.dataset, r.shift, r.severity, r.detector, r.metric, r.value, r.n, r.extra_json, "
            + (
                "r.ci_low, r.ci_high, r.ci_method "
                if self._has_ci()
                else "NULL AS ci_low, NULL AS ci_high, '' AS ci_method "
            )
            + "FROM results r JOIN runs u ON u.run_id = r.run_id"
            + (f" WHERE {where}" if where else "")
            + " ORDER BY u.rowid, r.rowid"
        )
        recs = self._parsed(self._read(sql, [*a1, *a2]), parse_result, "result")
        if frame:
            try:
                import pandas as pd
            except ImportError:
                raise StoreError(
                    "results(frame=True) needs pandas; install it with: pip install 'rulab[report]'"
                ) from None
            return pd.DataFrame(recs)
        return recs

    def table(self, run_id: str) -> ResultTable:
        """The stored results of one run as a :class:`~rulab.results.table.ResultTable` (``meta`` = the run row)."""
        run = self.run(run_id)
        if run is None:
            raise StoreError(
                f"run '{run_id}' is not in {self.path}; `rulab results --db {self.path}` lists what is stored"
            )
        rows = [
            Row(
                r["kind"],
                r["metric"],
                r["value"],
                r["dataset"],
                r["shift"],
                r["severity"],
                r["detector"],
                r["n"],
                r["extra"],
                r["ci_low"],
                r["ci_high"],
                r["ci_method"],
            )
            for r in self.results(run_id=run_id)
        ]
        return ResultTable(rows, meta=run)

    def curves(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored curve points ``{run_id, epoch, split, metric, value}`` matching column filters, by run and epoch."""
        where, args = _where(filters, CURVE_COLUMNS, "curves")
        rows = self._read(
            f"SELECT run_id, epoch, split, metric, value FROM curves{where} ORDER BY run_id, epoch, split, metric", args
        )
        return self._parsed(rows, parse_curve, "curve")

    def counts(self) -> dict[str, int]:
        """Row counts of the three tables."""
        return {t: self._read(f"SELECT COUNT(*) AS c FROM {t}")[0]["c"] for t in ("runs", "results", "curves")}


def _where(filters: Mapping[str, Any], columns: Sequence[str], table: str) -> tuple[str, list[Any]]:
    parts, args = [], []
    for key, value in filters.items():
        if key not in columns:
            raise StoreError(f"cannot filter {table} by '{key}'; valid columns: {', '.join(columns)}")
        col = f"{table}.{key}" if table in ("r", "u") else key
        if isinstance(value, (list, tuple, set, frozenset)):
            vals = list(value)
            if not vals:
                parts.append("0")
                continue
            parts.append(f"{col} IN ({', '.join('?' for _ in vals)})")
            args.extend(vals)
        elif value is None:
            parts.append(f"{col} IS NULL")
        else:
            parts.append(f"{col} = ?")
            args.append(value)
    return (" WHERE " + " AND ".join(parts)) if parts else "", args
