import math

import pytest

from rulab.cli import main
from rulab.config import RunCfg
from rulab.errors import RulabError
from rulab.results.aggregate import Pivot, Stat
from rulab.results.export import (
    format_stat,
    format_value,
    render,
    results_pivot,
    to_csv,
    to_latex,
    to_markdown,
    to_text,
)
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable


def tiny() -> Pivot:
    cells = {
        ("plain", "acc"): Stat(0.9123, 0.0045, 3),
        ("plain", "nll"): Stat(0.3, 0.01, 3),
        ("oe_x", "acc"): Stat(0.9, math.nan, 1),
        ("oe_x", "nll"): Stat(0.25, 0.02, 2),
    }
    return Pivot(
        ["plain", "oe_x"],
        [("acc", "acc"), ("nll", "nll")],
        cells,
        caption="mean ± std over seeds",
        notes=["acc: test accuracy"],
    )


def test_format_values():
    assert format_value(0.91234, "acc") == "91.23" and format_value(0.91235, "nll") == "0.912"
    assert format_value(math.nan, "acc") == "nan" and format_value(math.inf, "alpha_median") == "inf"
    assert format_stat(Stat(0.5, 0.25, 2), "auroc") == "50.00 ± 25.00"
    assert format_stat(Stat(0.5, math.nan, 1), "auroc", row_n=3) == "50.00 (n=1)"
    assert format_stat(None, "acc") == "–"


def test_markdown_exact():
    assert to_markdown(tiny()) == (
        "mean ± std over seeds\n\n"
        "| method | seeds | acc | nll |\n"
        "|:---|---:|---:|---:|\n"
        "| plain | 3 | 91.23 ± 0.45 | 0.300 ± 0.010 |\n"
        "| oe_x | 2 | 90.00 (n=1) | 0.250 ± 0.020 |\n"
        "\n- acc: test accuracy\n"
    )


def test_latex_exact():
    assert to_latex(tiny()) == (
        "% mean ± std over seeds\n"
        "\\begin{tabular}{lrrr}\n"
        "\\toprule\n"
        "method & seeds & acc & nll \\\\\n"
        "\\midrule\n"
        "plain & 3 & 91.23 $\\pm$ 0.45 & 0.300 $\\pm$ 0.010 \\\\\n"
        "oe\\_x & 2 & 90.00 ($n$=1) & 0.250 $\\pm$ 0.020 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "% acc: test accuracy\n"
    )


def test_csv_exact_keeps_fractions():
    assert to_csv(tiny()) == (
        "method,seeds,acc,acc std,nll,nll std\nplain,3,0.9123,0.0045,0.3,0.01\noe_x,2,0.9,,0.25,0.02\n"
    )


def test_text_and_render():
    text = to_text(tiny())
    lines = text.splitlines()
    assert lines[0] == "mean ± std over seeds" and lines[1].split() == ["method", "seeds", "acc", "nll"]
    assert (
        lines[3].split() == ["plain", "3", "91.23", "±", "0.45", "0.300", "±", "0.010"]
        and lines[-1] == "acc: test accuracy"
    )
    assert render(tiny(), "md") == to_markdown(tiny())
    with pytest.raises(RulabError, match="unknown table format"):
        render(tiny(), "xlsx")


def _db(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    for preset, base in (("fmnist-plain", 0.90), ("fmnist-oe", 0.88)):
        for seed in (0, 1):
            rid = store.start_run(RunCfg(name=f"{preset}-s{seed}", preset=preset, seed=seed), study="mini")
            t = ResultTable()
            t.add("id", "acc", base + seed / 100, dataset="fashion_mnist")
            t.add("id", "ece", 0.05, dataset="fashion_mnist")
            t.add("id", "ece", 0.02, dataset="fashion_mnist", detector="ts")
            for s, v in (("digits", 0.80), ("uniform", 0.96)):
                t.add("ood", "auroc", v + seed / 100, dataset=s, detector="msp")
                t.add("ood", "auroc", v - 0.1, dataset=s, detector="energy")
            store.write_results(rid, t)
            store.finish_run(rid)
    store.close()
    return tmp_path / "r.db"


def test_results_pivot_filters(tmp_path):
    recs = ResultStore(_db(tmp_path)).results()
    p = results_pivot(recs, metrics="auroc", kind="ood", detector="msp")
    assert p.rows == ["fmnist-plain", "fmnist-oe"] and [c[0] for c in p.columns] == ["digits", "uniform"]
    assert p.cells[("fmnist-plain", "digits")].mean == pytest.approx(0.805)
    p = results_pivot(recs, metrics="ece,acc", kind="id")
    assert [c[0] for c in p.columns] == ["raw · ece", "ts · ece", "raw · acc"]
    p = results_pivot(recs)  # the study summary
    assert p.cells[("fmnist-oe", "AUROC msp")].mean == pytest.approx((0.80 + 0.96) / 2 + 0.005)
    with pytest.raises(RulabError, match="no stored results match"):
        results_pivot(recs, metrics="mmc")


def test_cli_results_and_errors(tmp_path, capsys):
    db = _db(tmp_path)
    assert (
        main(["results", "--db", str(db), "--metric", "auroc", "--kind", "ood", "--detector", "msp", "--format", "md"])
        == 0
    )
    out = capsys.readouterr().out
    assert "| fmnist-plain | 2 | 80.50 ± 0.71 | 96.50 ± 0.71 |" in out
    out_file = tmp_path / "t.tex"
    assert main(["results", "--db", str(db), "--study", "mini", "--format", "latex", "--out", str(out_file)]) == 0
    assert "fmnist-oe & 2 & 88.50 $\\pm$ 0.71" in out_file.read_text()
    assert main(["results", "--db", str(tmp_path / "none.db")]) == 2
    assert "no results database" in capsys.readouterr().err
    assert main(["results", "--db", str(db), "--study", "other"]) == 2
    assert "holds no results for study 'other'" in capsys.readouterr().err
