"""The Python API: every command-line action is one call here (style-anchors.md §13).

>>> import rulab
>>> run_dir = rulab.train("fmnist-plain", overrides=["train.epochs=1"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rulab.config import RunCfg, load_config

__all__ = ["train", "config"]


def config(preset: str | None = None, path: str | None = None, overrides: Sequence[str] = ()) -> RunCfg:
    """Resolve and validate a run configuration (preset → YAML → overrides)."""
    return load_config(preset, path, overrides)


def train(cfg: RunCfg | str, resume: bool = False, overrides: Sequence[str] = (), progress: bool = True) -> Path:
    """Train a run (a :class:`RunCfg` or a preset name plus overrides); returns its run directory."""
    from rulab.train.loop import fit

    if isinstance(cfg, str):
        cfg = load_config(cfg, overrides=overrides)
    return fit(cfg, resume=resume, progress=progress)
