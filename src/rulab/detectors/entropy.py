"""Predictive entropy as a confidence: the negative Shannon entropy of the softmax (a standard baseline; used as a
score by e.g. Hendrycks et al. 2019 OE, arXiv:1812.04606)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.registry import DETECTORS

__all__ = ["entropy_score", "Entropy"]


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    """Negative entropy ``sum_k p_k log p_k`` of ``p = softmax(logits)`` (natural log).

    Computed from ``log_softmax`` so that ``p_k = 0`` contributes 0 without NaN.

    Args:
        logits: ``[B, K]``.

    Returns:
        ``[B]`` in ``[-log K, 0]``; higher = more in-distribution.
    """
    logp = logits.log_softmax(dim=1)
    return (logp.exp() * logp).sum(dim=1)


@DETECTORS.register("entropy")
class Entropy(Detector):
    """Negative predictive entropy ``sum_k p_k log p_k`` (0 for a one-hot prediction, ``-log K`` for uniform)."""

    requires = frozenset({"logits"})
    formula = "`Σ_k p_k log p_k` (negative entropy)"
    paper = "baseline"

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return entropy_score(ex.logits)
