"""Fault tolerance: a training run SIGKILLed at random points and resumed ends bit-identical to an uninterrupted one.

The child is the real command line (``python -m rulab train ... --resume``) on the CPU with a BatchNorm model,
flip augmentation, a one-cycle schedule, per-epoch validation and a checkpoint every 3 steps, so that resumes
restart mid-epoch and redo steps. The kills land at random moments (seeded delays after random checkpoint steps),
including inside checkpoint writes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rulab

SRC = str(Path(rulab.__file__).resolve().parents[1])
STEPS_PER_EPOCH = 8
EPOCHS = 4
ARGS = [
    "fmnist-plain",
    "--device=cpu",
    "--model.kwargs={width: 8}",
    f"--train.epochs={EPOCHS}",
    "--train.batch_size=32",
    "--train.checkpoint_every=3",
    f"--data.train_subset={32 * STEPS_PER_EPOCH}",
    "--data.val_size=100",
    "--eval.detectors=[]",
]


def _cmd(out: Path, name: str, resume: bool) -> list[str]:
    return [sys.executable, "-m", "rulab", "train", *ARGS, f"--out={out}", f"--name={name}"] + (
        ["--resume"] if resume else []
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "2"  # the same thread count in every process: CPU kernels are then bitwise repeatable
    return env


def _latest_step(run: Path) -> int:
    try:
        return int((run / "checkpoints" / "LATEST").read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    total = EPOCHS * STEPS_PER_EPOCH
    rng = random.Random(1234)
    run = tmp_path / "killed"
    targets = sorted(rng.sample(range(1, total - 2), 5))  # kill soon after these checkpoint steps
    kills = 0
    for i, target in enumerate(targets):
        log = tmp_path / f"segment{i}.log"  # a file, not a pipe: a full pipe would stall the child
        with log.open("wb") as fh:
            proc = subprocess.Popen(_cmd(tmp_path, "killed", i > 0), env=_env(), stdout=subprocess.DEVNULL, stderr=fh)
        deadline = time.time() + 120
        while proc.poll() is None and _latest_step(run) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))  # a random moment: mid-step, mid-evaluation or mid-checkpoint
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), log.read_text()[-2000:]
    assert kills == 5
    done = subprocess.run(_cmd(tmp_path, "killed", True), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    # the uninterrupted run, in this process (same command-line config, same thread count as the children)
    from rulab.presets import load_config
    from rulab.train.loop import fit

    cfg = load_config(ARGS[0], overrides=[a[2:] for a in ARGS[1:]] + [f"out_dir={tmp_path}", "name=ref"])
    threads = torch.get_num_threads()
    torch.set_num_threads(int(_env()["OMP_NUM_THREADS"]))
    try:
        fit(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)

    a = load_file(str(tmp_path / "ref" / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, EPOCHS + 1))
    ref_lines = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    for r, q in zip(lines, ref_lines):  # everything but the wall-clock time agrees exactly
        r.pop("time"), q.pop("time")
        assert r == q
    assert not list((run / "checkpoints").glob(".*.tmp"))


# ------------------------------------------------------------------ full disks and read-only directories

SMALL = [
    "device=cpu",
    "train.max_steps=6",
    "train.batch_size=32",
    "train.checkpoint_every=2",
    "data.train_subset=320",
    "data.val_size=50",
    "model.kwargs={width: 4}",
    "eval.detectors=[]",
]


def _small_cfg(out: Path, name: str):
    from rulab.presets import load_config

    return load_config("fmnist-plain", overrides=[*SMALL, f"out_dir={out}", f"name={name}"])


@pytest.fixture(scope="module")
def splits():
    """The data of SMALL, loaded once (fit() accepts pre-loaded splits)."""
    from rulab.data.splits import load_splits

    cfg = _small_cfg(Path("unused"), "x")
    return load_splits(cfg.data, cfg.seed)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") and (".tmp" in p.name or "write-test" in p.name)]


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_resume_is_exact(tmp_path, monkeypatch, splits):
    import errno

    from rulab.errors import RulabError
    from rulab.train.loop import fit

    real_replace = os.replace

    def full_at_step_4(src, dst):
        if "step-00000004" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_at_step_4)
    with pytest.raises(
        RulabError, match=r"^no space left on the device while writing \S*step-00000004; free some disk space"
    ):
        fit(_small_cfg(tmp_path, "full"), progress=False, splits=splits)
    monkeypatch.undo()
    run = tmp_path / "full"
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "step-00000002"
    assert not _leftovers(run) and not (run / "checkpoints" / "step-00000004").exists()
    fit(_small_cfg(tmp_path, "full"), resume=True, progress=False, splits=splits)  # space is back: continue
    ref = fit(_small_cfg(tmp_path, "ref"), progress=False, splits=splits)
    a, b = _weights(run), _weights(ref)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_disk_full_inside_the_safetensors_writer_is_one_clear_error(tmp_path, monkeypatch, splits):
    """safetensors' Rust writer reports ENOSPC as a SafetensorError, not an OSError: it must still read clearly."""
    from safetensors import SafetensorError

    import rulab.checkpoint as ckpt
    from rulab.errors import RulabError
    from rulab.train.loop import fit

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(RulabError, match="^no space left on the device while writing"):
        fit(_small_cfg(tmp_path, "full"), progress=False, splits=splits)
    assert not _leftovers(tmp_path) and not (tmp_path / "full" / "checkpoints" / "LATEST").exists()


def test_a_failed_model_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    import errno

    from rulab.checkpoint import save_model
    from rulab.errors import RulabError

    p = save_model(tmp_path / "model.safetensors", torch.nn.Linear(3, 2), {"model": "a", "model_kwargs": {}})
    before, meta_before = p.read_bytes(), (tmp_path / "meta.json").read_bytes()
    for code, msg in ((errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")):
        monkeypatch.setattr(
            os, "replace", lambda src, dst, code=code: (_ for _ in ()).throw(OSError(code, os.strerror(code)))
        )
        with pytest.raises(RulabError, match=msg):
            save_model(p, torch.nn.Linear(3, 2), {"model": "b", "model_kwargs": {}})
        monkeypatch.undo()
        assert p.read_bytes() == before and (tmp_path / "meta.json").read_bytes() == meta_before
        assert not _leftovers(tmp_path)


def test_read_only_metrics_file_is_one_clear_error(tmp_path, monkeypatch, splits):
    import builtins
    import errno

    import rulab.train.loop as loop
    from rulab.errors import RulabError

    def ro_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.EROFS, "Read-only file system")
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(loop, "open", ro_open, raising=False)
    with pytest.raises(
        RulabError,
        match=r"^cannot write \S*metrics.jsonl \(read-only or no permission\); choose a writable output directory$",
    ):
        loop.fit(_small_cfg(tmp_path, "ro"), progress=False, splits=splits)


def test_cli_reports_an_unwritable_output_directory_in_one_line(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    from rulab.cli import main

    out = tmp_path / "locked"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: simulate the read-only file system
        monkeypatch.setattr(
            tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system"))
        )
    else:
        out.chmod(0o500)
    code = main(["train", "fmnist-plain", *[f"--{o}" for o in SMALL], f"--out={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("error: cannot write ") and "choose a writable output directory" in err


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    path.mkdir(exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


@pytest.mark.parametrize(
    "options, message",
    [("size=24k", "^no space left on the device"), ("size=1m,ro", r"\(read-only or no permission\)")],
)
def test_real_full_or_read_only_file_system(tmp_path, options, message, splits):
    """A real tiny (or read-only) tmpfs as the output directory, where mounting is possible (root on Linux)."""
    from rulab.errors import RulabError
    from rulab.train.loop import fit

    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, options):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    try:
        with pytest.raises(RulabError, match=message):
            fit(_small_cfg(mnt, "run"), progress=False, splits=splits)
        if "ro" not in options:
            assert not _leftovers(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
