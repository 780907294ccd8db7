"""Generalized entropy, GEN (Liu, Lochman & Zach, "GEN: Pushing the limits of softmax-based out-of-distribution
detection", CVPR 2023; no arXiv version; reference code github.com/XixiLiu95/GEN)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["gen_score", "GEN"]


def gen_score(logits: torch.Tensor, gamma: float = 0.1, m: int = 100) -> torch.Tensor:
    """Negative generalized entropy of the ``M`` largest softmax probabilities.

    ``-sum_{j=1}^{M} p_(j)^γ (1 - p_(j))^γ`` with ``p_(1) >= p_(2) >= ...`` the sorted ``softmax(logits)`` and
    ``M = min(m, K)`` (the paper's Eq. 5; reference code ``generalized_entropy``).

    Args:
        logits: ``[B, K]``.
        gamma: γ in (0, 1) (paper: 0.1).
        m: number of top classes M (paper: 100 for ImageNet-1k; all classes when K < M).

    Returns:
        ``[B]`` in ``[-M · 2^{-2γ}, 0]``; higher = more in-distribution.
    """
    if not gamma > 0:
        raise InputError(f"GEN needs gamma > 0, got {gamma}")
    if m < 1:
        raise InputError(f"GEN needs m >= 1 top classes, got {m}")
    p = logits.softmax(dim=1)
    top = p.topk(min(int(m), p.shape[1]), dim=1).values
    return -(top.pow(gamma) * (1.0 - top).clamp_min(0.0).pow(gamma)).sum(dim=1)


@DETECTORS.register("gen")
class GEN(Detector):
    """Generalized entropy score (Liu et al., CVPR 2023), ``-sum_{top M} p^γ (1 - p)^γ``.

    Args:
        gamma: γ (paper: 0.1).
        m: top classes M (paper: 100; ``min(K, M)`` is used).
    """

    requires = frozenset({"logits"})
    formula = "`−Σ_{j ≤ min(M, K)} p_(j)^γ (1 − p_(j))^γ`, γ = 0.1, M = 100"
    paper = "Liu et al. 2023 (CVPR)"

    def __init__(self, gamma: float = 0.1, m: int = 100) -> None:
        if not gamma > 0 or m < 1:
            raise InputError(f"GEN needs gamma > 0 and m >= 1, got gamma={gamma}, m={m}")
        self.gamma = float(gamma)
        self.m = int(m)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return gen_score(ex.logits, self.gamma, self.m)
