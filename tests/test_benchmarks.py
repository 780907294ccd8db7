"""The benchmark scripts run the way ``make bench`` runs them: each takes ``--quick`` and needs no other argument.

``make bench`` calls every ``benchmarks/*.py`` with ``--quick`` alone. A script with a required argument (as
``method_effects.py`` had with ``--out``) stops ``make bench`` there, and CI does not run the benchmarks, so this is
checked here on each script's own argument parser (its ``--help``, which does no work).
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def _usage(script: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys, "argv", [script.name, "--help"])
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import benchmarks/_timing.py as a sibling
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code in (0, None), f"{script.name} --help exited with {stop.value.code}"
    return out.getvalue()


def required_arguments(usage: str) -> list[str]:
    """The arguments argparse lists outside brackets in a usage block (the required ones), script name left out."""
    block = usage.split("\n\n", 1)[0].replace("\n", " ")
    text = re.sub(r"^usage:\s*\S+", "", block)
    depth, kept = 0, []
    for ch in text:
        depth += ch == "["
        if depth == 0:
            kept.append(ch)
        depth -= ch == "]"
    return "".join(kept).split()


def test_required_arguments_are_found():
    assert required_arguments("usage: x.py [-h] --out OUT [--seeds SEEDS [SEEDS ...]]\n\nhelp") == ["--out", "OUT"]
    assert required_arguments("usage: x.py [-h] [--quick]\n          [--threads N]\n\nhelp") == []


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_runs_with_quick_alone(script, monkeypatch):
    usage = _usage(script, monkeypatch)
    assert "--quick" in usage, f"{script.name} has no --quick, which make bench passes"
    assert required_arguments(usage) == [], f"{script.name} needs arguments make bench does not give: {usage}"
