import math

import numpy as np
import pytest

from rulab.results.aggregate import (
    SUMMARY_MEASURES,
    Measure,
    aggregate,
    bootstrap_ci,
    describe,
    group_of,
    mean_std,
    pivot,
    summary_pivot,
)


def rec(run, preset, seed, kind, metric, value, dataset="", detector="", shift="", severity=""):
    return {
        "run_id": run,
        "name": f"{preset}-s{seed}",
        "preset": preset,
        "seed": seed,
        "kind": kind,
        "dataset": dataset,
        "shift": shift,
        "severity": severity,
        "detector": detector,
        "metric": metric,
        "value": value,
    }


def test_mean_std_known_answers():
    m, s, n = mean_std([0.90, 0.92, 0.94])
    assert (m, n) == (pytest.approx(0.92), 3) and s == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    m, s, n = mean_std([0.5, math.nan, 0.7])
    assert (m, n) == (pytest.approx(0.6), 2) and s == pytest.approx(math.sqrt(0.02))
    m, s, n = mean_std([0.3])
    assert m == 0.3 and math.isnan(s) and n == 1
    m, s, n = mean_std([])
    assert math.isnan(m) and math.isnan(s) and n == 0
    assert np.isclose(mean_std([1, 2, 3, 4])[1], np.std([1, 2, 3, 4], ddof=1))


def test_bootstrap_known_answers():
    # two values: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4 -> the 2.5%/97.5% quantiles are 0 and 1
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # three seeds: an extreme mean has probability 1/27 > 2.5%, so the interval is the whole range (crude by design)
    assert bootstrap_ci([0.0, 0.3, 0.9]) == (0.0, 0.9)
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)
    vals = [0.81, 0.84, 0.79, 0.86, 0.83, 0.8, 0.85, 0.82, 0.88, 0.78]
    assert bootstrap_ci(vals, seed=3) == bootstrap_ci(vals, seed=3)  # seeded
    with pytest.raises(ValueError):
        bootstrap_ci(vals, level=1.5)


def test_bootstrap_matches_scipy_percentile_interval():
    stats = pytest.importorskip("scipy.stats")
    vals = np.array([0.81, 0.84, 0.79, 0.86, 0.83, 0.80, 0.85, 0.82, 0.88, 0.78])
    ref = stats.bootstrap(
        (vals,), np.mean, n_resamples=20000, method="percentile", random_state=np.random.default_rng(1)
    ).confidence_interval
    lo, hi = bootstrap_ci(vals, n_resamples=20000, seed=0)
    assert lo == pytest.approx(ref.low, abs=2e-3) and hi == pytest.approx(ref.high, abs=2e-3)


def test_describe_and_group():
    s = describe([0.9, 0.92, 0.94])
    assert s.values == (0.9, 0.92, 0.94) and s.lo <= s.mean <= s.hi and s.n == 3
    assert group_of({"preset": "", "name": "fmnist-oe-s12"}) == "fmnist-oe"
    assert group_of({"preset": "fmnist-oe", "name": "x"}) == "fmnist-oe"


def test_aggregate_groups_by_preset_and_key():
    records = [
        rec("a0", "plain", 0, "id", "acc", 0.90),
        rec("a1", "plain", 1, "id", "acc", 0.92),
        rec("a2", "plain", 2, "id", "acc", 0.94),
        rec("b0", "oe", 0, "id", "acc", 0.80),
        rec("b1", "oe", 1, "id", "acc", 0.84),
        rec("a0", "plain", 0, "ood", "auroc", 0.9, "uniform", "msp"),
        rec("a1", "plain", 1, "ood", "auroc", 0.8, "uniform", "msp"),
    ]
    aggs = {a.key: a.stat for a in aggregate(records)}
    assert len(aggs) == 3
    s = aggs[("plain", "id", "", "", "", "", "acc")]
    assert (s.mean, s.n) == (pytest.approx(0.92), 3) and s.std == pytest.approx(0.02)
    s = aggs[("oe", "id", "", "", "", "", "acc")]
    assert (s.mean, s.n, s.std) == (pytest.approx(0.82), 2, pytest.approx(math.sqrt(0.0008)))
    assert aggs[("plain", "ood", "uniform", "", "", "msp", "auroc")].mean == pytest.approx(0.85)


def test_summary_measures_average_within_run_then_over_seeds():
    records = []
    for seed, (a, b) in enumerate([(0.9, 0.7), (0.8, 0.6)]):
        run = f"p{seed}"
        records += [
            rec(run, "plain", seed, "ood", "auroc", a, "uniform", "msp"),
            rec(run, "plain", seed, "ood", "auroc", b, "digits", "msp"),
            rec(run, "plain", seed, "ood", "auroc", 0.1, "digits", "energy"),  # another detector: not in "AUROC msp"
            rec(run, "plain", seed, "id", "acc", 0.9 + seed / 100),
            rec(run, "plain", seed, "id", "acc", 0.5, detector="ts"),
            rec(run, "plain", seed, "ood", "mmc", 0.3 + seed / 10, "uniform", "msp"),
        ]
    p = summary_pivot(records)
    assert [c[0] for c in p.columns] == ["acc", "AUROC msp", "MMC uniform"]  # measures without data are left out
    au = p.cells[("plain", "AUROC msp")]
    assert au.values == (pytest.approx(0.8), pytest.approx(0.7)) and au.mean == pytest.approx(0.75)
    assert p.cells[("plain", "acc")].mean == pytest.approx(
        0.905
    )  # the raw row (detector ''), not the temperature-scaled one
    assert p.cells[("plain", "MMC uniform")].mean == pytest.approx(0.35)  # falls back to the ood-kind row
    m = Measure("x", "acc", ({"kind": "id", "metric": "nope"},))
    assert m.of_run(records) is None
    assert SUMMARY_MEASURES[0].label == "acc"


def test_summary_shift_accuracy_is_the_mean_over_the_cells_only():
    """A shift evaluation also stores the clean reference (shift 'clean') and each corruption's mean over its levels
    (severity 'mean'); the summary's 'shift acc' is the mean over the cells, so neither may enter it (they did: the
    default study's column was 0.07-0.14 points too high)."""
    cells = [("fog", "1", 0.8), ("fog", "3", 0.6), ("blur", "1", 0.7), ("blur", "3", 0.5)]
    records = [rec("r", "plain", 0, "shift", "acc", v, "fmnist", "", s, sev) for s, sev, v in cells]
    records += [
        rec("r", "plain", 0, "shift", "acc", 0.95, "fmnist", "", "clean", "0"),
        rec("r", "plain", 0, "shift", "acc", 0.7, "fmnist", "", "fog", "mean"),
        rec("r", "plain", 0, "shift", "acc", 0.6, "fmnist", "", "blur", "mean"),
    ]
    (shift,) = [m for m in SUMMARY_MEASURES if m.label == "shift acc"]
    assert shift.of_run(records) == pytest.approx(0.65)  # (0.8 + 0.6 + 0.7 + 0.5) / 4
    assert len(shift.rows_of_run(records)) == 4


def test_pivot_columns_are_what_varies():
    records = [
        rec("a", "plain", 0, "ood", m, v, d, "msp")
        for d in ("digits", "uniform")
        for m, v in (("auroc", 0.9), ("fpr95_id", 0.2))
    ]
    p = pivot(aggregate(records))
    assert [c for c in p.columns] == [
        ("digits · auroc", "auroc"),
        ("digits · fpr95_id", "fpr95_id"),
        ("uniform · auroc", "auroc"),
        ("uniform · fpr95_id", "fpr95_id"),
    ]
    p = pivot(aggregate([r for r in records if r["metric"] == "auroc"]))
    assert [c[0] for c in p.columns] == ["digits", "uniform"] and p.rows == ["plain"]
    one = pivot(aggregate(records[:1]))
    assert one.columns == [("auroc", "auroc")]
