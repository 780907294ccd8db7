"""Evaluators for the launcher tests, importable by worker processes (``tests/results`` is put on their PYTHONPATH).

:func:`blocking_evaluate` is :func:`fake_eval.fake_evaluate` (a real forward pass on a few hundred images), except
that on its first attempt for the cell named ``block`` it writes its process id to ``<run_dir>/blocked.pid`` and
sleeps, so that a test can kill or preempt that worker at a known moment; a later attempt (the file exists)
evaluates normally. Loaded by name from the tests (it is not a test module).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fake_eval import fake_evaluate

from rulab.config import RunCfg
from rulab.results.table import ResultTable

BLOCK_FILE = "blocked.pid"


def blocking_evaluate(run_dir: Path, cfg: RunCfg, block: str = "") -> ResultTable:
    """``fake_evaluate``, which blocks once (600 s) for the cell named ``block`` after writing its PID."""
    marker = Path(run_dir) / BLOCK_FILE
    if cfg.name == block and not marker.exists():
        marker.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(600)
    return fake_evaluate(run_dir, cfg)
