"""Aggregation over seeds: mean ± std (and a bootstrap interval) per method and result key (convention 8 in
docs/conventions.md).

Every claim the reports make is a mean over runs that differ only in their seed, shown with the sample standard
deviation (``ddof=1``) and the seed count ``n``. :func:`bootstrap_ci` adds a percentile bootstrap interval of the
mean (resampling the per-seed values with replacement, seeded, 2,000 resamples by default). With the 3 seeds of
the default study there are only 10 distinct resampled means, so that interval is crude: read it as a rough
range, not as a calibrated 95% confidence interval; it becomes meaningful from about 10 seeds on.

Records are the dicts of :meth:`rulab.results.store.ResultStore.results`; runs are grouped by their ``preset``
(or, without one, by their name less the ``-s<seed>`` suffix), then by (kind, dataset, shift, severity, detector,
metric).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Stat",
    "describe",
    "mean_std",
    "bootstrap_ci",
    "group_of",
    "Aggregate",
    "aggregate",
    "Measure",
    "SUMMARY_MEASURES",
    "ADV_NOISE_SETS",
    "Pivot",
    "pivot",
    "summary_pivot",
]

GROUP_KEYS = ("preset", "kind", "dataset", "shift", "severity", "detector", "metric")
#: names the far-away evaluation may give the adversarial-noise set (W3's "Adv. Noise")
ADV_NOISE_SETS = ("adv_noise", "adversarial_noise", "adv-noise")


@dataclass(frozen=True)
class Stat:
    """Summary of one quantity over seeds.

    Attributes:
        mean: mean of the finite-or-infinite values (NaN values, i.e. undefined metrics, are left out).
        std: sample standard deviation (``ddof=1``); NaN with fewer than 2 values.
        n: number of values used (seeds).
        lo, hi: percentile bootstrap interval of the mean (see the module docstring); equal to the value for n=1.
        values: the per-seed values, in run order.
    """

    mean: float
    std: float
    n: int
    lo: float = math.nan
    hi: float = math.nan
    values: tuple[float, ...] = field(default=(), compare=False)


def _clean(values: Iterable[float]) -> np.ndarray:
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    return v[~np.isnan(v)]


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, std with ddof=1, n)`` of the non-NaN values (NaN mean for none, NaN std for fewer than two)."""
    v = _clean(values)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 and np.all(np.isfinite(v)) else math.nan
    return mean, std, n


def bootstrap_ci(values: Iterable[float], n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN values left out).

    Args:
        values: one value per seed.
        n_resamples: bootstrap resamples (each draws ``n`` values with replacement).
        level: coverage of the interval (0.95 → the 2.5% and 97.5% quantiles of the resampled means).
        seed: seeds the resampling (same inputs → same interval).

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` without values, ``(v, v)`` for a single value.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    v = _clean(values)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(int(n_resamples), v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0])
    return float(lo), float(hi)


def describe(values: Iterable[float], n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Stat:
    """A :class:`Stat` of ``values`` (mean, ``ddof=1`` std, n and bootstrap interval)."""
    vals = tuple(float(x) for x in values)
    mean, std, n = mean_std(vals)
    lo, hi = bootstrap_ci(vals, n_resamples, level, seed)
    return Stat(mean, std, n, lo, hi, vals)


_SEED_SUFFIX = re.compile(r"-s\d+$")


def group_of(record: Mapping[str, Any]) -> str:
    """The method group of a run: its preset, or its name without the ``-s<seed>`` suffix."""
    return str(record.get("preset") or "") or _SEED_SUFFIX.sub("", str(record.get("name", "")))


@dataclass(frozen=True)
class Aggregate:
    """One result key of one method group, summarised over its runs (seeds)."""

    preset: str
    kind: str
    dataset: str
    shift: str
    severity: str
    detector: str
    metric: str
    stat: Stat

    @property
    def key(self) -> tuple[str, ...]:
        return (self.preset, self.kind, self.dataset, self.shift, self.severity, self.detector, self.metric)


def aggregate(records: Iterable[Mapping[str, Any]], n_resamples: int = 2000, seed: int = 0) -> list[Aggregate]:
    """Group stored results by (preset, kind, dataset, shift, severity, detector, metric) and summarise over runs.

    Args:
        records: dicts with ``preset``/``name``, the key columns and ``value`` (from ``ResultStore.results``).

    Returns:
        One :class:`Aggregate` per group, in order of first appearance.
    """
    groups: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        key = (group_of(r), *(str(r.get(k, "")) for k in GROUP_KEYS[1:]))
        groups.setdefault(key, []).append(float(r["value"]))
    return [Aggregate(*key, stat=describe(vals, n_resamples, seed=seed)) for key, vals in groups.items()]


def _matches(record: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for k, v in where.items():
        got = record.get(k, "")
        if isinstance(v, (tuple, list, set, frozenset)):
            if got not in v:
                return False
        elif got != v:
            return False
    return True


@dataclass(frozen=True)
class Measure:
    """A per-run number derived from its result rows, then summarised over seeds (a column of the summary).

    Attributes:
        label: column header.
        metric: the underlying metric name (decides percent formatting).
        where: alternative row filters, tried in order; the first that matches any row of a run is used, and
            the run's value is the mean of the matching rows (e.g. the mean AUROC over all OOD sets).
        description: one line for captions.
    """

    label: str
    metric: str
    where: tuple[Mapping[str, Any], ...]
    description: str = ""

    def of_run(self, rows: Sequence[Mapping[str, Any]]) -> float | None:
        """The value for one run's rows, or ``None`` when no alternative matches."""
        for alt in self.where:
            vals = [float(r["value"]) for r in rows if _matches(r, alt)]
            if vals:
                finite = [v for v in vals if not math.isnan(v)]
                return float(np.mean(finite)) if finite else math.nan
        return None


#: The study summary (printed by ``rulab study`` and heading the report's comparison section).
SUMMARY_MEASURES: tuple[Measure, ...] = (
    Measure("acc", "acc", ({"kind": "id", "metric": "acc", "detector": ""}, {"kind": "id", "metric": "acc"}), "test accuracy"),
    Measure("ECE", "ece", ({"kind": "id", "metric": "ece", "detector": ""}, {"kind": "id", "metric": "ece"}), "expected calibration error, 15 uniform bins, before temperature scaling"),
    Measure("AUROC msp", "auroc", ({"kind": "ood", "metric": "auroc", "detector": "msp"},), "MSP AUROC, mean over the OOD sets"),
    Measure("FPR95 msp", "fpr95_id", ({"kind": "ood", "metric": "fpr95_id", "detector": "msp"},), "MSP FPR at 95% TPR, mean over the OOD sets"),
    Measure("shift acc", "acc", ({"kind": "shift", "metric": "acc", "detector": ""}, {"kind": "shift", "metric": "acc"}), "accuracy under covariate shift, mean over corruptions and severities"),
    Measure("MMC uniform", "mmc", ({"kind": "farconf", "dataset": "uniform", "metric": "mmc"}, {"kind": "ood", "dataset": "uniform", "metric": "mmc"}), "mean max-confidence on uniform noise"),
    Measure("MMC adv. noise", "mmc", ({"kind": "farconf", "dataset": ADV_NOISE_SETS, "metric": "mmc"},), "mean max-confidence on adversarial noise (W3)"),
)


@dataclass
class Pivot:
    """A table of :class:`Stat` cells: one row per method group, one column per result key or measure.

    Attributes:
        rows: row labels (method groups) in order.
        columns: ``(label, metric)`` per column; ``metric`` decides the number format.
        cells: ``{(row, column label): Stat}``; absent cells are missing data.
        row_header: header of the label column.
        caption: one line describing the values.
        notes: lines explaining the columns (printed under the table).
        row_metrics: ``{row: metric}`` for tables whose rows are metrics (a column's metric ``""`` defers to it).
    """

    rows: list[str]
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, str], Stat]
    row_header: str = "method"
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    row_metrics: dict[str, str] = field(default_factory=dict)

    def metric_of(self, row: str, column_metric: str) -> str:
        """The metric that decides how a cell is formatted."""
        return column_metric or self.row_metrics.get(row, "")

    def seeds(self, row: str) -> int:
        """The largest seed count of a row's cells."""
        return max((self.cells[(row, c)].n for c, _ in self.columns if (row, c) in self.cells), default=0)

    def __len__(self) -> int:
        return len(self.rows)


_COLUMN_KEYS = ("kind", "dataset", "shift", "severity", "detector", "metric")


def pivot(aggs: Sequence[Aggregate], caption: str = "") -> Pivot:
    """Rows = method groups; columns = the key fields that vary among ``aggs`` (e.g. the OOD sets for one metric).

    A column label joins the varying key fields with `` · `` (``digits · auroc``; an empty detector reads ``raw``,
    i.e. not temperature-scaled); when nothing varies the label is the metric name.
    """
    varying = [k for k in _COLUMN_KEYS if len({getattr(a, k) for a in aggs}) > 1]
    rows: list[str] = []
    cols: dict[str, str] = {}
    cells: dict[tuple[str, str], Stat] = {}
    for a in aggs:
        label = " · ".join(getattr(a, k) or ("raw" if k == "detector" else "-") for k in varying) if varying else a.metric
        if a.preset not in rows:
            rows.append(a.preset)
        cols.setdefault(label, a.metric)
        cells[(a.preset, label)] = a.stat
    return Pivot(rows, list(cols.items()), cells, caption=caption or "mean ± std over seeds (fraction metrics in %)")


def summary_pivot(
    records: Iterable[Mapping[str, Any]], measures: Sequence[Measure] = SUMMARY_MEASURES, n_resamples: int = 2000, seed: int = 0
) -> Pivot:
    """The per-method summary: each :class:`Measure` computed per run, then mean ± std over the runs of a group.

    Measures without data for any run are left out.
    """
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    group: dict[str, str] = {}
    for r in records:
        by_run.setdefault(r["run_id"], []).append(r)
        group.setdefault(r["run_id"], group_of(r))
    rows = list(dict.fromkeys(group.values()))
    cells: dict[tuple[str, str], Stat] = {}
    columns: list[tuple[str, str]] = []
    for m in measures:
        per_group: dict[str, list[float]] = {}
        for run_id, run_rows in by_run.items():
            v = m.of_run(run_rows)
            if v is not None:
                per_group.setdefault(group[run_id], []).append(v)
        if not per_group:
            continue
        columns.append((m.label, m.metric))
        for g, vals in per_group.items():
            cells[(g, m.label)] = describe(vals, n_resamples, seed=seed)
    notes = [f"{m.label}: {m.description}" for m in measures if (m.label, m.metric) in columns and m.description]
    return Pivot(rows, columns, cells, caption="mean ± std over seeds (fraction metrics in %)", notes=notes)
