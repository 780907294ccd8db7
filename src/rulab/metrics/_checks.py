"""Input conversion and validation shared by the metric modules (private).

Every metric accepts torch tensors or NumPy arrays, computes on the input's device and rejects bad input
with one :class:`~rulab.errors.InputError` sentence (convention 3 in docs/conventions.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rulab.errors import InputError

__all__ = ["as_tensor", "scores_1d", "check_finite", "confidences_1d", "correct_1d", "logits_2d", "labels_1d"]


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a tensor without copying where possible (NumPy arrays and sequences are converted on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise InputError(f"{name} must be a torch tensor or a NumPy array, got {type(x).__name__}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold real numbers, got NumPy dtype {arr.dtype}")
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).copy()
    return torch.from_numpy(arr)


def _real_dtype(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.is_complex():
        raise InputError(f"{name} must hold real numbers, got {t.dtype}")
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()  # exact; sort and compare in float32
    if not t.is_floating_point():
        return t.double()  # integers and bools: exact up to 2**53
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`InputError` naming how many NaN and inf values ``t`` holds, if any."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(torch.isinf(t).sum())
        raise InputError(
            f"{name} has {n_nan} NaN and {n_inf} inf values out of {t.numel()}; remove or replace them before "
            f"computing metrics"
        )


def scores_1d(x: Any, name: str, *, finite: bool = True) -> torch.Tensor:
    """A non-empty 1-D real score tensor (float32 or float64; half precision is upcast exactly)."""
    t = _real_dtype(as_tensor(x, name), name)
    if t.ndim != 1:
        raise InputError(
            f"{name} must be 1-D [N], got shape {tuple(t.shape)}; flatten it or pick one score per example"
        )
    if t.numel() == 0:
        raise InputError(f"{name} is empty; every metric needs at least one score on each side")
    if finite:
        check_finite(t, name)
    return t


def confidences_1d(x: Any, name: str = "confidence") -> torch.Tensor:
    """A non-empty 1-D finite confidence tensor with values in [0, 1]."""
    t = scores_1d(x, name)
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"{name} must lie in [0, 1], got values in [{lo:.6g}, {hi:.6g}]; pass probabilities, not logits"
        )
    return t


def correct_1d(x: Any, n: int, device: torch.device, name: str = "correct") -> torch.Tensor:
    """A float64 0/1 tensor of length ``n`` on ``device`` (bool, integer or float input)."""
    t = as_tensor(x, name)
    if t.ndim != 1 or t.numel() != n:
        raise InputError(f"{name} must be 1-D with one entry per confidence ({n}), got shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float64)
    if not bool(((t == 0) | (t == 1)).all()):
        raise InputError(f"{name} must hold only 0 and 1 (or False and True)")
    return t


def logits_2d(x: Any, name: str = "logits") -> torch.Tensor:
    """A non-empty finite ``[N, K]`` real tensor (half precision upcast to float32)."""
    t = _real_dtype(as_tensor(x, name), name)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty [N, K] matrix, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def labels_1d(x: Any, n: int, num_classes: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    """An int64 class-index tensor of length ``n`` with values in ``[0, num_classes)``, on ``device``."""
    t = as_tensor(x, name)
    if t.ndim != 1 or t.numel() != n:
        raise InputError(f"{name} must be 1-D with one label per row ({n}), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must hold integer class indices, got {t.dtype}")
    t = t.to(device=device, dtype=torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= num_classes:
        raise InputError(
            f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes, got values in [{lo}, {hi}]"
        )
    return t
