"""Paired comparisons: each method's difference to a baseline, with its 95% interval (docs/metrics.md, "Intervals").

``rulab results --compare fmnist-plain`` and the report's comparison section. For every column (a summary measure or
a stored result key) and every method other than the baseline, the difference ``method − baseline`` is paired twice:

* **by seed**: a method's run of seed ``s`` is compared with the baseline's run of the same seed (same data split,
  same OOD draws, same initialisation seed), and the mean of the per-seed differences is reported. With two or more
  common seeds the interval is the Student t interval of that mean (a paired t interval; ``ci_method``
  ``paired-t-seeds``).
* **by test image**: with one common seed, the two runs were evaluated on the same test images and their bootstrap
  replicates were drawn from the same resamples of those images (:mod:`rulab.eval.intervals`), so the replicates of
  the difference are the differences of the replicates; the interval is their percentile interval
  (``paired-bootstrap-percentile-1000``). Pairing removes the part of the sampling error the two models share, which
  is most of it when they rank the same images alike.

A difference whose interval excludes 0 is marked (``*`` in text, Markdown and LaTeX, bold in HTML). The baseline's
own row shows its values with their intervals, as in the summary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rulab.errors import RulabError
from rulab.metrics.bootstrap import percentile_interval, t_interval
from rulab.metrics.catalog import bounds as metric_bounds
from rulab.results.aggregate import (
    SUMMARY_MEASURES,
    Measure,
    Pivot,
    Replicates,
    Stat,
    aggregate,
    describe,
    group_of,
    key_measures,
    mean_std,
)
from rulab.results.export import select
from rulab.results.table import LEVEL, bootstrap_method

__all__ = ["PAIRED_T", "paired_difference", "compare_pivot"]

PAIRED_T = "paired-t-seeds"
"""The ``method`` of a paired Student t interval over seeds."""


def paired_difference(
    method: Mapping[Any, tuple[str, float, Sequence[Mapping[str, Any]]]],
    baseline: Mapping[Any, tuple[str, float, Sequence[Mapping[str, Any]]]],
    replicates: Replicates | None = None,
    level: float = LEVEL,
    *,
    metric: str = "",
) -> Stat | None:
    """The paired difference ``method − baseline`` over their common seeds, with its interval.

    Args:
        method, baseline: ``{seed: (run_id, value, rows)}``: each run's value and the result rows it is the mean of.
        replicates: reads a run's bootstrap replicates (needed for the one-seed, per-image pairing).
        level: coverage.
        metric: the metric; the t interval is cut to the range a difference of two values in its declared range
            ``[lo, hi]`` can take, ``[lo − hi, hi − lo]`` (:func:`rulab.metrics.catalog.bounds`), as the mean's
            interval is cut to ``[lo, hi]``.

    Returns:
        A :class:`Stat` of the per-seed differences (``values``), with the paired t interval over seeds or, for one
        common seed, the paired bootstrap interval over test images; ``None`` without a common seed.
    """
    seeds = [s for s in method if s in baseline]
    if not seeds:
        return None
    diffs = tuple(method[s][1] - baseline[s][1] for s in seeds)
    mean, std, n = mean_std(diffs)
    lo = hi = math.nan
    how = ""
    if n >= 2:
        lo, hi = t_interval(diffs, level)
        if not math.isnan(lo):
            b_lo, b_hi = metric_bounds(metric)
            lo, hi, how = max(lo, b_lo - b_hi), min(hi, b_hi - b_lo), PAIRED_T
    elif n == 1 and replicates is not None:
        s = seeds[0]
        ra, rb = replicates(method[s][0], method[s][2]), replicates(baseline[s][0], baseline[s][2])
        if ra is not None and rb is not None and len(ra) == len(rb):
            lo, hi = percentile_interval(ra - rb, level)
            how = bootstrap_method(len(ra), paired=True) if not math.isnan(lo) else ""
    return Stat(mean, std, n, lo, hi, diffs, how)


def _per_seed(
    records: Iterable[Mapping[str, Any]], measure: Measure
) -> dict[str, dict[Any, tuple[str, float, list[Mapping[str, Any]]]]]:
    """``{group: {seed: (run_id, value, rows)}}`` of one measure (a run without a seed is keyed by its run id)."""
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_run.setdefault(r["run_id"], []).append(r)
    out: dict[str, dict[Any, tuple[str, float, list[Mapping[str, Any]]]]] = {}
    for run_id, rows in by_run.items():
        sel = measure.rows_of_run(rows)
        value = measure.of_run(rows)
        if value is None:
            continue
        seed = rows[0].get("seed")
        out.setdefault(group_of(rows[0]), {})[run_id if seed is None else seed] = (run_id, value, sel)
    return out


def compare_pivot(
    records: Iterable[Mapping[str, Any]],
    baseline: str,
    metrics: str | Sequence[str] | None = None,
    kind: str | None = None,
    detector: str | None = None,
    dataset: str | None = None,
    replicates: Replicates | None = None,
) -> Pivot:
    """The comparison table: the baseline's values, then each other method's paired difference to it.

    Args:
        records: result records (``ResultStore.results``).
        baseline: the baseline's method group (a preset such as ``fmnist-plain``).
        metrics, kind, detector, dataset: the columns, as for :func:`rulab.results.export.results_pivot` (default:
            the study summary's measures).
        replicates: reads the runs' bootstrap replicates (:class:`rulab.results.replicates.ArrayReplicates`): the
            per-image pairing of one-seed comparisons, and the intervals of one-seed means over several rows.

    Raises:
        RulabError: ``baseline`` is not a method of the records (the message lists them).
    """
    recs = list(records)
    groups = list(dict.fromkeys(group_of(r) for r in recs))
    if baseline not in groups:
        raise RulabError(
            f"--compare names '{baseline}', which is not a method of these results; methods: {', '.join(groups) or '(none)'}"
        )
    sel = select(recs, metrics, kind, detector, dataset)
    measures: Sequence[Measure] = SUMMARY_MEASURES if sel is None else key_measures(aggregate(sel))
    data = recs if sel is None else sel
    cells: dict[tuple[str, str], Stat] = {}
    columns: list[tuple[str, str]] = []
    for m in measures:
        per = _per_seed(data, m)
        if baseline not in per:
            continue
        columns.append((m.label, m.metric))
        base = per[baseline]
        single = None
        if len(base) == 1:
            run_id, _, rows = next(iter(base.values()))
            single = m.interval_of_run(run_id, rows, replicates)
        cells[(baseline, m.label)] = describe([v for _, v, _ in base.values()], metric=m.metric, interval=single)
        for g, runs in per.items():
            if g != baseline:
                stat = paired_difference(runs, base, replicates, metric=m.metric)
                if stat is not None:
                    cells[(g, m.label)] = stat
    paired = [g for g in groups if g != baseline and any((g, label) in cells for label, _ in columns)]
    unpaired = [g for g in groups if g != baseline and g not in paired]
    rows = [baseline] + paired
    notes = [f"{m.label}: {m.description}" for m in measures if (m.label, m.metric) in columns and m.description]
    if unpaired:  # e.g. a study's ensembles (no seed) against a method with seeds: no pairing, so no empty rows
        notes.append(f"not compared (no seed or test image in common with {baseline}): {', '.join(unpaired)}")
    caption = (
        f"{baseline}: mean ± std over seeds; other rows: difference to {baseline} (method − baseline), paired by seed "
        "(t over seeds) or, with one seed, by test image (paired bootstrap); * = the 95% interval excludes 0; fraction metrics in %"
    )
    return Pivot(rows, columns, cells, caption=caption, notes=notes, baseline=baseline)
