"""``python -m build`` makes a wheel and an sdist that install into a fresh virtual environment and work there.

The fresh environments get the already-installed dependencies (torch, numpy, ...) through a ``.pth`` file naming
the shared site-packages directory (no 5 GB torch download); that directory's own ``.pth`` files, among them the
editable install of the development checkout, are not processed from there, and the test checks that ``rulab`` is
imported from the fresh environment and not from the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = r"""
import sys, torch, rulab
from torch import nn
assert rulab.__version__ == "0.1.0"
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=g)
y = torch.arange(300) % 3
net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
t = rulab.evaluate(net, id_test=(x[:200], y[:200]), id_train=(x[200:], y[200:]), ood=["uniform"], n_ood=100,
                   detectors=["msp", "energy", "mahalanobis"], temperature=False)
assert {r.detector for r in t.filter(kind="ood", metric="auroc")} == {"msp", "energy", "mahalanobis"}
print("RULAB_FILE", rulab.__file__)
print("ROWS", len(t))
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _copy_source(dst: Path) -> Path:
    """The checkout without build outputs (building writes build/ and *.egg-info next to the sources)."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "runs",
        "site",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        "example-output",
        "mlruns",
    )
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


def _fresh_venv(path: Path) -> Path:
    """A venv without pip whose site-packages also sees the shared dependencies (not the editable rulab)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    py = path / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    ).stdout.strip()
    shared = sysconfig.get_paths()["purelib"]
    Path(purelib, "_shared_dependencies.pth").write_text(shared + "\n", encoding="utf-8")
    return py


def _pip_install(py: Path, target: Path, *extra: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            *extra,
            str(target),
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _smoke(py: Path, venv_dir: Path) -> None:
    env = _clean_env()
    version = subprocess.run(
        [str(venv_dir / "bin" / "rulab"), "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert version.returncode == 0 and version.stdout.strip() == "rulab 0.1.0", version.stdout + version.stderr
    listed = subprocess.run(
        [str(venv_dir / "bin" / "rulab"), "list", "detectors"], capture_output=True, text=True, env=env, timeout=300
    )
    assert "mahalanobis" in listed.stdout, listed.stderr
    run = subprocess.run([str(py), "-c", SMOKE], capture_output=True, text=True, env=env, timeout=600, cwd=venv_dir)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    where = next(ln.split(" ", 1)[1] for ln in run.stdout.splitlines() if ln.startswith("RULAB_FILE"))
    assert Path(where).resolve().is_relative_to(venv_dir.resolve()), (
        f"rulab was imported from {where}, not from the fresh venv"
    )
    assert int(next(ln.split()[1] for ln in run.stdout.splitlines() if ln.startswith("ROWS"))) > 20


@pytest.mark.slow
def test_wheel_and_sdist_install_into_a_fresh_venv(tmp_path) -> None:
    for mod in ("build", "setuptools", "wheel"):
        pytest.importorskip(mod, reason=f"{mod} is needed to build the package (pip install 'rulab[dev]')")
    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheel = next(dist.glob("rulab-0.1.0-py3-none-any.whl"))
    sdist = next(dist.glob("rulab-0.1.0.tar.gz"))

    names = zipfile.ZipFile(wheel).namelist()
    assert "rulab/py.typed" in names and "rulab/models/wrapped.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names) and not any(n.startswith("tests/") for n in names)
    import tarfile

    members = tarfile.open(sdist).getnames()
    for needed in (
        "tests/eval/test_user_eval.py",
        "docs/metrics.md",
        "mkdocs.yml",
        "examples/custom_detector.py",
        "benchmarks",
        "CHANGELOG.md",
        "LICENSE",
    ):
        assert any(m.startswith(f"rulab-0.1.0/{needed}") for m in members), needed

    for kind, target, extra in (("wheel", wheel, ()), ("sdist", sdist, ("--no-build-isolation",))):
        venv_dir = tmp_path / f"venv-{kind}"
        py = _fresh_venv(venv_dir)
        _pip_install(py, target, *extra)
        _smoke(py, venv_dir)
