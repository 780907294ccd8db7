"""The single-evaluation HTML report (rulab.reports.evaluation) from a ResultTable in memory."""

from __future__ import annotations

import re

import pytest
import torch

from rulab.reports.evaluation import evaluation_report
from rulab.results.table import ResultTable

pytest.importorskip("matplotlib", reason="the report's figures need matplotlib (pip install 'rulab[report]')")


def _table() -> ResultTable:
    t = ResultTable(
        meta={
            "model": "MyNet",
            "benchmark": "custom",
            "seed": 0,
            "temperature": 1.25,
            "detectors": {"knn": {"k": 5, "objective": 0.1, "tuned_on": ["photos"]}},
            "skipped": {"farconf": "not asked"},
        }
    )
    t.add("id", "acc", 0.9125, dataset="fashion_mnist", n=400)
    t.add("id", "ece", 0.0375, dataset="fashion_mnist", detector="ts", n=400)
    for det, v in (("msp", 0.875), ("knn", 0.96875)):
        t.add("ood", "auroc", v, dataset="digits", detector=det, n=300)
        t.add("ood", "fpr95_id", 1 - v, dataset="digits", detector=det, n=300)
    t.add("ood", "ood_ratio", 0.75, dataset="digits", detector="msp", n=300)
    t.add("ood", "aupr_in", 0.5, dataset="digits", detector="msp", n=300)
    for sev, acc in (("1", 0.85), ("3", 0.7), ("mean", 0.775)):
        t.add("shift", "acc", acc, dataset="fashion_mnist", shift="fog", severity=sev, n=400)
        t.add("shift", "ece", 0.1, dataset="fashion_mnist", shift="fog", severity=sev, n=400)
    g = torch.Generator().manual_seed(0)
    t.arrays.update(
        {
            "id/logits": torch.randn(60, 3, generator=g),
            "id/labels": torch.arange(60) % 3,
            "ts/temperature": torch.tensor([1.25]),
            "scores/msp/id": torch.rand(60, generator=g) + 0.3,
            "scores/msp/digits": torch.rand(40, generator=g),
        }
    )
    return t


def test_report_of_one_evaluation(tmp_path) -> None:
    path = evaluation_report(_table(), tmp_path / "eval.html")
    html = path.read_text()
    assert "<title>rulab evaluation: MyNet</title>" in html
    cells = dict(re.findall(r'data-mean="([^"]+)"[^>]*>([^<]+)<', html))
    assert cells["0.9125"] == "91.25" and cells["0.96875"] == "96.88"  # fractions shown in percent, 2 decimals
    assert "OOD:ID ratio digits 0.75" in html and "k=5" in html and "skipped farconf" in html
    assert html.count('<img src="data:image/png;base64,') == 4  # ROC/PR, histograms, reliability, severity
    assert "<script" not in html and 'href="http' not in html and 'src="http' not in html


def test_report_of_a_table_without_arrays(tmp_path) -> None:
    t = ResultTable()
    t.add("id", "acc", 0.5, dataset="x")
    html = evaluation_report(t, tmp_path / "r.html", title="bare").read_text()
    assert "<title>bare</title>" in html and "<img" not in html
