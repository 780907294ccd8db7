"""The documentation lists detectors and metrics from the registries (docs/_hooks/registry_tables.py): every
registered detector and declared metric has its row, every detector module its API-reference entry, and the pages
hold the markers the hook replaces, so a new detector or metric needs no edit to the documentation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rulab.metrics.catalog import metrics
from rulab.registry import DETECTORS

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("registry_tables", ROOT / "docs" / "_hooks" / "registry_tables.py")
hook = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hook)


def test_detector_table_has_one_row_per_registered_detector() -> None:
    table = hook.detector_table()
    rows = [ln for ln in table.splitlines() if ln.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == DETECTORS.list()
    knn = next(r for r in rows if r.startswith("| `knn`"))
    cls = DETECTORS.get("knn")
    assert cls.formula in knn and cls.fits_on in knn and cls.paper in knn and "| `k` |" in knn and "| features |" in knn
    assert all(r.count(" | ") == 5 for r in rows), "a pipe inside a cell would break the table"


def test_hyperparameter_table_lists_defaults_and_grids() -> None:
    rows = [ln for ln in hook.detector_hparams().splitlines() if ln.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == DETECTORS.list()
    ash = next(r for r in rows if r.startswith("| `ash_s`"))
    assert "`percentile=95.0`" in ash and "`percentile` ∈ {65, 70, 75, 80, 85, 90, 95}" in ash
    assert next(r for r in rows if r.startswith("| `msp`")) == "| `msp` | – | – |"
    assert all(r.count(" | ") == 2 for r in rows), "a pipe inside a cell would break the table"


def test_reference_lists_every_detector_module() -> None:
    ref = hook.detector_reference()
    for name in DETECTORS:
        assert f"::: {DETECTORS.get(name).__module__}" in ref


def test_metric_table_has_one_row_per_declared_metric() -> None:
    rows = [ln for ln in hook.metric_table().splitlines() if ln.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [m.name for m in metrics()]
    assert any(r.startswith("| `fpr95_id` | FPR at 95% TPR | detection | percent | lower |") for r in rows)


def test_pages_hold_the_markers_and_the_hook_replaces_them() -> None:
    pages = {
        "detectors.md": "<!-- rulab:detector-table -->",
        "detectors.md#hparams": "<!-- rulab:detector-hparams -->",
        "reference/detectors.md": "<!-- rulab:detector-reference -->",
        "metrics.md": "<!-- rulab:metric-table -->",
    }
    for page, marker in pages.items():
        text = (ROOT / "docs" / page.split("#")[0]).read_text(encoding="utf-8")
        assert marker in text, page
        out = hook.on_page_markdown(text)
        assert marker not in out and hook.MARKERS[marker]() in out
    assert "docs/_hooks/registry_tables.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
