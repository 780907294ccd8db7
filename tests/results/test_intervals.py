"""Intervals in the results store, the aggregates, the exports and the paired comparison (docs/results-store.md,
"Intervals"; docs/metrics.md, "Intervals")."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch

from rulab.cli import main
from rulab.config import RunCfg
from rulab.errors import RulabError, StoreError
from rulab.metrics.bootstrap import t_quantile
from rulab.results.aggregate import Pivot, Stat, aggregate, describe, summary_pivot
from rulab.results.compare import compare_pivot, paired_difference
from rulab.results.export import results_pivot, to_csv, to_latex, to_markdown, to_text
from rulab.results.replicates import ArrayReplicates
from rulab.results.store import SCHEMA_VERSION, ResultStore
from rulab.results.table import ResultTable

# The schema-1 statements of rulab 0.1 (results without the interval columns), as 0.1 created them.
OLD_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', preset TEXT NOT NULL DEFAULT '', method TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '', dataset TEXT NOT NULL DEFAULT '', seed INTEGER, config_json TEXT NOT NULL DEFAULT '{}',
    config_hash TEXT NOT NULL DEFAULT '', git_commit TEXT NOT NULL DEFAULT '', rulab_version TEXT NOT NULL DEFAULT '',
    torch_version TEXT NOT NULL DEFAULT '', device TEXT NOT NULL DEFAULT '', checkpoint TEXT NOT NULL DEFAULT '',
    parent_run TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'running', started_at TEXT, finished_at TEXT,
    dataset_checksums TEXT NOT NULL DEFAULT '{}', study TEXT NOT NULL DEFAULT '', claimed_by TEXT NOT NULL DEFAULT '',
    heartbeat_at REAL
);
CREATE INDEX runs_study ON runs (study, preset, seed);
CREATE TABLE results (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, kind TEXT NOT NULL, dataset TEXT NOT NULL DEFAULT '',
    shift TEXT NOT NULL DEFAULT '', severity TEXT NOT NULL DEFAULT '', detector TEXT NOT NULL DEFAULT '', metric TEXT NOT NULL,
    value REAL, n INTEGER NOT NULL DEFAULT 0, extra_json TEXT NOT NULL DEFAULT '{}',
    UNIQUE (run_id, kind, dataset, shift, severity, detector, metric)
);
CREATE INDEX results_metric ON results (metric, kind, detector);
CREATE TABLE curves (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, epoch INTEGER NOT NULL, split TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, UNIQUE (run_id, epoch, split, metric)
);
PRAGMA user_version = 1;
"""


def _old_db(path) -> None:
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.execute(
        "INSERT INTO runs (run_id, name, preset, seed, status) VALUES ('old-s0', 'old-s0', 'old', 0, 'finished')"
    )
    con.execute(
        "INSERT INTO results (run_id, kind, dataset, metric, value, n) VALUES ('old-s0', 'id', 'fashion_mnist', 'acc', 0.9, 100)"
    )
    con.commit()
    con.close()


def _columns(path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[1] for r in con.execute("PRAGMA table_info(results)")]
    finally:
        con.close()


def _version(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def test_a_schema_1_database_is_read_as_it_is_and_migrated_on_first_write(tmp_path):
    db = tmp_path / "old.db"
    _old_db(db)
    store = ResultStore(db)
    recs = store.results()
    assert len(recs) == 1 and recs[0]["value"] == 0.9
    assert math.isnan(recs[0]["ci_low"]) and math.isnan(recs[0]["ci_high"]) and recs[0]["ci_method"] == ""
    assert store.table("old-s0").value(metric="acc") == 0.9
    assert main(["results", "--db", str(db)]) == 0  # a report of an old file works and changes nothing
    assert _version(db) == 1 and "ci_low" not in _columns(db)
    # the first write migrates in place (same transaction), keeping every old row
    t = ResultTable()
    t.add(
        "id",
        "ece",
        0.05,
        dataset="fashion_mnist",
        n=100,
        ci_low=0.04,
        ci_high=0.06,
        ci_method="bootstrap-percentile-1000",
    )
    store.write_results("old-s0", t)
    assert _version(db) == SCHEMA_VERSION == 2
    assert _columns(db)[-3:] == ["ci_low", "ci_high", "ci_method"]
    by = {r["metric"]: r for r in store.results()}
    assert by["acc"]["value"] == 0.9 and math.isnan(by["acc"]["ci_low"]) and by["acc"]["ci_method"] == ""
    assert (by["ece"]["ci_low"], by["ece"]["ci_high"], by["ece"]["ci_method"]) == (
        0.04,
        0.06,
        "bootstrap-percentile-1000",
    )
    store.close()
    # a file from a newer rulab is still refused
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 3")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer rulab"):
        ResultStore(db)


def test_intervals_round_trip_and_replace(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    rid = store.start_run(RunCfg(name="a-s0", preset="a", seed=0))
    t = ResultTable()
    t.add(
        "ood",
        "auroc",
        0.9,
        dataset="digits",
        detector="msp",
        ci_low=0.88,
        ci_high=0.92,
        ci_method="bootstrap-percentile-1000",
    )
    t.add("ood", "ood_ratio", 0.2, dataset="digits", detector="msp")
    store.write_results(rid, t)
    back = {r.metric: r for r in store.table(rid)}
    assert (back["auroc"].ci_low, back["auroc"].ci_high, back["auroc"].ci_method) == (
        0.88,
        0.92,
        "bootstrap-percentile-1000",
    )
    assert not back["ood_ratio"].has_interval and back["ood_ratio"].ci_method == ""
    t.add("ood", "auroc", 0.91, dataset="digits", detector="msp")  # re-evaluated without intervals: they go
    store.write_results(rid, t)
    assert not store.table(rid).get(("ood", "digits", "", "", "msp", "auroc")).has_interval


def rec(run, preset, seed, kind, metric, value, dataset="", detector="", ci=None):
    lo, hi, how = ci if ci else (math.nan, math.nan, "")
    return {
        "run_id": run,
        "name": f"{preset}-s{seed}",
        "preset": preset,
        "seed": seed,
        "kind": kind,
        "dataset": dataset,
        "shift": "",
        "severity": "",
        "detector": detector,
        "metric": metric,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "ci_method": how,
    }


def test_aggregate_uses_t_over_seeds_and_a_single_runs_stored_interval():
    recs = [rec(f"a{s}", "a", s, "ood", "auroc", v, "digits", "msp") for s, v in enumerate((0.90, 0.92, 0.97))]
    recs.append(rec("b0", "b", 0, "ood", "auroc", 0.8, "digits", "msp", ci=(0.78, 0.83, "bootstrap-percentile-1000")))
    aggs = {a.preset: a.stat for a in aggregate(recs)}
    a = aggs["a"]
    half = t_quantile(0.975, 2) * float(np.std([0.90, 0.92, 0.97], ddof=1)) / math.sqrt(3)
    # the t interval is cut at 1, the top of AUROC's declared range
    assert (a.lo, a.hi, a.method) == (pytest.approx(0.93 - half), 1.0, "t-seeds") and 0.93 + half > 1
    assert (aggs["b"].lo, aggs["b"].hi, aggs["b"].method) == (0.78, 0.83, "bootstrap-percentile-1000")
    s = describe([0.5, 0.6], metric="nll")  # NLL has no upper bound: nothing is cut
    assert s.hi == pytest.approx(0.55 + t_quantile(0.975, 1) * math.sqrt(0.005) / math.sqrt(2))


def _tiny_with_intervals() -> Pivot:
    cells = {
        ("plain", "acc"): Stat(0.9123, 0.0045, 3, 0.9011, 0.9235, (), "t-seeds"),
        ("plain", "nll"): Stat(0.3, 0.01, 3, 0.2752, 0.3248, (), "t-seeds"),
        ("oe", "acc"): Stat(0.9, math.nan, 1, 0.894, 0.906, (), "bootstrap-percentile-1000"),
    }
    return Pivot(["plain", "oe"], [("acc", "acc"), ("nll", "nll")], cells, caption="c")


def test_exports_show_intervals_under_each_row():
    p = _tiny_with_intervals()
    assert to_markdown(p) == (
        "c\n\n"
        "| method | seeds | acc | nll |\n"
        "|:---|---:|---:|---:|\n"
        "| plain | 3 | 91.23 ± 0.45 | 0.300 ± 0.010 |\n"
        "|  | 95% CI | [90.11, 92.35] | [0.275, 0.325] |\n"
        "| oe | 1 | 90.00 | – |\n"
        "|  | 95% CI | [89.40, 90.60] |  |\n"
    )
    tex = to_latex(p)
    assert (
        "plain & 3 & 91.23 $\\pm$ 0.45 & 0.300 $\\pm$ 0.010 \\\\\n & 95\\% CI & [90.11, 92.35] & [0.275, 0.325] \\\\"
        in tex
    )
    lines = to_text(p).splitlines()
    assert lines[3].split() == ["plain", "3", "91.23", "±", "0.45", "0.300", "±", "0.010"]
    assert lines[4].split() == ["95%", "CI", "[90.11,", "92.35]", "[0.275,", "0.325]"]
    assert to_csv(p).splitlines() == [
        "method,seeds,acc,acc std,acc ci_low,acc ci_high,acc ci_method,nll,nll std,nll ci_low,nll ci_high,nll ci_method",
        "plain,3,0.9123,0.0045,0.9011,0.9235,t-seeds,0.3,0.01,0.2752,0.3248,t-seeds",
        "oe,1,0.9,,0.894,0.906,bootstrap-percentile-1000,,,,,",
    ]


def _runs_db(tmp_path, seeds=(0, 1, 2), arrays=False):
    """Two methods (plain, oe) with MSP AUROC on two OOD sets and accuracy; oe is 0.03 better on AUROC on every seed
    and image resample (its replicates are plain's plus 0.03 plus a little noise), equal in accuracy up to noise."""
    store = ResultStore(tmp_path / "r.db")
    rng = np.random.default_rng(0)
    base = {"digits": 0.80, "uniform": 0.90}
    shared = {k: torch.tensor(rng.normal(0, 0.01, 1000)) for k in base}  # the same image resamples for both methods
    for preset, shift in (("plain", 0.0), ("oe", 0.03)):
        for seed in seeds:
            run_dir = tmp_path / f"{preset}-s{seed}"
            rid = store.start_run(
                RunCfg(name=f"{preset}-s{seed}", preset=preset, seed=seed),
                study="mini",
                checkpoint=str(run_dir / "model.safetensors"),
            )
            t = ResultTable()
            t.add("id", "acc", 0.9 + seed / 100 + (0.001 if preset == "oe" else 0.0), dataset="fashion_mnist")
            for s, v in base.items():
                value = v + shift + seed / 200
                reps = value + shared[s] + (torch.tensor(rng.normal(0, 0.002, 1000)) if preset == "oe" else 0.0)
                t.add("ood", "auroc", value, dataset=s, detector="msp")
                t.set_replicates(("ood", s, "", "", "msp", "auroc"), reps)
            t.attach_intervals()
            store.write_results(rid, t)
            store.finish_run(rid)
            if arrays:
                t.save_arrays(run_dir / "eval" / "fmnist" / "arrays.safetensors")
    return store


def test_compare_pairs_by_seed_with_a_t_interval(tmp_path):
    store = _runs_db(tmp_path)
    p = compare_pivot(store.results(), "plain")
    assert p.rows == ["plain", "oe"] and p.baseline == "plain" and p.is_difference("oe")
    d = p.cells[("oe", "AUROC msp")]
    # the per-seed differences are all 0.03: std 0, so the paired t interval is the point [0.03, 0.03]
    assert d.mean == pytest.approx(0.03) and d.n == 3 and d.method == "paired-t-seeds"
    assert d.lo == pytest.approx(0.03) and d.hi == pytest.approx(0.03)
    acc = p.cells[("oe", "acc")]
    assert acc.mean == pytest.approx(0.001) and acc.lo == pytest.approx(0.001) and acc.n == 3
    base = p.cells[("plain", "AUROC msp")]  # the baseline row holds values, not differences
    assert base.mean == pytest.approx(0.85 + 0.005) and base.method == "t-seeds"
    md = to_markdown(p)
    assert "| oe | 3 | +0.10 ± 0.00 | +3.00 ± 0.00 |" in md  # accuracy, then AUROC: signed differences in points
    assert "|  | 95% CI | [+0.10, +0.10] * | [+3.00, +3.00] * |" in md  # both exclude 0: marked
    with pytest.raises(RulabError, match="not a method of these results; methods: plain, oe"):
        compare_pivot(store.results(), "erm")


def test_paired_t_interval_is_cut_to_the_range_a_difference_can_take():
    # two seeds whose differences are +0.8 and -0.8: mean 0, sd 0.8·√2, half-width t(0.975, 1)·sd/√2 = 12.706·0.8
    method = {0: ("m0", 0.9, []), 1: ("m1", 0.1, [])}
    base = {0: ("b0", 0.1, []), 1: ("b1", 0.9, [])}
    half = t_quantile(0.975, 1) * 0.8
    raw = paired_difference(method, base)  # no metric: no range to cut to
    assert raw.lo == pytest.approx(-half) and raw.hi == pytest.approx(half) and half > 10
    auroc = paired_difference(method, base, metric="auroc")  # AUROC in [0, 1]: a difference lies in [-1, 1]
    assert (auroc.lo, auroc.hi, auroc.method) == (-1.0, 1.0, "paired-t-seeds") and auroc.mean == pytest.approx(0.0)
    nll = paired_difference(method, base, metric="nll")  # NLL in [0, inf): a difference can be anything
    assert nll.lo == pytest.approx(-half) and nll.hi == pytest.approx(half)


def test_compare_with_one_seed_pairs_by_test_image(tmp_path):
    store = _runs_db(tmp_path, seeds=(0,), arrays=True)
    recs = store.results()
    reps = ArrayReplicates(store.runs())
    p = compare_pivot(recs, "plain", replicates=reps)
    d = p.cells[("oe", "AUROC msp")]
    # by hand: the replicates of the mean over the two sets, oe minus plain, their 2.5% and 97.5% quantiles
    files = {r["run_id"]: tmp_path / f"{r['name']}" / "eval" / "fmnist" / "arrays.safetensors" for r in store.runs()}
    arrays = {rid: ResultTable.load_arrays(f) for rid, f in files.items()}
    rid = {r["preset"]: r["run_id"] for r in store.runs()}
    mean_reps = {
        m: (
            arrays[rid[m]]['bootstrap/["ood", "digits", "", "", "msp", "auroc"]'].double()
            + arrays[rid[m]]['bootstrap/["ood", "uniform", "", "", "msp", "auroc"]'].double()
        )
        / 2
        for m in ("plain", "oe")
    }
    lo, hi = np.quantile((mean_reps["oe"] - mean_reps["plain"]).numpy(), [0.025, 0.975])
    assert d.method == "paired-bootstrap-percentile-1000" and d.n == 1
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi)) and d.lo > 0.02
    # unpaired, the same difference would be far less certain: each method's own interval is ± ~2 points wide
    single = summary_pivot(recs, replicates=reps).cells[("plain", "AUROC msp")]
    assert single.method == "bootstrap-percentile-1000" and (single.hi - single.lo) > 3 * (d.hi - d.lo)
    # without the arrays there is no per-image pairing, and no interval is invented
    bare = compare_pivot(recs, "plain").cells[("oe", "AUROC msp")]
    assert bare.mean == pytest.approx(0.03) and not bare.has_interval


def test_cli_results_compare_and_formats(tmp_path, capsys):
    store = _runs_db(tmp_path)
    db = str(store.path)
    assert main(["results", "--db", db, "--compare", "plain", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "difference to plain" in out and "| oe | 3 |" in out and "[+3.00, +3.00] *" in out
    assert main(["results", "--db", db, "--compare", "plain", "--metric", "auroc", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("method,seeds,digits,digits std,digits ci_low,digits ci_high,digits ci_method")
    assert lines[2].startswith("oe,3,0.03") and "paired-t-seeds" in lines[2]
    assert main(["results", "--db", db, "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "|  | 95% CI |" in out and "t over seeds" in out
    assert main(["results", "--db", db, "--compare", "nope"]) == 2
    assert "'nope', which is not a method" in capsys.readouterr().err


def test_results_pivot_single_run_rows_keep_their_stored_interval(tmp_path):
    store = _runs_db(tmp_path, seeds=(0,))
    p = results_pivot(store.results(), metrics="auroc")
    s = p.cells[("plain", "digits")]
    assert s.n == 1 and s.method == "bootstrap-percentile-1000" and s.lo < s.mean < s.hi


def test_compare_leaves_out_methods_it_cannot_pair_and_says_so(tmp_path):
    """A study's ensembles are runs without a seed: nothing pairs them with a baseline that has seeds, so they get no
    row of empty cells (the report showed five) but a note naming them."""
    store = _runs_db(tmp_path)
    rid = store.start_run(RunCfg(name="plain-ens", preset="plain+ensemble", seed=None), study="mini")
    t = ResultTable()
    t.add("id", "acc", 0.93, dataset="fashion_mnist")
    store.write_results(rid, t)
    store.finish_run(rid)
    p = compare_pivot(store.results(), "plain")
    assert p.rows == ["plain", "oe"]
    assert any("not compared" in n and "plain+ensemble" in n for n in p.notes)
    assert "plain+ensemble" not in to_markdown(p).split("\n\n")[0]
