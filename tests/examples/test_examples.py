"""Every script in examples/ runs with its ``--tiny`` settings (as a user would run it: a subprocess)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _run(script: str, tmp_path: Path, *args: str, timeout: int = 600) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--tiny", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_every_example_is_tested() -> None:
    tested = {"evaluate_torchvision_model.py", "custom_detector.py", "compare_methods.py", "reproduce_presets.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
def test_evaluate_torchvision_model(tmp_path) -> None:
    out = _run("evaluate_torchvision_model.py", tmp_path, "--out", "o")
    assert "OOD detection" in out and "mahalanobis" in out and "digits" in out
    assert (tmp_path / "o/results.csv").is_file() and (tmp_path / "o/runs/resnet18-fmnist/model.safetensors").is_file()
    assert (tmp_path / "o/report.html").is_file()


@pytest.mark.slow
def test_custom_detector(tmp_path) -> None:
    out = _run("custom_detector.py", tmp_path)
    assert "cosine_mean" in out and "toy features: AUROC" in out and "(scores are ndarray)" in out


@pytest.mark.slow
def test_compare_methods(tmp_path) -> None:
    out = _run("compare_methods.py", tmp_path, "--out", "o")
    assert "mean AUROC over the OOD sets" in out and "fmnist-plain" in out and "(n=2)" in out
    assert (tmp_path / "o/results.db").is_file()


def _reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce_presets", EXAMPLES / "reproduce_presets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reproduce_presets_skips_unregistered_names(tmp_path) -> None:
    mod = _reproduce_module()
    assert mod.reproduce("no-such-paper-fmnist", tmp_path, tiny=True).startswith(
        "skipping no-such-paper-fmnist: not registered"
    )


@pytest.mark.slow
def test_reproduce_presets(tmp_path) -> None:
    """The script as is: each paper preset runs at tiny settings, or is skipped while not registered."""
    out = _run("reproduce_presets.py", tmp_path, "--out", "o", timeout=1800)
    mod = _reproduce_module()
    lines = [ln for ln in out.splitlines() if ln.split(":")[0] in mod.PAPER_PRESETS or ln.startswith("skipping")]
    assert len(lines) == len(mod.PAPER_PRESETS)
    assert all("skipping" in ln or "report" in ln for ln in lines)


@pytest.mark.slow
def test_reproduce_a_registered_preset(tmp_path) -> None:
    """The preset path of the script (train, evaluate, report), on the default preset while the paper ones are absent."""
    mod = _reproduce_module()
    mod.TINY = [*mod.TINY, "eval.shift=''", "eval.farconf=false", "eval.detectors=[msp]"]
    line = mod.reproduce("fmnist-plain", tmp_path, tiny=True)
    assert line.startswith("fmnist-plain: trained and evaluated") and (tmp_path / "fmnist-plain/report.html").is_file()
