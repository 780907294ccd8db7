"""Reading the bootstrap replicates each evaluation kept beside its numbers (docs/results-store.md, "Intervals").

The database stores each row's interval; the replicates behind it (one value per resample of the test images, the
same resamples for every model evaluated on the same data) stay in the run's arrays file,
``<run_dir>/eval/<benchmark>/arrays.safetensors``, under ``bootstrap/<row key>``. They are what a number derived
from several rows of one run (the mean AUROC over OOD sets) or a paired difference between two runs needs for its
own interval. :class:`ArrayReplicates` finds a run's arrays file from its ``runs`` row and reads only the keys asked
for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rulab.checkpoint import eval_name
from rulab.results.table import KEY_COLUMNS, ResultTable, replicates_key

__all__ = ["arrays_file", "ArrayReplicates", "table_replicates"]


def arrays_file(run: Mapping[str, Any]) -> Path | None:
    """The arrays file of a run (a ``runs`` row with ``checkpoint`` and ``config``), or ``None`` when there is none.

    ``<run_dir>/eval/<benchmark>/arrays.safetensors`` for the run's configured benchmark (``<benchmark>+mc<T>`` for
    an MC-dropout run), else the first ``eval/*/arrays.safetensors`` of its run directory.
    """
    ckpt = str(run.get("checkpoint") or "")
    if not ckpt:
        return None
    run_dir = Path(ckpt).parent if ckpt.endswith(".safetensors") else Path(ckpt)
    ev = (run.get("config") or {}).get("eval") or {}
    bench = eval_name(ev["benchmark"], int(ev.get("mc_dropout") or 0)) if ev.get("benchmark") else ""
    if bench and (run_dir / "eval" / bench / "arrays.safetensors").exists():
        return run_dir / "eval" / bench / "arrays.safetensors"
    found = sorted((run_dir / "eval").glob("*/arrays.safetensors")) if (run_dir / "eval").is_dir() else []
    return found[0] if found else None


class ArrayReplicates:
    """``replicates(run_id, rows)``: the bootstrap replicates ``[B]`` of the mean of some result rows of one run.

    Args:
        runs: ``runs`` rows (:meth:`rulab.results.store.ResultStore.runs`) of the runs to read.
        files: ``{run_id: arrays file}`` overriding the files found from the runs (tests, moved directories).

    Returns ``None`` when the run has no arrays file or a row has no replicates (an evaluation made with
    ``eval.bootstrap=0``, or a metric without per-image interval); rows whose value is NaN are left out of the mean,
    as :class:`rulab.results.aggregate.Measure` leaves them out of the value.
    """

    def __init__(
        self, runs: Iterable[Mapping[str, Any]] = (), files: Mapping[str, str | os.PathLike[str]] | None = None
    ) -> None:
        self._runs = {r["run_id"]: r for r in runs}
        self._files = {k: Path(v) for k, v in (files or {}).items()}
        self._cache: dict[tuple[str, str], Any] = {}

    def file(self, run_id: str) -> Path | None:
        """The arrays file of ``run_id`` (``None`` when unknown)."""
        if run_id in self._files:
            return self._files[run_id]
        run = self._runs.get(run_id)
        return arrays_file(run) if run is not None else None

    def row(self, run_id: str, key: Sequence[str]) -> Any:
        """The replicates ``[B]`` (float64) of one row of ``run_id`` with key ``(kind, dataset, shift, severity,
        detector, metric)``, or ``None``."""
        name = replicates_key(tuple(key))
        if (run_id, name) not in self._cache:
            self._cache[(run_id, name)] = self._read(run_id, name)
        return self._cache[(run_id, name)]

    def _read(self, run_id: str, name: str) -> Any:
        path = self.file(run_id)
        if path is None or not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor(name).double() if name in f.keys() else None
        except Exception:  # noqa: BLE001 - a damaged arrays file only costs the intervals it would give
            return None

    def __call__(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> Any:
        kept = [r for r in rows if not math.isnan(float(r["value"]))]
        if not kept:
            return None
        reps = []
        for r in kept:
            x = self.row(run_id, [str(r.get(k, "")) for k in KEY_COLUMNS])
            if x is None or (reps and x.numel() != reps[0].numel()):
                return None
            reps.append(x)
        out = reps[0].clone()
        for x in reps[1:]:
            out += x
        return out / len(reps)


def table_replicates(table: ResultTable) -> Any:
    """``replicates(run_id, rows)`` reading one in-memory evaluation's replicates (``run_id`` is ignored)."""

    def read(run_id: str, rows: Sequence[Mapping[str, Any]]) -> Any:
        kept = [r for r in rows if not math.isnan(float(r["value"]))]
        reps = [table.replicates(tuple(str(r.get(k, "")) for k in KEY_COLUMNS)) for r in kept]
        if not reps or any(x is None for x in reps) or len({x.numel() for x in reps}) != 1:
            return None
        return sum(x.double() for x in reps) / len(reps)

    return read
