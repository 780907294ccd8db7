"""The long result table every evaluation produces (convention 7 in docs/conventions.md;
stored as described in docs/results-store.md).

One row per measured number: ``(kind, dataset, shift, severity, detector, metric, value, n, extra)`` where

* ``kind`` ∈ {``id``, ``ood``, ``shift``, ``farconf``};
* ``dataset`` is the ID test set (``id``/``shift``) or the OOD set; ``shift`` and ``severity`` name a corruption
  cell (``severity`` is a string such as ``"3"`` or ``"0.8"``); ``detector`` the score (``msp``, ``odin``, ...);
* ``metric`` is one of the lower-case names declared in :mod:`rulab.metrics.catalog` (``acc``, ``nll``, ``ece``,
  ``auroc``, ``fpr95_id``, ...); values are fractions, never percent;
* ``""`` (never ``None``) marks "not applicable" in key columns so the store's unique constraint holds.

Tables, plots, the HTML report (:func:`rulab.reports.evaluation_report`) and the SQLite store are all views of
this table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from rulab.errors import InputError, RulabError
from rulab.io import atomic_path, atomic_write_text
from rulab.metrics import catalog

__all__ = ["Row", "ResultTable", "KINDS", "KEY_COLUMNS"]

KINDS = ("id", "ood", "shift", "farconf")
KEY_COLUMNS = ("kind", "dataset", "shift", "severity", "detector", "metric")


def _sev(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Row:
    """One measured number; see the module docstring for the meaning of each column."""

    kind: str
    metric: str
    value: float
    dataset: str = ""
    shift: str = ""
    severity: str = ""
    detector: str = ""
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.dataset, self.shift, self.severity, self.detector, self.metric)


class ResultTable:
    """An ordered collection of :class:`Row` with tabular views.

    Adding a row whose key (kind, dataset, shift, severity, detector, metric) already exists replaces it.
    """

    def __init__(self, rows: Iterable[Row] = (), meta: dict[str, Any] | None = None, arrays: dict[str, Any] | None = None) -> None:
        self._rows: dict[tuple[str, ...], Row] = {}
        self.meta: dict[str, Any] = dict(meta or {})
        #: raw arrays behind the numbers (scores per detector and set, logits, curves), keyed like
        #: ``"scores/<detector>/<set>"``; saved with :meth:`save_arrays` for plots and re-analysis.
        self.arrays: dict[str, Any] = dict(arrays or {})
        for r in rows:
            self._rows[r.key] = r

    def save_arrays(self, path: str | os.PathLike[str]) -> None:
        """Write :attr:`arrays` (tensors) atomically as one safetensors file."""
        import torch
        from safetensors.torch import save_file

        tensors = {k: torch.as_tensor(v).detach().cpu().contiguous() for k, v in self.arrays.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))

    @staticmethod
    def load_arrays(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Read arrays written by :meth:`save_arrays`."""
        from safetensors.torch import load_file

        return dict(load_file(str(path)))

    def add(
        self, kind: str, metric: str, value: float, dataset: str = "", shift: str = "", severity: Any = "",
        detector: str = "", n: int = 0, extra: dict[str, Any] | None = None,
    ) -> Row:
        """Append one number (a float; NaN is allowed and means "undefined", e.g. too few examples)."""
        if kind not in KINDS:
            raise InputError(f"result kind must be one of {', '.join(KINDS)}, got '{kind}'")
        row = Row(kind, metric, float(value), dataset, shift, _sev(severity), detector, int(n), dict(extra or {}))
        self._rows[row.key] = row
        return row

    def add_metrics(self, kind: str, metrics: dict[str, float], **keys: Any) -> None:
        """Add every ``metric: value`` of a dict with the same key columns (non-numeric entries are skipped)."""
        n = int(keys.pop("n", 0) or 0)
        for metric, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and metric not in ("n", "n_id", "n_ood"):
                self.add(kind, metric, value, n=n, **keys)

    def extend(self, other: ResultTable | Iterable[Row]) -> ResultTable:
        """Add the rows (and, for a ResultTable, the arrays) of ``other``."""
        for r in other:
            self._rows[r.key] = r
        if isinstance(other, ResultTable):
            self.arrays.update(other.arrays)
        return self

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def filter(self, **where: Any) -> ResultTable:
        """Rows whose columns equal the given values (a tuple/list/set value means "any of")."""

        def ok(r: Row) -> bool:
            for k, v in where.items():
                got = getattr(r, k)
                if isinstance(v, (tuple, list, set, frozenset)):
                    if got not in v:
                        return False
                elif got != (_sev(v) if k == "severity" else v):
                    return False
            return True

        return ResultTable((r for r in self if ok(r)), self.meta, self.arrays)

    def value(self, **where: Any) -> float:
        """The single value matching ``where`` (raises KeyError when none or several match)."""
        rows = list(self.filter(**where))
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} rows match {where}")
        return rows[0].value

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts (``extra`` kept as a dict)."""
        return [asdict(r) for r in self]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with one row per number (needs ``pip install 'rulab[report]'``)."""
        try:
            import pandas as pd
        except ImportError:
            raise RulabError("to_pandas needs pandas; install it with: pip install 'rulab[report]'") from None
        recs = self.records()
        for r in recs:
            r["extra"] = json.dumps(r["extra"], sort_keys=True) if r["extra"] else ""
        cols = ["kind", "dataset", "shift", "severity", "detector", "metric", "value", "n", "extra"]
        return pd.DataFrame(recs, columns=cols)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """CSV text (and, with ``path``, written atomically to that file)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["kind", "dataset", "shift", "severity", "detector", "metric", "value", "n"]
        w.writerow(cols)
        for r in self:
            w.writerow([getattr(r, c) if c != "value" else repr(r.value) for c in cols])
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def summary(self, detectors: Iterable[str] | None = None) -> str:
        """A plain-text summary: the ID calibration block, then AUROC / FPR95 per OOD set × detector,
        then shift and far-away numbers when present."""
        lines: list[str] = []
        idrows = self.filter(kind="id")
        if len(idrows):
            lines.append("in-distribution")
            groups: dict[str, dict[str, float]] = {}
            for r in idrows:
                groups.setdefault(r.detector or "-", {})[r.metric] = r.value
            names = [m.name for m in catalog.metrics("calibration") if m.summary]
            widths = [max(9, len(m) + 1) for m in names]
            lines.append("  " + f"{'':<14}" + "".join(f"{m:>{w}}" for m, w in zip(names, widths)))
            for g, vals in groups.items():
                label = {"-": "raw", "ts": "temp-scaled"}.get(g, g)
                lines.append("  " + f"{label:<14}" + "".join(f"{_fmt(vals.get(m)):>{w}}" for m, w in zip(names, widths)))
        ood = self.filter(kind="ood")
        if len(ood):
            dets = list(detectors) if detectors else sorted({r.detector for r in ood})
            sets = list(dict.fromkeys(r.dataset for r in ood))
            metrics = [m.name for m in catalog.metrics("detection") if m.summary]
            lines.append("OOD detection (AUPR at the OOD:ID ratio shown)")
            lines.append("  " + f"{'ood set':<16}{'detector':<12}" + "".join(f"{m:>16}" for m in metrics) + f"{'ratio':>8}")
            for s in sets:
                for d in dets:
                    vals = {r.metric: r.value for r in ood if r.dataset == s and r.detector == d}
                    if not any(m in vals for m in metrics):  # e.g. only OOD-calibration rows ("ts")
                        continue
                    lines.append("  " + f"{s:<16}{d:<12}" + "".join(f"{_fmt(vals.get(m)):>16}" for m in metrics) + f"{_fmt(vals.get('ood_ratio'), 2):>8}")
        sh = self.filter(kind="shift", metric="acc")
        if len(sh):
            lines.append("covariate shift (accuracy)")
            by: dict[str, list[str]] = {}
            for r in sh:
                by.setdefault(r.shift, []).append(f"{r.severity}:{_fmt(r.value)}")
            for s, cells in by.items():
                lines.append(f"  {s:<22}" + "  ".join(cells))
        fc = self.filter(kind="farconf")
        if len(fc):
            lines.append("far-away / worst case")
            for r in fc:
                lines.append(f"  {r.dataset or '-':<22}{r.detector or '':<10}{r.metric:<16}{_fmt(r.value)}")
        return "\n".join(lines)


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"
