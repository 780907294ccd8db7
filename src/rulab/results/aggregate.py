"""Aggregation over seeds: mean ± std and a 95% interval per method and result key (convention 8 in
docs/conventions.md; docs/metrics.md, "Intervals").

Every claim the reports make is a mean over runs that differ only in their seed, shown with the sample standard
deviation (``ddof=1``), the seed count ``n`` and a 95% interval:

* over seeds (``n >= 2``): the Student t interval of the mean, ``mean ± t_{0.975, n-1} · std / sqrt(n)``
  (:func:`rulab.metrics.bootstrap.t_interval`), cut to the metric's declared range. The seed is the experimental
  unit; with 3 seeds the interval is wide (t = 4.30) because 3 seeds say little. It describes training randomness on
  the fixed test sets: the test images' own sampling error is the per-run interval below.
* for a single run (``n = 1``): the run's stored interval, the percentile bootstrap over test images computed when
  it was evaluated (``ci_method`` ``bootstrap-percentile-1000``), or, for a number derived from several rows (the
  mean AUROC over OOD sets), the percentile interval of the mean of the rows' stored bootstrap replicates
  (:class:`Replicates`; the replicates of all rows of one run share their resampled images).

:func:`bootstrap_ci` (a percentile bootstrap of the mean over seeds) is kept for callers that want it; it is not
what the tables show: with 3 seeds it has only 10 distinct resampled means and covers far less than 95%.

Records are the dicts of :meth:`rulab.results.store.ResultStore.results`; runs are grouped by their ``preset``
(or, without one, by their name less the ``-s<seed>`` suffix), then by (kind, dataset, shift, severity, detector,
metric).

One concern, kept in one file: aggregation over seeds and the pivot tables built from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rulab.metrics.bootstrap import percentile_interval, t_interval
from rulab.metrics.catalog import bounds as metric_bounds
from rulab.results.table import LEVEL, bootstrap_method

__all__ = [
    "Stat",
    "T_SEEDS",
    "Replicates",
    "describe",
    "interval_of",
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
    "column_labels",
    "key_measures",
    "summary_pivot",
]

GROUP_KEYS = ("preset", "kind", "dataset", "shift", "severity", "detector", "metric")
T_SEEDS = "t-seeds"
"""The ``method`` of a Student t interval over seeds."""

#: ``replicates(run_id, rows) -> [B] | None``: the bootstrap replicates of the mean of some of a run's result rows
#: (records of :meth:`ResultStore.results`), or None when they were not kept (:mod:`rulab.results.replicates`).
Replicates = Callable[[str, Sequence[Mapping[str, Any]]], Any]
#: names the far-away evaluation may give the adversarial-noise set (W3's "Adv. Noise")
ADV_NOISE_SETS = ("adv_noise", "adversarial_noise", "adv-noise")


@dataclass(frozen=True)
class Stat:
    """Summary of one quantity over seeds.

    Attributes:
        mean: mean of the finite-or-infinite values (NaN values, i.e. undefined metrics, are left out).
        std: sample standard deviation (``ddof=1``); NaN with fewer than 2 values.
        n: number of values used (seeds).
        lo, hi: the 95% interval (see the module docstring): Student t over seeds for ``n >= 2``; for ``n = 1`` the
            run's bootstrap interval over test images when there is one; NaN otherwise.
        values: the per-seed values, in run order.
        method: how ``lo, hi`` were computed (``t-seeds``, ``bootstrap-percentile-1000``; ``""`` for none).
    """

    mean: float
    std: float
    n: int
    lo: float = math.nan
    hi: float = math.nan
    values: tuple[float, ...] = field(default=(), compare=False)
    method: str = ""

    @property
    def has_interval(self) -> bool:
        """Whether ``lo, hi`` are numbers."""
        return not (math.isnan(self.lo) or math.isnan(self.hi))


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


def bootstrap_ci(
    values: Iterable[float], n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
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


def describe(
    values: Iterable[float], level: float = LEVEL, *, metric: str = "", interval: tuple[float, float, str] | None = None
) -> Stat:
    """A :class:`Stat` of ``values`` (one per seed): mean, ``ddof=1`` std, n and the 95% interval.

    Args:
        values: one value per seed.
        level: coverage of the interval.
        metric: the metric (its declared range cuts the t interval; :func:`rulab.metrics.catalog.bounds`).
        interval: ``(lo, hi, method)`` of a single run (its bootstrap interval over test images), used when there
            is one value.
    """
    vals = tuple(float(x) for x in values)
    mean, std, n = mean_std(vals)
    lo, hi, method = math.nan, math.nan, ""
    if n >= 2:
        lo, hi = t_interval(vals, level)
        if not math.isnan(lo):
            b_lo, b_hi = metric_bounds(metric)
            lo, hi, method = max(lo, b_lo), min(hi, b_hi), T_SEEDS
    elif n == 1 and interval is not None and not (math.isnan(interval[0]) or math.isnan(interval[1])):
        lo, hi, method = float(interval[0]), float(interval[1]), str(interval[2])
    return Stat(mean, std, n, lo, hi, vals, method)


def interval_of(record: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """The stored interval ``(ci_low, ci_high, ci_method)`` of one result record, or ``None``."""
    lo, hi = float(record.get("ci_low", math.nan)), float(record.get("ci_high", math.nan))
    if math.isnan(lo) or math.isnan(hi):
        return None
    return lo, hi, str(record.get("ci_method", ""))


def replicate_interval(reps: Any, level: float = LEVEL) -> tuple[float, float, str] | None:
    """The percentile interval of bootstrap replicates ``[B]`` as ``(lo, hi, method)``, or ``None``."""
    if reps is None:
        return None
    lo, hi = percentile_interval(reps, level)
    return None if math.isnan(lo) else (lo, hi, bootstrap_method(len(reps)))


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


def aggregate(records: Iterable[Mapping[str, Any]]) -> list[Aggregate]:
    """Group stored results by (preset, kind, dataset, shift, severity, detector, metric) and summarise over runs.

    Args:
        records: dicts with ``preset``/``name``, the key columns and ``value`` (from ``ResultStore.results``); a
            group of one run takes that record's stored interval (``ci_low``, ``ci_high``, ``ci_method``).

    Returns:
        One :class:`Aggregate` per group, in order of first appearance.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in records:
        key = (group_of(r), *(str(r.get(k, "")) for k in GROUP_KEYS[1:]))
        groups.setdefault(key, []).append(r)
    return [
        Aggregate(*key, stat=describe([float(r["value"]) for r in recs], metric=key[-1], interval=interval_of(recs[0])))
        for key, recs in groups.items()
    ]


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
        exclude: rows matching any of these filters never count (e.g. a shift suite's clean reference and its
            per-corruption means, which would otherwise enter the mean over its cells).
    """

    label: str
    metric: str
    where: tuple[Mapping[str, Any], ...]
    description: str = ""
    exclude: tuple[Mapping[str, Any], ...] = ()

    def rows_of_run(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows of one run the value is the mean of (those of the first matching alternative; ``[]`` for none)."""
        rows = [r for r in rows if not any(_matches(r, ex) for ex in self.exclude)]
        for alt in self.where:
            sel = [r for r in rows if _matches(r, alt)]
            if sel:
                return sel
        return []

    def of_run(self, rows: Sequence[Mapping[str, Any]]) -> float | None:
        """The value for one run's rows, or ``None`` when no alternative matches."""
        sel = self.rows_of_run(rows)
        if not sel:
            return None
        finite = [float(r["value"]) for r in sel if not math.isnan(float(r["value"]))]
        return float(np.mean(finite)) if finite else math.nan

    def interval_of_run(
        self, run_id: str, rows: Sequence[Mapping[str, Any]], replicates: Replicates | None = None
    ) -> tuple[float, float, str] | None:
        """The interval of one run's value over test images: the row's stored interval for a one-row measure, else
        the percentile interval of the mean of the rows' replicates (``replicates``), else ``None``."""
        sel = self.rows_of_run(rows)
        if len(sel) == 1:
            return interval_of(sel[0])
        if sel and replicates is not None:
            return replicate_interval(replicates(run_id, sel))
        return None


#: The study summary (printed by ``rulab study`` and heading the report's comparison section).
SUMMARY_MEASURES: tuple[Measure, ...] = (
    Measure(
        "acc",
        "acc",
        ({"kind": "id", "metric": "acc", "detector": ""}, {"kind": "id", "metric": "acc"}),
        "test accuracy",
    ),
    Measure(
        "ECE",
        "ece",
        ({"kind": "id", "metric": "ece", "detector": ""}, {"kind": "id", "metric": "ece"}),
        "expected calibration error, 15 uniform bins, before temperature scaling",
    ),
    Measure(
        "AUROC msp",
        "auroc",
        ({"kind": "ood", "metric": "auroc", "detector": "msp"},),
        "MSP AUROC, mean over the OOD sets",
    ),
    Measure(
        "FPR95 msp",
        "fpr95_id",
        ({"kind": "ood", "metric": "fpr95_id", "detector": "msp"},),
        "MSP FPR at 95% TPR, mean over the OOD sets",
    ),
    Measure(
        "shift acc",
        "acc",
        ({"kind": "shift", "metric": "acc", "detector": ""}, {"kind": "shift", "metric": "acc"}),
        "accuracy under covariate shift, mean over corruptions and severities",
        exclude=({"kind": "shift", "shift": "clean"}, {"kind": "shift", "severity": "mean"}),
    ),
    Measure(
        "MMC uniform",
        "mmc",
        (
            {"kind": "farconf", "dataset": "uniform", "metric": "mmc"},
            {"kind": "ood", "dataset": "uniform", "metric": "mmc"},
        ),
        "mean max-confidence on uniform noise",
    ),
    Measure(
        "MMC adv. noise",
        "mmc",
        ({"kind": "farconf", "dataset": ADV_NOISE_SETS, "metric": "mmc"},),
        "mean max-confidence on adversarial noise (W3)",
    ),
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
        baseline: for a comparison (:func:`rulab.results.compare.compare_pivot`), the baseline's row: it holds
            values, every other row holds differences to it (shown signed, with ``*`` where the interval excludes 0).
    """

    rows: list[str]
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, str], Stat]
    row_header: str = "method"
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    row_metrics: dict[str, str] = field(default_factory=dict)
    baseline: str = ""

    def is_difference(self, row: str) -> bool:
        """Whether ``row`` holds differences to the baseline (a comparison's other rows)."""
        return bool(self.baseline) and row != self.baseline

    def has_intervals(self) -> bool:
        """Whether any cell has an interval."""
        return any(s.has_interval for s in self.cells.values())

    def metric_of(self, row: str, column_metric: str) -> str:
        """The metric that decides how a cell is formatted."""
        return column_metric or self.row_metrics.get(row, "")

    def seeds(self, row: str) -> int:
        """The largest seed count of a row's cells."""
        return max((self.cells[(row, c)].n for c, _ in self.columns if (row, c) in self.cells), default=0)

    def __len__(self) -> int:
        return len(self.rows)


_COLUMN_KEYS = ("kind", "dataset", "shift", "severity", "detector", "metric")


def column_labels(aggs: Sequence[Aggregate]) -> dict[tuple[str, ...], str]:
    """``{(kind, dataset, shift, severity, detector, metric): label}``: the key fields that vary among ``aggs``
    joined with `` · `` (an empty detector reads ``raw``), or the metric name when nothing varies."""
    varying = [k for k in _COLUMN_KEYS if len({getattr(a, k) for a in aggs}) > 1]
    return {
        a.key[1:]: " · ".join(getattr(a, k) or ("raw" if k == "detector" else "-") for k in varying)
        if varying
        else a.metric
        for a in aggs
    }


def key_measures(aggs: Sequence[Aggregate]) -> list[Measure]:
    """One :class:`Measure` per distinct result key of ``aggs`` (in order), labelled as :func:`pivot` labels it."""
    labels = column_labels(aggs)
    return [Measure(label, key[-1], (dict(zip(_COLUMN_KEYS, key)),)) for key, label in labels.items()]


def pivot(aggs: Sequence[Aggregate], caption: str = "") -> Pivot:
    """Rows = method groups; columns = the key fields that vary among ``aggs`` (e.g. the OOD sets for one metric).

    A column label joins the varying key fields with `` · `` (``digits · auroc``; an empty detector reads ``raw``,
    i.e. not temperature-scaled); when nothing varies the label is the metric name.
    """
    labels = column_labels(aggs)
    rows: list[str] = []
    cols: dict[str, str] = {}
    cells: dict[tuple[str, str], Stat] = {}
    for a in aggs:
        label = labels[a.key[1:]]
        if a.preset not in rows:
            rows.append(a.preset)
        cols.setdefault(label, a.metric)
        cells[(a.preset, label)] = a.stat
    return Pivot(rows, list(cols.items()), cells, caption=caption or CAPTION)


def summary_pivot(
    records: Iterable[Mapping[str, Any]],
    measures: Sequence[Measure] = SUMMARY_MEASURES,
    replicates: Replicates | None = None,
) -> Pivot:
    """The per-method summary: each :class:`Measure` computed per run, then mean ± std and the 95% interval over the
    runs of a group.

    Args:
        records: result records (``ResultStore.results``).
        measures: the columns.
        replicates: reads a run's stored bootstrap replicates (:class:`rulab.results.replicates.ArrayReplicates`), so
            that a single run's mean over several rows (the mean AUROC over OOD sets) gets an interval too.

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
        per_group: dict[str, list[tuple[str, float]]] = {}
        for run_id, run_rows in by_run.items():
            v = m.of_run(run_rows)
            if v is not None:
                per_group.setdefault(group[run_id], []).append((run_id, v))
        if not per_group:
            continue
        columns.append((m.label, m.metric))
        for g, vals in per_group.items():
            single = m.interval_of_run(vals[0][0], by_run[vals[0][0]], replicates) if len(vals) == 1 else None
            cells[(g, m.label)] = describe([v for _, v in vals], metric=m.metric, interval=single)
    notes = [f"{m.label}: {m.description}" for m in measures if (m.label, m.metric) in columns and m.description]
    return Pivot(rows, columns, cells, caption=CAPTION, notes=notes)


CAPTION = "mean ± std over seeds, 95% interval below (t over seeds; one seed: bootstrap over test images); fraction metrics in %"
"""The caption of every table of means over seeds."""
