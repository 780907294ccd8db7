"""``rulab study NAME --status``: where each cell of a study stands, whichever launcher runs (or ran) it.

The table is put together from three places, none of which it changes:

* the results database: a cell ``finished`` (or ``trained``, for a cell that is only trained) there, with its
  checkpoint on disk, is finished; ``failed`` is failed; ``running`` with a live claim is being run by a ``local``
  study process (the claim names it);
* the run directories: ``cell-result.json`` (a cluster job finished; its driver stores it), ``cell-started.json``
  (a cluster job started), ``checkpoints/LATEST`` (training was interrupted at that step and resumes);
* the cluster driver's state file ``<out>/.study/<study>/state.json``: job ids, attempts, errors, and whether the
  driver is alive.

A failed cell's row is followed by the last lines of its ``cell.log`` (cluster jobs) and the path of the engine's
log of its job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rulab.lock import pid_alive
from rulab.results.store import ResultStore
from rulab.study.cell import read_record
from rulab.study.launch import state_dir_of
from rulab.study.plan import StudyCell
from rulab.study.worker import LOG_FILE, read_started

__all__ = ["status_rows", "render_status", "study_status", "log_tail"]

COLUMNS = ("cell", "state", "job", "tries", "host", "note")


def log_tail(path: str | Path, lines: int = 10) -> list[str]:
    """The last ``lines`` lines of a text file (``[]`` if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 64 * 1024, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def _latest_step(run_dir: Path) -> str:
    try:
        return (run_dir / "checkpoints" / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _pid_alive(host: str, pid: int) -> bool | None:
    if host != socket.gethostname():
        return None
    return pid_alive(pid)


def status_rows(
    cells: Sequence[StudyCell], store: ResultStore | None, state: Mapping[str, Any], study: str = ""
) -> list[dict[str, Any]]:
    """One row per cell: ``cell``, ``state``, ``job``, ``tries``, ``host``, ``note``, plus ``error`` and ``log``.

    ``state`` is ``finished``, ``failed``, ``running``, ``queued`` or ``pending`` (see the module docstring for
    where each comes from). A cell's database row is found by its run id, else (the study run with other
    overrides) by its name among the rows of ``study``.
    """
    by_id = {c.get("run_id"): c for c in state.get("cells", []) if isinstance(c, Mapping)}
    by_name = {c.get("name"): c for c in state.get("cells", []) if isinstance(c, Mapping)}
    runs: dict[str, dict[str, Any]] = {}
    named: dict[str, dict[str, Any]] = {}
    if store is not None:
        for r in store.runs():
            runs[r["run_id"]] = r
            if study and r["study"] == study:
                named[r["name"]] = r
    rows = []
    for cell in cells:
        st = dict(by_id.get(cell.run_id) or by_name.get(cell.cfg.name) or {})
        run = runs.get(cell.run_id) or named.get(cell.cfg.name)
        row: dict[str, Any] = {
            "cell": cell.cfg.name,
            "state": "pending",
            "job": str(st.get("job_id", "")),
            "tries": int(st.get("attempts", 0) or 0),
            "host": str(st.get("host", "")),
            "note": "",
            "error": str(st.get("error", "")),
            "log": str(st.get("log", "")),
            "run_dir": str(cell.run_dir),
        }
        db_status = run["status"] if run else ""
        done = db_status == "finished" or (db_status == "trained" and not cell.evaluate)
        if done and cell.checkpoint.exists():
            row["state"] = "finished"
            row["note"] = "results stored" if db_status == "finished" else "trained (not evaluated by design)"
        elif db_status == "failed" or st.get("state") == "failed":
            row["state"] = "failed"
            row["note"] = row["error"] or "failed (see its log)"
        elif read_record(cell) is not None:
            row["state"] = "finished"
            row["note"] = (
                "results written by its job, not stored yet (the driver stores them; run the study again if no driver runs)"
            )
        elif st.get("state") in ("queued", "running"):
            started = read_started(cell)
            if started.get("submission") and started.get("submission") == st.get("submission"):
                row["state"] = "running"
                row["host"] = str(started.get("host", row["host"]))
                step = _latest_step(cell.run_dir)
                row["note"] = (
                    f"last checkpoint: {step}"
                    if step
                    else ("trained, evaluating" if cell.checkpoint.exists() else "training")
                )
            else:
                row["state"] = "queued"
                row["note"] = "waiting for resources or its parents"
        elif db_status == "running" and run and run.get("claimed_by"):
            holder = store.claim_holder(cell.run_id) if store is not None else ""
            if holder:
                row["state"] = "running"
                host, _, rest = holder.partition(":")
                row["host"], row["job"] = host, f"pid {rest.split(':', 1)[0]}"
                row["note"] = "local launcher"
            else:
                row["note"] = "its process stopped; it resumes when the study runs again"
        elif db_status == "trained" and cell.evaluate:
            row["note"] = "trained, not evaluated yet"
        if row["state"] == "pending" and not row["note"]:
            step = _latest_step(cell.run_dir)
            if cell.checkpoint.exists():
                row["note"] = "trained; results not stored yet"
            else:
                row["note"] = f"interrupted at {step}; resumes from there" if step else "not started"
        rows.append(row)
    return rows


def render_status(rows: Sequence[Mapping[str, Any]], header: str = "", tail: int = 10) -> str:
    """The status table as text, a count line, then each failed cell's error and log tail."""
    table = [[str(r[c]) if c != "tries" else (str(r[c]) if r[c] else "") for c in COLUMNS] for r in rows]
    widths = [max([len(c), *(len(t[i]) for t in table)]) for i, c in enumerate(COLUMNS)]
    lines = [header] if header else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip())
    lines.extend("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in table)
    counts = {k: sum(r["state"] == k for r in rows) for k in ("pending", "queued", "running", "finished", "failed")}
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()))
    for r in rows:
        if r["state"] != "failed":
            continue
        lines.append(f"{r['cell']} failed: {r['error'] or r['note']}")
        log = Path(r["run_dir"]) / LOG_FILE
        for ln in log_tail(log, tail):
            lines.append(f"  | {ln}")
        if log.exists():
            lines.append(f"  (log: {log})")
        if r.get("log"):
            lines.append(f"  (job log: {r['log']})")
    return "\n".join(lines)


def study_status(study: str, cells: Sequence[StudyCell], db: str | Path, out_dir: str | Path) -> str:
    """The text ``rulab study NAME --status`` prints: the driver's liveness, the table, the failures' logs."""
    state_dir = state_dir_of(out_dir, study)
    try:
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    store = ResultStore(db) if Path(db).exists() else None
    try:
        rows = status_rows(cells, store, state, study)
    finally:
        if store is not None:
            store.close()
    header = f"study {study}: {len(rows)} cells"
    drv = state.get("driver") if isinstance(state, Mapping) else None
    if isinstance(drv, Mapping):
        age = time.time() - float(drv.get("updated", 0) or 0)
        alive = _pid_alive(str(drv.get("host", "")), int(drv.get("pid", 0) or 0))
        running = alive if alive is not None else age < 600
        header += (
            f"; {state.get('backend', '?')} driver {'running' if running else 'not running'} "
            f"(process {drv.get('pid', '?')} on {drv.get('host', '?')}, state written {int(age)} s ago)"
        )
    elif store is None:
        header += f"; no results database at {db} yet"
    return render_status(rows, header)
