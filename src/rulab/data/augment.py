"""Batched, seeded training augmentation on float ``[B, C, H, W]`` tensors in [0, 1].

Everything runs on whole batches on the batch's device (as airbench does: masked batch operations
instead of per-image PIL transforms): random crop with zero padding (torchvision
``RandomCrop(size, padding)``), horizontal and vertical flips, and rotation by a random angle with zero fill
(torchvision ``RandomRotation``, bilinear or nearest-neighbour), each drawn from an explicit ``torch.Generator``.

Named presets live in the ``AUGMENTATIONS`` registry and return an :class:`~rulab.config.AugmentCfg`:
``none``, ``flip``, ``fmnist`` (crop 2 + flip), ``cifar`` (crop 4 + flip, W1), ``svhn`` (crop 4, W3),
``w2_basic`` (flips p = 0.4, rotation 20° with p = 0.4, nearest, W2); sources in docs/protocols/.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rulab.config import AugmentCfg
from rulab.errors import ConfigError
from rulab.registry import AUGMENTATIONS

__all__ = ["augment_batch", "random_crop", "random_flip", "random_rotate"]


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def random_flip(x: torch.Tensor, p: float, generator: torch.Generator, dim: int = 3) -> torch.Tensor:
    """Flip each image along ``dim`` (3 = horizontal, 2 = vertical) with probability ``p``.

    Args:
        x: ``[B, C, H, W]``.
    """
    if p <= 0:
        return x
    mask = _uniform(len(x), generator, x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels per side and take a random ``H × W`` crop per image (one gather).

    Args:
        x: ``[B, C, H, W]``; padding in pixels.
    """
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    offs = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device).to(x.device)
    rows = (offs[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (offs[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[batch, rows, cols]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def random_rotate(
    x: torch.Tensor, max_deg: float, p: float, generator: torch.Generator, interpolation: str = "bilinear"
) -> torch.Tensor:
    """Rotate each image with probability ``p`` by an angle ~ U[-max_deg, max_deg] about its centre; zero fill.

    ``interpolation="bilinear"`` is torchvision's ``RandomRotation(max_deg, interpolation=BILINEAR)``;
    ``"nearest"`` is torchvision's default (``InterpolationMode.NEAREST``, which W2's ``RandomRotation(20)`` used):
    every output pixel is a copy of one input pixel (or the zero fill), so the image keeps its pixel values.

    Args:
        x: ``[B, C, H, W]``; max_deg in degrees.
        interpolation: ``"bilinear"`` or ``"nearest"``.
    """
    if interpolation not in ("bilinear", "nearest"):
        raise ConfigError(f"rotation interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    if max_deg <= 0 or p <= 0:
        return x
    b = len(x)
    apply = _uniform(b, generator, x.device) < p
    angle = (_uniform(b, generator, x.device) * 2 - 1) * math.radians(max_deg)
    angle = torch.where(apply, angle, torch.zeros_like(angle))
    if not bool(apply.any()):
        return x
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    rotated = F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    return torch.where(apply.view(-1, 1, 1, 1), rotated, x)


def augment_batch(x: torch.Tensor, cfg: AugmentCfg, generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentation ``cfg`` to a batch: crop → flips → rotation, in that order.

    Args:
        x: float ``[B, C, H, W]`` in [0, 1]; never modified in place.
        cfg: what to apply (probabilities, pixels, degrees).
        generator: source of randomness (its device may differ from ``x``'s).

    Returns:
        ``[B, C, H, W]`` in [0, 1].
    """
    x = random_crop(x, cfg.crop_padding, generator)
    x = random_flip(x, cfg.hflip, generator, dim=3)
    x = random_flip(x, cfg.vflip, generator, dim=2)
    return random_rotate(x, cfg.rotate_deg, cfg.rotate_p, generator, cfg.rotate_interp)


@AUGMENTATIONS.register("none")
def _none() -> AugmentCfg:
    return AugmentCfg(hflip=0.0)


@AUGMENTATIONS.register("flip")
def _flip() -> AugmentCfg:
    return AugmentCfg(hflip=0.5)


@AUGMENTATIONS.register("fmnist")
def _fmnist() -> AugmentCfg:
    return AugmentCfg(hflip=0.5, crop_padding=2)


@AUGMENTATIONS.register("cifar")
def _cifar() -> AugmentCfg:
    """W1's and W3's CIFAR augmentation (docs/protocols/): RandomCrop(32, padding=4) + RandomHorizontalFlip."""
    return AugmentCfg(hflip=0.5, crop_padding=4)


@AUGMENTATIONS.register("svhn")
def _svhn() -> AugmentCfg:
    """W3's SVHN augmentation: RandomCrop(32, padding=4) only (digits must not be flipped)."""
    return AugmentCfg(hflip=0.0, crop_padding=4)


@AUGMENTATIONS.register("tinyimagenet")
def _tin() -> AugmentCfg:
    """W1 Tiny ImageNet (OE ``TinyImageNet/baseline.py``): RandomCrop(64, padding=8) + flip."""
    return AugmentCfg(hflip=0.5, crop_padding=8)


@AUGMENTATIONS.register("w2_basic")
def _w2_basic() -> AugmentCfg:
    """W2 "basic" (report §6.1; ``jeffwiroj/ece228`` configs): horizontal and vertical flips with p = 0.4, rotation up to
    20° with p = 0.4, nearest-neighbour resampling (torchvision ``RandomRotation``'s default)."""
    return AugmentCfg(hflip=0.4, vflip=0.4, rotate_deg=20.0, rotate_p=0.4, rotate_interp="nearest")
