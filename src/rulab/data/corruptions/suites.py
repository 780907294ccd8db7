"""Covariate-shift suites as data, one call to apply a (corruption, level) cell, and corrupted test sets.

A suite is a named tuple of cells ``(corruption name, level)``: an int severity 1..5 for the fifteen CIFAR-10-C
corruptions (stored as a float, e.g. 3.0) or a physical parameter for the course project's grids
(W2 report §7.1-7.2). Evaluation walks a suite's cells, builds each shifted test set with
:func:`corrupt_dataset` and stores rows keyed by (shift, severity) (docs/results-store.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rulab.data.tensors import TensorDataset, unit_pixels
from rulab.errors import ConfigError, InputError
from rulab.registry import CORRUPTIONS, UnknownNameError

__all__ = [
    "COMMON_CORRUPTIONS",
    "ShiftSuite",
    "SHIFT_SUITES",
    "shift_suite",
    "corruption",
    "apply_shift",
    "corrupt_dataset",
    "level_label",
    "is_level",
]

# Hendrycks & Dietterich's 15 common corruptions, in their table order (noise, blur, weather, digital).
COMMON_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

# Corruptions for the Fashion-MNIST default study. CPU cost, measured with one torch thread on this project's
# 2-core CPU (shared), 1,000 Fashion-MNIST test images (28×28 grey), best of 3, mean over severities 1, 3, 5,
# milliseconds per 1,000 images: gaussian_noise 3.7, shot_noise 21.6, impulse_noise 8.4, defocus_blur 2.2,
# motion_blur 13.7, contrast 1.1, pixelate 1.3, jpeg_compression 27.9, fog 15.7, elastic_transform 20.3.
# The five left out are cheap too (glass_blur 16.6, zoom_blur 8.7, snow 31.2, frost 16.8, brightness 4.2); they
# are left out to keep the suite at 38 cells, since each cell costs a forward pass over the test set (the real
# cost), and frost uses a procedural texture whose numbers are not comparable with CIFAR-10-C.
_FMNIST_CHEAP: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "motion_blur",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "fog",
    "elastic_transform",
)


@dataclass(frozen=True)
class ShiftSuite:
    """A named list of shift cells.

    Attributes:
        name: suite name used in configs (``"blur_w2"``).
        cells: ``(corruption name, level)`` pairs; levels are floats (severities as 1.0 … 5.0).
        description: one line saying where the suite comes from.
    """

    name: str
    cells: tuple[tuple[str, float], ...]
    description: str = ""


def _grid(name: str, levels: tuple[float, ...]) -> tuple[tuple[str, float], ...]:
    return tuple((name, float(v)) for v in levels)


def _severities(names: tuple[str, ...], severities: tuple[int, ...]) -> tuple[tuple[str, float], ...]:
    return tuple((n, float(s)) for n in names for s in severities)


_BRIGHTNESS_PATHMNIST = _grid("brightness_factor", (0.8, 0.9, 1.1, 1.2))
_BRIGHTNESS_PETS = _grid("brightness_factor", (0.6, 0.8, 1.2, 1.4))
_BLUR_W2 = _grid("gaussian_blur_sigma", (0.3, 0.5, 0.7, 0.9))

SHIFT_SUITES: tuple[ShiftSuite, ...] = (
    ShiftSuite("brightness_w2_pathmnist", _BRIGHTNESS_PATHMNIST, "W2 pathMNIST brightness factors (W2 report §7.1)"),
    ShiftSuite("brightness_w2_pets", _BRIGHTNESS_PETS, "W2 Oxford Pets brightness factors (W2 report §7.2)"),
    ShiftSuite("blur_w2", _BLUR_W2, "W2 Gaussian blur, kernel 5, sigma grid (W2 report §7.1-7.2)"),
    ShiftSuite(
        "w2-pathmnist",
        _BRIGHTNESS_PATHMNIST + _BLUR_W2,
        "W2 pathMNIST: brightness factors 0.8-1.2 and Gaussian blur sigma 0.3-0.9 (W2 report §7.1)",
    ),
    ShiftSuite(
        "w2-pets",
        _BRIGHTNESS_PETS + _BLUR_W2,
        "W2 Oxford Pets: brightness factors 0.6-1.4 and Gaussian blur sigma 0.3-0.9 (W2 report §7.2)",
    ),
    ShiftSuite(
        "common15",
        _severities(COMMON_CORRUPTIONS, (1, 2, 3, 4, 5)),
        "Hendrycks & Dietterich's 15 corruptions × severities 1-5 (CIFAR-10-C)",
    ),
    ShiftSuite(
        "fmnist-default",
        _BRIGHTNESS_PATHMNIST + _BLUR_W2 + _severities(_FMNIST_CHEAP, (1, 3, 5)),
        "CPU default: W2 brightness and blur grids plus 10 cheap common corruptions at severities 1, 3, 5",
    ),
)


def shift_suite(name: str) -> list[tuple[str, float]]:
    """The cells ``[(corruption, level), ...]`` of the suite called ``name``.

    Raises:
        ConfigError: ``name`` is not a suite; the message lists the valid names.
    """
    for suite in SHIFT_SUITES:
        if suite.name == name:
            return list(suite.cells)
    valid = ", ".join(s.name for s in SHIFT_SUITES)
    raise ConfigError(f"unknown shift suite '{name}'; valid suites: {valid}")


def corruption(name: str) -> Callable[..., torch.Tensor]:
    """The registered corruption function ``name``.

    Raises:
        ConfigError: ``name`` is not registered; the message lists the valid names.
    """
    try:
        return CORRUPTIONS.get(name)
    except UnknownNameError as err:
        raise ConfigError(f"{err} (`rulab list corruptions`)") from None


def apply_shift(x: torch.Tensor, name: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the registered corruption ``name`` at ``level`` to a batch.

    The fifteen severity corruptions take ``level`` as an integer severity (3 or 3.0); the float-parameter
    ones (``brightness_factor``, ``gaussian_blur_sigma``) take it as is.

    Args:
        x: images ``[B, C, H, W]`` float in [0, 1].
        name: a name in ``CORRUPTIONS``.
        level: severity 1..5 or float parameter.
        generator: source of randomness for stochastic corruptions.

    Returns:
        The corrupted batch, same shape, dtype and device, in [0, 1].
    """
    fn = corruption(name)
    if getattr(fn, "level_kind", "severity") == "severity":
        if isinstance(level, float) and level.is_integer():
            level = int(level)
        return fn(x, level, generator=generator)
    return fn(x, float(level), generator=generator)


def corrupt_dataset(ds: TensorDataset, name: str, level: float, seed: int, batch_size: int = 1000) -> TensorDataset:
    """A shifted copy of a uint8 dataset: every image corrupted by ``(name, level)``, rounded back to uint8.

    Deterministic for a given ``(seed, batch_size)``: one generator seeded with ``seed`` (on the images'
    device) is consumed batch after batch. The result keeps labels, classes, name and source; ``meta`` gains
    ``shift``, ``level``, ``shift_seed`` and ``shift_batch_size``.

    Args:
        ds: images ``uint8 [N, C, H, W]``.
        name: a name in ``CORRUPTIONS``.
        level: severity 1..5 or float parameter (see :func:`apply_shift`).
        seed: seed of the corruption noise.
        batch_size: images per call (memory vs speed).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    corruption(name)  # unknown name → error before any work
    generator = torch.Generator(device=ds.x.device).manual_seed(int(seed))
    out = torch.empty(
        ds.x.shape, dtype=torch.uint8, device=ds.x.device
    )  # corrupted images are 8-bit (the benchmarks' protocol)
    for start in range(0, len(ds), batch_size):
        batch = unit_pixels(ds.x[start : start + batch_size])
        shifted = apply_shift(batch, name, level, generator)
        out[start : start + batch_size] = shifted.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    meta = dict(ds.meta, shift=name, level=level, shift_seed=int(seed), shift_batch_size=batch_size)
    return TensorDataset(out, ds.y.clone(), list(ds.classes), ds.name, ds.source, meta)


def level_label(level: Any) -> str:
    """A level as the results' ``severity`` column writes it: ``3.0``, ``3`` and ``"3.0"`` → ``"3"``; ``0.8`` → ``"0.8"``."""
    v = float(level)
    return str(int(v)) if v.is_integer() else str(v)


def is_level(severity: Any) -> bool:
    """Whether a ``severity`` value is a level (``"3"``, ``"0.5"``), not an aggregate (``"mean"``, ``""``) or None."""
    try:
        float(severity)
    except (TypeError, ValueError):
        return False
    return True
