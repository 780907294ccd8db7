"""Energy score (Liu et al. 2020, "Energy-based out-of-distribution detection", arXiv:2010.03759)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["energy_score", "Energy"]


def energy_score(logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """Negative free energy ``-E(x; T) = T · logsumexp_k(f_k(x) / T)``.

    Args:
        logits: ``[B, K]``.
        t: temperature T > 0 (the paper uses 1).

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    if not t > 0:
        raise InputError(f"the energy temperature must be positive, got {t}")
    return t * torch.logsumexp(logits / t, dim=1)


@DETECTORS.register("energy")
class Energy(Detector):
    """Negative energy ``T · logsumexp(f / T)`` (Liu et al. 2020, arXiv:2010.03759: the free energy
    ``E(x; f) = −T · log Σ_i exp(f_i(x) / T)`` of §2, used as the score in §3.1).

    Args:
        t: temperature (paper: 1).
    """

    requires = frozenset({"logits"})
    formula = "`T · logsumexp(z / T)`, T = 1 (negative free energy)"
    paper = "Liu et al. 2020, arXiv:2010.03759"

    def __init__(self, t: float = 1.0) -> None:
        if not t > 0:
            raise InputError(f"the energy temperature must be positive, got {t}")
        self.t = float(t)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return energy_score(ex.logits, self.t)
