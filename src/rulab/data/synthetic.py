"""Synthetic OOD and noise images, generated in pixel space [0, 1] (convention 1 in docs/conventions.md;
the families are listed in docs/protocols/index.md).

**Pure generators** on float tensors, each with an explicit :class:`torch.Generator`:
:func:`gaussian`, :func:`gaussian_odin`, :func:`rademacher`, :func:`rademacher_gray`, :func:`blobs`,
:func:`uniform` draw ``[N, C, H, W]`` images; :func:`permuted_pixels`, :func:`lowpass` and :func:`hein_noise`
transform given images. Random numbers are always drawn on the generator's device and the result is then moved
to the requested device (or the input's), so a CPU generator gives the same images whatever the target device.
The OOD sets and streams made of them are in :mod:`rulab.data.ood.noise_sets`; the filters they use (W1's 3-D blur,
W3's low-pass) are the shared ones of :mod:`rulab.data.filters`.

W1 defines its noise in normalised space (W1's ``uncertainty/CIFAR/test.py``). The pixel-space definitions here are the W1
equivalents under W1's mean = std = 0.5; ``parity_normalization=(mean, std)`` reproduces OE's literal normalised
draw under other statistics (docs/protocols/hendrycks2019.md "Synthetic sets"; the register of convention 5 in
docs/conventions.md).

One concern, in one file of about 400 lines: the pure generators of the papers' synthetic images (no registry,
no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rulab.data.filters import filter_axis, gaussian_kernel1d
from rulab.data.tensors import check_count, check_image_shape
from rulab.errors import InputError

__all__ = [
    "LOWPASS_RADIUS",
    "LOWPASS_PAD",
    "gaussian",
    "gaussian_odin",
    "rademacher",
    "rademacher_gray",
    "blobs",
    "blobs_from_bernoulli",
    "blobs_sigma",
    "gaussian_filter_3d",
    "uniform",
    "permuted_pixels",
    "lowpass_sigma",
    "lowpass",
    "hein_noise",
]

Shape = tuple[int, int, int]
Normalization = tuple[Sequence[float] | float, Sequence[float] | float]

LOWPASS_RADIUS = 7
"""W3's low-pass kernel covers offsets −7..7 (15×15), as in its ``apply_random_lowpass``."""
LOWPASS_PAD = 15
"""W3 pads by the kernel width, 15 px per side, with TF 'SYMMETRIC' padding before the 'SAME' convolution."""


# --------------------------------------------------------------------------------------------------- helpers


def _check_images(x: torch.Tensor, what: str, floating: bool = True) -> None:
    if x.ndim != 4:
        raise InputError(f"{what} needs images [N, C, H, W], got a tensor of shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise InputError(f"{what} needs float images in [0, 1], got {x.dtype}; convert with x.float() / 255")


def _target(generator: torch.Generator, device: torch.device | str | None) -> torch.device:
    return generator.device if device is None else torch.device(device)


def _channel_stats(values: Sequence[float] | float, c: int, what: str) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() not in (1, c):
        raise InputError(f"parity_normalization {what} needs 1 or {c} values (one per channel), got {v.numel()}")
    return v.expand(c).reshape(1, c, 1, 1).clone()


def _from_normalized(v: torch.Tensor, parity_normalization: Normalization) -> torch.Tensor:
    """Pixel image that a literal normalised-space draw ``v`` denotes: ``μ_c + σ_c·v``, clipped to [0, 1].

    The clip only acts when ``[μ_c − σ_c, μ_c + σ_c]`` leaves [0, 1] (never for W1's 0.5/0.5 or CIFAR's statistics);
    such values are not representable as pixels.
    """
    c = v.shape[1]
    mean = _channel_stats(parity_normalization[0], c, "mean").to(v.device, v.dtype)
    std = _channel_stats(parity_normalization[1], c, "std").to(v.device, v.dtype)
    return (mean + std * v).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------------- draws


def gaussian(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator,
    mean: float = 0.5,
    std: float = 0.25,
    *,
    device: torch.device | str | None = None,
    parity_normalization: Normalization | None = None,
) -> torch.Tensor:
    """W1 Gaussian noise: ``clip(N(mean, std²), 0, 1)`` i.i.d. per element (W1's ``uncertainty/CIFAR/test.py``).

    With the defaults this is W1's ``clip(N(0, 0.5²), −1, 1)`` in normalised space under μ = σ = 0.5; about
    2·Φ(−2) ≈ 4.55% of the values sit at 0 or 1.

    Args:
        n: number of images.
        shape: ``(C, H, W)``.
        generator: source of randomness (draws happen on its device).
        mean: pixel mean.
        std: pixel standard deviation before clipping.
        device: where the result lives (default: the generator's device).
        parity_normalization: ``(mean_c, std_c)`` of the ID normalisation to reproduce OE/W1 literally: the draw is
            ``v = clip(N(0, 0.5²), −1, 1)`` in normalised space and the pixel image is ``μ_c + σ_c·v`` (``mean`` and
            ``std`` are then unused). With ``(0.5, 0.5)`` this equals the default draw.

    Returns:
        ``float32 [n, C, H, W]`` in [0, 1].
    """
    c, h, w = check_image_shape(shape)
    z = torch.randn(check_count(n), c, h, w, generator=generator, device=generator.device)
    if parity_normalization is not None:
        x = _from_normalized(z.mul_(0.5).clamp_(-1.0, 1.0), parity_normalization)
    else:
        x = z.mul_(std).add_(mean).clamp_(0.0, 1.0)
    return x.to(_target(generator, device))


def gaussian_odin(
    n: int, shape: Sequence[int], generator: torch.Generator, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """ODIN's Gaussian noise: ``clip(N(0.5, 1), 0, 1)`` i.i.d. per element, generated in pixel space (ODIN's ``code/calData.py``).

    Returns:
        ``float32 [n, C, H, W]`` in [0, 1]; about 2·Φ(−0.5) ≈ 62% of the values are exactly 0 or 1.
    """
    return gaussian(n, shape, generator, mean=0.5, std=1.0, device=device)


def rademacher(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
    parity_normalization: Normalization | None = None,
) -> torch.Tensor:
    """W1 Rademacher noise: each element (every pixel and every channel) is 0 or 1 with probability ½ (W1's ``uncertainty/CIFAR/test.py``).

    Args:
        parity_normalization: ``(mean_c, std_c)``: the literal OE draw ``v ∈ {−1, +1}`` mapped to ``μ_c ± σ_c``.

    Returns:
        ``float32 [n, C, H, W]`` with values in {0, 1} (or {μ_c − σ_c, μ_c + σ_c} in parity mode).
    """
    c, h, w = check_image_shape(shape)
    b = torch.randint(0, 2, (check_count(n), c, h, w), generator=generator, device=generator.device).float()
    if parity_normalization is not None:
        b = _from_normalized(b.mul_(2.0).sub_(1.0), parity_normalization)
    return b.to(_target(generator, device))


def rademacher_gray(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
    parity_normalization: Normalization | None = None,
) -> torch.Tensor:
    """W1's validation-only "Rademacher pixel" noise: one {0, 1} map of shape ``[1, H, W]`` repeated over the C channels.

    Returns:
        ``float32 [n, C, H, W]``, grey (all channels equal before a parity mapping), values in {0, 1}.
    """
    c, h, w = check_image_shape(shape)
    b = torch.randint(0, 2, (check_count(n), 1, h, w), generator=generator, device=generator.device).float()
    b = b.expand(-1, c, -1, -1).contiguous()
    if parity_normalization is not None:
        b = _from_normalized(b.mul_(2.0).sub_(1.0), parity_normalization)
    return b.to(_target(generator, device))


def uniform(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
    parity_normalization: Normalization | None = None,
) -> torch.Tensor:
    """Uniform noise ``U[0, 1]`` i.i.d. per element (W3's training noise, W4's Uniform set; W1's validation-only set).

    Args:
        parity_normalization: ``(mean_c, std_c)``: OE's literal draw ``v ~ U[−1, 1]`` mapped to ``μ_c + σ_c·v``.

    Returns:
        ``float32 [n, C, H, W]`` in [0, 1).
    """
    c, h, w = check_image_shape(shape)
    u = torch.rand(check_count(n), c, h, w, generator=generator, device=generator.device)
    if parity_normalization is not None:
        u = _from_normalized(u.mul_(2.0).sub_(1.0), parity_normalization)
    return u.to(_target(generator, device))


# --------------------------------------------------------------------------------------------------- blobs


def gaussian_filter_3d(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Isotropic Gaussian filter over the channel AND both spatial axes of every image, edges in 'nearest' mode.

    Per image this equals ``scipy.ndimage.gaussian_filter(img_hwc, sigma, mode='nearest', truncate=truncate)``
    (and W1's skimage ``gaussian(..., multichannel=False)``), computed as three separable 1-D passes with
    replicate padding (each a small matrix product). Kernel radius ``int(truncate·σ + 0.5)``.

    Args:
        x: ``float [N, C, H, W]``.
        sigma: standard deviation in pixels (the same along every axis).
        truncate: kernel half-width in units of σ.

    Returns:
        ``[N, C, H, W]``, same dtype and device.
    """
    _check_images(x, "gaussian_filter_3d")
    if not sigma > 0:
        raise InputError(f"the blur sigma must be positive, got {sigma}")
    kernel = gaussian_kernel1d(sigma, int(truncate * sigma + 0.5))
    for dim in (1, 2, 3):
        x = filter_axis(x, dim, kernel, "edge")
    return x


def blobs_sigma(height: int) -> float:
    """W1's blob blur for an image height: ``σ = 1 + H/64``, the line through W1's two settings.

    CIFAR (32 px) → 1.5 and Tiny ImageNet (64 px) → 2 exactly as in W1's ``uncertainty/CIFAR/test.py``; Fashion-MNIST
    (28 px) → 1.4375. Pass ``sigma=`` explicitly to override.
    """
    return 1.0 + height / 64.0


def blobs_from_bernoulli(b: torch.Tensor, sigma: float, threshold: float = 0.75) -> torch.Tensor:
    """The deterministic part of W1's blobs: 3-D Gaussian blur of a {0, 1} field, then values below ``threshold`` → 0.

    Args:
        b: ``float [N, C, H, W]`` with entries in {0, 1} (the Bernoulli draw).
        sigma: blur σ in pixels (over channels, rows and columns).
        threshold: blurred values strictly below it are set to 0 (W1: 0.75).

    Returns:
        ``[N, C, H, W]`` with values in {0} ∪ [threshold, 1].
    """
    blurred = gaussian_filter_3d(b, sigma)
    return blurred.masked_fill_(blurred < threshold, 0.0)


def blobs(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator,
    p: float = 0.7,
    sigma: float | None = None,
    threshold: float = 0.75,
    *,
    device: torch.device | str | None = None,
    parity_normalization: Normalization | None = None,
) -> torch.Tensor:
    """W1 Blobs: ``b ~ Bernoulli(p)`` on H×W×C, a 3-D Gaussian filter over ALL three axes (the channel axis is blurred
    too; mode 'nearest', truncate 4), and values below 0.75 set to 0 (W1's ``uncertainty/CIFAR/test.py``).

    Args:
        n: number of images.
        shape: ``(C, H, W)``.
        generator: source of randomness.
        p: probability of a 1 in the Bernoulli field (W1: 0.7).
        sigma: blur σ in pixels; default :func:`blobs_sigma` (1.5 at 32 px, 2 at 64 px).
        threshold: W1: 0.75.
        device: where the result lives (default: the generator's device).
        parity_normalization: ``(mean_c, std_c)``: W1/OE feed ``v = 2b' − 1``; the pixel image is ``μ_c + σ_c·v``.

    Returns:
        ``float32 [n, C, H, W]``: 0 where the blurred field is below ``threshold``, the blurred value elsewhere.
    """
    c, h, w = check_image_shape(shape)
    b = (torch.rand(check_count(n), c, h, w, generator=generator, device=generator.device) < p).float()
    x = blobs_from_bernoulli(b, blobs_sigma(h) if sigma is None else sigma, threshold)
    if parity_normalization is not None:
        x = _from_normalized(x.mul_(2.0).sub_(1.0), parity_normalization)
    return x.to(_target(generator, device))


# --------------------------------------------------------------------------------------------------- W3 noise


def permuted_pixels(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """W3's permuted-pixel noise: per image, shuffle the H·W pixel positions, keeping each pixel's channel vector.

    The permutations come from sorting random 64-bit keys (one independent permutation per image, batched).
    W3's ``gen_rubbish_*`` noise (docs/protocols/hein2019.md).

    Args:
        x: images ``[N, C, H, W]`` (any dtype).
        generator: source of the permutations (keys drawn on its device).

    Returns:
        ``[N, C, H, W]`` on ``x``'s device: ``out[i, :, p] = x[i, :, π_i(p)]`` over flat positions ``p``.
    """
    _check_images(x, "permuted_pixels", floating=False)
    n, c, h, w = x.shape
    keys = torch.randint(-(2**62), 2**62, (n, h * w), generator=generator, device=generator.device)
    perm = keys.argsort(dim=1).to(x.device)
    return x.flatten(2).gather(2, perm.unsqueeze(1).expand(n, c, h * w)).view(n, c, h, w)


def lowpass_sigma(generator: torch.Generator, sigma_range: tuple[float, float] = (1.0, 2.5)) -> float:
    """Draw W3's low-pass σ ~ U[lo, hi] (one scalar from ``generator``); :func:`lowpass` draws it this way."""
    lo, hi = sigma_range
    if not 0 < lo <= hi:
        raise InputError(f"sigma_range must satisfy 0 < low <= high, got {sigma_range}")
    u = torch.rand(1, generator=generator, device=generator.device).item()
    return lo + (hi - lo) * u


def lowpass(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    sigma: float | None = None,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> torch.Tensor:
    """W3's random low-pass filter, then per-image min-max rescaling (W3's ``apply_random_lowpass``).

    ONE σ for the whole call (all images share it). The 15×15 kernel ``g(s)·g(t)`` on offsets ``−7..7`` is
    normalised to sum 1 and applied to each channel separately (no channel mixing). W3 pads the input by
    :data:`LOWPASS_PAD` = 15 px per side with symmetric (edge-including) padding, convolves 'SAME' and crops back;
    that equals symmetric padding by the kernel radius (7 px) and a valid convolution, which is what runs here, as
    two separable 1-D passes (each a small matrix product). Finally every image is rescaled to [0, 1] by its own
    min and max over all pixels and channels; a constant image (range at rounding level) becomes all zeros instead
    of W3's division by zero. At σ = 2.5 the fixed window spans ±2.8σ (a truncated Gaussian), as in W3.

    Args:
        x: ``float [N, C, H, W]``.
        generator: draws σ ~ U[sigma_range] (see :func:`lowpass_sigma`) when ``sigma`` is None.
        sigma: a fixed σ in pixels instead of a random one.
        sigma_range: W3: (1.0, 2.5).

    Returns:
        ``[N, C, H, W]`` on ``x``'s device; each non-constant image has minimum exactly 0 and maximum exactly 1.
    """
    _check_images(x, "lowpass")
    if sigma is None:
        if generator is None:
            raise InputError("lowpass needs either a generator to draw sigma or an explicit sigma")
        sigma = lowpass_sigma(generator, sigma_range)
    if not sigma > 0:
        raise InputError(f"the low-pass sigma must be positive, got {sigma}")
    kernel = gaussian_kernel1d(sigma, LOWPASS_RADIUS)
    # W3 pads 15 px, convolves 'SAME' and crops 15 px; the kept outputs only read pixels within the kernel radius
    # (7 px) of the image, so symmetric padding by 7 and a valid correlation give the same numbers.
    y = filter_axis(filter_axis(x, 2, kernel, "symmetric"), 3, kernel, "symmetric")
    lo = y.amin(dim=(1, 2, 3), keepdim=True)
    hi = y.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    # a constant input comes out constant up to rounding; stretching that rounding noise to [0, 1] would be garbage
    flat = span <= 64 * torch.finfo(y.dtype).eps * torch.maximum(hi.abs(), lo.abs())
    return torch.where(flat, 0.0, (y - lo) / torch.where(flat, 1.0, span))


def hein_noise(
    x: torch.Tensor,
    generator: torch.Generator,
    frac_perm: float = 0.5,
    m: int | None = None,
    sigma: float | None = None,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> torch.Tensor:
    """W3's training/evaluation noise batch (docs/protocols/hein2019.md "Noise"): permuted pixels and uniform noise, low-pass filtered.

    The base images are ``x`` repeated and cut to ``M`` rows (W3's ``concat([x, x, x])[:M]``); the first
    ``⌊frac_perm·M⌋`` become :func:`permuted_pixels` of their base image, the rest are :func:`uniform` noise, and the
    whole batch goes through :func:`lowpass` with one σ. Draw order: permutations, uniform, σ.

    Args:
        x: base images ``float [N, C, H, W]`` in [0, 1] (the current clean batch).
        generator: source of randomness.
        frac_perm: fraction of permuted-pixel images (W3: 0.5).
        m: number of noise images M (default N, W3's ``at_frac = 1``).
        sigma: fixed low-pass σ (default: drawn from ``sigma_range``).
        sigma_range: W3: (1.0, 2.5).

    Returns:
        ``[M, C, H, W]`` on ``x``'s device, each image rescaled to [0, 1].
    """
    _check_images(x, "hein_noise")
    if not 0.0 <= frac_perm <= 1.0:
        raise InputError(f"frac_perm must lie in [0, 1], got {frac_perm}")
    n = len(x)
    m = n if m is None else check_count(m)
    if n == 0 and m > 0:
        raise InputError("hein_noise needs at least one base image")
    n_perm = math.floor(frac_perm * m)
    base = x.repeat(-(-n_perm // n) if n else 0, 1, 1, 1)[:n_perm]
    parts = [permuted_pixels(base, generator), uniform(m - n_perm, x.shape[1:], generator, device=x.device).to(x.dtype)]
    return lowpass(torch.cat(parts), generator, sigma=sigma, sigma_range=sigma_range)
