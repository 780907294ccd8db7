"""Seeded random textures for the weather corruptions: the plasma fractal (fog) and a procedural frost layer.

Everything is batched: one texture per image, drawn from the caller's ``torch.Generator``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from rulab.data.corruptions._contract import rand, uniform

__all__ = ["plasma_fractal", "value_noise", "frost_texture"]


def plasma_fractal(
    batch: int, mapsize: int, wibbledecay: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Diamond-square height maps, one per image, min-max scaled to [0, 1]: ``[batch, mapsize, mapsize]``.

    Reference: hendrycks/robustness make_cifar_c.py ``plasma_fractal`` (after FLHerne/mapgen), reproduced
    step for step, including its quirk that the random offset is ``wibble · U(−wibble, wibble)`` (the wibble
    enters twice) with wibble = 100 at the first step, divided by ``wibbledecay`` after each step.

    Args:
        batch: number of maps.
        mapsize: side length, a power of two.
        wibbledecay: roughness decay; larger = smoother.
        like: a tensor giving dtype and device.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    n = mapsize
    m = torch.zeros(batch, n, n, dtype=like.dtype, device=like.device)
    step = n
    wibble = 100.0

    def wibbled_mean(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * uniform(a.shape, -wibble, wibble, generator, a)

    while step >= 2:
        half = step // 2
        # fill squares: centre of each square = mean of its 4 corners + noise
        corner = m[:, 0:n:step, 0:n:step]
        acc = corner + torch.roll(corner, -1, dims=1)
        acc = acc + torch.roll(acc, -1, dims=2)
        m[:, half:n:step, half:n:step] = wibbled_mean(acc)
        # fill diamonds: edge midpoints = mean of the 2 adjacent corners and 2 adjacent centres + noise
        dr = m[:, half:n:step, half:n:step]
        ul = m[:, 0:n:step, 0:n:step]
        lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
        m[:, 0:n:step, half:n:step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
        m[:, half:n:step, 0:n:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    flat = m.reshape(batch, -1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / flat.amax(dim=1, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
    return flat.reshape(batch, n, n)


@lru_cache(maxsize=64)
def _bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``F.interpolate(mode="bicubic", align_corners=True)`` from ``n_in`` to ``n_out`` samples as ``[n_out, n_in]``."""
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)
    return F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=True)[:, 0, :, 0].T.contiguous()


def value_noise(
    batch: int, h: int, w: int, cells: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Smooth noise ``[batch, 1, h, w]``: U[0, 1) on a coarse grid of ``cells`` pixels, bicubically upsampled."""
    gh, gw = max(2, round(h / cells) + 1), max(2, round(w / cells) + 1)
    grid = rand((batch, 1, gh, gw), generator, like)
    return (_bicubic_matrix(gh, h).to(like) @ grid @ _bicubic_matrix(gw, w).to(like).T).clamp_(0, 1)


# Bluish-white tint of frost photographs (R, G, B); grey images get its luminance.
_FROST_TINT = (0.86, 0.93, 1.0)


def frost_texture(
    batch: int, channels: int, h: int, w: int, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """A procedural frost layer ``[batch, channels, h, w]`` in [0, 1] (mean ≈ 0.35, std ≈ 0.18), one per image.

    The reference (make_cifar_c.py ``frost``) blends in a random 32×32 crop of one of six frost photographs
    downscaled by 5; we do not ship those photographs, so this draws a seeded substitute with the same role:
    a cloudy base (three octaves of value noise at ~16, 8 and 4 pixels per cell, relative to a 32-pixel image)
    plus thin bright ice veins (ridged noise, ``(1 − |2n − 1|)^6``, at ~6 and ~3 pixels per cell), tinted
    bluish-white. It is an approximation of the look, not of the photographs' exact statistics.

    Args:
        batch: number of textures.
        channels: 1 (grey) or 3 (RGB).
        h, w: size in pixels; cell sizes scale with ``min(h, w) / 32``.
        like: a tensor giving dtype and device.
    """
    s = min(h, w) / 32.0
    base = (
        0.55 * value_noise(batch, h, w, 16 * s, generator, like)
        + 0.3 * value_noise(batch, h, w, 8 * s, generator, like)
        + 0.15 * value_noise(batch, h, w, 4 * s, generator, like)
    )
    veins = torch.zeros_like(base)
    for cells, weight in ((6 * s, 0.6), (3 * s, 0.4)):
        n = value_noise(batch, h, w, cells, generator, like)
        veins = veins + weight * (1 - (2 * n - 1).abs()).pow(6)
    grey = (0.4 * base + 1.0 * veins).clamp(0, 1)
    tint = torch.tensor(_FROST_TINT, dtype=like.dtype, device=like.device)
    if channels == 1:
        tint = (tint * torch.tensor((0.299, 0.587, 0.114), dtype=like.dtype, device=like.device)).sum().view(1)
    return grey * tint.view(1, channels, 1, 1)
