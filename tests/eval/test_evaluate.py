"""End-to-end evaluation on a tiny trained Fashion-MNIST model: rows, arrays, tuning hygiene, protocols, the
checkpoint API and ``rulab eval``; plus the slow acceptance test (tuned ODIN beats MSP on noise, Liang et al. 2018, Table 2)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rulab.checkpoint import load_model
from rulab.config import DataCfg, EvalCfg, RunCfg, TrainCfg
from rulab.data.splits import load_splits
from rulab.eval.benchmarks import Benchmark
from rulab.eval.evaluate import run_evaluation
from rulab.eval.ood_eval import OOD_METRICS, load_ood_set
from rulab.registry import BENCHMARKS, DETECTORS
from rulab.results.table import ResultTable

TINY = Benchmark(
    name="fmnist-tiny-test",
    id_dataset="fashion_mnist",
    ood=("gaussian", "uniform", "digits", "hein"),
    val_ood=("photos",),
    protocol="full",
    n_ood=150,
    n_val_id=100,
    n_val_ood=100,
)
BENCHMARKS.register(TINY.name, overwrite=True)(lambda: TINY)
SMALL_ODIN_GRID = {"t": (1.0, 100.0, 1000.0), "eps": (0.0, 0.002, 0.004)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fastcnn trained for 30 steps on 1,000 images (a real run directory made by rulab's own loop)."""
    from rulab.train.loop import fit

    out = tmp_path_factory.mktemp("runs")
    cfg = RunCfg(
        name="tiny",
        out_dir=str(out),
        data=DataCfg(train_subset=1000, val_size=500),
        train=TrainCfg(epochs=1, max_steps=30, batch_size=64, eval_every=0),
        eval=EvalCfg(benchmark=TINY.name, shift="", farconf=False),
    )
    run_dir = fit(cfg, progress=False)
    model, _ = load_model(run_dir)
    splits = load_splits(cfg.data, cfg.seed)
    test = splits.test.subset(slice(0, 600))
    return run_dir, model, splits, test


@pytest.fixture
def small_odin_grid(monkeypatch):
    from rulab.detectors import odin as odin_mod

    monkeypatch.setattr(DETECTORS.get("odin"), "grid", SMALL_ODIN_GRID)
    monkeypatch.setitem(odin_mod.ODIN_GRIDS, "paper", SMALL_ODIN_GRID)  # what an ODIN instance searches by default


def spy(monkeypatch, method: str) -> list[tuple[str, int | None, tuple[str, ...]]]:
    """Record (detector, len(val_id), val_ood names) of every ``fit`` or ``tune`` call of every registered detector."""
    calls: list[tuple[str, int | None, tuple[str, ...]]] = []
    for name in DETECTORS.list():
        cls = DETECTORS.get(name)
        real = getattr(cls, method)

        def wrapped(self, *args, _real=real, _name=name, **kwargs):
            if method == "tune":
                _model, val_id, val_ood = args
            else:
                val_id, val_ood = kwargs.get("val_id"), kwargs.get("val_ood")
            calls.append((_name, None if val_id is None else len(val_id), tuple(sorted(val_ood or {}))))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapped)
    return calls


def test_end_to_end_with_every_detector(run, tmp_path, small_odin_grid, monkeypatch):
    _run_dir, model, splits, test = run
    tunes, fits = spy(monkeypatch, "tune"), spy(monkeypatch, "fit")
    # every registered detector that a single network can run (the default eval.detectors is the cheaper set of rulab
    # 0.1; the member scores of ensembles and MC dropout run in tests/eval/test_uncertainty.py)
    single = tuple(n for n in DETECTORS.list() if "members" not in DETECTORS.get(n).requires)
    cfg = EvalCfg(benchmark=TINY.name, shift="", farconf=False, batch_size=256, detectors=single)
    table = run_evaluation(
        model,
        benchmark=TINY.name,
        eval_cfg=cfg,
        train=splits.train,
        val=splits.val,
        test=test,
        seed=0,
        cache_dir=tmp_path,
    )
    dets = list(cfg.detectors)
    assert set(dets) == set(DETECTORS.list()) - {"mutual_info", "disagreement"}

    # tuning and fitting only ever see validation data: the run's held-out split and the validation-OOD set
    assert {name for name, _, _ in tunes} == {n for n in dets if DETECTORS.get(n).grid}
    for _name, n_val, val_ood in tunes:
        assert n_val == TINY.n_val_id and val_ood == TINY.val_ood
    for _name, n_val, val_ood in fits:
        assert n_val == len(splits.val) and val_ood == TINY.val_ood
    assert not set(TINY.ood) & {s for _, _, v in tunes + fits for s in v}

    # OOD rows: every (set, detector, metric), fractions, the ratio recorded
    n_id = len(test)
    for s in TINY.ood:
        n_ood = len(load_ood_set(s, test.shape, TINY.n_ood, 0, base=test))
        for d in dets:
            for m in OOD_METRICS:
                v = table.value(kind="ood", dataset=s, detector=d, metric=m)
                if m == "ood_ratio":
                    assert v == pytest.approx(n_ood / n_id)
                else:
                    assert 0.0 <= v <= 1.0, (s, d, m, v)
        assert 0.0 < table.value(kind="ood", dataset=s, detector="msp", metric="mmc") <= 1.0
        for det in ("msp", "ts"):
            for m in ("ood_rms", "ood_mad", "ood_soft_f1"):
                assert 0.0 <= table.value(kind="ood", dataset=s, detector=det, metric=m) <= 1.0
    # the AUROC row is the metric of the saved scores
    from rulab.metrics.ood import auroc

    assert table.value(kind="ood", dataset="uniform", detector="energy", metric="auroc") == pytest.approx(
        auroc(table.arrays["scores/energy/id"], table.arrays["scores/energy/uniform"])
    )

    # ID calibration, raw and temperature-scaled
    for det in ("", "ts"):
        for m in ("acc", "nll", "brier", "ece", "mce", "rms", "mad", "rms_uniform10", "soft_f1", "mmc"):
            assert math.isfinite(table.value(kind="id", dataset="fashion_mnist", detector=det, metric=m))
    t = table.value(kind="id", metric="temperature", detector="ts")
    assert 0.2 <= t <= 5.0 and float(table.arrays["ts/temperature"]) == t
    assert table.value(kind="id", metric="acc", detector="") == table.value(kind="id", metric="acc", detector="ts")

    # arrays for plots
    for d in dets:
        assert table.arrays[f"scores/{d}/id"].shape == (n_id,)
        for s in TINY.ood:
            assert table.arrays[f"scores/{d}/{s}"].ndim == 1
    assert table.arrays["id/logits"].shape == (n_id, 10) and torch.equal(table.arrays["id/labels"], test.y)
    assert table.arrays["val/logits"].shape == (len(splits.val), 10)

    # tuned hyperparameters are recorded in meta and in the rows
    hp = table.meta["detectors"]
    assert hp["odin"]["t"] in SMALL_ODIN_GRID["t"] and hp["odin"]["eps"] in SMALL_ODIN_GRID["eps"]
    assert hp["knn"]["k"] in DETECTORS.get("knn").grid["k"] and hp["react"]["percentile"] in (85.0, 90.0, 95.0, 99.0)
    assert hp["odin"]["tuned_on"] == ["photos"]
    row = next(iter(table.filter(kind="ood", dataset="gaussian", detector="odin", metric="auroc")))
    assert row.extra["hparams"]["t"] == hp["odin"]["t"] and row.extra["n_id"] == n_id
    assert table.meta["sizes"]["fit"] == len(splits.train) and set(table.meta["timing"]) >= {"extract_id", "score/odin"}

    # a second evaluation reads the cache: same numbers
    again = run_evaluation(
        model,
        benchmark=TINY.name,
        eval_cfg=replace(cfg, detectors=("msp", "mahalanobis")),
        train=splits.train,
        val=splits.val,
        test=test,
        seed=0,
        cache_dir=tmp_path,
    )
    for d in ("msp", "mahalanobis"):
        assert again.value(kind="ood", dataset="hein", detector=d, metric="auroc") == table.value(
            kind="ood", dataset="hein", detector=d, metric="auroc"
        )


def test_multi_run_protocol_reports_mean_and_std(run, tmp_path):
    _run_dir, model, splits, test = run
    cfg = EvalCfg(benchmark=TINY.name, detectors=("msp", "energy"), protocol="hendrycks", shift="", farconf=False)
    table = run_evaluation(
        model, benchmark=TINY.name, eval_cfg=cfg, train=splits.train, val=splits.val, test=test, seed=0
    )
    row = next(iter(table.filter(kind="ood", dataset="uniform", detector="msp", metric="auroc")))
    assert row.extra["n_runs"] == 5 and row.extra["n_ood"] == len(test) // 5 and row.extra["std"] >= 0.0
    assert table.value(kind="ood", dataset="uniform", detector="msp", metric="ood_ratio") == pytest.approx(0.2)
    assert table.meta["protocol"] == "hendrycks"
    # synthetic sets get the protocol's pool (5 runs × n_id // 5), capped by eval.n_ood
    assert len(table.arrays["scores/msp/uniform"]) == len(test)
    capped = run_evaluation(
        model, benchmark=TINY.name, eval_cfg=replace(cfg, n_ood=200), train=splits.train, val=splits.val, test=test
    )
    assert len(capped.arrays["scores/msp/uniform"]) == 200


def test_training_split_is_extracted_only_for_detectors_that_fit_on_it(run, monkeypatch):
    import rulab.eval.evaluate as ev

    _run_dir, model, splits, test = run
    seen: list[str] = []
    real = ev.extract

    def recording(model, ds, *args, **kwargs):
        seen.append(args[3].split("|")[1])  # the dataset key's split field
        return real(model, ds, *args, **kwargs)

    monkeypatch.setattr(ev, "extract", recording)
    cfg = EvalCfg(benchmark=TINY.name, detectors=("msp", "energy", "klm"), shift="", farconf=False)  # klm fits on val
    table = run_evaluation(
        model, benchmark=TINY.name, eval_cfg=cfg, train=splits.train, val=splits.val, test=test, seed=0
    )
    assert "train" not in seen and {"test", "val", "ood", "val_ood"} <= set(seen)
    assert table.meta["sizes"]["fit"] == 0 and "extract/train" in table.meta["skipped"]
    assert table.meta["temperature_fit"]["converged"] is True and table.meta["temperature_fit"]["method"] == "newton"
    row = next(iter(table.filter(kind="id", metric="temperature")))
    assert row.extra == {"converged": True, "method": "newton"} and row.value == table.meta["temperature"]
    seen.clear()
    run_evaluation(
        model,
        benchmark=TINY.name,
        eval_cfg=replace(cfg, detectors=("msp", "knn")),
        train=splits.train,
        val=splits.val,
        test=test,
        seed=0,
    )
    assert seen.count("train") == 1  # KNN's bank is the training split
    seen.clear()
    run_evaluation(
        model,
        benchmark=TINY.name,
        eval_cfg=replace(cfg, detectors=("klm",)),
        train=splits.train,
        val=None,
        test=test,
        seed=0,
    )
    assert seen.count("train") == 1  # no validation split: KL matching falls back to the training split


def test_small_finite_sets_are_used_whole():
    ds = load_ood_set("digits", (1, 28, 28), 5000, seed=0)
    assert len(ds) == 1797 and load_ood_set("digits", (1, 28, 28), 5000, seed=0) is ds  # memoised


def test_shift_and_farconf_hooks_are_called_and_merged(run, monkeypatch):
    _run_dir, model, splits, test = run
    seen = {}

    def fake_shift(model_, test_, suite, seed, batch_size, temperature, **kw):
        seen["shift"] = (len(test_), suite, seed, batch_size, temperature, kw["clean_logits"].shape)
        t = ResultTable()
        t.add("shift", "acc", 0.5, dataset="fashion_mnist", shift="fog", severity=3)
        return t

    def fake_farconf(model_, test_, ood, eval_cfg, seed, **kw):
        seen["farconf"] = (sorted(ood), seed, kw["rejection_index"])
        t = ResultTable()
        t.add("farconf", "alpha_median", 7.0, dataset="uniform")
        return t

    import rulab.eval.farconf as fc
    import rulab.eval.shift as sh

    monkeypatch.setattr(sh, "evaluate_shift", fake_shift)
    monkeypatch.setattr(fc, "evaluate_farconf", fake_farconf)
    cfg = EvalCfg(benchmark=TINY.name, detectors=("msp",), shift="fmnist-default", farconf=True)
    table = run_evaluation(
        model, benchmark=TINY.name, eval_cfg=cfg, train=splits.train, val=splits.val, test=test, seed=3
    )
    # the shifted sets are benchmark data: the same corruption draw (seed 0) whatever the run's seed
    assert seen["shift"][:4] == (len(test), "fmnist-default", 0, cfg.batch_size)
    assert seen["shift"][4] == table.meta["temperature"] and seen["shift"][5] == (len(test), 10)
    assert seen["farconf"] == (sorted(TINY.ood), 3, None)
    assert table.value(kind="shift", metric="acc", shift="fog", severity=3) == 0.5
    assert table.value(kind="farconf", metric="alpha_median") == 7.0
    assert "shift" in table.meta["timing"] and "farconf" in table.meta["timing"]


def test_evaluate_checkpoint_writes_files_and_cli_prints_the_summary(run, capsys):
    from rulab.api import eval_dir, evaluate_checkpoint
    from rulab.cli import main

    run_dir, _model, _splits, _test = run
    table = evaluate_checkpoint(
        run_dir,
        benchmark=TINY.name,
        detectors="msp,energy,mahalanobis",
        shift="",
        farconf=False,
        overrides=["eval.batch_size=500"],
        progress=False,
    )
    out = eval_dir(run_dir, TINY.name)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(table) and {r["detector"] for r in rows if r["metric"] == "auroc"} == {
        "msp",
        "energy",
        "mahalanobis",
    }
    arrays = ResultTable.load_arrays(out / "arrays.safetensors")
    assert arrays["scores/energy/id"].shape == (10_000,)
    assert "OOD detection" in (out / "summary.txt").read_text() and (out / "meta.json").is_file()
    assert table.meta["eval_config"]["batch_size"] == 500

    report = run_dir / "eval.html"
    assert (
        main(
            [
                "eval",
                str(run_dir),
                "--benchmark",
                TINY.name,
                "--detectors",
                "msp",
                "--shift",
                "",
                "--no-farconf",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "temp-scaled" in printed and "auroc" in printed and "hein" in printed
    html = report.read_text()
    assert f"report: {report}" in printed and html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert main(["eval", str(run_dir), "--benchmark", "nope"]) == 2
    assert "eval.benchmark" in capsys.readouterr().err


def test_post_hoc_detectors_through_the_cli_and_the_python_api(run, capsys):
    """The detectors added after rulab 0.1 run end to end: ``rulab eval --detectors ...`` writes their rows, and
    ``rulab.evaluate`` scores a model on the user's own arrays with them (Gram and RankFeat read the feature layers
    of the fastcnn inference copy)."""
    import rulab
    from rulab.api import eval_dir
    from rulab.cli import main

    run_dir, model, splits, test = run
    # the CLI scores the run's whole 10,000-image test set: the detectors that read cached outputs only (Gram and
    # RankFeat, which run the network again, are exercised by the Python API below and by the every-detector test)
    names = ["ash_s", "dice", "gradnorm", "nnguide", "openmax"]
    argv = [
        "eval",
        str(run_dir),
        "--benchmark",
        TINY.name,
        "--detectors",
        ",".join(names),
        "--shift",
        "",
        "--no-farconf",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((eval_dir(run_dir, TINY.name) / "results.csv").open()))
    aurocs = {(r["dataset"], r["detector"]): float(r["value"]) for r in rows if r["metric"] == "auroc"}
    assert {d for _, d in aurocs} == set(names) and all(0.0 <= v <= 1.0 for v in aurocs.values())
    assert "nnguide" in printed and "openmax" in printed
    table = rulab.evaluate(
        model,
        id_test=(test.x[:300], test.y[:300]),
        id_train=(splits.train.x[:600], splits.train.y[:600]),
        id_val=(splits.val.x[:300], splits.val.y[:300]),
        ood=["uniform"],
        ood_val=["gaussian"],
        n_ood=100,
        n_val_id=100,
        n_val_ood=100,
        detectors="ash_s,nnguide,openmax,rankfeat,gram",
    )
    for d in ("ash_s", "nnguide", "openmax", "rankfeat", "gram"):
        assert 0.0 <= table.value(kind="ood", dataset="uniform", detector=d, metric="auroc") <= 1.0
    assert table.meta["detectors"]["nnguide"]["tuned_on"] == ["gaussian"]
    assert table.meta["detectors"]["ash_s"]["percentile"] in DETECTORS.get("ash_s").grid["percentile"]


def _trained_fmnist_plain(cache_root: Path) -> Path:
    """The default Fashion-MNIST model (``fmnist-plain``, 5 epochs), trained once and kept under ``cache_root``."""
    from rulab.api import train
    from rulab.presets import load_config

    run_dir = cache_root / "fmnist-plain"
    if (run_dir / "model.safetensors").is_file():
        return run_dir
    cfg = load_config("fmnist-plain", overrides=[f"out_dir={cache_root}", "eval.farconf=false"])
    return train(cfg, resume=True, progress=False)


@pytest.mark.slow
def test_tuned_odin_beats_msp_on_noise_for_the_default_model(request):
    """Acceptance (Liang et al. 2018, Table 2: ODIN's gains on Uniform/Gaussian): on the default model, ODIN tuned on
    validation data (held-out Fashion-MNIST vs photo crops) has a higher AUROC than MSP on uniform and Gaussian noise."""
    from rulab.api import evaluate_checkpoint

    root = Path(request.config.cache.mkdir("rulab-fmnist-plain"))
    run_dir = _trained_fmnist_plain(root)
    table = evaluate_checkpoint(
        run_dir, benchmark="fmnist", detectors="msp,odin", shift="", farconf=False, progress=False
    )
    for s in ("uniform", "gaussian"):
        odin = table.value(kind="ood", dataset=s, detector="odin", metric="auroc")
        msp = table.value(kind="ood", dataset=s, detector="msp", metric="auroc")
        assert odin > msp, f"{s}: ODIN {odin:.4f} <= MSP {msp:.4f}"


def test_eval_config_keeps_detector_kwargs_only_for_the_detectors_run():
    from rulab.config import to_dict
    from rulab.errors import ConfigError
    from rulab.eval.checkpoint import eval_config
    from rulab.presets import load_config

    stored = load_config(
        "fmnist-plain", overrides=["eval.detector_kwargs.odin.search=coarse", "eval.detector_kwargs.knn.k=5"]
    )
    meta = {"config": to_dict(stored)}
    assert eval_config(meta, []).eval.detector_kwargs == {"odin": {"search": "coarse"}, "knn": {"k": 5}}
    cfg = eval_config(meta, [], detectors="msp,odin")
    assert cfg.eval.detectors == ("msp", "odin") and cfg.eval.detector_kwargs == {"odin": {"search": "coarse"}}
    assert eval_config(meta, [], detectors=["msp"]).eval.detector_kwargs == {}
    # the same through a config override (`rulab eval RUN --eval.detectors=[msp]` on a study's run used to be refused
    # because of the ODIN grid the study had stored); an unknown name is then the error that is reported
    assert eval_config(meta, ["eval.detectors=[msp,knn]"]).eval.detector_kwargs == {"knn": {"k": 5}}
    assert eval_config(meta, ["detectors=[msp]"]).eval.detector_kwargs == {}
    with pytest.raises(ConfigError, match=r"eval.detectors\[1\]' has unknown value 'nope'"):
        eval_config(meta, ["eval.detectors=[msp,nope]"])
    # arguments the overrides give themselves are kept and checked: a typo in a detector's name is still refused
    cfg = eval_config(meta, ["eval.detectors=[msp,odin]", "eval.detector_kwargs.odin.search=paper"])
    assert cfg.eval.detector_kwargs == {"odin": {"search": "paper"}}
    with pytest.raises(ConfigError, match="'eval.detector_kwargs.odni' names a detector that eval.detectors does not"):
        eval_config(meta, ["eval.detectors=[msp]", "eval.detector_kwargs.odni.search=coarse"])
    with pytest.raises(ConfigError, match="'eval.detector_kwargs.odin' names a detector"):
        eval_config(meta, ["eval.detectors=[msp]", "eval.detector_kwargs={odin: {search: coarse}}"])
