"""Noise corruptions of CIFAR-10-C: Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise.

Parameters: the CIFAR-10-C tables of Hendrycks & Dietterich (ICLR 2019), hendrycks/robustness
``ImageNet-C/create_c/make_cifar_c.py``. Noise is per pixel and per channel; none of these depends on image size.
"""

from __future__ import annotations

import torch

from rulab.data.corruptions._contract import corruption, poisson, rand, randn

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise"]

_GAUSSIAN_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
_SHOT_PHOTONS = (500, 250, 100, 75, 50)
_IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)


@corruption("gaussian_noise", stochastic=True)
def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, c²) noise to every pixel and channel; c = 0.04, 0.06, 0.08, 0.09, 0.10 (CIFAR-10-C table).

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the noise.

    Returns:
        ``clip(x + c·ε, 0, 1)``, same shape and dtype.
    """
    c = _GAUSSIAN_STD[severity - 1]
    return x + c * randn(x.shape, generator, x)


@corruption("shot_noise", stochastic=True)
def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photon (Poisson) noise: ``Poisson(x·λ) / λ`` with λ = 500, 250, 100, 75, 50 (CIFAR-10-C table).

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the noise.
    """
    lam = float(_SHOT_PHOTONS[severity - 1])
    return poisson(x * lam, generator) / lam


@corruption("impulse_noise", stochastic=True)
def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper noise: each pixel and channel is replaced with probability a = 0.01, 0.02, 0.03, 0.05, 0.07.

    Same as the reference's ``skimage.util.random_noise(mode="s&p", amount=a)`` (salt_vs_pepper = 0.5): a replaced
    value becomes 1 or 0 with equal probability, independently per channel.

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        severity: 1..5.
        generator: source of the noise.
    """
    amount = _IMPULSE_AMOUNT[severity - 1]
    flipped = rand(x.shape, generator, x) < amount
    salted = rand(x.shape, generator, x) < 0.5
    return torch.where(flipped, salted.to(x.dtype), x)
