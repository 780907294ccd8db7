"""The long result table every evaluation produces (convention 7 in docs/conventions.md;
stored as described in docs/results-store.md).

One row per measured number: ``(kind, dataset, shift, severity, detector, metric, value, n, extra)`` where

* ``kind`` ∈ {``id``, ``ood``, ``shift``, ``farconf``};
* ``dataset`` is the ID test set (``id``/``shift``) or the OOD set; ``shift`` and ``severity`` name a corruption
  cell (``severity`` is a string such as ``"3"`` or ``"0.8"``); ``detector`` the score (``msp``, ``odin``, ...);
* ``metric`` is one of the lower-case names declared in :mod:`rulab.metrics.catalog` (``acc``, ``nll``, ``ece``,
  ``auroc``, ``fpr95_id``, ...); values are fractions, never percent;
* ``""`` (never ``None``) marks "not applicable" in key columns so the store's unique constraint holds;
* ``ci_low``, ``ci_high``, ``ci_method``: the row's 95% interval and how it was computed (``bootstrap-percentile-1000``:
  the percentile bootstrap over test images with 1,000 resamples; NaN, NaN, ``""`` when there is none). The bootstrap
  replicates behind it are kept in :attr:`ResultTable.arrays` under ``"bootstrap/<key as JSON>"`` (float32 ``[B]``),
  so that a mean over rows or a paired difference of two runs can be given its own interval later
  (:mod:`rulab.metrics.bootstrap`).

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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rulab.errors import InputError, RulabError
from rulab.io import atomic_path, atomic_write_text
from rulab.metrics import catalog

__all__ = ["Row", "ResultTable", "KINDS", "KEY_COLUMNS", "REPLICATES", "replicates_key", "bootstrap_method"]

KINDS = ("id", "ood", "shift", "farconf")
KEY_COLUMNS = ("kind", "dataset", "shift", "severity", "detector", "metric")
REPLICATES = "bootstrap/"
"""Prefix of the array keys holding a row's bootstrap replicates (``"bootstrap/" + json.dumps(list(row.key))``)."""
LEVEL = 0.95
"""Coverage of every interval rulab computes."""


def replicates_key(key: tuple[str, ...]) -> str:
    """The :attr:`ResultTable.arrays` key of the bootstrap replicates of the row with key ``key``."""
    return REPLICATES + json.dumps(list(key))


def bootstrap_method(n_resamples: int, paired: bool = False) -> str:
    """The ``ci_method`` of a percentile bootstrap over test images: ``bootstrap-percentile-1000``."""
    return f"{'paired-' if paired else ''}bootstrap-percentile-{int(n_resamples)}"


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
    ci_low: float = field(default=math.nan, compare=False)
    ci_high: float = field(default=math.nan, compare=False)
    ci_method: str = field(default="", compare=False)

    @property
    def has_interval(self) -> bool:
        """Whether the row carries an interval (both bounds are numbers)."""
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.dataset, self.shift, self.severity, self.detector, self.metric)


class ResultTable:
    """An ordered collection of :class:`Row` with tabular views.

    Adding a row whose key (kind, dataset, shift, severity, detector, metric) already exists replaces it.
    """

    def __init__(
        self, rows: Iterable[Row] = (), meta: dict[str, Any] | None = None, arrays: dict[str, Any] | None = None
    ) -> None:
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
        self,
        kind: str,
        metric: str,
        value: float,
        dataset: str = "",
        shift: str = "",
        severity: Any = "",
        detector: str = "",
        n: int = 0,
        extra: dict[str, Any] | None = None,
        ci_low: float = math.nan,
        ci_high: float = math.nan,
        ci_method: str = "",
    ) -> Row:
        """Append one number (a float; NaN is allowed and means "undefined", e.g. too few examples), optionally with
        its interval ``[ci_low, ci_high]`` and how that was computed (``ci_method``)."""
        if kind not in KINDS:
            raise InputError(f"result kind must be one of {', '.join(KINDS)}, got '{kind}'")
        row = Row(
            kind,
            metric,
            float(value),
            dataset,
            shift,
            _sev(severity),
            detector,
            int(n),
            dict(extra or {}),
            float(ci_low),
            float(ci_high),
            str(ci_method or ""),
        )
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

    def get(self, key: tuple[str, ...]) -> Row | None:
        """The row with key ``(kind, dataset, shift, severity, detector, metric)``, or ``None``."""
        return self._rows.get(tuple(key))

    def set_replicates(self, key: tuple[str, ...], replicates: Any) -> None:
        """Keep the bootstrap replicates ``[B]`` of the row with key ``key`` (float32, in :attr:`arrays`)."""
        import torch

        self.arrays[replicates_key(tuple(key))] = torch.as_tensor(replicates).detach().reshape(-1).to(torch.float32)

    def replicates(self, key: tuple[str, ...]) -> Any:
        """The bootstrap replicates ``[B]`` kept for the row with key ``key``, or ``None``."""
        return self.arrays.get(replicates_key(tuple(key)))

    def attach_intervals(self, level: float = LEVEL) -> int:
        """Give every row that has bootstrap replicates its percentile interval; returns how many rows got one.

        ``ci_method`` is :func:`bootstrap_method` of the number of replicates (``bootstrap-percentile-1000``).
        """
        from rulab.metrics.bootstrap import percentile_interval

        done = 0
        for key, row in list(self._rows.items()):
            reps = self.replicates(key)
            if reps is None or reps.numel() == 0:
                continue
            lo, hi = percentile_interval(reps, level)
            self._rows[key] = replace(row, ci_low=lo, ci_high=hi, ci_method=bootstrap_method(reps.numel()))
            done += 1
        return done

    def has_intervals(self) -> bool:
        """Whether any row carries an interval."""
        return any(r.has_interval for r in self)

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
        cols = [
            "kind",
            "dataset",
            "shift",
            "severity",
            "detector",
            "metric",
            "value",
            "n",
            "extra",
            "ci_low",
            "ci_high",
            "ci_method",
        ]
        return pd.DataFrame(recs, columns=cols)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """CSV text (and, with ``path``, written atomically to that file)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["kind", "dataset", "shift", "severity", "detector", "metric", "value", "n"]
        if self.has_intervals():  # the interval columns appear when there are intervals
            cols += ["ci_low", "ci_high", "ci_method"]
        w.writerow(cols)
        for r in self:
            w.writerow([repr(getattr(r, c)) if c in ("value", "ci_low", "ci_high") else getattr(r, c) for c in cols])
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def summary(self, detectors: Iterable[str] | None = None) -> str:
        """A plain-text summary: the ID calibration block, then AUROC / FPR95 per OOD set × detector,
        then shift and far-away numbers when present. A row with an interval gets a second line with ``[lo, hi]``
        under each number (the 95% bootstrap interval over test images)."""
        lines: list[str] = []
        ci = self.has_intervals()
        cw = 18 if ci else 0  # column width that fits "[0.8650, 0.8771]"

        def bounds(row: Row | None) -> str:
            return f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]" if row is not None and row.has_interval else ""

        idrows = self.filter(kind="id")
        if len(idrows):
            lines.append("in-distribution" + (" (second line: 95% bootstrap interval over test images)" if ci else ""))
            groups: dict[str, dict[str, Row]] = {}
            for r in idrows:
                groups.setdefault(r.detector or "-", {})[r.metric] = r
            names = [m.name for m in catalog.metrics("calibration") if m.summary]
            widths = [max(9, len(m) + 1, cw) for m in names]
            lines.append("  " + f"{'':<14}" + "".join(f"{m:>{w}}" for m, w in zip(names, widths)))
            for g, rows in groups.items():
                label = {"-": "raw", "ts": "temp-scaled"}.get(g, g)
                lines.append(
                    "  " + f"{label:<14}" + "".join(f"{_fmt(_value(rows.get(m))):>{w}}" for m, w in zip(names, widths))
                )
                if any(r.has_interval for r in rows.values()):
                    lines.append(
                        "  " + f"{'':<14}" + "".join(f"{bounds(rows.get(m)):>{w}}" for m, w in zip(names, widths))
                    )
        ood = self.filter(kind="ood")
        if len(ood):
            dets = list(detectors) if detectors else sorted({r.detector for r in ood})
            sets = list(dict.fromkeys(r.dataset for r in ood))
            metrics = [m.name for m in catalog.metrics("detection") if m.summary]
            w = max(16, cw)
            lines.append("OOD detection (AUPR at the OOD:ID ratio shown)")
            lines.append(
                "  " + f"{'ood set':<16}{'detector':<12}" + "".join(f"{m:>{w}}" for m in metrics) + f"{'ratio':>8}"
            )
            for s in sets:
                for d in dets:
                    cells = {r.metric: r for r in ood if r.dataset == s and r.detector == d}
                    if not any(m in cells for m in metrics):  # e.g. only OOD-calibration rows ("ts")
                        continue
                    lines.append(
                        "  "
                        + f"{s:<16}{d:<12}"
                        + "".join(f"{_fmt(_value(cells.get(m))):>{w}}" for m in metrics)
                        + f"{_fmt(_value(cells.get('ood_ratio')), 2):>8}"
                    )
                    if any(cells[m].has_interval for m in metrics if m in cells):
                        lines.append("  " + " " * 28 + "".join(f"{bounds(cells.get(m)):>{w}}" for m in metrics))
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


def _value(row: Row | None) -> float | None:
    return None if row is None else row.value


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"
