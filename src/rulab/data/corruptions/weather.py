"""Weather corruptions of CIFAR-10-C: snow, frost and fog.

Parameters: the CIFAR-10-C tables, hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (Hendrycks &
Dietterich, ICLR 2019). Frost uses a procedural texture instead of the reference's photographs (see :func:`frost`).
"""

from __future__ import annotations

import torch

from rulab.data.corruptions._contract import corruption, randn, size_scale, uniform
from rulab.data.corruptions._textures import frost_texture, plasma_fractal
from rulab.data.filters import clipped_zoom_matrix, motion_blur

__all__ = ["snow", "frost", "fog", "grey"]

# (mean, std, zoom, threshold, blur radius px, blur sigma px, image blend)
_SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
_FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight, frost weight)
_FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (fog strength, plasma wibble decay)


def grey(x: torch.Tensor) -> torch.Tensor:
    """``cv2.COLOR_RGB2GRAY`` luminance 0.299 R + 0.587 G + 0.114 B as ``[B, 1, H, W]`` (identity for C = 1)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


@corruption("snow", stochastic=True)
def snow(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Falling snow: a thresholded, zoomed, motion-blurred noise layer added twice (as is and rotated 180°).

    CIFAR-10-C table (``snow``): layer ~ N(μ, σ²) per pixel, ``clipped_zoom`` by z, zeroed below the threshold,
    clipped to [0, 1], ImageMagick motion blur (radius, sigma) at an angle ~ U(−135°, −45°); the image is first
    whitened, ``β·x + (1 − β)·max(x, 1.5·grey(x) + 0.5)``, then ``clip(x + layer + rot180(layer))``. Blur radius
    and sigma are scaled by ``min(H, W)/32``; the reference's uint8/PNG round trip of the layer is skipped.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the layer and the angles.
    """
    mu, sd, zoom, thresh, radius, sigma, blend = _SNOW[severity - 1]
    b, _, h, w = x.shape
    s = size_scale(x)
    layer = randn((b, 1, h, w), generator, x) * sd + mu
    if zoom != 1.0:
        layer = clipped_zoom_matrix(h, zoom).to(x) @ layer @ clipped_zoom_matrix(w, zoom).to(x).T
    layer = torch.where(layer < thresh, torch.zeros_like(layer), layer).clamp(0, 1)
    angle = uniform((b,), -135.0, -45.0, generator, x)
    layer = motion_blur(layer, radius * s, sigma * s, angle)
    whitened = blend * x + (1 - blend) * torch.maximum(x, grey(x) * 1.5 + 0.5)
    return whitened + layer + layer.flip(-2, -1)


@corruption("frost", stochastic=True)
def frost(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with a frost layer: ``a·x + b·frost`` with (a, b) = (1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45).

    CIFAR-10-C table (``frost``). Deviation: the reference crops one of six frost photographs; we synthesise a
    seeded procedural frost texture per image instead (:func:`~rulab.data.corruptions._textures.frost_texture`:
    cloudy value noise plus thin ridged "ice veins", bluish-white, mean ≈ 0.35), so absolute errors on this
    corruption are not comparable with the released CIFAR-10-C arrays.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the textures.
    """
    a, b = _FROST[severity - 1]
    n, c, h, w = x.shape
    return a * x + b * frost_texture(n, c, h, w, generator, x)


@corruption("fog", stochastic=True)
def fog(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add a plasma-fractal haze: ``(x + t·plasma)·m / (m + t)`` with m = max(x), (t, decay) = (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75).

    CIFAR-10-C table (``fog``): one diamond-square map per image (
    :func:`~rulab.data.corruptions._textures.plasma_fractal`) of side the next power of two ≥ max(H, W)
    (32 for CIFAR and Fashion-MNIST), cropped to H×W and shared by the channels; m is the image's maximum over
    pixels and channels.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the fractals.
    """
    t, decay = _FOG[severity - 1]
    b, _, h, w = x.shape
    mapsize = 1 << max(1, (max(h, w) - 1).bit_length())
    haze = plasma_fractal(b, mapsize, decay, generator, x)[:, None, :h, :w]
    m = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + t * haze) * m / (m + t)
