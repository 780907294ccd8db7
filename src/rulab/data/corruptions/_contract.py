"""The contract every registered corruption follows, enforced in one place.

A corruption is a function ``f(x, level, generator=None) -> x'`` on float images ``[B, C, H, W]`` in [0, 1]
(convention 1 in docs/conventions.md; docs/architecture.md "Corruption"). :func:`corruption` registers it in
:data:`rulab.registry.CORRUPTIONS` and wraps it so that every entry, whatever its body does:

* checks its input (a floating ``[B, C, H, W]`` tensor with C ∈ {1, 3} and H, W ≥ 8) and its level
  (an ``int`` severity 1..5, or a finite float for the two course-project grids),
* never mutates ``x`` (bodies receive ``x`` itself when it is float32/float64 and must not write into it),
* returns the same shape, dtype and device, clamped to [0, 1].

It also records ``stochastic``, ``level_kind`` ("severity" or "float") and ``example_levels`` (levels in
increasing strength) on the registered function, so that :func:`rulab.data.corruptions.apply_shift` and the registry-wide tests know
how to call it without a name→kind table.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rulab.errors import InputError
from rulab.registry import CORRUPTIONS

__all__ = ["corruption", "check_severity", "size_scale", "rand", "randn", "randint", "poisson", "uniform"]

SEVERITIES = (1, 2, 3, 4, 5)


def check_severity(severity: Any, name: str) -> int:
    """Return ``severity`` as an int in 1..5, or raise :class:`InputError` (bools and 2.5 are refused)."""
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or not 1 <= int(severity) <= 5:
        raise InputError(
            f"corruption '{name}' needs an integer severity from 1 to 5, got {severity!r}; pass one of 1, 2, 3, 4, 5"
        )
    return int(severity)


def _check_level(level: Any, name: str) -> float:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not math.isfinite(float(level)):
        raise InputError(f"corruption '{name}' needs a finite float level, got {level!r}; pass a number such as 0.8")
    return float(level)


def _check_images(x: Any, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(
            f"corruption '{name}' needs float images [B, C, H, W] in [0, 1], got {got}; convert uint8 images with x.float() / 255"
        )
    _, c, h, w = x.shape
    if c not in (1, 3) or h < 8 or w < 8:
        raise InputError(f"corruption '{name}' needs 1 or 3 channels and H, W >= 8, got [B, C, H, W] = {list(x.shape)}")


def corruption(
    name: str, *, stochastic: bool, level_kind: str = "severity", example_levels: Sequence[float] = SEVERITIES
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register ``fn(x, level, generator=None, **kw)`` in ``CORRUPTIONS`` under ``name`` with the contract above.

    Args:
        name: registry name (``"fog"``).
        stochastic: whether the output depends on the generator (deterministic ones ignore it).
        level_kind: ``"severity"`` (int 1..5, the CIFAR-10-C tables) or ``"float"`` (a physical parameter such
            as a brightness factor or a blur sigma).
        example_levels: levels ordered from weakest to strongest change, used by tests and docs.
    """
    if level_kind not in ("severity", "float"):
        raise ValueError(f"level_kind must be 'severity' or 'float', got {level_kind!r}")

    def decorator(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        sig = inspect.signature(fn)
        level_param = list(sig.parameters)[1]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            x = bound.arguments["x"]
            _check_images(x, name)
            level = bound.arguments[level_param]
            bound.arguments[level_param] = (
                check_severity(level, name) if level_kind == "severity" else _check_level(level, name)
            )
            if x.dtype not in (torch.float32, torch.float64):
                bound.arguments["x"] = x.float()  # float16/bfloat16: compute in float32, cast back below
            out = fn(*bound.args, **bound.kwargs)
            return out.clamp(0.0, 1.0).to(x.dtype)

        wrapper.stochastic = stochastic  # type: ignore[attr-defined]
        wrapper.level_kind = level_kind  # type: ignore[attr-defined]
        wrapper.example_levels = tuple(example_levels)  # type: ignore[attr-defined]
        return CORRUPTIONS.register(name)(wrapper)

    return decorator


def size_scale(x: torch.Tensor) -> float:
    """How much larger than CIFAR's 32×32 the images are: ``min(H, W) / 32``.

    Pixel-length parameters of the 32×32 tables (blur radii and sigmas, elastic scales) are multiplied by it, so
    a 28×28 Fashion-MNIST image gets 0.875× the CIFAR-10-C lengths; ratios (zoom factors, pixelate factors) are
    size-free and left alone.
    """
    return min(x.shape[-2], x.shape[-1]) / 32.0


# ---- random draws: generated on the generator's device (CPU by default), then moved next to the images ----


def _device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def rand(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of ``shape`` in ``like``'s dtype and device."""
    return torch.rand(tuple(shape), generator=generator, device=_device(generator, like), dtype=like.dtype).to(
        like.device
    )


def uniform(
    shape: Sequence[int], low: float, high: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """U[low, high) of ``shape`` in ``like``'s dtype and device."""
    return rand(shape, generator, like).mul_(high - low).add_(low)


def randn(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) of ``shape`` in ``like``'s dtype and device."""
    return torch.randn(tuple(shape), generator=generator, device=_device(generator, like), dtype=like.dtype).to(
        like.device
    )


def randint(
    shape: Sequence[int], low: int, high: int, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Integers in [low, high) (``numpy.random.randint`` semantics), int64 on ``like``'s device."""
    return torch.randint(low, high, tuple(shape), generator=generator, device=_device(generator, like)).to(like.device)


def poisson(rate: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Poisson draws with the given rates (same shape, dtype and device as ``rate``)."""
    dev = _device(generator, rate)
    return torch.poisson(rate.to(dev), generator=generator).to(rate.device)
