"""Disagreement of the members of an averaged predictive, as the variation ratio of their votes (Freeman 1965; used
for MC dropout by Gal, Islam & Ghahramani 2017, "Deep Bayesian active learning with image data", arXiv:1703.02910,
§3, "Variation Ratios"; for deep ensembles, Lakshminarayanan et al. 2017, arXiv:1612.01474, measure the spread of the
members on unseen data).

Each member ``m`` votes for its top class ``argmax_k z_{m,k}``; with ``f`` the number of votes of the most voted
class, the variation ratio is ``1 − f / M``: 0 when every member predicts the same class, at most ``1 − 1/M``. The
confidence is its negative, ``f / M − 1``. It takes only ``M + 1`` values, so many images tie (the detection metrics
count ties as half, see :mod:`rulab.metrics.ood`); ties between equally voted classes do not matter (only ``f``
counts). Mutual information (:mod:`rulab.detectors.mutual_info`) is the graded counterpart.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["vote_counts", "variation_ratio", "disagreement_score", "Disagreement"]


def vote_counts(member_logits: torch.Tensor) -> torch.Tensor:
    """How many members vote for each class: ``[B, M, K]`` logits → ``int64 [B, K]`` (each row sums to M)."""
    if member_logits.ndim != 3 or member_logits.shape[1] < 1:
        raise InputError(f"member logits must be [B, M, K] with M >= 1, got shape {tuple(member_logits.shape)}")
    votes = member_logits.argmax(dim=2)  # [B, M]
    counts = torch.zeros(member_logits.shape[0], member_logits.shape[2], dtype=torch.int64, device=member_logits.device)
    return counts.scatter_add_(1, votes, torch.ones_like(votes))


def variation_ratio(member_logits: torch.Tensor) -> torch.Tensor:
    """``1 − f/M`` with ``f`` the votes of the most voted class (module docstring).

    Args:
        member_logits: ``[B, M, K]``.

    Returns:
        ``float64 [B]`` in ``[0, 1 − 1/M]``.
    """
    counts = vote_counts(member_logits)
    return 1.0 - counts.amax(dim=1).to(torch.float64) / member_logits.shape[1]


def disagreement_score(member_logits: torch.Tensor) -> torch.Tensor:
    """``f/M − 1``: the negative variation ratio (a confidence; 0 when all members vote alike).

    Args:
        member_logits: ``[B, M, K]``.

    Returns:
        ``float64 [B]``; higher = more in-distribution.
    """
    return -variation_ratio(member_logits)


@DETECTORS.register("disagreement")
class Disagreement(Detector):
    """Negative variation ratio of the members' votes (Gal et al. 2017, arXiv:1703.02910, §3). Needs the members'
    logits (``Extracted.members``): a deep ensemble or MC dropout."""

    requires = frozenset({"members"})
    formula = "`f/M − 1`, f: members voting for the most voted class (negative variation ratio)"
    paper = "Freeman 1965; Gal et al. 2017, arXiv:1703.02910"

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return disagreement_score(need(ex, "members", self.name))
