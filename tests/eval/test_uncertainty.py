"""Deep ensembles and MC dropout end to end: ``rulab eval --ensemble``, ``rulab eval --mc-dropout``, the Python API,
the results database and the study option, on tiny runs trained by rulab's own loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rulab.checkpoint import load_model, read_meta
from rulab.cli import main
from rulab.config import DataCfg, EvalCfg, ModelCfg, RunCfg, TrainCfg, config_hash, from_dict
from rulab.data.splits import load_splits
from rulab.eval.benchmarks import Benchmark
from rulab.eval.checkpoint import evaluate_checkpoint
from rulab.eval.ensemble import evaluate_ensemble
from rulab.eval.predict import predict
from rulab.models.ensemble import Ensemble
from rulab.models.mc_dropout import MCDropout
from rulab.registry import BENCHMARKS
from rulab.results.store import ResultStore, run_id_for

UNC = Benchmark(
    name="fmnist-uncertainty-test",
    id_dataset="fashion_mnist",
    ood=("uniform", "gaussian"),
    val_ood=("photos",),
    protocol="full",
    n_ood=150,
    n_val_id=100,
    n_val_ood=100,
)
BENCHMARKS.register(UNC.name, overwrite=True)(lambda: UNC)
DETS = ("msp", "energy", "entropy", "knn", "react")


def _cfg(name: str, seed: int, out: Path, dropout: float = 0.0) -> RunCfg:
    return RunCfg(
        name=name,
        seed=seed,
        preset="fmnist-dropout" if dropout else "fmnist-plain",
        out_dir=str(out),
        model=ModelCfg("fastcnn", {"width": 8, **({"dropout": dropout} if dropout else {})}),
        data=DataCfg(train_subset=1000, val_size=500),
        train=TrainCfg(epochs=1, max_steps=30, batch_size=64, eval_every=0, deterministic=False),
        eval=EvalCfg(benchmark=UNC.name, shift="", farconf=False, detectors=DETS),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two plain fastcnn runs (seeds 0 and 1) and one with dropout 0.5 before the head (seed 0), 30 steps each."""
    from rulab.train.loop import fit

    out = tmp_path_factory.mktemp("runs")
    plain = [fit(_cfg(f"fmnist-plain-s{s}", s, out), progress=False) for s in (0, 1)]
    drop = fit(_cfg("fmnist-dropout-s0", 0, out, dropout=0.5), progress=False)
    return out, plain, drop


def _member_id(run_dir: Path) -> str:
    cfg = from_dict(RunCfg, read_meta(run_dir)["config"])
    return run_id_for(cfg.name, config_hash(cfg))


def _test_set(run_dir: Path):
    cfg = from_dict(RunCfg, read_meta(run_dir)["config"])
    return load_splits(cfg.data, cfg.seed).test


def test_ensemble_from_the_api_is_the_mean_predictive_stored_as_its_own_run(runs, tmp_path):
    out, plain, _ = runs
    db = tmp_path / "results.db"
    table = evaluate_ensemble(plain, db=db, progress=False)
    # the accuracy and the MSP are those of the members' averaged softmax, computed here by hand
    test = _test_set(plain[0])
    probs = torch.stack([predict(load_model(r)[0], test.x)["logits"].softmax(1) for r in plain]).mean(0)
    assert table.value(kind="id", metric="acc", detector="") == pytest.approx(
        (probs.argmax(1) == test.y).double().mean().item(), abs=1e-12
    )
    assert table.value(kind="id", metric="mmc", detector="") == pytest.approx(
        probs.amax(1).double().mean().item(), abs=1e-5
    )
    # detectors: the runs' less the head-reading ReAct, plus the member scores
    dets = {r.detector for r in table.filter(kind="ood", metric="auroc")}
    assert dets == {"msp", "energy", "entropy", "knn", "mutual_info", "disagreement"}
    assert "detector/react" in table.meta["skipped"]
    # the seeds drew different validation splits: the first member's is used, and the meta says so
    val = table.meta["ensemble"]["validation"]
    assert val["split"] == "first member's" and val["first_member_val"] == 500 and val["held_out_by_all"] < 100
    ens_dir = out / "fmnist-plain-ens-s0-s1"
    assert (ens_dir / "eval" / UNC.name / "arrays.safetensors").exists() and json.loads(
        (ens_dir / "ensemble.json").read_text()
    )["members"][1]["run"] == "fmnist-plain-s1"
    with ResultStore(db) as store:
        (row,) = store.runs()
        assert (
            row["name"] == "fmnist-plain-ens-s0-s1"
            and row["preset"] == "fmnist-plain+ensemble"
            and row["status"] == "finished"
        )
        assert row["parent_run"] == _member_id(plain[0]) and row["seed"] is None and row["checkpoint"] == str(ens_dir)
        assert row["config"]["ensemble"]["members"] == [_member_id(r) for r in plain]
        stored = store.table(row["run_id"])
        assert stored.value(kind="ood", dataset="uniform", detector="mutual_info", metric="auroc") == table.value(
            kind="ood", dataset="uniform", detector="mutual_info", metric="auroc"
        )


def test_an_ensemble_of_identical_networks_evaluates_as_the_single_network(runs):
    """The same weights twice are refused from run directories (a user mistake), but as modules the ensemble of
    copies gives the single model's logits, so every logit detector and calibration metric is unchanged."""
    from rulab.errors import ConfigError

    _, plain, _ = runs
    with pytest.raises(ConfigError, match="hold the same weights"):
        evaluate_ensemble([plain[0], plain[0].parent / plain[0].name / "model.safetensors"], progress=False)
    net = load_model(plain[0])[0]
    x = _test_set(plain[0]).x[:300]
    single, twice = predict(net, x), predict(Ensemble([net, net]), x)
    torch.testing.assert_close(twice["logits"], single["logits"], rtol=1e-5, atol=1e-5)
    assert twice["members"].shape == (300, 2, 10)


def test_ensemble_and_mc_dropout_from_the_command_line(runs, tmp_path, capsys):
    out, plain, drop = runs
    db = tmp_path / "cli.db"
    assert (
        main(
            [
                "eval",
                "--ensemble",
                *map(str, plain),
                "--db",
                str(db),
                "--name",
                "my-ens",
                "--detectors",
                "msp,mutual_info",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mutual_info" in printed and f"-> {out / 'my-ens' / 'eval' / UNC.name}" in printed
    assert main(["eval", str(drop), "--mc-dropout", "4", "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "disagreement" in printed and f"{UNC.name}+mc4" in printed
    with ResultStore(db) as store:
        rows = {r["name"]: r for r in store.runs()}
        assert set(rows) == {"my-ens", "fmnist-dropout-s0+mc4"}
        mc = rows["fmnist-dropout-s0+mc4"]
        assert mc["preset"] == "fmnist-dropout+mc4" and mc["parent_run"] == _member_id(drop) and mc["seed"] == 0
        assert mc["config"]["eval"]["mc_dropout"] == 4 and mc["checkpoint"].endswith("model.safetensors")
        table = store.table(mc["run_id"])
    # the stored accuracy is the MC predictive's (4 passes seeded by the run's seed), computed here by hand
    test = _test_set(drop)
    logits = predict(MCDropout(load_model(drop)[0], 4, seed=0), test.x)["logits"]
    assert table.value(kind="id", metric="acc", detector="") == pytest.approx(
        (logits.argmax(1) == test.y).double().mean().item(), abs=1e-12
    )
    assert (drop / "eval" / f"{UNC.name}+mc4" / "results.csv").exists() and (drop / "eval").is_dir()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "{p0}", "--mc-dropout", "3"],
            "FastCNN has no dropout layer (nn.Dropout), so MC dropout has nothing to sample",
        ),
        (["eval", "--ensemble", "{p0}"], "an ensemble needs at least two runs, got 1"),
        (
            ["eval", "{p0}", "--ensemble", "{p1}", "{p0}"],
            "give either one CHECKPOINT (a run directory) or --ensemble RUN RUN ..., not both",
        ),
        (["eval", "--ensemble", "{p0}", "{p1}", "--mc-dropout", "3"], "--mc-dropout applies to one checkpoint"),
        (["eval", "{p0}", "--mc-dropout", "-1"], "config key 'eval.mc_dropout' must be >= 0, got -1"),
        (["eval", "{p0}", "--detectors", "msp,disagreement"], "disagreement read the members of a deep ensemble"),
    ],
)
def test_mistakes_are_one_line_errors(runs, capsys, argv, message):
    _, plain, _ = runs
    assert main([a.format(p0=plain[0], p1=plain[1]) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_mc_dropout_evaluation_api_keeps_explicit_detectors(runs):
    _, _, drop = runs
    table = evaluate_checkpoint(drop, mc_dropout=3, detectors=["msp"], progress=False, cache=False)
    assert {r.detector for r in table.filter(kind="ood", metric="auroc")} == {"msp"}
    assert table.meta["mc_dropout"] == {"passes": 3, "seed": 0, "layers": ["drop"], "deterministic_features": True}


@pytest.mark.slow
def test_study_evaluates_ensembles_and_mc_dropout_as_runs_of_their_own(tmp_path):
    """A two-seed study of plain and dropout training with ``ensemble`` and ``mc_dropout``: both ensembles, the MC
    evaluation of each dropout seed, all in the summary; a second call recomputes nothing."""
    from rulab.presets.study_spec import Study
    from rulab.study import run_study

    ov = (
        "train.max_steps=20",
        "train.epochs=1",
        "train.batch_size=64",
        "data.train_subset=512",
        "data.val_size=200",
        "train.deterministic=false",
        "model.kwargs.width=8",
        f"eval.benchmark={UNC.name}",
        "eval.shift=",
        "eval.farconf=false",
        "eval.detectors=[msp,energy]",
    )
    st = Study(
        "unc", presets=("fmnist-plain", "fmnist-dropout"), seeds=(0, 1), ensemble=True, mc_dropout=3, report=False
    )
    res = run_study(st, out_dir=str(tmp_path), overrides=ov, progress=False)
    derived = ["fmnist-dropout-s0+mc3", "fmnist-dropout-s1+mc3", "fmnist-plain-ens-s0-s1", "fmnist-dropout-ens-s0-s1"]
    assert res.ran[4:] == derived and len(res.run_ids) == 8
    groups = set(res.summary.rows)
    assert {
        "fmnist-plain",
        "fmnist-dropout",
        "fmnist-plain+ensemble",
        "fmnist-dropout+ensemble",
        "fmnist-dropout+mc3",
    } <= groups
    with ResultStore(tmp_path / "results.db") as store:
        assert {r["study"] for r in store.runs()} == {"unc"} and {r["status"] for r in store.runs()} == {"finished"}
    again = run_study(st, out_dir=str(tmp_path), overrides=ov, progress=False)
    assert again.ran == [] and set(derived) <= set(again.skipped)
