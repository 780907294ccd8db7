"""The one timing rule of the benchmark scripts: the fastest of several runs (a shared machine only ever slows a run
down, so the minimum is the least disturbed figure). Imported by the scripts in this directory as ``_timing``; not a
benchmark itself (``make bench`` skips it)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls (``inf`` if
    ``repeats`` is 0)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
