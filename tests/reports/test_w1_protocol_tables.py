"""W1's tables as W1 measured them: OOD detection from the models trained on every image and calibration from the
models trained with a held-out split (``calibration:`` columns); W1's adversarial table (clean and PGD accuracy side
by side, with the paper's numbers); the report's clean-vs-adversarial block and MixUp's training curves."""

from __future__ import annotations

import pytest

from rulab.reports.blocks import robust_accuracy_block
from rulab.reports.papers.hendrycks2019 import hendrycks2019_adv_tables, hendrycks2019_tables


def rec(run, kind, metric, value, dataset="", detector="", extra=None, n=0):
    return {
        "run_id": run,
        "kind": kind,
        "metric": metric,
        "value": value,
        "dataset": dataset,
        "detector": detector,
        "shift": "",
        "severity": "",
        "extra": extra or {},
        "n": n,
    }


def ood_model(prefix: str, acc: float) -> list[dict]:
    return [
        r
        for k in (0, 1)
        for r in (
            rec(f"{prefix}-s{k}", "ood", "auroc", 0.9, "gaussian", "msp"),
            rec(f"{prefix}-s{k}", "id", "acc", acc + 0.01 * k, "cifar10"),
            rec(f"{prefix}-s{k}", "id", "rms", 0.5, "cifar10"),
        )
    ]


def cal_model(prefix: str, rms: float) -> list[dict]:
    return [
        r
        for k in (0, 1)
        for r in (
            rec(f"{prefix}-s{k}", "id", "acc", 0.5, "cifar10"),
            rec(f"{prefix}-s{k}", "id", "rms", rms, "cifar10"),
            rec(f"{prefix}-s{k}", "id", "mad", rms / 2, "cifar10"),
            rec(f"{prefix}-s{k}", "id", "soft_f1", 0.3, "cifar10"),
        )
    ]


def test_calibration_columns_fill_the_calibration_table():
    res = {
        "n": ood_model("n", 0.94),
        "t": ood_model("t", 0.96),
        "nc": cal_model("nc", 0.064),
        "tc": cal_model("tc", 0.029),
    }
    cols = (("Normal", "n"), ("Pre-Train", "t"), ("calibration:Normal", "nc"), ("calibration:Pre-Train", "tc"))
    ood, cal = hendrycks2019_tables(res, cols, "cifar10")
    assert ood.flat_columns()[:2] == ["AUROC ↑ Normal", "AUROC ↑ Pre-Train"]  # no calibration columns in the OOD table
    assert cal.columns == ("Normal", "Pre-Train")
    assert (
        cal.cell("Test error", "Normal").display() == "5.50 ± 0.71"
    )  # from the OOD models (0.94, 0.95), not the 0.5 of "nc"
    assert (
        cal.cell("RMS", "Normal").display() == "6.40 ± 0.00" and cal.cell("RMS", "Pre-Train").display() == "2.90 ± 0.00"
    )
    assert cal.cell("MAD", "Pre-Train").display() == "1.45 ± 0.00"  # not the OOD model's rows
    assert cal.cell("RMS (paper)", "Normal").display() == "6.4"
    assert any("calibration models" in note for note in cal.notes)
    # without calibration columns the OOD models fill both tables, as before
    _, both = hendrycks2019_tables(res, cols[:2], "cifar10")
    assert both.cell("RMS", "Normal").display() == "50.00 ± 0.00"


def adv_records(prefix: str, clean: float, adv: float) -> list[dict]:
    extra = {"eps": 8 / 255, "steps": 20, "step_size": 2 / 255, "restarts": 1}
    return [
        r
        for k in (0, 1)
        for r in (
            rec(f"{prefix}-s{k}", "farconf", "clean_acc", clean, "adv_samples", extra=extra, n=10_000),
            rec(f"{prefix}-s{k}", "farconf", "adv_acc", adv + 0.01 * k, "adv_samples", extra=extra, n=10_000),
            rec(f"{prefix}-s{k}", "farconf", "resistance", 0.1, "adv_samples", extra=extra),
        )
    ]


def test_w1_adversarial_table_puts_clean_and_adversarial_accuracy_side_by_side():
    res = {"n": adv_records("n", 0.95, 0.0), "a": adv_records("a", 0.87, 0.45), "f": adv_records("f", 0.87, 0.57)}
    cols = (("Normal Training", "n"), ("Adversarial Training", "a"), ("Adv. Pre-Training and Tuning", "f"))
    (table,) = hendrycks2019_adv_tables(res, cols, "cifar10")
    assert table.columns == ("Clean", "Adversarial")
    assert [r.label for r in table.rows] == [
        "Normal Training",
        "Normal Training (paper)",
        "Adversarial Training",
        "Adversarial Training (paper)",
        "Adv. Pre-Training and Tuning",
        "Adv. Pre-Training and Tuning (paper)",
    ]
    assert table.cell("Adversarial Training", "Clean").display() == "87.00 ± 0.00"
    assert table.cell("Adv. Pre-Training and Tuning", "Adversarial").display() == "57.50 ± 0.71"
    assert table.cell("Adv. Pre-Training and Tuning (paper)", "Adversarial").display() == "57.4"
    assert table.cell("Normal Training (paper)", "Clean").display() == "96.0"
    assert any("PGD-20 at ε = 8/255, step 2/255, 1 random start(s), 10000 test images" in n for n in table.notes)
    (plain,) = hendrycks2019_adv_tables(res, cols[:1])
    assert not any(r.paper for r in plain.rows)


def test_report_block_compares_clean_and_adversarial_accuracy_per_method():
    html = robust_accuracy_block(
        {
            "normal": adv_records("n", 0.95, 0.0),
            "adv": adv_records("a", 0.87, 0.45),
            "plain": [rec("p", "id", "acc", 0.9)],
        }
    )
    assert "<h3>Clean and adversarial accuracy</h3>" in html
    assert (
        html.index(">normal<") < html.index(">adv<") and ">plain<" not in html
    )  # a method without the rows has no line
    assert "PGD-20 at ε = 8/255, step 2/255, 1 random start(s)" in html
    assert "45.50 ± 0.71" in html and "87.00 ± 0.00" in html  # adversarial (0.45, 0.46) and clean accuracy of "adv"
    assert robust_accuracy_block({"plain": [rec("p", "id", "acc", 0.9)]}) == ""


def test_report_draws_mixup_training_accuracy(tmp_path):
    """A MixUp run's curves hold its training accuracy, so the report's training-curve figure draws train and val
    accuracy together (W2's train-vs-validation figures)."""
    pytest.importorskip("matplotlib")
    from rulab.checkpoint import read_meta
    from rulab.presets import load_config
    from rulab.reports.plots import training_curves
    from rulab.results.store import ResultStore, curve_points
    from rulab.train.loop import fit

    cfg = load_config(
        "fmnist-mixup",
        overrides=[
            "model.kwargs.width=4",
            "data.train_subset=64",
            "data.val_size=32",
            "train.batch_size=32",
            "train.epochs=2",
            f"out_dir={tmp_path}",
            "name=mix",
        ],
    )
    meta = read_meta(fit(cfg, progress=False))
    points = list(curve_points(meta["history"]))
    assert {(split, metric) for _, split, metric, _ in points} >= {("train", "acc"), ("val", "acc")}
    store = ResultStore(tmp_path / "r.db")
    run_id = store.start_run(cfg)
    store.write_curves(run_id, meta["history"])
    acc = {c["split"] for c in store.curves(run_id=[run_id]) if c["metric"] == "acc"}
    assert acc == {"train", "val"}
    by = {}
    for c in store.curves(run_id=[run_id]):
        by.setdefault(c["metric"], {}).setdefault(c["split"], {}).setdefault(c["epoch"], []).append(c["value"])
    assert training_curves(by, metrics=("acc",)).startswith("data:image/png;base64,")


@pytest.mark.slow
def test_adversarial_study_end_to_end_on_cpu(tmp_path, monkeypatch):
    """W1's adversarial pipeline at CPU scale: a plain and a PGD-trained fastcnn, then PGD pre-training on classes 0-4
    → adversarial tuning on 5-9 with a fresh default-initialised head, each evaluated by clean and PGD accuracy;
    the study's report holds the clean-vs-adversarial table and the paper table."""
    pytest.importorskip("matplotlib")
    from rulab.presets.paper import PaperStudy
    from rulab.registry import STUDIES
    from rulab.study import run_study

    adv = ("method.name=adversarial", "method.kwargs={eps: 0.1, steps: 2, step_size: 0.05}")
    study = PaperStudy(
        name="w1-adv-cpu",
        presets=("fmnist-pretrain-0to4", "fmnist-scratch-5to9", "fmnist-finetune-5to9"),
        seeds=(0,),
        overrides=(
            "model.kwargs.width=4",
            "data.train_subset=256",
            "data.val_size=64",
            "train.batch_size=64",
            "train.epochs=1",
            "eval.benchmark=fmnist",
            "eval.detectors=[msp]",
            "eval.shift=",
            "eval.n_ood=100",
            "eval.farconf=true",
            "eval.farconf_tests=[samples]",
            "eval.adv_eps=0.1",
            "eval.adv_steps=3",
            "eval.adv_step_size=0.04",
            "eval.adv_n=40",
            *adv,
        ),
        preset_overrides=(
            ("fmnist-finetune-5to9", ("train.init_from={run:fmnist-pretrain-0to4}", "train.head_init=pytorch")),
        ),
        skip_eval=("fmnist-pretrain-0to4",),
        compare_to="fmnist-scratch-5to9",
        paper_table="hendrycks2019-adv",
        paper_columns=(
            ("Adversarial Training", "fmnist-scratch-5to9"),
            ("Adv. Pre-Training and Tuning", "fmnist-finetune-5to9"),
        ),
    )
    monkeypatch.setitem(STUDIES._entries, study.name, lambda: study)  # the report finds a study's paper table by name
    result = run_study(study, out_dir=str(tmp_path), progress=False)
    assert result.report is not None, result.report_error
    page = result.report.read_text(encoding="utf-8")
    assert (
        "<h3>Clean and adversarial accuracy</h3>" in page
        and "PGD-3 at ε = 25.5/255, step 10.2/255, 1 random start(s)" in page
    )
    assert "Adversarial robustness (%): clean accuracy and accuracy under L∞ PGD" in page
