"""rulab: how far can you trust an image classifier? OOD detection, calibration, covariate shift and
far-away overconfidence, measured on the same checkpoint, with the protocols of four published works.

``import rulab`` is cheap (no torch import); names are loaded on first use:

* ``rulab.evaluate(model, id_test=..., ood=...)``: evaluate any ``nn.Module`` on your own data
  (:func:`rulab.eval.user.evaluate_model`);
* ``rulab.evaluate_checkpoint(run_dir)``, ``rulab.convert(weights, model=...)``: the checkpoint side of the command line;
* ``rulab.metrics`` (``auroc``, ``fpr95_id``, ``calibration_error``, ...) and ``rulab.detectors`` (``msp_score``,
  ``energy_score``, ...): pure functions that take NumPy arrays or torch tensors;
* ``rulab.api`` (every command-line action as one call), ``rulab.tracking``, ``rulab.ResultTable``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "evaluate_checkpoint", "convert", "ResultTable"]

_LAZY = {
    "evaluate": ("rulab.eval.user", "evaluate_model"),
    "evaluate_checkpoint": ("rulab.eval.checkpoint", "evaluate_checkpoint"),
    "convert": ("rulab.api", "convert"),
    "ResultTable": ("rulab.results.table", "ResultTable"),
}
_SUBMODULES = frozenset(
    {
        "api",
        "cli",
        "config",
        "data",
        "detectors",
        "errors",
        "eval",
        "io",
        "methods",
        "metrics",
        "models",
        "presets",
        "registry",
        "reports",
        "results",
        "study",
        "tracking",
        "train",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"rulab.{name}")
    raise AttributeError(f"module 'rulab' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
