"""Blur corruptions of CIFAR-10-C (defocus, glass, motion, zoom) and the course project's Gaussian-blur grid.

Parameters: the CIFAR-10-C tables, hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (Hendrycks &
Dietterich, ICLR 2019). Pixel lengths of the 32×32 tables are scaled by ``min(H, W) / 32`` (see
:func:`~rulab.data.corruptions._contract.size_scale`) except where a docstring says otherwise.
``gaussian_blur_sigma`` is W2's ``GaussianBlur(kernel_size=5, sigma=σ)`` (report §7.1-7.2; ``experiments/eval.py``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from rulab.data.corruptions._contract import corruption, randint, size_scale, uniform
from rulab.data.filters import (
    clipped_zoom_matrix,
    cv2_gaussian_kernel1d,
    filter2d,
    motion_blur,
    scipy_gaussian_kernel1d,
    separable_filter,
)
from rulab.errors import InputError

__all__ = ["defocus_blur", "glass_blur", "motion_blur_corruption", "zoom_blur", "gaussian_blur_sigma", "defocus_kernel"]

_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))  # (disk radius px, alias blur σ)
_GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # (σ px, max delta px, passes)
_MOTION = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))  # ImageMagick (radius px, sigma px)
# np.arange(1, 1 + e, 0.01) for e = .06, .11, .16, .21, .26 has 7, 12, 16, 21, 26 elements (float rounding
# adds an extra end point to the first two); zoom factors are 1 + 0.01·k for k < n.
_ZOOM_COUNTS = (7, 12, 16, 21, 26)


@lru_cache(maxsize=64)
def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's ``disk(radius, alias_blur)``: a normalised binary disk, anti-aliased by a Gaussian blur.

    make_cifar_c.py: the disk ``X² + Y² ≤ r²`` on the grid −8..8 (−⌈r⌉..⌈r⌉ when r > 8), divided by its sum, then
    ``cv2.GaussianBlur(ksize=3×3 (5×5 when r > 8), σ=alias_blur)`` with OpenCV's default reflect-101 border.
    Returned trimmed to its non-zero support, float64 ``[k, k]``.
    """
    big = radius > 8
    half = math.ceil(radius) if big else 8
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    g = cv2_gaussian_kernel1d(5 if big else 3, alias_blur)
    k = separable_filter(disk[None, None], g, g, "reflect101")[0, 0]
    nz = torch.nonzero(k.abs() > 0)
    r = int(max((nz - half).abs().max().item(), 0))
    return k[half - r : half + r + 1, half - r : half + r + 1].clone()


@corruption("defocus_blur", stochastic=False)
def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Convolve with an anti-aliased disk: (radius, alias σ) = (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1).

    CIFAR-10-C table (``defocus_blur`` + ``disk``), ``cv2.filter2D`` with reflect-101 borders. Deviation for size:
    the disk radius is scaled by ``max(1, min(H, W)/32)``, i.e. only for images larger than 32 px: the radii are
    already at the pixel quantum (severities 1-3 are a 3×3 Gaussian, 4 a plus-shaped disk, 5 a 3×3 box), and
    shrinking radius 1 to 0.875 for 28×28 images would make severity 4 an identity.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: unused (deterministic corruption).
    """
    radius, alias = _DEFOCUS[severity - 1]
    kernel = defocus_kernel(radius * max(1.0, size_scale(x)), alias)
    return filter2d(x, kernel, "reflect101")


@corruption("glass_blur", stochastic=True)
def glass_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur, local pixel displacement, Gaussian blur: (σ, δ, passes) = (0.05,1,1), (0.25,1,1), (0.4,1,1), (0.25,1,2), (0.4,1,2).

    CIFAR-10-C table (``glass_blur``): blur with ``skimage.filters.gaussian(σ)`` (truncate 4, edge borders), then
    for each pass visit pixels (h, w) for h, w from size − δ down to δ + 1 and "swap" with (h + dy, w + dx),
    dx, dy ~ randint(−δ, δ) (so in {−δ, …, δ − 1}), then blur again. The reference's swap is written
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views of RGB pixels, which copies (h', w') into (h, w)
    and leaves (h', w') unchanged; since every source pixel is still unvisited when δ = 1, each pass equals the
    parallel resampling ``x'[h, w] = x[h + dy, w + dx]``, which we apply vectorised over all pixels and images
    (exactly the reference's operation for δ = 1; only the order of the random draws differs). For images ≥ 48 px (δ = round(s) ≥ 2) the same parallel
    rule is used, a documented approximation of the sequential loop. σ is scaled by ``min(H, W)/32``; the
    reference's intermediate uint8 truncation is not reproduced.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the displacements.
    """
    sigma, delta, passes = _GLASS[severity - 1]
    s = size_scale(x)
    k = scipy_gaussian_kernel1d(sigma * s)
    delta = max(1, round(delta * s))
    b, c, h, w = x.shape
    y = separable_filter(x, k, k, "edge")
    rows = torch.arange(delta + 1, h - delta + 1, device=x.device)  # the visited rows h = H−δ … δ+1
    cols = torch.arange(delta + 1, w - delta + 1, device=x.device)
    nh, nw = len(rows), len(cols)
    for _ in range(passes):
        d = randint((b, 2, nh, nw), -delta, delta, generator, x)
        src = (rows[None, :, None] + d[:, 0]) * w + (cols[None, None, :] + d[:, 1])  # [B, nh, nw]
        moved = y.reshape(b, c, h * w).gather(2, src.reshape(b, 1, -1).expand(b, c, nh * nw))
        y = y.clone()
        y[:, :, delta + 1 : h - delta + 1, delta + 1 : w - delta + 1] = moved.reshape(b, c, nh, nw)
    return separable_filter(y, k, k, "edge")


@corruption("motion_blur", stochastic=True)
def motion_blur_corruption(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """ImageMagick motion blur with (radius, σ) = (6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5) px at an angle ~ U(−45°, 45°).

    CIFAR-10-C table (``motion_blur``, Wand's ``MagickMotionBlurImage``), reproduced by
    :func:`~rulab.data.filters.motion_blur` (one-sided Gaussian streak, edge borders), one angle
    per image. Radius and σ are scaled by ``min(H, W)/32``.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the angles.
    """
    radius, sigma = _MOTION[severity - 1]
    s = size_scale(x)
    angle = uniform((x.shape[0],), -45.0, 45.0, generator, x)
    return motion_blur(x, radius * s, sigma * s, angle)


@lru_cache(maxsize=32)
def _zoom_blur_operator(h: int, w: int, severity: int) -> torch.Tensor:
    """``(I + Σ_z Z_h(z) ⊗ Z_w(z)) / (n + 1)`` as a dense ``[H·W, H·W]`` float64 matrix (small images only)."""
    n = _ZOOM_COUNTS[severity - 1]
    op = torch.eye(h * w, dtype=torch.float64)
    for k in range(n):
        z = 1 + 0.01 * k
        op += torch.kron(clipped_zoom_matrix(h, z), clipped_zoom_matrix(w, z))
    return op / (n + 1)


@corruption("zoom_blur", stochastic=False)
def zoom_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Average the image with centre zooms by 1 + 0.01·k, k < n, n = 7, 12, 16, 21, 26 (max zoom 1.06 … 1.25).

    CIFAR-10-C table (``zoom_blur`` with ``clipped_zoom``: centre crop, ``scipy.ndimage.zoom(order=1)``, trim), out
    = (x + Σ_z zoom(x, z)) / (n + 1); the counts follow ``np.arange``'s float rounding (see ``_ZOOM_COUNTS``). Zoom
    factors are ratios and are not size-scaled; non-square images zoom each axis with its own length. Images up
    to 32×32 use one precomputed ``[HW, HW]`` matrix, larger ones two small matrix products per zoom factor.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: unused (deterministic corruption).
    """
    b, c, h, w = x.shape
    if h * w <= 1024:
        op = _zoom_blur_operator(h, w, severity).to(x)
        return (x.reshape(b * c, h * w) @ op.T).reshape(b, c, h, w)
    n = _ZOOM_COUNTS[severity - 1]
    out = x.clone()
    for k in range(n):
        z = 1 + 0.01 * k
        out += clipped_zoom_matrix(h, z).to(x) @ x @ clipped_zoom_matrix(w, z).to(x).T
    return out / (n + 1)


def _torchvision_gaussian_kernel1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """torchvision's ``_get_gaussian_kernel1d``: exp(−½(t/σ)²) at t = −(k−1)/2 … (k−1)/2, normalised."""
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, steps=kernel_size, dtype=torch.float64)
    pdf = torch.exp(-0.5 * (t / sigma) ** 2)
    return pdf / pdf.sum()


@corruption("gaussian_blur_sigma", stochastic=False, level_kind="float", example_levels=(0.3, 0.5, 0.7, 0.9, 1.5))
def gaussian_blur_sigma(
    x: torch.Tensor, level: float, generator: torch.Generator | None = None, kernel_size: int = 5
) -> torch.Tensor:
    """Gaussian blur with standard deviation ``level`` pixels: torchvision ``GaussianBlur(kernel_size, sigma=level)``.

    W2 course project (report §7.1-7.2): kernel 5, σ ∈ {0.3, 0.5, 0.7, 0.9}. Same kernel as torchvision
    (exp(−½(t/σ)²) on integer offsets, normalised) and the same reflect (reflect-101) padding, applied
    separably as two matrix products; equal to ``torchvision.transforms.functional.gaussian_blur`` to float rounding.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        level: σ in pixels, > 0.
        generator: unused (deterministic corruption).
        kernel_size: odd, positive, at most 2·min(H, W) − 1.
    """
    if level <= 0:
        raise InputError(f"gaussian_blur_sigma needs sigma > 0, got {level}; pass e.g. 0.5")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise InputError(f"gaussian_blur_sigma needs an odd positive kernel_size, got {kernel_size!r}; pass e.g. 5")
    if kernel_size // 2 >= min(x.shape[-2:]):
        raise InputError(
            f"kernel_size {kernel_size} is too large for {tuple(x.shape[-2:])} images; use one below {2 * min(x.shape[-2:])}"
        )
    k = _torchvision_gaussian_kernel1d(kernel_size, level)
    return separable_filter(x, k, k, "reflect101")
