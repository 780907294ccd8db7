"""Batched linear filters and resamplers that reproduce the library calls of the CIFAR-10-C reference.

The one implementation of 1-D filtering as a matrix (padding folded in) and of the Gaussian kernel, used by the
corruptions (:mod:`rulab.data.corruptions`) and by the synthetic OOD images (W1's blobs, W3's low-pass filter in
:mod:`rulab.data.synthetic`). Each function names the call it stands in for (scipy.ndimage / skimage / OpenCV /
PIL / ImageMagick) and its boundary rule, because the boundary rules differ between those libraries:

=================  =========================  ==========================  ======================
rule here          scipy.ndimage / skimage    OpenCV                      torch
=================  =========================  ==========================  ======================
``"symmetric"``    ``reflect`` (dcba|abcd)    ``BORDER_REFLECT``          —
``"reflect101"``   ``mirror`` (dcb|abcd)      ``BORDER_REFLECT_101``      ``F.pad(mode="reflect")``
``"edge"``         ``nearest`` (aaa|abcd)     ``BORDER_REPLICATE``        ``F.pad(mode="replicate")``
=================  =========================  ==========================  ======================

TensorFlow's ``SYMMETRIC`` padding (W3's low-pass filter) and numpy's ``symmetric`` are ``"symmetric"`` too.
All images are ``[B, C, H, W]`` float tensors; kernels are built in float64 and cast to the images' dtype.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = [
    "filter_matrix",
    "filter_axis",
    "gaussian_kernel1d",
    "scipy_gaussian_kernel1d",
    "cv2_gaussian_kernel1d",
    "separable_filter",
    "filter2d",
    "clipped_zoom_matrix",
    "pil_box_matrix",
    "motion_blur_kernel",
    "motion_blur",
]


def _pad_index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index of every position of a length-``n`` axis padded by ``before``/``after`` (any pad width)."""
    i = torch.arange(-before, n + after)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "symmetric":
        period = 2 * n
        j = i.remainder(period)
        return torch.where(j >= n, period - 1 - j, j)
    if mode == "reflect101":
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * n - 2
        j = i.remainder(period)
        return torch.where(j >= n, period - j, j)
    raise ValueError(f"unknown padding mode {mode!r}")


def _build_filter_matrix(n: int, kernel: tuple[float, ...], mode: str) -> torch.Tensor:
    """The float64 ``[n, n]`` matrix of :func:`filter_matrix` (row ``i`` holds ``Σ_t k[t]·e_{src(i + t − r)}``)."""
    radius = (len(kernel) - 1) // 2
    src = _pad_index(n, radius, radius, mode)
    m = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    for t, weight in enumerate(kernel):
        m.index_put_((rows, src[t : t + n]), torch.full((n,), weight, dtype=torch.float64), accumulate=True)
    return m


_filter_matrix = lru_cache(maxsize=256)(_build_filter_matrix)


def filter_matrix(n: int, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """1-D correlation with an odd-length ``kernel`` on a length-``n`` axis, boundary ``mode``, as an ``[n, n]`` matrix.

    The padding is folded into the matrix (any kernel length: reflections repeat as scipy's do), so filtering a
    batch is one matrix product per axis, which on CPU is far faster than ``conv2d`` on single-channel images.
    """
    return _filter_matrix(n, tuple(kernel.tolist()), mode)


def filter_axis(x: torch.Tensor, dim: int, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate ``x`` along ``dim`` with the odd-length 1-D ``kernel``, padding that axis by ``mode``; same size out.

    One product ``x·Mᵀ`` along that axis with the :func:`filter_matrix` ``M``, built for this call and not cached
    (W3's low-pass filter draws a fresh σ for every batch, so a cache would only fill up). For image-sized axes the
    dense matmul is several times faster than sliding sums or a one-channel conv1d on CPU (about 9× for 32-px blobs).

    Args:
        x: any float tensor; ``dim`` is the filtered axis.
        kernel: odd-length 1-D kernel (float64 is exact; it is cast to ``x``'s dtype as a matrix).
        mode: ``"symmetric"``, ``"reflect101"`` or ``"edge"`` (see the module docstring).

    Returns:
        A tensor of ``x``'s shape, dtype and device.
    """
    m = _build_filter_matrix(x.shape[dim], tuple(kernel.tolist()), mode).to(device=x.device, dtype=x.dtype)
    return torch.matmul(x.movedim(dim, -1), m.T).movedim(-1, dim)


def gaussian_kernel1d(sigma: float, radius: int) -> torch.Tensor:
    """``exp(−t²/2σ²)`` on ``t = −radius..radius``, normalised to sum 1 (scipy.ndimage's kernel), float64 on CPU."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@lru_cache(maxsize=256)
def scipy_gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter``'s kernel: radius ``int(truncate·σ + 0.5)``, exp(−x²/2σ²), sum 1.

    σ = 0 gives the identity kernel ``[1]`` (as scipy does).
    """
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    return gaussian_kernel1d(sigma, radius)


@lru_cache(maxsize=64)
def cv2_gaussian_kernel1d(ksize: int, sigma: float) -> torch.Tensor:
    """``cv2.getGaussianKernel(ksize, sigma)`` for σ > 0: exp(−(i − (ksize−1)/2)² / 2σ²), normalised to sum 1."""
    xs = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(xs**2) / (2 * sigma * sigma))
    return k / k.sum()


def separable_filter(x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel with ``k_h`` along H and ``k_w`` along W (odd lengths), boundary ``mode``.

    Args:
        x: ``[B, C, H, W]``.
        k_h, k_w: 1-D kernels of odd length (any length: padding repeats reflections as needed).
    """
    h, w = x.shape[-2:]
    return filter_matrix(h, k_h, mode).to(x) @ x @ filter_matrix(w, k_w, mode).to(x).T


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """``cv2.filter2D(x, -1, kernel)`` per channel (correlation, anchor at the centre), boundary ``mode``.

    The kernel is split by SVD into separable rank-1 terms (dropping singular values below 1e-12 of the largest;
    the CIFAR-10-C disks have rank 1 or 2), each applied as two matrix products.

    Args:
        x: ``[B, C, H, W]``.
        kernel: ``[kh, kw]`` with odd sides.
    """
    u, sv, vh = torch.linalg.svd(kernel.to(torch.float64))
    out = None
    for i in range(len(sv)):
        if sv[i] <= 1e-12 * sv[0]:
            break
        term = separable_filter(x, u[:, i] * sv[i], vh[i], mode)
        out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(x)


@lru_cache(maxsize=256)
def clipped_zoom_matrix(n: int, zoom: float) -> torch.Tensor:
    """The reference's ``clipped_zoom`` along one axis of length ``n`` as a linear map ``[n, n]``.

    Reference: hendrycks/robustness make_cifar_c.py ``clipped_zoom``: crop the central ``ceil(n / z)`` pixels
    (top = (n − ch) // 2), ``scipy.ndimage.zoom(order=1)`` them to ``round(ch·z)`` pixels (scipy maps output
    ``o`` to input ``o·(ch − 1)/(out − 1)``, linear interpolation) and keep the central ``n`` (trim = (out − n) // 2).
    Row ``i`` of the result holds the weights of output pixel ``i`` on the input pixels.
    """
    ch = int(math.ceil(n / zoom))
    top = (n - ch) // 2
    out = int(round(ch * zoom))
    trim = (out - n) // 2
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        o = i + trim
        coord = o * (ch - 1) / (out - 1) if out > 1 else 0.0
        lo = min(int(math.floor(coord)), ch - 1)
        frac = coord - lo
        m[i, top + lo] += 1.0 - frac
        if frac > 0:
            m[i, top + lo + 1] += frac
    return m


@lru_cache(maxsize=256)
def pil_box_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """``PIL.Image.resize(..., Image.BOX)`` along one axis as a matrix ``[out_size, in_size]``.

    PIL's ``precompute_coeffs`` (libImaging/Resample.c) with the box filter (1 on (−½, ½], else 0): output pixel
    ``xx`` is centred at ``(xx + ½)·in/out``; the filter is stretched by ``max(in/out, 1)``. Downscaling therefore
    averages, with equal weights, the input pixels whose centres fall in the output pixel; upscaling picks the
    input pixel ``floor((xx + ½)·in/out)`` (nearest neighbour).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        for x in range(xmin, xmax):
            t = (x - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                m[xx, x] = 1.0
        total = m[xx].sum()
        if total > 0:
            m[xx] /= total
    return m


def motion_blur_kernel(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick ``MotionBlurImage``'s one-sided kernel: ``2·ceil(radius) + 1`` taps, exp(−i²/2σ²), sum 1."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma * sigma))
    return k / k.sum()


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's ``MagickMotionBlurImage(radius, sigma, angle)`` (Wand's ``motion_blur``), one angle per image.

    Output pixel (u, v) = Σ_i k_i · x(u + ox_i, v + oy_i) with the one-sided Gaussian ``k`` of
    :func:`motion_blur_kernel`, ``ox_i = ceil(i·cos θ − ½)``, ``oy_i = ceil(i·sin θ − ½)`` (u = column, v = row)
    and edge-replicating borders (ImageMagick's default virtual-pixel method).

    Vectorised without per-image loops: images are sorted by angle, so for every tap the images that share an
    integer offset form contiguous runs, and each run adds one shifted slice of the edge-padded batch.

    Args:
        x: ``[B, C, H, W]``.
        radius, sigma: in pixels.
        angle_deg: ``[B]`` angles in degrees.
    """
    b, c, h, w = x.shape
    k = motion_blur_kernel(radius, sigma).tolist()
    theta = torch.deg2rad(angle_deg.detach().to("cpu", torch.float64))
    order = torch.argsort(theta)
    taps = torch.arange(len(k), dtype=torch.float64)
    ox = torch.ceil(taps[None] * torch.cos(theta[order])[:, None] - 0.5).long()  # [B, T], sorted by angle
    oy = torch.ceil(taps[None] * torch.sin(theta[order])[:, None] - 0.5).long()
    r = len(k) - 1
    padded = F.pad(x[order.to(x.device)], (r, r, r, r), mode="replicate")
    out = torch.zeros_like(x)
    for t, weight in enumerate(k):
        key = oy[:, t] * (4 * r + 1) + ox[:, t]
        starts = torch.cat(
            [torch.tensor([0]), torch.nonzero(key[1:] != key[:-1]).flatten() + 1, torch.tensor([b])]
        ).tolist()
        for s0, s1 in zip(starts[:-1], starts[1:]):
            dy, dx = int(oy[s0, t]), int(ox[s0, t])
            out[s0:s1].add_(padded[s0:s1, :, r + dy : r + dy + h, r + dx : r + dx + w], alpha=weight)
    return out[torch.argsort(order).to(x.device)]
