"""Corruption-robustness summaries (Hendrycks & Dietterich, ICLR 2019, "Benchmarking neural network robustness").

Errors are fractions (top-1 error rates, 0.32), laid out as ``[C, S]``: C corruptions by S severities (a
1-D ``[S]`` input is one corruption). Torch tensors, NumPy arrays or nested lists are accepted; sums are in
float64. Bad input raises :class:`rulab.errors.InputError`.
"""

from __future__ import annotations

from typing import Any

import torch

from rulab.errors import InputError
from rulab.metrics._checks import as_tensor, check_finite

__all__ = ["mean_over_severities", "corruption_error", "mean_corruption_error", "relative_ce", "mean_relative_ce"]

ArrayLike = Any  # torch.Tensor | np.ndarray | nested lists


def _grid(x: ArrayLike, name: str) -> torch.Tensor:
    t = as_tensor(x, name)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.numel() == 0:
        raise InputError(
            f"{name} must be a non-empty [C, S] grid (corruptions x severities) or [S], got shape {tuple(t.shape)}"
        )
    t = t.to(torch.float64)
    check_finite(t, name)
    return t


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{names} must have the same [C, S] shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _clean(x: ArrayLike, c: int, device: torch.device, name: str) -> torch.Tensor:
    t = as_tensor(x, name).to(device=device, dtype=torch.float64).reshape(-1)
    if t.numel() not in (1, c):
        raise InputError(f"{name} must be one clean error or one per corruption ({c}), got {t.numel()} values")
    check_finite(t, name)
    return t.expand(c)


def _ratio(num: torch.Tensor, den: torch.Tensor, what: str) -> torch.Tensor:
    if bool((den == 0).any()):
        raise InputError(
            f"the baseline's {what} is 0 for some corruption, so the ratio is undefined; use another baseline"
        )
    return num / den


def mean_over_severities(values: ArrayLike) -> torch.Tensor:
    """Mean over severities: ``values: [C, S]`` (or ``[S]``) -> float64 ``[C]``."""
    return _grid(values, "values").mean(dim=1)


def corruption_error(err_model: ArrayLike, err_baseline: ArrayLike) -> torch.Tensor:
    """Corruption Error per corruption: ``CE_c = sum_s E_{s,c} / sum_s E^baseline_{s,c}``.

    Args:
        err_model: ``[C, S]`` (or ``[S]``) error rates of the model.
        err_baseline: same shape, error rates of the baseline (AlexNet in the ImageNet-C paper).

    Returns:
        float64 ``[C]``.
    """
    m = _grid(err_model, "err_model")
    b = _grid(err_baseline, "err_baseline").to(m.device)
    _same_shape(m, b, "err_model and err_baseline")
    return _ratio(m.sum(dim=1), b.sum(dim=1), "summed error")


def mean_corruption_error(err_model: ArrayLike, err_baseline: ArrayLike) -> float:
    """mCE: the mean over corruptions of :func:`corruption_error`."""
    return float(corruption_error(err_model, err_baseline).mean())


def relative_ce(
    err_model: ArrayLike, clean_model: ArrayLike, err_baseline: ArrayLike, clean_baseline: ArrayLike
) -> torch.Tensor:
    """Relative Corruption Error: ``sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)``.

    Args:
        err_model: ``[C, S]`` (or ``[S]``) error rates of the model.
        clean_model: the model's clean error (a scalar, or ``[C]``).
        err_baseline: same shape as ``err_model``, error rates of the baseline.
        clean_baseline: the baseline's clean error (a scalar, or ``[C]``).

    Returns:
        float64 ``[C]``.
    """
    m = _grid(err_model, "err_model")
    b = _grid(err_baseline, "err_baseline").to(m.device)
    _same_shape(m, b, "err_model and err_baseline")
    c = m.shape[0]
    num = (m - _clean(clean_model, c, m.device, "clean_model")[:, None]).sum(dim=1)
    den = (b - _clean(clean_baseline, c, m.device, "clean_baseline")[:, None]).sum(dim=1)
    return _ratio(num, den, "summed error above its clean error")


def mean_relative_ce(
    err_model: ArrayLike, clean_model: ArrayLike, err_baseline: ArrayLike, clean_baseline: ArrayLike
) -> float:
    """Relative mCE: the mean over corruptions of :func:`relative_ce`."""
    return float(relative_ce(err_model, clean_model, err_baseline, clean_baseline).mean())
