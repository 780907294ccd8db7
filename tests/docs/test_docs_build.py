"""The documentation site builds with ``mkdocs build --strict``: any warning (a broken link, a docstring griffe
cannot parse, a missing page) fails the build and this test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict(tmp_path) -> None:
    for module, extra in (
        ("mkdocs", "docs"),
        ("material", "docs"),
        ("mkdocstrings", "docs"),
        ("mkdocstrings_handlers.python", "docs"),
    ):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'rulab[{extra}]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, "\n".join(warnings) or proc.stderr[-3000:]
    site = tmp_path / "site"
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert (
        'id="rulab.api.evaluate"' in api and "id_test" in api and 'id="rulab.api.convert"' in api
    )  # from the docstrings
    metrics = (site / "metrics" / "index.html").read_text(encoding="utf-8")
    assert "fpr95_id" in metrics and "fpr95_ood" in metrics and "drop_last_bin" in metrics
    assert ":func:" not in (site / "reference" / "evaluation" / "index.html").read_text(encoding="utf-8")
    assert "Keep a Changelog" in (site / "changelog" / "index.html").read_text(encoding="utf-8")


def test_rst_roles_and_tables_become_markdown() -> None:
    spec = importlib.util.spec_from_file_location("rst_to_markdown", ROOT / "docs" / "_griffe" / "rst_to_markdown.py")
    if importlib.util.find_spec("griffe") is None:
        pytest.skip("griffe is not installed (pip install 'rulab[docs]')")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "See :func:`~rulab.metrics.ood.auroc` and :class:`rulab.ResultTable`.\n\n===  ===\na    b\n===  ===\n1    2\n===  ===\n\n>>> x = 1\n>>> x\n1\n\nLayout::"
    out = mod.convert(text)
    assert "See `auroc` and `rulab.ResultTable`." in out
    assert "```text\n===  ===\na    b\n===  ===\n1    2\n===  ===\n```" in out
    assert "```python\n>>> x = 1\n>>> x\n1\n```" in out and out.endswith("Layout:")
