"""Covariate shift: registered, batched corruptions of float images ``[B, C, H, W]`` in [0, 1].

Importing this package registers, in :data:`rulab.registry.CORRUPTIONS`:

* the 15 common corruptions of Hendrycks & Dietterich (ICLR 2019), severity 1..5, with the CIFAR-10-C
  parameter tables of hendrycks/robustness ``make_cifar_c.py`` (modules ``noise``, ``blur``, ``weather``,
  ``digital``; every docstring names its table and any deviation);
* the course project's two grids (W2 report §7.1-7.2), with a float level: ``brightness_factor`` (torchvision
  ``adjust_brightness``) and ``gaussian_blur_sigma`` (torchvision ``GaussianBlur(5, σ)``).

Every entry is ``f(x, level, generator=None) -> x'``: same shape, dtype and device, clamped to [0, 1], input
never modified, deterministic for a given ``torch.Generator``, batched (the only per-image loop is inside the
JPEG codec). Size-dependent lengths of the 32×32 tables are scaled by ``min(H, W) / 32``.

Intermediate uint8 rounding steps of the reference (PIL/PNG round trips) are not reproduced; evaluation rounds
once, at the end, in :func:`corrupt_dataset`.

Example:
    >>> import torch
    >>> from rulab.data.corruptions import apply_shift, shift_suite
    >>> x = torch.rand(4, 1, 28, 28)
    >>> g = torch.Generator().manual_seed(0)
    >>> [apply_shift(x, name, level, g).shape for name, level in shift_suite("blur_w2")][0]
    torch.Size([4, 1, 28, 28])
"""

from rulab.data.corruptions import blur, digital, noise, weather  # noqa: F401  (registration)
from rulab.data.corruptions.blur import defocus_blur, gaussian_blur_sigma, glass_blur, motion_blur_corruption, zoom_blur
from rulab.data.corruptions.digital import (
    brightness,
    brightness_factor,
    contrast,
    elastic_transform,
    jpeg_compression,
    pixelate,
)
from rulab.data.corruptions.noise import gaussian_noise, impulse_noise, shot_noise
from rulab.data.corruptions.suites import (
    COMMON_CORRUPTIONS,
    SHIFT_SUITES,
    ShiftSuite,
    apply_shift,
    corrupt_dataset,
    corruption,
    is_level,
    level_label,
    shift_suite,
)
from rulab.data.corruptions.weather import fog, frost, snow

__all__ = [
    "COMMON_CORRUPTIONS",
    "SHIFT_SUITES",
    "ShiftSuite",
    "apply_shift",
    "corrupt_dataset",
    "corruption",
    "shift_suite",
    "level_label",
    "is_level",
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur_corruption",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "brightness_factor",
    "gaussian_blur_sigma",
]
