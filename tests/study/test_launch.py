"""The cluster launchers' parts, without running a study: launcher settings, the cell record and its ingestion
(idempotent), the status table, the torchrun variables of a SLURM task, the sbatch scripts submitit writes (a
recording ``sbatch`` stands in for SLURM), the worker's shared-directory check and the driver lock. The launchers
on real engines are in test_launch_engines.py."""

import json
import math
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from rulab.cli import main
from rulab.config import config_hash
from rulab.errors import ConfigError, RulabError
from rulab.presets.study_spec import LauncherCfg, Study, launcher_config, load_study
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable
from rulab.study import plan_cells, run_study
from rulab.study.cell import CELL_FILE, CellRecord, ingest, read_record, write_record
from rulab.study.launch import DriverLock, state_dir_of
from rulab.study.status import study_status
from rulab.study.worker import LOG_FILE, SHARED_CHECK, STARTED_FILE, CellJob, run_cell_job, torchrun_env

OV = ("train.max_steps=2", "train.epochs=1", "data.train_subset=256", "data.val_size=200", "eval.detectors=[]")


def _dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of the three tables, sorted (row order is not part of the contract)."""
    con = sqlite3.connect(db)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in ("runs", "results", "curves")
        }
    finally:
        con.close()


def _record(cell, rows: ResultTable, status: str = "finished") -> CellRecord:
    return CellRecord(
        run_id=cell.run_id,
        name=cell.cfg.name,
        config_hash=config_hash(cell.cfg),
        status=status,
        started_at="2026-01-02T03:04:05.000006Z",
        finished_at="2026-01-02T03:09:05.123456Z",
        provenance={"rulab_version": "0.1.0", "torch_version": "2.x", "git_commit": "abc"},
        meta={"device": "cpu", "rulab_version": "0.1.0", "torch_version": "2.x", "git_commit": "abc"},
        history=[
            {"epoch": 1, "train_loss": 0.5, "val_acc": 0.75, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.25, "val_acc": 0.8, "lr": 0.01},
        ],
        dataset_checksums={"fashion_mnist/t10k-images": "8181f5470baa50b63fa0f6fddb340f0a"},
        rows=[asdict(r) for r in rows],
        host="node07",
        pid=123,
        seconds={"train": 1.0, "evaluate": 2.0},
    )


def _table() -> ResultTable:
    t = ResultTable()
    t.add("id", "acc", 0.875, dataset="fashion_mnist", n=200)
    t.add("id", "ece", 0.0625, dataset="fashion_mnist", detector="ts", n=200)
    t.add("ood", "auroc", 0.9375, dataset="uniform", detector="msp", n=200, extra={"ratio": 1.0, "sizes": [200, 200]})
    t.add("ood", "fpr95_id", math.nan, dataset="gaussian", detector="msp")
    t.add("farconf", "alpha_median", math.inf, dataset="uniform")
    t.add("shift", "acc", 0.7, dataset="fashion_mnist", shift="gaussian_noise", severity=3, n=200)
    return t


def test_launcher_settings_from_overrides_a_study_file_and_their_errors(tmp_path, monkeypatch):
    cfg = launcher_config(
        None,
        "slurm",
        ["launcher.slurm.partition=gpu", "--launcher.slurm.additional.exclude=node3", "launcher.ray.num_cpus=2"],
    )
    assert (cfg.name, cfg.slurm.partition, dict(cfg.slurm.additional), cfg.ray.num_cpus, cfg.retries) == (
        "slurm",
        "gpu",
        {"exclude": "node3"},
        2.0,
        1,
    )
    assert launcher_config(cfg, "ray").slurm.partition == "gpu"  # a name keeps the base's resources
    with pytest.raises(
        ConfigError, match=r"unknown config key 'launcher.slurm.partitio' \(did you mean 'launcher.slurm.partition'\?\)"
    ):
        launcher_config(None, None, ["launcher.slurm.partitio=gpu"])
    with pytest.raises(ConfigError, match="a Ray task is one process"):
        launcher_config(None, "ray", ["launcher.ray.num_gpus=2"])
    with pytest.raises(ConfigError, match="launcher 'k8s' is not one of local, slurm, ray"):
        launcher_config(None, "k8s")
    with pytest.raises(ConfigError, match="launcher.slurm.executor must be 'slurm' or 'local'"):
        LauncherCfg(slurm=replace(LauncherCfg().slurm, executor="pbs"))

    path = tmp_path / "chain.yaml"
    path.write_text(
        "name: chain\npresets: [fmnist-plain, fmnist-oe]\nseeds: [0, 1]\noverrides: [train.epochs=1]\n"
        "preset_overrides:\n  fmnist-oe: ['train.init_from={run:fmnist-plain}']\nskip_eval: [fmnist-plain]\n"
        "launcher:\n  name: slurm\n  retries: 2\n  slurm: {partition: gpu, gpus_per_node: 1, cpus_per_task: 8, additional: {qos: high}}\n",
        encoding="utf-8",
    )
    st = load_study(path)
    assert (st.name, st.presets, st.seeds, st.skip_eval) == (
        "chain",
        ("fmnist-plain", "fmnist-oe"),
        (0, 1),
        ("fmnist-plain",),
    )
    assert st.preset_overrides == (("fmnist-oe", ("train.init_from={run:fmnist-plain}",)),)
    assert (st.launcher.name, st.launcher.retries, st.launcher.slurm.partition, st.launcher.slurm.cpus_per_task) == (
        "slurm",
        2,
        "gpu",
        8,
    )
    example = load_study(Path(__file__).resolve().parents[2] / "examples" / "cluster-study.yaml")  # the documented file
    cells = plan_cells(example, out_dir="runs")
    assert (
        len(cells) == 6
        and cells[1].parents == (cells[0].run_id,)
        and cells[1].cfg.train.init_from == "runs/fmnist-plain-s0"
    )
    assert (example.launcher.name, example.launcher.slurm.partition, example.launcher.slurm.gpus_per_node) == (
        "slurm",
        "gpu",
        1,
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("presets: [fmnist-plain]\nlaunchers: {name: ray}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"study file .*bad.yaml: unknown key 'launchers'"):
        load_study(bad)
    bad.write_text("presets: [fmnist-plain]\nlauncher: {slurm: {gpus: 2}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'launcher.slurm.gpus'"):
        load_study(bad)

    # an engine that is not installed: one error naming the extra, before anything is created
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(
        RulabError,
        match=r"--launcher ray needs the 'ray' package, which is not installed; install it with: pip install 'rulab\[cluster\]'",
    ):
        run_study(
            Study("x", presets=("fmnist-plain",), seeds=(0,)),
            out_dir=str(tmp_path / "runs"),
            overrides=OV,
            launcher="ray",
            progress=False,
        )
    assert not (tmp_path / "runs").exists()
    # launcher.* overrides set the launcher, never a cell's config
    assert (
        main(["study", str(path), "--out", str(tmp_path / "runs"), "--launcher", "ray", "--launcher.ray.num_cpus=0"])
        == 2
    )


def test_a_record_is_ingested_once_and_an_interrupted_ingest_is_completed(tmp_path):
    st = Study("x", presets=("fmnist-plain",), seeds=(0,))
    (cell,) = plan_cells(st, out_dir=str(tmp_path / "runs"), overrides=OV)
    record = _record(cell, _table())
    cell.run_dir.mkdir(parents=True)
    assert read_record(cell) is None  # no file yet
    write_record(cell, record)
    assert read_record(cell) is None  # no checkpoint beside it: the cell must be computed again
    cell.checkpoint.write_bytes(b"weights")
    back = read_record(cell)
    assert back is not None and json.dumps(asdict(back), sort_keys=True) == json.dumps(
        asdict(record), sort_keys=True
    )  # NaN, inf kept

    db = tmp_path / "results.db"
    store = ResultStore(db)
    assert ingest(store, cell, "x", back) is True
    first = _dump(db)
    run = store.run(cell.run_id)
    assert (run["status"], run["started_at"], run["finished_at"], run["study"], run["device"], run["claimed_by"]) == (
        "finished",
        record.started_at,
        record.finished_at,
        "x",
        "cpu",
        "",
    )
    assert run["dataset_checksums"] == record.dataset_checksums and run["checkpoint"] == str(cell.checkpoint)
    assert store.counts() == {"runs": 1, "results": 6, "curves": 6}
    assert (
        math.isnan(store.table(cell.run_id).value(metric="fpr95_id"))
        and store.table(cell.run_id).value(metric="alpha_median") == math.inf
    )
    assert store.table(cell.run_id).filter(metric="auroc").records()[0]["extra"] == {"ratio": 1.0, "sizes": [200, 200]}

    assert ingest(store, cell, "x", read_record(cell)) is False  # stored before: nothing is written
    assert _dump(db) == first

    # a driver killed half-way through an ingest: some rows missing, the run not yet finished
    con = sqlite3.connect(db)
    con.execute("DELETE FROM results WHERE metric IN ('acc', 'auroc')")
    con.execute("DELETE FROM curves WHERE epoch = 2")
    con.execute("UPDATE runs SET status = 'running', finished_at = NULL")
    con.commit()
    con.close()
    assert ingest(store, cell, "x", read_record(cell)) is True
    assert _dump(db) == first  # complete again, nothing duplicated, the same times

    # a record of another configuration, or without the evaluation the cell needs, is not this cell's
    write_record(cell, replace(record, config_hash="0" * 12))
    assert read_record(cell) is None
    write_record(cell, replace(record, status="trained", rows=[]))
    assert read_record(cell) is None and read_record(replace(cell, evaluate=False)) is not None
    store.close()


def test_status_table_from_the_database_the_run_directories_and_the_driver_state(tmp_path, capsys):
    out = tmp_path / "runs"
    path = tmp_path / "grid.yaml"
    path.write_text("name: grid\npresets: [fmnist-plain]\nseeds: [0, 1, 2, 3, 4]\n", encoding="utf-8")
    cells = plan_cells(load_study(path), out_dir=str(out), overrides=OV)
    c_done, c_failed, c_running, c_queued, c_pending = cells
    store = ResultStore(out / "results.db")
    for c, status in ((c_done, "finished"), (c_failed, "failed")):
        store.start_run(c.cfg, run_id=c.run_id, study="grid")
        store.finish_run(c.run_id, status)
    store.close()
    for c in cells:
        c.run_dir.mkdir(parents=True)
    c_done.checkpoint.write_bytes(b"w")
    (c_failed.run_dir / LOG_FILE).write_text(
        "".join(f"line {i}\n" for i in range(15)) + "RuntimeError: boom\n", encoding="utf-8"
    )
    (c_running.run_dir / STARTED_FILE).write_text(
        json.dumps({"submission": "sub2", "host": "node07", "pid": 1}), encoding="utf-8"
    )
    (c_running.run_dir / "checkpoints").mkdir()
    (c_running.run_dir / "checkpoints" / "LATEST").write_text("step-00000040\n", encoding="utf-8")
    (c_queued.run_dir / STARTED_FILE).write_text(
        json.dumps({"submission": "an-earlier-one", "host": "node01"}), encoding="utf-8"
    )
    state = {
        "backend": "slurm",
        "driver": {"host": os.uname().nodename, "pid": os.getpid(), "updated": 0},
        "cells": [
            {
                "run_id": c_failed.run_id,
                "name": c_failed.cfg.name,
                "state": "failed",
                "job_id": "4243",
                "attempts": 2,
                "error": "RuntimeError: boom",
                "log": "/jobs/4243_0_log.err",
            },
            {
                "run_id": c_running.run_id,
                "name": c_running.cfg.name,
                "state": "running",
                "job_id": "4244",
                "attempts": 1,
                "submission": "sub2",
            },
            {
                "run_id": c_queued.run_id,
                "name": c_queued.cfg.name,
                "state": "queued",
                "job_id": "4245_1",
                "attempts": 1,
                "submission": "sub3",
            },
        ],
    }
    sd = state_dir_of(out, "grid")
    sd.mkdir(parents=True)
    (sd / "state.json").write_text(json.dumps(state), encoding="utf-8")
    assert main(["study", str(path), "--status", "--out", str(out), *[f"--{o}" for o in OV]]) == 0
    text = capsys.readouterr().out
    assert text == study_status("grid", cells, out / "results.db", out) + "\n"
    lines = text.splitlines()
    assert lines[0].startswith("study grid: 5 cells; slurm driver running (process ")
    row = {ln.split()[0]: ln.split() for ln in lines[2:7]}
    assert row["fmnist-plain-s0"][1:3] == ["finished", "results"]
    assert row["fmnist-plain-s1"][1:4] == ["failed", "4243", "2"]
    assert (
        row["fmnist-plain-s2"][1:5] == ["running", "4244", "1", "node07"]
        and "last checkpoint: step-00000040" in lines[4]
    )
    assert row["fmnist-plain-s3"][1:4] == ["queued", "4245_1", "1"]  # its started marker is an earlier submission's
    assert row["fmnist-plain-s4"][1:2] == ["pending"] and "not started" in lines[6]
    assert lines[7] == "1 pending, 1 queued, 1 running, 1 finished, 1 failed"
    assert lines[8] == "fmnist-plain-s1 failed: RuntimeError: boom"
    assert [ln.strip() for ln in lines[9:19]] == [f"| line {i}" for i in range(6, 15)] + ["| RuntimeError: boom"]
    assert "(job log: /jobs/4243_0_log.err)" in text


def test_torchrun_variables_of_a_slurm_task_and_a_local_executor_task(monkeypatch):
    pytest.importorskip("submitit")
    before = dict(os.environ)
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    env = torchrun_env(slurm)
    assert {k: env[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR")} == {
        "RANK": "5",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu07",
    }
    other_rank = torchrun_env({**slurm, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"})
    assert (
        other_rank["RANK"] == "0"
        and other_rank["MASTER_PORT"] == env["MASTER_PORT"]
        and 20000 <= int(env["MASTER_PORT"]) <= 60000
    )
    assert torchrun_env({**slurm, "MASTER_PORT": "29555"})["MASTER_PORT"] == "29555"
    local = {
        "SUBMITIT_EXECUTOR": "local",
        "SUBMITIT_LOCAL_JOB_ID": "31337",
        "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
        "SUBMITIT_LOCAL_NODEID": "0",
        "SUBMITIT_LOCAL_GLOBALID": "1",
        "SUBMITIT_LOCAL_LOCALID": "1",
    }
    env = torchrun_env(local)
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"]) == (
        "1",
        "1",
        "2",
        socket.gethostname(),
    )
    assert (
        torchrun_env(
            {**slurm, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
        )
        == {}
    )
    assert torchrun_env({"SLURM_NTASKS": "8"}) == {}  # not a submitit job
    assert dict(os.environ) == before


def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``sbatch`` that records the script it is given and answers like SLURM; ``srun`` so submitit sees a cluster."""
    bin_dir, rec = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    rec.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        '#!/bin/sh\nn=$(ls "$REC" | wc -l)\nid=$((4242 + n))\ncp "$1" "$REC/$id.sh"\necho "Submitted batch job $id"\n',
        encoding="utf-8",
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    for f in (sbatch, bin_dir / "srun"):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("REC", str(rec))
    return rec


def _sbatch_flags(script: Path) -> dict[str, str]:
    return dict(
        ln[len("#SBATCH --") :].partition("=")[::2]
        for ln in script.read_text().splitlines()
        if ln.startswith("#SBATCH --")
    )


def test_slurm_jobs_carry_the_resources_and_afterok_dependencies(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from rulab.study.backends import SubmititBackend

    rec = _fake_slurm(tmp_path, monkeypatch)
    st = Study(
        "chain",
        presets=("fmnist-plain", "fmnist-oe"),
        seeds=(0, 1),
        preset_overrides=(("fmnist-oe", ("train.init_from={run:fmnist-plain}",)),),
    )
    pre0, ft0, pre1, ft1 = plan_cells(st, out_dir=str(tmp_path / "runs"), overrides=OV)

    def job(cell):
        return CellJob(cell, "chain", None, str(tmp_path), str(tmp_path), "t", 8, "s")

    cfg = launcher_config(
        None,
        "slurm",
        [
            "launcher.slurm.partition=gpu",
            "launcher.slurm.gpus_per_node=2",
            "launcher.slurm.cpus_per_task=8",
            "launcher.slurm.mem_gb=32",
            "launcher.slurm.timeout_min=90",
            "launcher.slurm.account=lab",
            "launcher.slurm.additional.exclude=node3",
            "launcher.slurm.setup=[module load cuda]",
        ],
    )
    backend = SubmititBackend(cfg, tmp_path / "jobs", "chain")
    assert backend.holds_dependencies
    (h_pre0,) = backend.submit([(job(pre0), [])])
    (h_ft0,) = backend.submit([(job(ft0), [h_pre0])])
    assert (h_pre0.job_id, h_ft0.job_id) == ("4242", "4243")
    first, second = _sbatch_flags(rec / "4242.sh"), _sbatch_flags(rec / "4243.sh")
    assert {
        k: first[k]
        for k in (
            "partition",
            "gpus-per-node",
            "ntasks-per-node",
            "cpus-per-task",
            "mem",
            "time",
            "account",
            "exclude",
            "kill-on-invalid-dep",
            "job-name",
        )
    } == {
        "partition": "gpu",
        "gpus-per-node": "2",
        "ntasks-per-node": "2",
        "cpus-per-task": "8",
        "mem": "32GB",
        "time": "90",
        "account": "lab",
        "exclude": "node3",
        "kill-on-invalid-dep": "yes",
        "job-name": "chain:fmnist-plain-s0",
    }
    assert "dependency" not in first and second["dependency"] == "afterok:4242"
    assert "module load cuda" in (rec / "4242.sh").read_text() and "--signal=USR2" in (rec / "4242.sh").read_text()

    # arrays: one per dependency level, at most N tasks at once
    arr = SubmititBackend(
        launcher_config(cfg, None, ["launcher.slurm.array_parallelism=1"]), tmp_path / "jobs2", "chain"
    )
    h = arr.submit([(job(pre0), []), (job(pre1), [])])
    assert [x.job_id for x in h] == ["4244_0", "4244_1"]
    arr.submit([(job(ft0), [h[0]]), (job(ft1), [h[1]])])
    assert _sbatch_flags(rec / "4244.sh")["array"] == "0-1%1" and "dependency" not in _sbatch_flags(rec / "4244.sh")
    assert (
        _sbatch_flags(rec / "4245.sh")["array"] == "0-1%1"
        and _sbatch_flags(rec / "4245.sh")["dependency"] == "afterok:4244_0:4244_1"
    )


def test_a_worker_that_cannot_see_the_run_directory_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the worker changes to the driver's directory; this puts the test's back afterwards
    (cell,) = plan_cells(
        Study("x", presets=("fmnist-plain",), seeds=(0,)), out_dir=str(tmp_path / "runs"), overrides=OV
    )
    (relative,) = plan_cells(Study("x", presets=("fmnist-plain",), seeds=(0,)), out_dir="runs", overrides=OV)
    sd = tmp_path / "runs" / ".study" / "x"
    sd.mkdir(parents=True)
    (sd / SHARED_CHECK).write_text("driver-token\n", encoding="utf-8")
    for job, what in (
        (
            CellJob(
                cell, "x", None, str(tmp_path), str(tmp_path / "node-local" / ".study" / "x"), "driver-token", 1, "s"
            ),
            "is missing",
        ),
        (CellJob(cell, "x", None, str(tmp_path), str(sd), "another-token", 1, "s"), "holds another driver token"),
        (
            CellJob(relative, "x", None, str(tmp_path / "not-mounted"), str(sd), "driver-token", 1, "s"),
            "the driver's working directory",
        ),
    ):
        with pytest.raises(RulabError) as err:
            run_cell_job(job)
        msg = str(err.value)
        assert "\n" not in msg and "cannot see" in msg and "file system every node mounts at the same path" in msg
        assert what in msg
    assert not (cell.run_dir / STARTED_FILE).exists() and not (cell.run_dir / CELL_FILE).exists()


def test_one_driver_per_study_and_a_dead_drivers_lock_is_taken_over(tmp_path):
    a, b = DriverLock(tmp_path, "s"), DriverLock(tmp_path, "s")
    a.acquire()
    with pytest.raises(RulabError, match=rf"study 's' is being driven by process {os.getpid()} on .*; wait for it"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "driver.lock").write_text(
        json.dumps({"host": os.uname().nodename, "pid": dead.pid, "token": "x"}), encoding="utf-8"
    )
    a.acquire()  # its holder is gone
    assert json.loads((tmp_path / "driver.lock").read_text())["pid"] == os.getpid()
    a.release()
    assert not (tmp_path / "driver.lock").exists()
