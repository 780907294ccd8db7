"""Barlow Twins self-supervised pre-training (Zbontar et al., ICML 2021; facebookresearch/barlowtwins ``main.py``;
W2 fine-tunes from its weights, report §4.3 and §6.2).

Two augmented views ``x¹, x²`` of the same images go through the backbone ``model.features`` and a projector
(:class:`rulab.models.heads.BarlowTwinsProjector`); each view's projections are standardised over the batch by
``BatchNorm1d(affine=False)``, and with ``C = BN(z¹)ᵀ BN(z²) / B`` (``[D, D]``)::

    L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²,     λ = 0.0051.

View augmentation: the loop gives two views augmented independently with ``data.augment`` (flips, crops). That is
too weak for self-supervision, so each view additionally gets, batched on tensors and drawn from the batch's
generator (a CPU-scale stand-in for the paper's RandomResizedCrop + ColorJitter + blur on RGB images):

* a random resized crop: area fraction ``s ~ U[crop_scale, 1]``, aspect ratio ``r`` log-uniform in [3/4, 4/3], a
  uniform position inside the image, resized back to ``H × W`` with bilinear interpolation;
* with probability 0.8, brightness ``x·b`` then contrast ``(x − x̄)·c + x̄`` (x̄ the image mean), ``b, c ~ U[1 − jitter,
  1 + jitter]``;
* additive Gaussian noise of standard deviation ``noise_std``, then clamping to [0, 1].

The objective uses no labels (``supervised = False``); fine-tune the backbone afterwards with ``train.init_from`` and
``train.reset_head`` (e.g. preset ``fmnist-barlow-ft``). Multi-process (DDP) training is not supported yet: the
reference sums C over GPUs, and the projector lives outside the DDP-wrapped model; a DDP model raises ConfigError.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.models.heads import BarlowTwinsProjector
from rulab.registry import METHODS

__all__ = ["BarlowTwins", "barlow_twins_loss", "ssl_augment"]


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float, bn: nn.Module) -> torch.Tensor:
    """``Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²`` with ``C = bn(z1)ᵀ bn(z2) / B``; ``z1, z2: [B, D]`` → scalar."""
    c = bn(z1).T @ bn(z2) / len(z1)
    diag = torch.diagonal(c)
    on = (1.0 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on + lambd * off


def _u(n: int, lo: float, hi: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device)).to(device)


def ssl_augment(
    x: torch.Tensor, generator: torch.Generator, crop_scale: float = 0.35, jitter: float = 0.4, noise_std: float = 0.03
) -> torch.Tensor:
    """Random resized crop, brightness/contrast jitter (p = 0.8) and Gaussian noise, batched (see the module docstring).

    Args:
        x: ``[B, C, H, W]`` in [0, 1]; never modified in place.
        generator: source of randomness.
        crop_scale: smallest crop area as a fraction of the image (1 = no cropping).
        jitter: brightness and contrast factors are drawn from ``U[1 − jitter, 1 + jitter]``.
        noise_std: standard deviation of the additive noise, pixel units.

    Returns:
        ``[B, C, H, W]`` in [0, 1].
    """
    b, dev = len(x), x.device
    area = _u(b, crop_scale, 1.0, generator, dev)
    ratio = torch.exp(_u(b, math.log(3 / 4), math.log(4 / 3), generator, dev))
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (_u(b, -1.0, 1.0, generator, dev)) * (1 - w)
    cy = (_u(b, -1.0, 1.0, generator, dev)) * (1 - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1).to(x.dtype)
    x = F.grid_sample(
        x,
        F.affine_grid(theta, list(x.shape), align_corners=False),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    apply = (_u(b, 0.0, 1.0, generator, dev) < 0.8).view(-1, 1, 1, 1)
    bright = _u(b, 1 - jitter, 1 + jitter, generator, dev).view(-1, 1, 1, 1).to(x.dtype)
    contrast = _u(b, 1 - jitter, 1 + jitter, generator, dev).view(-1, 1, 1, 1).to(x.dtype)
    xj = (x * bright).clamp(0, 1)
    mean = xj.mean(dim=(1, 2, 3), keepdim=True)
    xj = (xj - mean) * contrast + mean
    x = torch.where(apply, xj, x)
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(dev, x.dtype)
    return (x + noise_std * noise).clamp(0, 1)


@METHODS.register("barlow_twins")
class BarlowTwins(Method):
    """Barlow Twins on ``model.features`` with a projector trained alongside (batch spec ``"two_views"``).

    Args:
        hidden: hidden widths of the projector (paper: 8192, 8192; CPU default 512, 512).
        out: projector output dimension D (paper: 8192).
        lambd: λ, weight of the off-diagonal term (paper: 0.0051).
        extra_augment: apply :func:`ssl_augment` to both views.
        crop_scale: parameter of :func:`ssl_augment`.
        jitter: parameter of :func:`ssl_augment`.
        noise_std: parameter of :func:`ssl_augment`.
    """

    batch_spec = "two_views"
    supervised = False

    def __init__(
        self,
        hidden: tuple[int, ...] = (512, 512),
        out: int = 512,
        lambd: float = 0.0051,
        extra_augment: bool = True,
        crop_scale: float = 0.35,
        jitter: float = 0.4,
        noise_std: float = 0.03,
    ) -> None:
        if not lambd >= 0 or not 0 < crop_scale <= 1 or not 0 <= jitter < 1 or not noise_std >= 0:
            raise ConfigError(
                f"method parameters need lambd >= 0, 0 < crop_scale <= 1, 0 <= jitter < 1, noise_std >= 0; got {lambd}, {crop_scale}, {jitter}, {noise_std}"
            )
        self.hidden, self.out, self.lambd = tuple(int(h) for h in hidden), int(out), lambd
        self.extra_augment, self.crop_scale, self.jitter, self.noise_std = extra_augment, crop_scale, jitter, noise_std

    def passes_per_image(self) -> float:
        """A forward and backward pass of each of the two views (the projector is not counted)."""
        return 6.0
        self._projector: BarlowTwinsProjector | None = None
        self._bn: nn.BatchNorm1d | None = None

    def setup(self, model: nn.Module, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        """Build the projector on the model's feature dimension."""
        self._projector = BarlowTwinsProjector(model.feature_dim, self.hidden, self.out)
        self._bn = nn.BatchNorm1d(self.out, affine=False)

    def modules(self) -> dict[str, nn.Module]:
        if self._projector is None:
            raise RuntimeError("BarlowTwins.setup(model, ...) must run before modules()")
        return {"projector": self._projector, "bn": self._bn}

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self._projector is None:
            raise RuntimeError("BarlowTwins.setup(model, ...) must run before training")
        x1, x2, g = batch["x"], batch["x2"], batch["generator"]
        if self.extra_augment:
            x1 = ssl_augment(x1, g, self.crop_scale, self.jitter, self.noise_std)
            x2 = ssl_augment(x2, g, self.crop_scale, self.jitter, self.noise_std)
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise ConfigError(
                "method 'barlow_twins' does not support multi-process training yet; run it in one process"
            )
        z1 = self._projector(model.features(x1))
        z2 = self._projector(model.features(x2))
        with torch.autocast(z1.device.type, enabled=False):  # the correlation matrix in float32 under AMP
            return {"loss": barlow_twins_loss(z1.float(), z2.float(), self.lambd, self._bn)}
