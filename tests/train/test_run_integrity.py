"""A run is never mixed, shared or misplaced, checked with real ``rulab train`` processes (issue 15 §1).

* Two processes on one run directory: the second refuses with one line naming the first (its PID), and after the
  first is killed (SIGKILL: no clean-up runs) its stale lock is taken over with a warning, the temporary files its
  kill left behind are removed, and the resumed run's ``metrics.jsonl`` holds one record per epoch in order.
* A resume with a changed config is refused with the differing key and writes nothing; ``--allow-config-change``
  continues it and records the step and the change (``config_history`` in ``meta.json``, an event line in
  ``metrics.jsonl``).
* Run names that would leave ``--out`` (``../../escaped``, an empty name) are refused before anything is written.

Each process trains on 64 images with batches of 32 (two steps per epoch), so the file stays in the fast suite; the
in-process cases of the same rules are in ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import rulab

SRC = str(Path(rulab.__file__).resolve().parents[1])
TINY = [
    "fmnist-plain",
    "--device=cpu",
    "--eval.detectors=[]",
    "--data.train_subset=64",
    "--data.val_size=32",
    "--train.batch_size=32",
    "--train.epochs=0",
    "--train.checkpoint_every=1",
    "--train.eval_every=0",
    "--train.deterministic=false",
]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "RULAB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def _rulab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rulab", *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _epoch_records(run: Path) -> tuple[list[dict], list[dict]]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if "epoch" in r], [r for r in recs if r.get("event") == "config_change"]


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(tmp_path):
    run = tmp_path / "runs" / "r"
    args = ["train", *TINY, "--name=r", f"--out={tmp_path / 'runs'}", "--train.max_steps=1000000"]
    first = subprocess.Popen(
        [sys.executable, "-m", "rulab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "LATEST").exists():  # the first writer has trained and checkpointed a step
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the first writer did not checkpoint within 240 s"
            time.sleep(0.2)
        second = _rulab(*args)
        line = _one_error_line(second)
        assert f"is in use by process {first.pid} on host " in line and "choose another --name or --out" in line
        assert first.poll() is None  # the second process did not disturb the first
    finally:
        first.send_signal(signal.SIGKILL)  # no clean-up runs: the lock file stays behind
        first.communicate()
    assert (run / "run.lock").exists()
    epochs_before, _ = _epoch_records(run)
    left = run / ".env.json.k1ll3d42.tmp"  # what a SIGKILL between an atomic write's temp file and its rename leaves
    left.write_text("{")
    mine = run / "notes.tmp"  # a file of the user's: not one of rulab's temp files, never touched
    mine.write_text("keep")

    third = _rulab(*args[:-1], "--train.max_steps=1", "--resume", "--allow-config-change")
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"warning: took over the stale lock of {run}: process {first.pid} on host " in third.stderr
    assert "no longer exists; this process owns it now" in third.stderr
    assert "warning: resuming" in third.stderr and "train.max_steps 1000000 -> 1" in third.stderr
    assert not left.exists() and mine.read_text() == "keep" and not (run / "run.lock").exists()
    epochs, events = _epoch_records(run)
    assert [r["epoch"] for r in epochs] == list(
        range(1, len(epochs) + 1)
    )  # one record per epoch, in order: never interleaved
    # the resumed run keeps the records up to the checkpoint it resumed from: every epoch's, or all but the last when
    # the kill landed between an epoch's record and its checkpoint (that epoch's weights were never saved)
    assert len(epochs_before) >= 1 and len(epochs) >= len(epochs_before) - 1
    step = json.loads((run / "meta.json").read_text())["steps"]
    assert events == [
        {
            "event": "config_change",
            "step": step,
            "config_hash": events[0]["config_hash"],
            "previous_hash": events[0]["previous_hash"],
            "changed": {"train.max_steps": [1000000, 1]},
        }
    ]
    history = json.loads((run / "meta.json").read_text())["config_history"]
    assert [h["step"] for h in history] == [0, step] and history[1]["changed"] == {"train.max_steps": [1000000, 1]}
    assert history[0]["config_hash"] == history[1]["previous_hash"] != history[1]["config_hash"]


INTERRUPT = """
import sys
import rulab.train.loop as loop
from rulab.cli import main
lr_at = loop.lr_at
def interrupt(step, *a, **k):  # Ctrl-C before the third step: the run keeps its step-2 checkpoint
    if step == 2:
        raise KeyboardInterrupt
    return lr_at(step, *a, **k)
loop.lr_at = interrupt
sys.exit(main(sys.argv[1:]))
"""


def test_resume_with_a_changed_config_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "runs" / "r"
    args = ["train", *TINY, "--name=r", f"--out={tmp_path / 'runs'}", "--train.max_steps=4"]
    interrupted = subprocess.run(
        [sys.executable, "-c", INTERRUPT, *args], capture_output=True, text=True, timeout=180, env=_env()
    )
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    assert "run the same command with --resume" in interrupted.stderr
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert (run / "checkpoints" / "LATEST").read_text().strip() == "step-00000002" and not (run / "run.lock").exists()

    refused = _rulab(*args, "--resume", "--optim.lr=0.5")
    line = _one_error_line(refused)
    assert line.startswith(
        f"error: run directory {run} was trained with another config (optim.lr 0.4 -> 0.5); resume with the same settings, "
        "or pass --allow-config-change"
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # nothing written, nothing removed


def test_names_that_leave_the_output_directory_are_refused(tmp_path):
    out = tmp_path / "a" / "b"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rulab", "train", *TINY, f"--out={out}", f"--name={name}", "--train.max_steps=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name in ("../../escaped", "", str(tmp_path / "absolute"))
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    lines = [_one_error_line(r) for r in results]
    assert (
        "the run name '../../escaped' contains a path separator, so it would point outside the output directory"
        in lines[0]
    )
    assert lines[1] == "error: the run name is empty; use letters, digits, '-', '_' and '.', e.g. fmnist-plain-s0"
    assert "contains a path separator" in lines[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even --out was created
