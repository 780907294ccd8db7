import math
import multiprocessing as mp
import os
import socket
import sqlite3
import time

import pytest

from rulab.config import RunCfg, config_hash, to_dict
from rulab.errors import StoreError
from rulab.results.store import SCHEMA_VERSION, ResultStore, curve_points, run_id_for
from rulab.results.table import ResultTable, Row


def _table(scale: float = 1.0) -> ResultTable:
    t = ResultTable()
    t.add("id", "acc", 0.9 * scale, dataset="fashion_mnist", n=100)
    t.add("id", "ece", 0.05, dataset="fashion_mnist", detector="ts", n=100)
    t.add("ood", "auroc", 0.95, dataset="uniform", detector="msp", n=2000, extra={"ratio": 1.0})
    t.add("ood", "fpr95_id", math.nan, dataset="gaussian", detector="msp")
    t.add("farconf", "alpha_median", math.inf, dataset="uniform")
    t.add("farconf", "resistance", -math.inf, dataset="uniform")
    t.add("shift", "acc", 0.7, dataset="fashion_mnist", shift="gaussian_noise", severity=3)
    return t


def test_schema_is_the_design_contract(tmp_path):
    db = tmp_path / "r.db"
    ResultStore(db).close()
    con = sqlite3.connect(db)
    cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in ("runs", "results", "curves")}
    assert cols["runs"][:18] == [
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
    ]
    assert {"dataset_checksums", "study", "claimed_by", "heartbeat_at"} <= set(cols["runs"])
    # schema 2 (0.2) appends the interval columns to the schema-1 columns (docs/results-store.md)
    assert cols["results"] == [
        "run_id",
        "kind",
        "dataset",
        "shift",
        "severity",
        "detector",
        "metric",
        "value",
        "n",
        "extra_json",
        "ci_low",
        "ci_high",
        "ci_method",
    ]
    assert cols["curves"] == ["run_id", "epoch", "split", "metric", "value"]
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the unique key of results holds with '' (not NULL) in the key columns
    con.execute("INSERT INTO runs (run_id) VALUES ('r')")
    con.execute("INSERT INTO results (run_id, kind, metric, value) VALUES ('r', 'id', 'acc', 0.5)")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO results (run_id, kind, metric, value) VALUES ('r', 'id', 'acc', 0.6)")


def test_round_trip_with_nan_and_inf(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    cfg = RunCfg(name="plain-s0", preset="fmnist-plain", seed=0)
    rid = store.start_run(
        cfg,
        study="s",
        meta={"git_commit": "abc", "rulab_version": "0.1.0", "torch_version": "2", "device": "cpu"},
        dataset_checksums={"fashion_mnist/t10k-images": "8181f5"},
    )
    assert rid == run_id_for("plain-s0", config_hash(cfg)) == ResultStore.run_id_of(cfg)
    assert store.write_results(rid, _table()) == 7
    back = store.table(rid)
    want = {r.key: r for r in _table()}
    assert {r.key for r in back} == set(want)
    for r in back:
        w = want[r.key].value
        assert (math.isnan(r.value) and math.isnan(w)) or r.value == w
        assert r.n == want[r.key].n and r.extra == want[r.key].extra
    # NaN is stored as NULL, infinities as REAL
    raw = dict(
        sqlite3.connect(tmp_path / "r.db")
        .execute("SELECT metric, value FROM results WHERE metric IN ('fpr95_id', 'alpha_median', 'resistance')")
        .fetchall()
    )
    assert raw["fpr95_id"] is None and raw["alpha_median"] == math.inf and raw["resistance"] == -math.inf
    run = store.run(rid)
    assert run["preset"] == "fmnist-plain" and run["method"] == "erm" and run["model"] == "fastcnn" and run["seed"] == 0
    assert run["config"] == to_dict(cfg) and run["config_hash"] == config_hash(cfg) and run["status"] == "running"
    assert (
        run["dataset_checksums"] == {"fashion_mnist/t10k-images": "8181f5"}
        and run["git_commit"] == "abc"
        and run["study"] == "s"
    )
    assert store.run(rid)["status"] != "finished"
    store.finish_run(rid, meta={"device": "cuda:H100"})
    assert (
        store.run(rid)["status"] == "finished"
        and store.run(rid)["device"] == "cuda:H100"
        and store.run(rid)["finished_at"]
    )


def test_upsert_replaces_and_restart_keeps_started_at(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    rid = store.start_run(RunCfg(name="a"))
    first = store.run(rid)["started_at"]
    store.write_results(rid, _table())
    store.write_results(rid, _table(scale=0.5))
    assert store.counts()["results"] == 7
    assert store.results(run_id=rid, kind="id", metric="acc")[0]["value"] == pytest.approx(0.45)
    store.finish_run(rid)
    time.sleep(0.01)
    assert store.start_run(RunCfg(name="a")) == rid  # same name and config: the same row
    run = store.run(rid)
    assert run["started_at"] == first and run["finished_at"] is None and run["status"] == "running"
    assert store.start_run(RunCfg(name="a", seed=1)) != rid  # another config: another row


def test_filters_join_runs(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    a = store.start_run(RunCfg(name="p-s0", preset="p", seed=0), study="x")
    b = store.start_run(RunCfg(name="p-s1", preset="p", seed=1), study="y")
    store.write_results(a, _table())
    store.write_results(b, _table(0.5))
    assert {r["run_id"] for r in store.results(study="x")} == {a}
    assert len(store.results(seed=[0, 1], kind="ood")) == 4
    assert [r["value"] for r in store.results(seed=1, kind="id", metric="acc")] == [pytest.approx(0.45)]
    assert store.results(train_dataset="fashion_mnist", kind="shift")[0]["severity"] == "3"
    assert len(store.runs(study="y")) == 1
    df = store.results(frame=True, study="x")
    assert (
        len(df) == 7 and set(df["run_id"]) == {a} and {"preset", "seed", "kind", "metric", "value"} <= set(df.columns)
    )
    with pytest.raises(StoreError, match="valid columns"):
        store.runs(colour="red")


def test_errors_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database, just some text " * 50)
    with pytest.raises(StoreError, match="not a readable rulab results database"):
        ResultStore(bad)
    assert bad.read_bytes().startswith(b"this is not")  # nothing was overwritten
    store = ResultStore(tmp_path / "r.db")
    with pytest.raises(StoreError, match="start_run"):
        store.write_results("nope", _table())
    with pytest.raises(StoreError, match="start_run"):
        store.finish_run("nope")
    store.close()
    con = sqlite3.connect(tmp_path / "r.db")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer rulab"):
        ResultStore(tmp_path / "r.db")


def test_failed_transaction_loses_no_rows(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    rid = store.start_run(RunCfg(name="a"))
    store.write_results(rid, _table())
    bad = ResultTable([*_table(0.5), Row("id", None, 0.1)])  # the last row violates NOT NULL inside the transaction
    with pytest.raises(StoreError, match="nothing was written"):
        store.write_results(rid, bad)
    assert store.results(run_id=rid, kind="id", metric="acc")[0]["value"] == pytest.approx(0.9)
    assert store.counts()["results"] == 7


def test_curves_from_history(tmp_path):
    hist = [
        {
            "epoch": 1,
            "step": 10,
            "lr": 0.1,
            "train_loss": 1.5,
            "train_acc": 0.6,
            "val_acc": 0.7,
            "val_ece": 0.02,
            "note": "x",
        },
        {"epoch": 2, "step": 20, "train_loss": 1.0, "val_acc": math.nan},
    ]
    pts = curve_points(hist)
    assert (1, "train", "loss", 1.5) in pts and (1, "val", "ece", 0.02) in pts and (1, "train", "lr", 0.1) in pts
    assert all(p[2] != "note" for p in pts)
    store = ResultStore(tmp_path / "r.db")
    rid = store.start_run(RunCfg(name="a"))
    assert store.write_curves(rid, hist) == len(pts)
    store.write_curves(rid, hist)  # idempotent
    got = store.curves(run_id=rid, split="val", metric="acc")
    assert [c["epoch"] for c in got] == [1, 2] and got[0]["value"] == 0.7 and math.isnan(got[1]["value"])


def test_claims(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    me, other = f"{socket.gethostname()}:{os.getpid()}:aaaa", f"{socket.gethostname()}:{os.getpid()}:bbbb"
    assert store.claim("r1", me, name="cell")
    assert store.claim("r1", me)  # re-claiming one's own claim
    assert not store.claim("r1", other)  # live: our PID exists and the heartbeat is fresh
    assert store.claim_holder("r1") == me
    store.release("r1", me)
    assert store.claim("r1", other)
    # a dead owner on this host loses its claim at once
    proc = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    dead = f"{socket.gethostname()}:{proc.pid}:cccc"
    assert store.claim("r2", dead)
    assert store.claim("r2", me)
    # a silent owner on another host loses it after stale_after
    assert store.claim("r3", "elsewhere:1:dddd")
    assert not store.claim("r3", me, stale_after=60)
    assert store.claim("r3", me, stale_after=0.0)
    assert store.heartbeat("r3", me) and not store.heartbeat("r3", other)
    # a finished run is not claimed again unless forced
    store.finish_run("r3")
    assert not store.claim("r3", other) and store.claim("r3", other, force=True)


ROWS = 150


def _writer(db: str, worker: int, n_runs: int, shared: int, go) -> None:
    go.wait()
    store = ResultStore(db, timeout=60)
    names = [f"w{worker}-r{i}" for i in range(n_runs)] + [f"shared-{i}" for i in range(shared)]
    for name in names:
        rid = store.start_run({"name": name, "seed": worker}, run_id=name, study="conc")
        t = ResultTable()
        for k in range(ROWS):
            t.add("ood", "auroc", 0.5 + k / 100, dataset=f"set{k}", detector="msp", extra={"worker": worker})
        store.write_results(rid, t)
        store.write_curves(rid, [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 6)])
        store.finish_run(rid)
    store.close()


def test_four_concurrent_writer_processes(tmp_path):
    db = str(tmp_path / "c.db")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(db, w, 10, 5, go)) for w in range(4)]
    for p in procs:
        p.start()
    go.set()  # all four start writing at once
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]  # no "database is locked" failure
    store = ResultStore(db)
    n_runs = 4 * 10 + 5
    assert store.counts() == {"runs": n_runs, "results": n_runs * ROWS, "curves": n_runs * 5}
    con = sqlite3.connect(db)
    per_run = dict(con.execute("SELECT run_id, COUNT(*) FROM results GROUP BY run_id").fetchall())
    assert set(per_run.values()) == {ROWS} and len(per_run) == n_runs
    assert all(r["status"] == "finished" for r in store.runs())
