import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rulab
import rulab.results.table
from rulab.cli import main
from rulab.config import EvalCfg
from rulab.errors import ConfigError, RulabError
from rulab.presets.fmnist import fmnist_base
from rulab.presets.study_spec import Study
from rulab.registry import PRESETS, STUDIES
from rulab.results.store import ResultStore
from rulab.study import evaluate_run, plan_cells, run_study

# tiny cells: two optimizer steps on 256 images, a fake evaluation on 400 test images (tests/results/fake_eval.py)
OV = (
    "train.max_steps=2",
    "train.epochs=1",
    "train.batch_size=64",
    "data.train_subset=256",
    "data.val_size=200",
    "eval.detectors=[]",
    "train.deterministic=false",
)  # deterministic mode imports torch._inductor: seconds per process
FAKE = Path(__file__).parent / "results" / "fake_eval.py"


def _fake_evaluate():
    spec = importlib.util.spec_from_file_location("rulab_test_fake_eval", FAKE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fake_evaluate


@PRESETS.register("test-study-finetune", overwrite=True)
def _finetune():
    return fmnist_base("test-study-finetune", epochs=1)


def test_default_study_is_registered():
    st = STUDIES.create("fmnist-default")
    assert st.presets == ("fmnist-plain", "fmnist-mixup", "fmnist-oe", "fmnist-ceda", "fmnist-acet") and st.seeds == (
        0,
        1,
        2,
    )
    assert (
        "eval.shift=fmnist-default" in st.overrides
        and "eval.farconf=true" in st.overrides
        and st.evaluate
        and st.report
    )
    assert st.ensemble and not st.mc_dropout  # the report gains each method's ensemble of its three seeds
    cells = plan_cells(st, out_dir="runs")
    assert len(cells) == 15 and {c.cfg.train.epochs for c in cells} == {2}  # equal training length for every method
    assert {c.cfg.eval.detector_kwargs["odin"]["search"] for c in cells} == {"coarse"}
    assert all(c.cfg.eval.detectors == EvalCfg().detectors for c in cells)  # every detector


def test_every_paper_study_names_a_registered_paper_table_and_a_bad_one_is_refused_before_anything_runs(tmp_path):
    from rulab.presets.paper import PaperStudy
    from rulab.registry import PAPER_TABLES

    paper = [STUDIES.create(n) for n in STUDIES.list() if isinstance(STUDIES.create(n), PaperStudy)]
    assert paper and all(s.paper_table in PAPER_TABLES for s in paper)
    bad = PaperStudy(
        "x", presets=("fmnist-plain",), seeds=(0,), paper_table="nope", paper_columns=(("plain", "fmnist-plain"),)
    )
    with pytest.raises(ConfigError, match="study 'x' names paper table 'nope'; valid: .*odin"):
        run_study(bad, out_dir=str(tmp_path / "runs"), overrides=OV, progress=False)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="names no paper table"):
        PaperStudy("y", presets=("fmnist-plain",), paper_columns=(("plain", "fmnist-plain"),))


def test_plan_resolves_run_links_per_seed_and_validates_first(tmp_path):
    st = Study(
        "chain",
        presets=("fmnist-plain", "test-study-finetune"),
        seeds=(0, 1),
        preset_overrides=(("test-study-finetune", ("train.init_from={run:fmnist-plain}", "train.reset_head=true")),),
    )
    cells = plan_cells(st, out_dir=str(tmp_path), overrides=OV)
    assert [(c.preset, c.seed) for c in cells] == [
        ("fmnist-plain", 0),
        ("test-study-finetune", 0),
        ("fmnist-plain", 1),
        ("test-study-finetune", 1),
    ]
    assert cells[1].cfg.train.init_from == str(tmp_path / "fmnist-plain-s0") and cells[3].cfg.train.init_from == str(
        tmp_path / "fmnist-plain-s1"
    )
    assert cells[3].parents == (cells[2].run_id,) and cells[2].cfg.name == "fmnist-plain-s1" and cells[2].cfg.seed == 1
    assert len({c.run_id for c in cells}) == 4 and cells[0].cfg.train.max_steps == 2
    with pytest.raises(ConfigError, match="preset 'fmnist-plain'.*train.epochs"):
        plan_cells(st, out_dir=str(tmp_path), overrides=("train.epochs=-1",))
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        plan_cells(Study("x", presets=("nope",)), out_dir=str(tmp_path))
    assert main(["study", "no-such-study"]) == 2


def test_evaluation_adapter(tmp_path, monkeypatch):
    import rulab.study.runner

    st = Study("x", presets=("fmnist-plain",), seeds=(0,))
    seen = {}

    def evaluate_checkpoint(checkpoint, benchmark=None, detectors=None, farconf=None, shift=None, protocol=None):
        seen.update(checkpoint=checkpoint, benchmark=benchmark, detectors=detectors, farconf=farconf)
        return rulab.results.table.ResultTable()

    monkeypatch.setattr(rulab.study.runner, "evaluate_checkpoint", evaluate_checkpoint)
    (cell,) = plan_cells(st, out_dir=str(tmp_path), overrides=(*OV, "eval.farconf=false"))
    evaluate_run(cell.run_dir, cell.cfg)
    assert seen == {"checkpoint": cell.run_dir, "benchmark": "fmnist", "detectors": [], "farconf": False}


def test_study_waits_for_claimed_cells_and_skips_finished_ones(tmp_path):
    fake = _fake_evaluate()
    out = str(tmp_path / "runs")
    st = Study("tiny", presets=("fmnist-plain",), seeds=(0, 1), report=False)
    s0, s1 = plan_cells(st, out_dir=out, overrides=OV)
    db = tmp_path / "runs" / "results.db"
    store = ResultStore(db)
    other = f"{socket.gethostname()}:{os.getpid()}:other"  # a live owner: this PID, another token
    assert store.claim(s0.run_id, other, name=s0.cfg.name)

    def release_when_s1_is_done() -> None:
        watcher = ResultStore(db)
        deadline = time.time() + 300
        while (watcher.run(s1.run_id) or {}).get("status") != "finished" and time.time() < deadline:
            time.sleep(0.1)
        watcher.release(s0.run_id, other)

    th = threading.Thread(target=release_when_s1_is_done)
    th.start()
    res = run_study(st, out_dir=out, overrides=OV, evaluate=fake, progress=False, poll_s=0.1)
    th.join()
    assert res.ran == ["fmnist-plain-s1", "fmnist-plain-s0"] and res.skipped == []  # s0 was skipped while claimed
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs[s0.run_id]["status"] == runs[s1.run_id]["status"] == "finished"
    assert runs[s1.run_id]["finished_at"] < runs[s0.run_id]["finished_at"] and runs[s0.run_id]["claimed_by"] == ""
    assert runs[s0.run_id]["study"] == "tiny" and runs[s0.run_id]["checkpoint"].endswith(
        "fmnist-plain-s0/model.safetensors"
    )
    assert runs[s0.run_id]["dataset_checksums"]["fashion_mnist/t10k-images"] == "8181f5470baa50b63fa0f6fddb340f0a"
    assert store.table(s0.run_id).value(kind="id", metric="acc", detector="") == pytest.approx(
        res.summary.cells[("fmnist-plain", "acc")].values[0]
    )
    assert {c["split"] for c in store.curves(run_id=s0.run_id)} == {"train", "val"}
    assert (tmp_path / "runs" / "fmnist-plain-s0" / "eval" / "fmnist" / "arrays.safetensors").exists()

    # a second run recomputes nothing
    mtimes = {c.run_id: c.checkpoint.stat().st_mtime_ns for c in (s0, s1)}
    again = run_study(st, out_dir=out, overrides=OV, evaluate=fake, progress=False)
    assert again.ran == [] and again.skipped == ["fmnist-plain-s0", "fmnist-plain-s1"]
    assert {c.run_id: c.checkpoint.stat().st_mtime_ns for c in (s0, s1)} == mtimes
    assert {r["run_id"]: r["finished_at"] for r in store.runs()} == {k: v["finished_at"] for k, v in runs.items()}

    # trained but not evaluated (e.g. --no-eval): evaluated now, not trained again
    store.finish_run(s0.run_id, "trained")
    third = run_study(st, out_dir=out, overrides=OV, evaluate=fake, progress=False)
    assert (
        third.ran == ["fmnist-plain-s0"]
        and s0.checkpoint.stat().st_mtime_ns == mtimes[s0.run_id]
        and store.run(s0.run_id)["status"] == "finished"
    )

    # another config under the same run directory is refused, not silently reused
    with pytest.raises(rulab.errors.RulabError, match="another configuration"):
        run_study(st, out_dir=out, overrides=(*OV, "optim.lr=0.01"), evaluate=fake, progress=False)


_SCRIPT = """
import pathlib, sys, time
sys.path.insert(0, {fake_dir!r})
from fake_eval import fake_evaluate
from rulab.presets.study_spec import Study
from rulab.study import run_study

def evaluate(run_dir, cfg):
    if cfg.seed == 1:  # the second cell blocks in its evaluation until the test kills the process
        pathlib.Path({marker!r}).write_text("evaluating")
        time.sleep(600)
    return fake_evaluate(run_dir, cfg)

run_study(Study("tiny", presets=("fmnist-plain",), seeds=(0, 1), report=False), out_dir={out!r}, overrides={ov!r},
          evaluate=evaluate, progress=False)
"""


def test_killed_study_resumes_without_recomputing_finished_cells(tmp_path, capsys):
    out, marker = tmp_path / "runs", tmp_path / "marker"
    script = _SCRIPT.format(fake_dir=str(FAKE.parent), marker=str(marker), out=str(out), ov=list(OV))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(rulab.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "the study did not reach its second cell"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    st = Study("tiny", presets=("fmnist-plain",), seeds=(0, 1), report=False)
    s0, s1 = plan_cells(st, out_dir=str(out), overrides=OV)
    store = ResultStore(out / "results.db")
    assert store.run(s0.run_id)["status"] == "finished" and store.run(s1.run_id)["status"] == "trained"
    assert store.run(s1.run_id)["claimed_by"].split(":")[1] == str(proc.pid)  # the dead process still holds its claim
    before = {
        "s0_model": s0.checkpoint.stat().st_mtime_ns,
        "s0_metrics": (s0.run_dir / "metrics.jsonl").stat().st_mtime_ns,
        "s1_model": s1.checkpoint.stat().st_mtime_ns,
        "s0_finished": store.run(s0.run_id)["finished_at"],
        "s0_rows": store.counts()["results"],
    }
    res = run_study(st, out_dir=str(out), overrides=OV, evaluate=_fake_evaluate(), progress=True, poll_s=0.1)
    assert res.skipped == ["fmnist-plain-s0"] and res.ran == ["fmnist-plain-s1"]
    assert (
        s0.checkpoint.stat().st_mtime_ns == before["s0_model"]
        and (s0.run_dir / "metrics.jsonl").stat().st_mtime_ns == before["s0_metrics"]
    )
    assert s1.checkpoint.stat().st_mtime_ns == before["s1_model"]  # trained before the kill: only evaluated now
    assert store.run(s0.run_id)["finished_at"] == before["s0_finished"] and store.run(s1.run_id)["status"] == "finished"
    assert store.counts()["results"] == 2 * before["s0_rows"]
    printed = capsys.readouterr().out
    assert (
        "study tiny: 2 runs (1 run now, 1 already finished)" in printed
        and re.search(r"^fmnist-plain +2 ", printed, re.M)
        and "total time:" in printed
    )


def test_a_bad_mc_dropout_is_refused_before_any_cell_runs(tmp_path):
    st = Study("tiny", presets=("fmnist-plain",), seeds=(0,), report=False)
    with pytest.raises(RulabError, match=r"^mc_dropout must be a number of passes >= 0, got -1$"):
        run_study(
            st, out_dir=str(tmp_path / "runs"), overrides=OV, evaluate=_fake_evaluate(), progress=False, mc_dropout=-1
        )
    assert not (tmp_path / "runs").exists()  # nothing trained, no database
