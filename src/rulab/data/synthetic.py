"""Synthetic OOD and noise families, generated in pixel space [0, 1] (convention 1 in docs/conventions.md;
the families are listed in docs/protocols/index.md).

Two layers:

* **Pure generators** on float tensors, each with an explicit :class:`torch.Generator`:
  :func:`gaussian`, :func:`gaussian_odin`, :func:`rademacher`, :func:`rademacher_gray`, :func:`blobs`,
  :func:`uniform` draw ``[N, C, H, W]`` images; :func:`permuted_pixels`, :func:`lowpass` and :func:`hein_noise`
  transform given images. Random numbers are always drawn on the generator's device and the result is then moved
  to the requested device (or the input's), so a CPU generator gives the same images whatever the target device.
* **Registered OOD sets** (``OOD_SETS.create(name, shape=(C, H, W), n=..., seed=...)``) that return a uint8
  :class:`~rulab.data.tensors.TensorDataset` with ``y = -1``, and :class:`NoiseStream`, which yields the very same
  images as float chunks without ever holding the whole set (for 10⁶-image benchmarks).

Streams and sets generate images in independent **blocks** of :data:`BLOCK` = 128 images, block ``k`` drawn with its
own generator seeded from ``(name, seed, k)``. The images therefore do not depend on the chunk size a consumer asks
for, and each block is one "batch" of W3's low-pass filter (one σ per block, as W3 draws one σ per test batch of 128
in its ``evaluation.py``).

W1 defines its noise in normalised space (W1's ``uncertainty/CIFAR/test.py``). The pixel-space definitions here are the W1
equivalents under W1's mean = std = 0.5; ``parity_normalization=(mean, std)`` reproduces OE's literal normalised
draw under other statistics (docs/protocols/hendrycks2019.md "Synthetic sets"; the register of convention 5 in
docs/conventions.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from rulab.data.tensors import TensorDataset
from rulab.errors import InputError
from rulab.registry import OOD_SETS

__all__ = [
    "BLOCK",
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
    "pad_symmetric",
    "lowpass_sigma",
    "lowpass",
    "hein_noise",
    "noise_set",
    "NoiseStream",
]

Shape = tuple[int, int, int]
Normalization = tuple[Sequence[float] | float, Sequence[float] | float]

BLOCK = 128
"""Images per independently seeded block (W3's test batch size)."""
LOWPASS_RADIUS = 7
"""W3's low-pass kernel covers offsets −7..7 (15×15), as in its ``apply_random_lowpass``."""
LOWPASS_PAD = 15
"""W3 pads by the kernel width, 15 px per side, with TF 'SYMMETRIC' padding before the 'SAME' convolution."""
DEFAULT_N = 2000
"""Default size of a synthetic set: W1's OOD images per run, len(test) // 5 (W1's ``uncertainty/CIFAR/test.py``)."""


# --------------------------------------------------------------------------------------------------- helpers


def _check_shape(shape: Sequence[int]) -> Shape:
    if len(shape) != 3 or any(int(s) != s or s < 1 for s in shape):
        raise InputError(f"image shape must be three positive integers (C, H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_n(n: int) -> int:
    if int(n) != n or n < 0:
        raise InputError(f"the number of images must be a non-negative integer, got {n!r}")
    return int(n)


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
    c, h, w = _check_shape(shape)
    z = torch.randn(_check_n(n), c, h, w, generator=generator, device=generator.device)
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
    c, h, w = _check_shape(shape)
    b = torch.randint(0, 2, (_check_n(n), c, h, w), generator=generator, device=generator.device).float()
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
    c, h, w = _check_shape(shape)
    b = torch.randint(0, 2, (_check_n(n), 1, h, w), generator=generator, device=generator.device).float()
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
    c, h, w = _check_shape(shape)
    u = torch.rand(_check_n(n), c, h, w, generator=generator, device=generator.device)
    if parity_normalization is not None:
        u = _from_normalized(u.mul_(2.0).sub_(1.0), parity_normalization)
    return u.to(_target(generator, device))


# --------------------------------------------------------------------------------------------------- blobs


def _gaussian_kernel1d(sigma: float, radius: int) -> torch.Tensor:
    """``exp(−t²/2σ²)`` on ``t = −radius..radius``, normalised to sum 1 (scipy.ndimage's kernel), float64 on CPU."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _pad_index(length: int, pad: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source index of every position of an axis of ``length`` padded by ``pad`` on both sides.

    ``nearest`` repeats the edge value (scipy mode 'nearest', torch 'replicate'); ``symmetric`` mirrors with the edge
    included (numpy 'symmetric', TF 'SYMMETRIC': ``c b a | a b c | c b a``), repeating the mirror for wide pads.
    """
    i = torch.arange(-pad, length + pad, device=device)
    if mode == "nearest":
        return i.clamp(0, length - 1)
    i = i.remainder(2 * length)
    return torch.where(i >= length, 2 * length - 1 - i, i)


def _filter_matrix(length: int, kernel: torch.Tensor, mode: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``[length, length]`` matrix of a 1-D correlation with ``kernel`` after padding the axis by ``mode``.

    Row ``i`` holds ``Σ_t k[t]·e_{src(i + t)}`` with ``src`` the padded position's source index, so ``M @ v`` equals
    padding ``v`` and correlating it ('valid'). For image-sized axes the dense matmul is several times faster than
    sliding sums or a one-channel conv1d on CPU (about 9× for 32-px blobs). Built in float64, then cast.
    """
    taps = kernel.numel()
    src = _pad_index(length, (taps - 1) // 2, mode, torch.device("cpu"))
    rows = torch.arange(length).unsqueeze(1).expand(length, taps)
    cols = src[rows + torch.arange(taps)]
    m = torch.zeros(length, length, dtype=torch.float64)
    m.index_put_((rows, cols), kernel.to(torch.float64).expand(length, taps).clone(), accumulate=True)
    return m.to(device=device, dtype=dtype)


def _filter_axis(x: torch.Tensor, dim: int, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate ``x`` along ``dim`` with the odd-length 1-D ``kernel``, padding that axis by ``mode``; same size out."""
    m = _filter_matrix(x.shape[dim], kernel, mode, x.dtype, x.device)
    return torch.matmul(x.movedim(dim, -1), m.T).movedim(-1, dim)


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
    kernel = _gaussian_kernel1d(sigma, int(truncate * sigma + 0.5))
    for dim in (1, 2, 3):
        x = _filter_axis(x, dim, kernel, "nearest")
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
    c, h, w = _check_shape(shape)
    b = (torch.rand(_check_n(n), c, h, w, generator=generator, device=generator.device) < p).float()
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


def pad_symmetric(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes by ``pad`` on every side with edge-including mirroring (TF 'SYMMETRIC').

    Equal to ``numpy.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='symmetric')``, also for pads wider than
    the image (the mirror repeats). Note torch's ``'reflect'`` mode EXCLUDES the edge (``c b | a b c``), which is not
    what W3 uses.

    Args:
        x: ``[..., H, W]``.
        pad: pixels added on each side.

    Returns:
        ``[..., H + 2·pad, W + 2·pad]``.
    """
    h, w = x.shape[-2:]
    x = x.index_select(-2, _pad_index(h, pad, "symmetric", x.device))
    return x.index_select(-1, _pad_index(w, pad, "symmetric", x.device))


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
    kernel = _gaussian_kernel1d(sigma, LOWPASS_RADIUS)
    # W3 pads 15 px, convolves 'SAME' and crops 15 px; the kept outputs only read pixels within the kernel radius
    # (7 px) of the image, so symmetric padding by 7 and a valid correlation give the same numbers.
    y = _filter_axis(_filter_axis(x, 2, kernel, "symmetric"), 3, kernel, "symmetric")
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
    m = n if m is None else _check_n(m)
    if n == 0 and m > 0:
        raise InputError("hein_noise needs at least one base image")
    n_perm = math.floor(frac_perm * m)
    base = x.repeat(-(-n_perm // n) if n else 0, 1, 1, 1)[:n_perm]
    parts = [permuted_pixels(base, generator), uniform(m - n_perm, x.shape[1:], generator, device=x.device).to(x.dtype)]
    return lowpass(torch.cat(parts), generator, sigma=sigma, sigma_range=sigma_range)


# --------------------------------------------------------------------------------------------------- sets and streams

Block = tuple[torch.Tensor, dict[str, Any]]
BlockFn = Callable[..., Block]


def _noise_family(
    block: BlockFn, needs_base: bool = False, drop_last: bool = False
) -> Callable[[Callable[..., TensorDataset]], Callable[..., TensorDataset]]:
    """Attach the block generator that :class:`NoiseStream` uses to a registered OOD-set factory.

    ``block(n, shape, generator, base, **params) -> (x [n, C, H, W] in [0, 1], info)`` makes one block of images from
    one generator; ``base`` is the block's rows of the ID images (float, on the stream's device) or None.
    ``needs_base``: the family transforms ID images. ``drop_last``: its default size is ``len(base)`` rounded down
    to whole blocks (W3's test loader).
    """

    def decorate(factory: Callable[..., TensorDataset]) -> Callable[..., TensorDataset]:
        factory.noise_block = block  # type: ignore[attr-defined]
        factory.needs_base = needs_base  # type: ignore[attr-defined]
        factory.drop_last = drop_last  # type: ignore[attr-defined]
        return factory

    return decorate


def _family(name: str) -> Callable[..., TensorDataset]:
    factory = OOD_SETS.get(name)
    if not hasattr(factory, "noise_block"):
        synthetic = [k for k in OOD_SETS.list() if hasattr(OOD_SETS.get(k), "noise_block")]
        raise InputError(f"OOD set '{name}' is not a synthetic noise family; choose one of {', '.join(synthetic)}")
    return factory


_SET_ARGS = ("shape", "n", "seed", "root", "base")


def _block_seed(name: str, seed: int, index: int) -> int:
    digest = hashlib.blake2b(f"rulab.noise:{name}:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class NoiseStream:
    """Iterate over a synthetic family's images as float chunks without materialising the whole set.

    Images come in blocks of :data:`BLOCK`; block ``k`` is drawn by a generator seeded from ``(name, seed, k)`` on
    ``device``. So the images depend on ``(name, seed, n, params)`` and the device type (CPU and CUDA random streams
    differ) but NOT on ``chunk``, and they are exactly the images of ``OOD_SETS.create(name, ...)`` before rounding to
    uint8. At most ``chunk + BLOCK`` images are held at a time.

    Args:
        name: a registered synthetic OOD set (``gaussian``, ``blobs``, ``hein``, ...).
        shape: ``(C, H, W)``.
        n: total number of images.
        seed: base seed.
        chunk: images per yielded tensor (the last chunk may be shorter).
        base: ID images for ``permuted`` / ``hein`` (a TensorDataset or a uint8 ``[N, C, H, W]`` tensor); output image
            ``i`` is built from base row ``i mod len(base)``.
        device: where images are generated (default CPU).
        **params: family parameters (``mean``, ``sigma``, ``frac_perm``, ``parity_normalization``, ...).

    Example:
        >>> for x in NoiseStream("uniform", (3, 32, 32), n=10**6, seed=0, chunk=4096):
        ...     scores.append(model(x).softmax(1).amax(1))
    """

    def __init__(
        self,
        name: str,
        shape: Sequence[int],
        n: int,
        seed: int = 0,
        chunk: int = 1024,
        *,
        base: TensorDataset | torch.Tensor | None = None,
        device: torch.device | str | None = None,
        **params: Any,
    ) -> None:
        factory = _family(name)
        self.name = name
        self.shape = _check_shape(shape)
        self.n = _check_n(n)
        self.seed = int(seed)
        if int(chunk) != chunk or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = int(chunk)
        self.device = torch.device("cpu" if device is None else device)
        valid = [k for k in OOD_SETS.parameters(name) if k not in _SET_ARGS]
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise InputError(f"noise family '{name}' has no parameter {', '.join(map(repr, unknown))}; valid parameters: {', '.join(valid) or '(none)'}")
        self.params = params
        self._block = factory.noise_block
        base_x = base.x if isinstance(base, TensorDataset) else base
        if factory.needs_base:
            if base_x is None or len(base_x) == 0:
                raise InputError(f"OOD set '{name}' is built from in-distribution images; pass base=<the ID test set>")
            if tuple(base_x.shape[1:]) != self.shape:
                raise InputError(f"base images have shape {tuple(base_x.shape[1:])} but shape={self.shape} was requested; make them match")
            self._base: torch.Tensor | None = base_x
        else:
            self._base = None

    def __len__(self) -> int:
        """Number of chunks."""
        return -(-self.n // self.chunk)

    def block_generator(self, index: int) -> torch.Generator:
        """The generator of block ``index`` (seeded from name, seed and index)."""
        return torch.Generator(device=self.device).manual_seed(_block_seed(self.name, self.seed, index))

    def _base_rows(self, start: int, stop: int) -> torch.Tensor | None:
        if self._base is None:
            return None
        idx = torch.arange(start, stop) % len(self._base)
        rows = self._base[idx]
        if rows.dtype == torch.uint8:
            return rows.to(self.device).float().div_(255)
        return rows.to(self.device, torch.float32)

    def blocks(self) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
        """Yield ``(x [≤BLOCK, C, H, W] float in [0, 1], info)`` per block; ``info`` holds e.g. the block's low-pass σ."""
        for k, start in enumerate(range(0, self.n, BLOCK)):
            stop = min(start + BLOCK, self.n)
            x, info = self._block(stop - start, self.shape, self.block_generator(k), self._base_rows(start, stop), **self.params)
            yield x.to(self.device), info

    def __iter__(self) -> Iterator[torch.Tensor]:
        pending: list[torch.Tensor] = []
        have = 0
        for x, _ in self.blocks():
            pending.append(x)
            have += len(x)
            while have >= self.chunk:
                buf = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield buf[: self.chunk]
                pending, have = [buf[self.chunk :]], have - self.chunk
        if have:
            yield torch.cat(pending)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def noise_set(
    name: str,
    shape: Sequence[int],
    n: int | None = None,
    seed: int = 0,
    base: TensorDataset | None = None,
    **params: Any,
) -> TensorDataset:
    """Materialise a synthetic family as a uint8 :class:`TensorDataset` (``y = -1``), block by block.

    Images are those of :class:`NoiseStream` with the same arguments, rounded to ``round(255·x)``. The default size is
    2,000 (W1's images per run), or for base families ``len(base)`` (``hein``: ``len(base)`` rounded down to whole
    batches of 128, W3's drop_last). ``meta`` records the family, its parameters, the seed, the block size, the base
    set's name and, for low-pass families, the σ of every block.
    """
    factory = _family(name)
    if factory.needs_base and base is None:
        raise InputError(f"OOD set '{name}' is built from in-distribution images; pass base=<the ID test set>")
    if n is None:
        n = DEFAULT_N if base is None or not factory.needs_base else len(base)
        if factory.drop_last:
            n = n // BLOCK * BLOCK
            if n == 0:
                raise InputError(f"OOD set '{name}' uses whole batches of {BLOCK} base images but base has {len(base)}; pass n= or a larger base set")
    stream = NoiseStream(name, shape, n, seed, chunk=BLOCK, base=base if factory.needs_base else None, **params)
    out = torch.empty((stream.n, *stream.shape), dtype=torch.uint8)
    sigmas: list[float] = []
    start = 0
    for x, info in stream.blocks():
        out[start : start + len(x)] = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu()
        start += len(x)
        if "sigma" in info:
            sigmas.append(info["sigma"])
    meta: dict[str, Any] = {
        "family": name,
        "params": {k: _jsonable(v) for k, v in params.items()},
        "seed": int(seed),
        "n": stream.n,
        "block": BLOCK,
        "pixel_space": params.get("parity_normalization") is None,
    }
    if factory.needs_base:
        meta["base"] = base.name if base is not None else ""
    if sigmas:
        meta["lowpass_sigmas"] = sigmas
    return TensorDataset(out, torch.full((stream.n,), -1, dtype=torch.int64), [], name, "generated", meta)


def _drawn(fn: Callable[..., torch.Tensor]) -> BlockFn:
    """Block generator of a family that needs no base images: ``fn(n, shape, generator, **params)``."""

    def block(n: int, shape: Shape, g: torch.Generator, base: torch.Tensor | None, **params: Any) -> Block:
        return fn(n, shape, g, **params), {}

    return block


def _block_lowpass_noise(
    n: int,
    shape: Shape,
    g: torch.Generator,
    base: torch.Tensor | None,
    *,
    sigma_range: tuple[float,
    float] = (1.0, 2.5),
) -> Block:
    sigma = lowpass_sigma(g, sigma_range)
    return lowpass(uniform(n, shape, g), sigma=sigma), {"sigma": sigma}


def _block_permuted(n: int, shape: Shape, g: torch.Generator, base: torch.Tensor | None) -> Block:
    return permuted_pixels(base, g), {}


def _block_hein(
    n: int,
    shape: Shape,
    g: torch.Generator,
    base: torch.Tensor | None,
    *,
    frac_perm: float = 0.5,
    sigma_range: tuple[float,
    float] = (1.0, 2.5),
) -> Block:
    sigma = lowpass_sigma(g, sigma_range)
    return hein_noise(base, g, frac_perm, m=n, sigma=sigma), {"sigma": sigma}


@OOD_SETS.register("gaussian")
@_noise_family(_drawn(gaussian))
def gaussian_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    mean: float = 0.5,
    std: float = 0.25,
    parity_normalization: Normalization | None = None,
) -> TensorDataset:
    """W1 Gaussian noise set, :func:`gaussian` (default 2,000 images; ``root`` and ``base`` are unused)."""
    return noise_set("gaussian", shape, n, seed, mean=mean, std=std, parity_normalization=parity_normalization)


@OOD_SETS.register("gaussian_odin")
@_noise_family(_drawn(gaussian_odin))
def gaussian_odin_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
) -> TensorDataset:
    """ODIN Gaussian noise set, :func:`gaussian_odin` (ODIN used 10,000, of which 9,000 are scored)."""
    return noise_set("gaussian_odin", shape, n, seed)


@OOD_SETS.register("rademacher")
@_noise_family(_drawn(rademacher))
def rademacher_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    parity_normalization: Normalization | None = None,
) -> TensorDataset:
    """W1 Rademacher noise set, :func:`rademacher`."""
    return noise_set("rademacher", shape, n, seed, parity_normalization=parity_normalization)


@OOD_SETS.register("rademacher_gray")
@_noise_family(_drawn(rademacher_gray))
def rademacher_gray_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    parity_normalization: Normalization | None = None,
) -> TensorDataset:
    """W1 validation-only grey Rademacher set, :func:`rademacher_gray`."""
    return noise_set("rademacher_gray", shape, n, seed, parity_normalization=parity_normalization)


@OOD_SETS.register("blobs")
@_noise_family(_drawn(blobs))
def blobs_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    p: float = 0.7,
    sigma: float | None = None,
    threshold: float = 0.75,
    parity_normalization: Normalization | None = None,
) -> TensorDataset:
    """W1 Blobs set, :func:`blobs`; ``sigma`` defaults to :func:`blobs_sigma` of the height (recorded in ``meta``)."""
    sigma = blobs_sigma(_check_shape(shape)[1]) if sigma is None else sigma
    return noise_set("blobs", shape, n, seed, p=p, sigma=sigma, threshold=threshold, parity_normalization=parity_normalization)


@OOD_SETS.register("uniform")
@_noise_family(_drawn(uniform))
def uniform_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    parity_normalization: Normalization | None = None,
) -> TensorDataset:
    """Uniform noise set ``U[0, 1]`` (W3, W4; W1 validation), :func:`uniform`."""
    return noise_set("uniform", shape, n, seed, parity_normalization=parity_normalization)


@OOD_SETS.register("lowpass_noise")
@_noise_family(_block_lowpass_noise)
def lowpass_noise_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> TensorDataset:
    """W3 noise without ID images: low-pass filtered uniform noise, one σ per block of 128 (:func:`lowpass`).

    This is :func:`hein_noise` built from uniform base images: permuting the pixels of i.i.d. uniform noise leaves its
    distribution unchanged, so every image is simply ``lowpass(U[0, 1])``.
    """
    return noise_set("lowpass_noise", shape, n, seed, sigma_range=sigma_range)


@OOD_SETS.register("permuted")
@_noise_family(_block_permuted, needs_base=True)
def permuted_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
) -> TensorDataset:
    """W3 permuted-pixel images of the ID test set ``base`` (:func:`permuted_pixels`; default ``len(base)`` images)."""
    return noise_set("permuted", shape, n, seed, base=base)


@OOD_SETS.register("hein")
@_noise_family(_block_hein, needs_base=True, drop_last=True)
def hein_set(
    shape: tuple[int, int, int],
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    base: TensorDataset | None = None,
    *,
    frac_perm: float = 0.5,
    sigma_range: tuple[float, float] = (1.0, 2.5),
) -> TensorDataset:
    """W3's evaluation noise (its ``evaluation.py``): :func:`hein_noise` of every test batch of 128 of ``base``.

    Default size ``len(base)`` rounded down to whole batches (drop_last: 10,000 → 9,984); per batch the first 64
    images are permuted test images and the other 64 uniform noise, all low-pass filtered with the batch's σ.
    """
    return noise_set("hein", shape, n, seed, base=base, frac_perm=frac_perm, sigma_range=sigma_range)
