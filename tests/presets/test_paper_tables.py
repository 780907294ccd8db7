"""Paper-style tables (rulab.reports.papers) from synthetic results with known values: exact cells (mean ± std
over runs, derived cells per run), the papers' numbers in labelled rows, HTML and markdown, and the report hook."""

from __future__ import annotations

import math
import re

import pytest
import torch

from rulab.config import RunCfg
from rulab.reports.papers import Cell, study_paper_html, study_paper_markdown, study_tables
from rulab.reports.papers.coursework import coursework_tables
from rulab.reports.papers.hein2019 import hein2019_tables
from rulab.reports.papers.hendrycks2019 import hendrycks2019_tables
from rulab.reports.papers.odin import odin_tables
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable


def rec(run, kind, metric, value, dataset="", detector="", shift="", severity=""):
    return {
        "run_id": run,
        "kind": kind,
        "metric": metric,
        "value": value,
        "dataset": dataset,
        "detector": detector,
        "shift": shift,
        "severity": severity,
    }


def w1_records(prefix: str, base: float) -> list[dict]:
    out = []
    for k, run in enumerate((f"{prefix}-s0", f"{prefix}-s1")):
        d = 0.02 * k  # run 1 is 2 points better on every OOD metric
        out += [
            rec(run, "ood", "auroc", base + d, "gaussian", "msp"),
            rec(run, "ood", "auroc", base - 0.1 + 2 * d, "svhn", "msp"),
            rec(run, "ood", "aupr_out", 0.5 + d, "gaussian", "msp"),
            rec(run, "ood", "aupr_out", 0.3, "svhn", "msp"),
            rec(run, "ood", "fpr95_ood", 0.4 - d, "gaussian", "msp"),
            rec(run, "ood", "fpr95_ood", 0.6, "svhn", "msp"),
            rec(run, "ood", "auroc", 0.5, "gaussian", "energy"),  # another detector: ignored
            rec(run, "id", "acc", 0.95 - 0.01 * k, "cifar10"),
            rec(run, "id", "rms", 0.06, "cifar10"),
            rec(run, "id", "mad", 0.03, "cifar10"),
            rec(run, "id", "soft_f1", 0.3, "cifar10"),
            rec(run, "id", "rms", 0.01, "cifar10", "ts"),
        ]
    return out


def test_w1_tables_exact_cells_and_paper_rows():
    res = {"a": w1_records("a", 0.90), "b": w1_records("b", 0.94)}
    ood, cal = hendrycks2019_tables(res, (("Normal", "a"), ("Pre-Train", "b")), "cifar10")
    assert [r.label for r in ood.rows] == ["Gaussian", "SVHN", "Mean", "Mean (paper)"]  # W1 order, not insertion order
    assert ood.flat_columns()[:3] == ["AUROC ↑ Normal", "AUROC ↑ Pre-Train", "AUPR ↑ Normal"]
    assert ood.cell("Gaussian", "AUROC ↑ Normal").display() == "91.00 ± 1.41"  # 0.90, 0.92
    assert ood.cell("SVHN", "AUROC ↑ Pre-Train").display() == "86.00 ± 2.83"  # 0.84, 0.88
    mean = ood.cell("Mean", "AUROC ↑ Normal")  # per run (0.90+0.80)/2 = 0.85 and (0.92+0.84)/2 = 0.88
    assert mean.mean == pytest.approx(0.865) and mean.std == pytest.approx(math.sqrt(2 * 0.015**2)) and mean.n == 2
    assert ood.cell("Mean", "FPR95 ↓ Normal").display() == "49.50 ± 0.71"  # (0.4+0.6)/2, (0.38+0.6)/2
    paper = ood.cell("Mean (paper)", "AUROC ↑ Normal")
    assert paper.paper and paper.display() == "91.5" and paper.mean == pytest.approx(0.915)
    assert (
        ood.cell("Mean (paper)", "AUPR ↑ Pre-Train").display() == "73.5"
        and ood.cell("Mean (paper)", "FPR95 ↓ Normal") is None
    )
    assert [r.label for r in cal.rows] == [
        "Test error",
        "Test error (paper)",
        "RMS",
        "RMS (paper)",
        "MAD",
        "MAD (paper)",
        "Soft-F1",
    ]
    assert cal.cell("Test error", "Normal").display() == "5.50 ± 0.71"  # 1 − acc per run: 0.05, 0.06
    assert cal.cell("RMS", "Normal").display() == "6.00 ± 0.00"  # raw logits (detector ""), not the "ts" row
    assert (
        cal.cell("Test error (paper)", "Pre-Train").display() == "3.64"
        and cal.cell("RMS (paper)", "Normal").display() == "6.4"
    )


def test_w1_table_without_reference_has_no_paper_rows():
    ood, cal = hendrycks2019_tables({"a": w1_records("a", 0.9)}, (("Normal", "a"), ("Pre-Train", "missing")))
    assert not any(r.paper for r in ood.rows + cal.rows)
    assert ood.cell("Gaussian", "AUROC ↑ Pre-Train").display() == "–"


def w2_records(run: str, acc: float) -> list[dict]:
    out = [
        rec(run, "shift", "acc", acc, "pathmnist", shift="clean", severity="0"),
        rec(run, "shift", "rms_uniform10", 0.1, "pathmnist", shift="clean", severity="0"),
    ]
    for lv, drop in (("0.8", 0.2), ("1.2", 0.4)):
        out.append(rec(run, "shift", "acc", acc - drop, "pathmnist", shift="brightness_factor", severity=lv))
    out.append(rec(run, "shift", "acc", acc - 0.3, "pathmnist", shift="brightness_factor", severity="mean"))
    out.append(rec(run, "shift", "rms_uniform10", 0.25, "pathmnist", shift="brightness_factor", severity="mean"))
    out.append(rec(run, "shift", "acc", acc - 0.1, "pathmnist", shift="gaussian_blur_sigma", severity="0.3"))
    out.append(rec(run, "shift", "acc", acc - 0.1, "pathmnist", shift="gaussian_blur_sigma", severity="mean"))
    out.append(
        rec(run, "shift", "acc", 0.0, "pathmnist", shift="brightness_factor", severity="0.8", detector="ts")
    )  # ignored
    return out


def test_w2_tables_levels_means_and_paper_rows():
    res = {"basic": w2_records("r0", 0.8) + w2_records("r1", 0.9)}
    acc, rmse = coursework_tables(res, (("Basic", "basic"),), "pathmnist")
    assert acc.columns == ("Clean", "f = 0.8", "f = 1.2", "Brightness mean", "σ = 0.3", "Blur mean")
    assert acc.groups == (("", 1), ("Brightness", 3), ("Gaussian blur", 2))
    assert acc.cell("Basic", "Clean").display() == "85.0 ± 7.1"
    assert acc.cell("Basic", "Brightness f = 0.8").display() == "65.0 ± 7.1"
    assert acc.cell("Basic", "Brightness Brightness mean").display() == "55.0 ± 7.1"
    assert (
        acc.cell("Basic (paper)", "Clean").display() == "82.3"
        and acc.cell("Basic (paper)", "Brightness f = 1.2").display() == "20.8"
    )
    assert acc.cell("Basic (paper)", "Gaussian blur Blur mean").display() == "67.5"
    assert (
        rmse.cell("Basic", "Clean").display() == "0.100 ± 0.000"
        and rmse.cell("Basic", "Brightness f = 0.8").display() == "–"
    )
    assert (
        rmse.cell("Basic (paper)", "Clean").display() == "0.145"
        and rmse.cell("Basic (paper)", "Brightness f = 0.8") is None
    )
    assert rmse.cell("Basic (paper)", "Brightness Brightness mean").mean == pytest.approx(0.603)


def w3_records(run: str, mmc: float) -> list[dict]:
    return [
        rec(run, "id", "acc", 0.96, "svhn"),
        rec(run, "id", "mmc", 0.98, "svhn"),
        rec(run, "ood", "mmc", mmc, "cifar10", "msp"),
        rec(run, "ood", "auroc", 0.94, "cifar10", "msp"),
        rec(run, "ood", "fpr95_id", 0.35, "cifar10", "msp"),
        rec(run, "ood", "mmc", 0.7, "hein", "msp"),
        rec(run, "ood", "auroc", 0.9, "hein", "msp"),
        rec(run, "ood", "fpr95_id", 0.3, "hein", "msp"),
        rec(run, "farconf", "mmc", 1.0, "adv_noise"),
        rec(run, "farconf", "auroc", 0.004, "adv_noise"),
        rec(run, "farconf", "fpr95_id", 1.0, "adv_noise"),
        rec(
            run, "farconf", "mmc", 0.9, "noise"
        ),  # farconf's own noise start: not W3's "Noise" row (that is the full OOD set)
        rec(run, "farconf", "alpha_median", 28.0, "alpha_scaling"),
        rec(run, "farconf", "overconf_frac", 0.999, "alpha_scaling"),
    ]


def test_w3_tables():
    res = {"p": w3_records("p0", 0.70) + w3_records("p1", 0.74), "a": w3_records("a0", 0.4)}
    ood, far = hein2019_tables(res, (("Plain", "p"), ("ACET", "a")), "svhn")
    labels = [r.label for r in ood.rows]
    assert labels[:4] == ["ID (MMC)", "ID (MMC) (paper)", "CIFAR-10", "CIFAR-10 (paper)"]
    assert labels[4:] == [
        "Noise",
        "Noise (paper)",
        "Adv. Noise",
        "Adv. Noise (paper)",
        "Adv. Samples",
        "Adv. Samples (paper)",
        "CIFAR-100 (paper)",
        "LSUN CR (paper)",
        "ImageNet− (paper)",
    ]
    assert (
        ood.cell("CIFAR-10", "Plain MMC").display() == "0.720 ± 0.028"
        and ood.cell("CIFAR-10", "ACET MMC").display() == "0.400"
    )
    assert (
        ood.cell("CIFAR-10 (paper)", "ACET FPR@95").display() == "0.140"
        and ood.cell("Noise", "Plain AUROC").display() == "0.900 ± 0.000"
    )
    assert (
        ood.cell("Adv. Samples", "Plain MMC").display() == "–"
        and ood.cell("Adv. Samples (paper)", "Plain AUROC").display() == "0.004"
    )
    assert (
        ood.cell("ID (MMC)", "Plain MMC").display() == "0.980 ± 0.000" and ood.cell("ID (MMC)", "Plain AUROC") is None
    )
    assert (
        far.cell("Test error (%)", "Plain").display() == "4.00 ± 0.00"
        and far.cell("Test error (%) (paper)", "ACET").display() == "3.52"
    )
    assert far.cell("Median α for 99.9% confidence", "ACET").display() == "28"
    assert (
        far.cell("Median α (paper)", "ACET").display() == "49.8"
        and far.cell("% overconfident (paper)", "Plain").display() == "99.9"
    )
    assert far.cell("% overconfident (> 95%) after clipping", "Plain").display() == "99.9 ± 0.0"


def test_w4_tables_prefer_paper_epsilon_rows():
    recs = []
    for run, v in (("s0", 0.10), ("s1", 0.20)):
        for det, val in (("msp", v + 0.3), ("odin", 0.9), ("odin_paper", v)):
            recs += [
                rec(run, "ood", m, val, "tin_crop", det)
                for m in ("fpr95_id", "detection_error", "auroc", "aupr_in", "aupr_out")
            ]
    (t,) = odin_tables({"m": recs}, (("DenseNet-BC CIFAR-10", "m"),), "densenet-cifar10")
    assert t.columns[:2] == ("Baseline", "ODIN") and t.groups[0] == ("FPR at 95% TPR ↓", 2)
    assert t.cell("TinyImageNet (crop)", "FPR at 95% TPR ↓ Baseline").display() == "45.00 ± 7.07"
    assert t.cell("TinyImageNet (crop)", "FPR at 95% TPR ↓ ODIN").display() == "15.00 ± 7.07"  # odin_paper, not odin
    assert t.cell("TinyImageNet (crop) (paper)", "FPR at 95% TPR ↓ Baseline").display() == "34.7"
    assert t.cell("TinyImageNet (crop) (paper)", "AUPR-Out ↑ ODIN").display() == "99.1"
    assert "per-set ε" in " ".join(t.notes)


def test_html_and_markdown_render_the_same_cells():
    ood, _ = hendrycks2019_tables(
        {"a": w1_records("a", 0.9), "b": w1_records("b", 0.94)}, (("Normal", "a"), ("Pre-Train", "b")), "cifar10"
    )
    html = ood.html()
    assert html.startswith('<table class="results paper"><caption>OOD detection with MSP')
    assert '<th class="num" colspan="2">AUROC ↑</th>' in html
    assert re.search(r'<td class="num" data-mean="0\.91\d*" data-n="2">91\.00 ± 1\.41</td>', html)
    assert (
        '<tr class="paper" style="color:#59636e;font-style:italic"><th scope="row">Mean (paper)</th><td class="num" data-mean="0.915" data-paper="1">91.5</td>'
        in html
    )
    md = ood.markdown().splitlines()
    assert md[0].startswith("**OOD detection with MSP")
    assert (
        md[2]
        == "| OOD set | AUROC ↑ Normal | AUROC ↑ Pre-Train | AUPR ↑ Normal | AUPR ↑ Pre-Train | FPR95 ↓ Normal | FPR95 ↓ Pre-Train |"
    )
    assert md[3] == "|---|---:|---:|---:|---:|---:|---:|"
    assert (
        md[4]
        == "| Gaussian | 91.00 ± 1.41 | 95.00 ± 1.41 | 51.00 ± 1.41 | 51.00 ± 1.41 | 39.00 ± 1.41 | 39.00 ± 1.41 |"
    )
    assert "| *Mean (paper)* | 91.5 | 94.5 | 63.4 | 73.5 | – | – |" in md


def test_result_table_input_and_cell_formatting():
    t = ResultTable(meta={"run": "x"})
    t.add("ood", "auroc", 0.875, dataset="svhn", detector="msp")
    ood, _ = hendrycks2019_tables({"a": t}, (("Normal", "a"),))
    assert ood.cell("SVHN", "AUROC ↑ Normal").display() == "87.50"  # one run: no ± part
    assert Cell(math.nan).display() == "–" and Cell(0.5, 0.1, 3, 1.0, ".3f").display() == "0.500 ± 0.100"


def _paper_db(root, study: str, presets: tuple[str, ...]):
    store = ResultStore(root / "results.db")
    for p, preset in enumerate(presets):
        for seed in (0, 1):
            cfg = RunCfg(name=f"{preset}-s{seed}", preset=preset, seed=seed, out_dir=str(root))
            rid = store.start_run(
                cfg,
                study=study,
                meta={"rulab_version": "0", "torch_version": torch.__version__, "git_commit": "x", "device": "cpu"},
            )
            t = ResultTable()
            for r in w3_records(cfg.name, 0.7 - 0.2 * p):
                t.add(r["kind"], r["metric"], r["value"], dataset=r["dataset"], detector=r["detector"])
            store.write_results(rid, t)
            store.finish_run(rid)
    store.close()
    return root / "results.db"


def test_study_tables_from_the_registered_study_and_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    from rulab.reports import build_report

    presets = ("fmnist-plain", "fmnist-ceda", "fmnist-acet")
    db = _paper_db(tmp_path, "hein2019-fmnist", presets)
    md = study_paper_markdown(db, "hein2019-fmnist")
    assert "| CIFAR-10 | 0.700 ± 0.000 | 0.940 ± 0.000 | 0.350 ± 0.000 | 0.500 ± 0.000 |" in md
    assert "(paper)" not in md  # a CPU-scale study: no paper numbers beside ours
    assert study_tables("fmnist-default", {}) == [] and study_paper_html("fmnist-default", {"fmnist-plain": []}) == ""
    out = build_report(db, study="hein2019-fmnist", out=tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    start = page.index('<section id="comparison">')
    end = page.index("</section>", start)
    block = page[start:end]  # the paper tables sit in the comparison section, once
    assert block.count("<h3>Paper tables</h3>") == 1 and page.count("<h3>Paper tables</h3>") == 1
    assert "MMC / AUROC / FPR@95 of MSP" in block and '<th class="num" colspan="3">CEDA</th>' in block
    assert ">0.700 ± 0.000</td>" in block


def test_cli_results_paper_prints_the_study_tables(tmp_path, capsys):
    from rulab.cli import main

    db = _paper_db(tmp_path, "hein2019-fmnist", ("fmnist-plain", "fmnist-ceda", "fmnist-acet"))
    assert main(["results", "--db", str(db), "--study", "hein2019-fmnist", "--paper"]) == 0
    assert capsys.readouterr().out.strip() == study_paper_markdown(db, "hein2019-fmnist").strip()
    assert main(["results", "--db", str(db), "--paper"]) == 2  # which study's tables: the error says --study
    assert "--study" in capsys.readouterr().err
    assert main(["results", "--db", str(db), "--study", "fmnist-default", "--paper"]) == 2
    assert "no paper table" in capsys.readouterr().err


def test_w4_table_shows_the_t_and_eps_chosen_per_set_under_odin_paper():
    recs = []
    for run, (t, e, v) in (("s0", (1000.0, 0.002, 0.10)), ("s1", (100.0, 0.004, 0.20))):
        for det in ("msp", "odin"):
            extra = {"protocol": "odin-paper"} if det == "odin" else {}
            recs += [
                dict(rec(run, "ood", m, v + (0.3 if det == "msp" else 0.0), "tin_crop", det), extra=extra)
                for m in ("fpr95_id", "detection_error", "auroc", "aupr_in", "aupr_out")
            ]
        recs += [rec(run, "ood", "odin_t", t, "tin_crop", "odin"), rec(run, "ood", "odin_eps", e, "tin_crop", "odin")]
    (t,) = odin_tables({"m": recs}, (("DenseNet-BC CIFAR-10", "m"),), "densenet-cifar10")
    assert t.columns[:4] == ("T", "ε", "Baseline", "ODIN") and t.groups[0] == ("ODIN (T, ε)", 2)
    assert t.cell("TinyImageNet (crop)", "ODIN (T, ε) T").display() == "550 ± 636.4"  # mean ± std of 1000 and 100
    assert t.cell("TinyImageNet (crop)", "ODIN (T, ε) ε").display() == "0.003 ± 0.001414"
    assert t.cell("TinyImageNet (crop)", "FPR at 95% TPR ↓ ODIN").display() == "15.00 ± 7.07"
    assert (
        t.cell("TinyImageNet (crop) (paper)", "ODIN (T, ε) T").display() == "1000"
    )  # the README's T, and its ε per set
    assert any("tuned per OOD set on its first 1,000 images" in n for n in t.notes)
