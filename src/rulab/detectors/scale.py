"""SCALE (Xu, Chen, Franchi & Yao, ICLR 2024, "Scaling for training time and post-hoc out-of-distribution detection
enhancement", arXiv:2310.00227).

SCALE keeps ASH-S's scaling factor and drops its pruning (the paper's method section, which finds pruning harmful to ID
accuracy and scaling the part that helps detection): with ``s₁`` the sum of an image's penultimate features ``h ∈ R^D``
and ``s₂`` the sum of its ``k = D − round(D · p / 100)`` largest entries,

    r = s₁ / s₂,    h' = h · exp(r),    s(x) = logsumexp(W h' + b)    (the energy of the rescaled features).

Applied after the last global average pool, to the features the linear head reads (the authors' ``scale_net.py``:
``feature.view(B, -1, 1, 1)`` → ``scale`` → ``fc``), so it runs on the cached features. Default p = 85 and the tuning
grid 50, 55, …, 95 are the authors' configuration (``configs/postprocessors/scale.yml``).
"""

from __future__ import annotations

import torch

from rulab.detectors.ash import ash_keep
from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.energy import energy_score
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["scale_factor", "scale_score", "SCALE"]


def scale_factor(activation: torch.Tensor, percentile: float = 85.0) -> torch.Tensor:
    """``exp(s₁ / s₂)`` per image: ``s₁`` the sum of all its entries, ``s₂`` the sum of its ``k`` largest.

    Args:
        activation: ``[B, ...]`` (penultimate features ``[B, D]`` or a map).
        percentile: p in [0, 100).

    Returns:
        ``[B]``; 1 for an image whose top entries sum to 0.
    """
    flat = activation.reshape(activation.shape[0], -1)
    k = ash_keep(activation, percentile)
    s1 = flat.sum(dim=1)
    s2 = flat.topk(k, dim=1).values.sum(dim=1)
    safe = torch.where(s2 != 0, s2, torch.ones_like(s2))
    return torch.exp(torch.where(s2 != 0, s1 / safe, torch.zeros_like(s2)))


def scale_score(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, percentile: float = 85.0, t: float = 1.0
) -> torch.Tensor:
    """``T · logsumexp((W · h · exp(s₁/s₂) + b) / T)``.

    Args:
        features: ``[B, D]`` penultimate features.
        weight: ``[K, D]`` head weight.
        bias: ``[K]`` head bias or None.
        percentile: p in [0, 100) (paper default 85).
        t: energy temperature (paper: 1).

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = features.to(dtype)
    z = z * scale_factor(z, percentile).unsqueeze(1)
    logits = z @ weight.to(device=z.device, dtype=dtype).T
    if bias is not None:
        logits = logits + bias.to(device=z.device, dtype=dtype)
    return energy_score(logits, t)


@DETECTORS.register("scale")
class SCALE(Detector):
    """Energy of the head applied to penultimate features multiplied by ``exp(s₁/s₂)`` (Xu et al. 2024,
    ICLR, arXiv:2310.00227, method section).

    Args:
        percentile: p (authors' default 85); tuned over :attr:`grid` on validation data when the evaluator tunes.
        t: energy temperature (paper: 1).
    """

    requires = frozenset({"features", "head"})
    formula = (
        "`logsumexp(W · h · exp(s₁/s₂) + b)`, `s₁ = Σ h`, `s₂`: the sum of the image's entries above its p-th "
        "percentile"
    )
    paper = "Xu et al. 2024, ICLR, arXiv:2310.00227"
    grid = {"percentile": (50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)}

    def __init__(self, percentile: float = 85.0, t: float = 1.0) -> None:
        if not 0 <= percentile < 100 or not t > 0:
            raise InputError(f"SCALE needs 0 <= percentile < 100 and t > 0, got percentile={percentile}, t={t}")
        self.percentile = float(percentile)
        self.t = float(t)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        return scale_score(z, need(ex, "head_weight", self.name), ex.head_bias, self.percentile, self.t)
