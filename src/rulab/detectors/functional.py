"""The detectors' score functions for your own arrays: NumPy or torch in, the same type out.

Every public function of every registered detector's module (its ``__all__``: ``msp_score``, ``energy_score``,
``mahalanobis_score``, ``class_means``, ...) is here, generated from :data:`rulab.registry.DETECTORS` when this module
is imported, behind a thin adapter (:func:`numpy_compatible`): NumPy arrays are viewed as torch tensors (float64
stays float64), the function runs, and tensors in the result come back as NumPy arrays when any input was a NumPy
array. Torch inputs pass through untouched, so results are identical to what ``rulab eval`` computes. Besides them,
:func:`fit_temperature` (temperature scaling, a post-processor rather than a detector).

A new detector's functions appear here without an edit: list them in its module's ``__all__``. (A detector module
must therefore not import this module: it is generated from the registry the detector modules fill.) The score
formulas are in the documentation's detector table, which is generated from the same registry.

Sign convention (convention 2 in docs/conventions.md): every score is a **confidence, higher = more
in-distribution**. Feed ``s_id`` and ``s_ood`` to :mod:`rulab.metrics` (``auroc(s_id, s_ood)``, ``fpr95_id``, ...) as
they are.

Example:
    >>> import numpy as np
    >>> from rulab.detectors import functional as D
    >>> from rulab.metrics import auroc
    >>> s_id, s_ood = D.energy_score(logits_id), D.energy_score(logits_ood)     # NumPy in, NumPy out
    >>> auroc(s_id, s_ood)
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from rulab.detectors import temperature as _temperature
from rulab.registry import DETECTORS

F = TypeVar("F", bound=Callable[..., Any])


def _to_torch(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _to_numpy(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    if isinstance(v, tuple):
        return tuple(_to_numpy(x) for x in v)
    if isinstance(v, list):
        return [_to_numpy(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_numpy(x) for k, x in v.items()}
    return v


def numpy_compatible(fn: F) -> F:
    """Wrap a tensor function so that NumPy arrays may be passed for any argument; when one was, tensors in the
    result are returned as NumPy arrays (scalars stay Python numbers)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        had_numpy = any(isinstance(a, np.ndarray) for a in (*args, *kwargs.values()))
        out = fn(*(_to_torch(a) for a in args), **{k: _to_torch(v) for k, v in kwargs.items()})
        return _to_numpy(out) if had_numpy else out

    return wrapper  # type: ignore[return-value]


def detector_functions() -> dict[str, Callable[..., Any]]:
    """``{name: function}``: the public functions (``__all__``, defined in that module) of the module of every
    registered built-in detector, unwrapped, in registration order (the modules' ``__all__`` order within a module).

    Raises:
        RuntimeError: two detector modules export a function of the same name.
    """
    found: dict[str, Callable[..., Any]] = {}
    for cls in DETECTORS.entries().values():
        module = importlib.import_module(cls.__module__)
        if not module.__name__.startswith("rulab.detectors."):
            continue  # a detector registered by user code: its functions are its own
        for attr in getattr(module, "__all__", ()):
            fn = getattr(module, attr)
            if not inspect.isfunction(fn) or fn.__module__ != module.__name__:
                continue
            if found.setdefault(attr, fn) is not fn:
                raise RuntimeError(
                    f"detector modules {found[attr].__module__} and {module.__name__} both export '{attr}'; rename one"
                )
    return found


_GENERATED = {name: numpy_compatible(fn) for name, fn in detector_functions().items()}
globals().update(_GENERATED)
fit_temperature = numpy_compatible(_temperature.fit_temperature)

FUNCTIONS: tuple[str, ...] = (*_GENERATED, "fit_temperature")
"""The names of the NumPy-compatible functions this module holds (what :mod:`rulab.detectors` exports)."""

__all__ = ["numpy_compatible", "detector_functions", "FUNCTIONS", *FUNCTIONS]
