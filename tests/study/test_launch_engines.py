"""The cluster launchers on real engines, on this machine: submitit's LocalExecutor (the code path of
``--launcher slurm``, each cell a process of its own) and a local Ray instance, against the ``local`` launcher.

One tiny study (three presets × two seeds: ``fmnist-plain`` evaluated, ``fmnist-mixup`` only trained,
``fmnist-oe`` fine-tuned from the same seed's ``fmnist-plain`` run: two pre-train → fine-tune pairs) with two
optimizer steps per cell and a small real evaluation (tests/results/fake_eval.py). Every launcher must leave the
same database: the same rows with the same values, apart from wall-clock columns (``started_at``, ``finished_at``,
the claim columns, the per-epoch ``time`` curve). Every process runs one torch thread (the numbers of a run depend
on the thread count); the runs use a relative ``out_dir`` from a directory of their own, so configs (and run ids)
are the same.

Then the failures, with real processes: the driver SIGKILLed half-way and run again (nothing lost, nothing stored
twice, no cell computed twice); one worker SIGKILLed (retried by the driver under submitit; under Ray with no
retries, marked failed with its log while the others finish, then completed by a re-run); a job preempted
(SIGUSR2, as SLURM sends it) requeued by submitit and resumed; and a cell trained by DDP across the two tasks of one
job, equal to one process with ``train.accum_steps=2``.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rulab
from rulab.errors import RulabError
from rulab.presets.study_spec import Study
from rulab.results.store import ResultStore
from rulab.study import plan_cells, run_study
from rulab.study.launch import read_state, state_dir_of
from rulab.study.worker import LOG_FILE, read_started

pytestmark = pytest.mark.slow
pytest.importorskip("submitit")

HELPERS = Path(__file__).resolve().parents[1] / "results"
sys.path.insert(0, str(HELPERS))
from blocking_eval import BLOCK_FILE, blocking_evaluate  # noqa: E402
from fake_eval import fake_evaluate  # noqa: E402

SRC = str(Path(rulab.__file__).resolve().parents[1])
OV = [
    "train.max_steps=2",
    "train.epochs=1",
    "train.batch_size=64",
    "data.train_subset=256",
    "data.val_size=200",
    "eval.detectors=[]",
    "train.deterministic=false",
    "device=cpu",
]
TINY = Study(
    "tiny",
    presets=("fmnist-plain", "fmnist-mixup", "fmnist-oe"),
    seeds=(0, 1),
    report=False,
    skip_eval=("fmnist-mixup",),
    preset_overrides=(("fmnist-oe", ("train.init_from={run:fmnist-plain}",)),),
)
SUBMITIT = ["launcher.slurm.executor=local", "launcher.slurm.cpus_per_task=1", "launcher.poll_s=0.3"]
RAY = ["launcher.ray.num_cpus=1", "launcher.ray.local_cpus=2", "launcher.poll_s=0.3"]
VOLATILE = {"started_at", "finished_at", "claimed_by", "heartbeat_at"}


def _rows(db: Path) -> dict[str, list[tuple]]:
    """The database without its wall-clock columns, sorted."""
    con = sqlite3.connect(db)
    try:
        out = {}
        for table in ("runs", "results", "curves"):
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})") if r[1] not in VOLATILE]
            where = " WHERE metric != 'time'" if table == "curves" else ""
            out[table] = sorted(con.execute(f"SELECT {', '.join(cols)} FROM {table}{where}").fetchall(), key=repr)
        return out
    finally:
        con.close()


def _starts(cell) -> int:
    """How many times a worker started this cell (one 'started' line per start in its cell.log)."""
    try:
        return sum(": started (" in ln for ln in (cell.run_dir / LOG_FILE).read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory of its own (the study's relative ``runs``), one torch thread, workers that import the helpers."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, str(HELPERS), os.environ.get("PYTHONPATH", "")]))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield d
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The ``local`` launcher's database of the tiny study (in this process, one thread)."""
    d = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            res = run_study(TINY, out_dir="runs", overrides=OV, evaluate=fake_evaluate, progress=False, poll_s=0.1)
        finally:
            torch.set_num_threads(n)
    assert len(res.ran) == 6
    rows = _rows(d / "runs" / "results.db")
    assert len(rows["runs"]) == 6 and len(rows["results"]) > 100
    assert sorted(r[15] for r in rows["runs"]) == ["finished"] * 4 + ["trained"] * 2  # status column
    return rows


def _run(launcher: str, extra: list[str], **kw):
    return run_study(
        TINY,
        out_dir="runs",
        overrides=OV + extra,
        evaluate=kw.pop("evaluate", fake_evaluate),
        progress=False,
        launcher=launcher,
        **kw,
    )


def _only(rows: dict[str, list[tuple]], run_ids: set[str]) -> dict[str, list[tuple]]:
    """The rows of some runs (``run_id`` is the first column of every table)."""
    return {t: [r for r in v if r[0] in run_ids] for t, v in rows.items()}


def test_submitit_local_executor_stores_the_local_launchers_database(workdir, reference):
    res = _run("slurm", SUBMITIT)
    assert (
        sorted(res.ran) == sorted(c.cfg.name for c in plan_cells(TINY, out_dir="runs", overrides=OV))
        and res.skipped == []
    )
    assert _rows(workdir / "runs" / "results.db") == reference
    state = read_state(state_dir_of("runs", "tiny"))
    assert state["backend"] == "slurm (LocalExecutor)" and {c["state"] for c in state["cells"]} == {"finished"}
    assert all(c["job_id"].isdigit() and c["attempts"] == 1 for c in state["cells"])
    again = _run("slurm", SUBMITIT)  # nothing to do: every cell is finished
    assert again.ran == [] and len(again.skipped) == 6 and _rows(workdir / "runs" / "results.db") == reference
    (
        workdir / "runs" / "results.db"
    ).unlink()  # the run directories hold every record: the database is rebuilt, no job runs
    rebuilt = _run("slurm", SUBMITIT)
    assert rebuilt.ran == [] and len(rebuilt.skipped) == 6 and _rows(workdir / "runs" / "results.db") == reference


def test_ray_stores_the_local_launchers_database(workdir, reference):
    pytest.importorskip("ray")
    res = _run("ray", RAY)
    assert len(res.ran) == 6 and _rows(workdir / "runs" / "results.db") == reference
    assert {c["state"] for c in read_state(state_dir_of("runs", "tiny"))["cells"]} == {"finished"}


DRIVER = """
import sys, torch
sys.path.insert(0, {helpers!r})
from fake_eval import fake_evaluate
from rulab.presets.study_spec import Study
from rulab.study import run_study
torch.set_num_threads(1)
study = Study("tiny", presets=("fmnist-plain", "fmnist-mixup", "fmnist-oe"), seeds=(0, 1), report=False, skip_eval=("fmnist-mixup",),
              preset_overrides=(("fmnist-oe", ("train.init_from={{run:fmnist-plain}}",)),))
run_study(study, out_dir="runs", overrides={ov!r}, evaluate=fake_evaluate, progress=True, launcher={launcher!r})
"""


@pytest.mark.parametrize("launcher", ["slurm", "ray"])
def test_a_driver_killed_half_way_loses_and_duplicates_nothing(workdir, reference, launcher):
    extra = SUBMITIT if launcher == "slurm" else RAY
    if launcher == "ray":
        pytest.importorskip("ray")
    script = DRIVER.format(helpers=str(HELPERS), ov=OV + extra, launcher=launcher)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = workdir / "runs" / "results.db"
    try:
        deadline = time.time() + 400
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no cell finished"
            if db.exists():
                done = ResultStore(db).runs(status=["finished", "trained"])
                if done:
                    break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {r["run_id"]: r["finished_at"] for r in ResultStore(db).runs(status=["finished", "trained"])}
    assert 1 <= len(before) < 6
    cells = plan_cells(TINY, out_dir="runs", overrides=OV)
    res = _run(launcher, extra)
    assert _rows(db) == reference  # nothing lost, nothing twice
    after = {r["run_id"]: r["finished_at"] for r in ResultStore(db).runs()}
    assert all(after[k] == v for k, v in before.items())  # stored before the kill: not stored again
    assert not set(res.ran) & {c.cfg.name for c in cells if c.run_id in before}
    if launcher == "slurm":  # jobs outlive the driver: the next one watches them, none is computed twice
        assert [_starts(c) for c in cells] == [1] * 6
    else:  # Ray tasks end with their driver; a cell started again resumes (the finished ones are not started again)
        assert all(_starts(c) == 1 for c in cells if c.run_id in before)


def _kill_when_blocked(cell, sig=signal.SIGKILL, timeout=400.0) -> threading.Thread:
    """A thread that sends ``sig`` to the worker of ``cell`` once it blocks in its evaluation (blocking_eval)."""

    def watch() -> None:
        pid_file = cell.run_dir / BLOCK_FILE
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                pid = int(pid_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.2)
                continue
            time.sleep(0.5)
            os.kill(pid, sig)
            return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    return th


def test_a_killed_worker_is_retried_and_the_others_finish(workdir, reference):
    cells = {c.cfg.name: c for c in plan_cells(TINY, seeds=[1], out_dir="runs", overrides=OV)}  # seed 1's three cells
    victim = cells["fmnist-plain-s1"]  # the parent of fmnist-oe-s1, which waits for it
    th = _kill_when_blocked(victim)
    res = _run("slurm", SUBMITIT, seeds=[1], evaluate=functools.partial(blocking_evaluate, block=victim.cfg.name))
    th.join(timeout=1)
    ids = {c.run_id for c in cells.values()}
    assert len(res.ran) == 3 and _rows(workdir / "runs" / "results.db") == _only(reference, ids)
    state = {c["name"]: c for c in read_state(state_dir_of("runs", "tiny"))["cells"]}
    assert state[victim.cfg.name]["attempts"] == 2 and {
        v["attempts"] for k, v in state.items() if k != victim.cfg.name
    } == {1}
    assert _starts(victim) == 2 and "trained before, not training again" in (victim.run_dir / LOG_FILE).read_text()


def test_a_killed_ray_worker_without_retries_is_marked_failed_with_its_log_then_a_rerun_completes(workdir, reference):
    pytest.importorskip("ray")
    cells = {c.cfg.name: c for c in plan_cells(TINY, seeds=[1], out_dir="runs", overrides=OV)}
    victim = cells["fmnist-oe-s1"]
    th = _kill_when_blocked(victim)
    with pytest.raises(
        RulabError, match=r"1 of 3 cells of study 'tiny' failed \(fmnist-oe-s1: the worker died .*--status"
    ):
        _run(
            "ray",
            [*RAY, "launcher.retries=0"],
            seeds=[1],
            evaluate=functools.partial(blocking_evaluate, block=victim.cfg.name),
        )
    th.join(timeout=1)
    store = ResultStore(workdir / "runs" / "results.db")
    status = {r["name"]: r["status"] for r in store.runs()}
    assert status == {
        "fmnist-plain-s1": "finished",
        "fmnist-mixup-s1": "trained",
        "fmnist-oe-s1": "failed",
    }  # the others finished
    from rulab.api import study_status

    text = study_status(TINY, seeds=[1], out_dir="runs", overrides=OV)
    assert "0 pending, 0 queued, 0 running, 2 finished, 1 failed" in text
    assert "fmnist-oe-s1 failed: the worker died" in text and "fmnist-oe-s1: evaluating" in text  # the tail of its log
    res = _run("ray", RAY, seeds=[1])
    ids = {c.run_id for c in cells.values()}
    assert res.ran == [victim.cfg.name] and _rows(workdir / "runs" / "results.db") == _only(reference, ids)


def test_a_preempted_job_is_requeued_and_resumes(workdir):
    one = Study("one", presets=("fmnist-plain",), seeds=(0,), report=False)
    (cell,) = plan_cells(one, out_dir="runs", overrides=OV)
    th = _kill_when_blocked(cell, sig=signal.SIGUSR2)  # what SLURM sends before preempting a job
    res = run_study(
        one,
        out_dir="runs",
        overrides=OV + SUBMITIT,
        evaluate=functools.partial(blocking_evaluate, block=cell.cfg.name),
        progress=False,
        launcher="slurm",
    )
    th.join(timeout=1)
    assert res.ran == ["fmnist-plain-s0"]
    (state,) = read_state(state_dir_of("runs", "one"))["cells"]
    assert state["attempts"] == 1  # requeued by submitit under the same job, not submitted again by the driver
    log = (cell.run_dir / LOG_FILE).read_text()
    assert _starts(cell) == 2 and "stopped with exit status 144" in log and "trained before, not training again" in log
    assert ResultStore(workdir / "runs" / "results.db").run(cell.run_id)["status"] == "finished"


def test_a_two_task_job_trains_its_cell_with_ddp_like_torchrun(workdir):
    ov = [*OV, "model.name=lenet", "model.kwargs={hidden: 32}", "train.max_steps=4", "optim.lr=0.05"]
    one = Study("ddp", presets=("fmnist-plain",), seeds=(0,), report=False)
    (cell,) = plan_cells(one, out_dir="runs", overrides=ov)
    res = run_study(
        one,
        out_dir="runs",
        overrides=ov + SUBMITIT + ["launcher.slurm.tasks_per_node=2"],
        evaluate=fake_evaluate,
        progress=False,
        launcher="slurm",
    )
    assert res.ran == ["fmnist-plain-s0"] and read_started(cell)["world_size"] == 2
    # two DDP ranks of 32 images = one process with the batch of 64 cut into the same two halves (tests/train/test_ddp.py)
    from rulab.presets import load_config
    from rulab.train.loop import fit

    ref = fit(
        load_config("fmnist-plain", overrides=[*ov, "train.accum_steps=2", "name=ref", "out_dir=ref"]), progress=False
    )
    a, b = load_file(str(cell.checkpoint)), load_file(str(ref / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((cell.run_dir / "meta.json").read_text())
    assert meta.get("world_size", 2) == 2
