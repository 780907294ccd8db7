"""Mutual information between the prediction and the model: the epistemic part of an averaged predictive's
uncertainty (the BALD quantity of Houlsby et al. 2011, "Bayesian active learning for classification and preference
learning", arXiv:1112.5745, Eq. 2; used with MC dropout by Gal, Islam & Ghahramani 2017, "Deep Bayesian active
learning with image data", arXiv:1703.02910, §3; the decomposition of Depeweg et al. 2018, arXiv:1710.07283, §2.1).

For members ``m = 1..M`` (the networks of a deep ensemble, or the passes of MC dropout) with predictives
``p_m = softmax(z_m)`` and their mean ``p̄``, the predictive entropy splits into

    H[p̄]  =  (1/M) Σ_m H[p_m]  +  I,        I = H[p̄] − (1/M) Σ_m H[p_m] = (1/M) Σ_m KL(p_m ‖ p̄) ≥ 0

(total = aleatoric, the members' expected entropy, + epistemic, the mutual information; the second form is the
generalised Jensen–Shannon divergence of the members). ``I`` is 0 when the members agree and large where they
disagree, which is what separates far-away inputs from ambiguous in-distribution ones. The score reads the members'
logits that the extraction stores for a :class:`~rulab.models.ensemble.MemberAverage` (``Extracted.members``); the
predictive entropy and the maximum mean probability are the ``entropy`` and ``msp`` detectors on the averaged logits.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["entropy_decomposition", "mutual_information_score", "MutualInformation"]


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    """``−Σ_k p_k log p_k`` over the last axis from log-probabilities (``p_k = 0`` contributes 0)."""
    return -(log_p.exp() * log_p).sum(dim=-1)


def entropy_decomposition(member_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total, aleatoric and epistemic uncertainty of an averaged predictive, in nats (module docstring).

    Args:
        member_logits: ``[B, M, K]`` the logits of each member.

    Returns:
        ``(total, aleatoric, epistemic)``, each ``float64 [B]``: ``H[p̄]``, ``(1/M) Σ_m H[p_m]`` and the mutual
        information ``H[p̄] − (1/M) Σ_m H[p_m]`` (clamped at 0 against rounding), so ``total = aleatoric + epistemic``
        up to that clamp.

    Raises:
        InputError: ``member_logits`` is not ``[B, M, K]``.
    """
    if member_logits.ndim != 3 or member_logits.shape[1] < 1:
        raise InputError(f"member logits must be [B, M, K] with M >= 1, got shape {tuple(member_logits.shape)}")
    log_p = member_logits.to(torch.float64).log_softmax(dim=2)  # [B, M, K]
    log_mean = torch.logsumexp(log_p, dim=1) - torch.log(
        torch.tensor(float(member_logits.shape[1]), dtype=torch.float64)
    )
    total = _entropy(log_mean)
    aleatoric = _entropy(log_p).mean(dim=1)
    return total, aleatoric, (total - aleatoric).clamp_min(0.0)


def mutual_information_score(member_logits: torch.Tensor) -> torch.Tensor:
    """``−I``: the negative mutual information between prediction and member (a confidence, 0 when all members agree).

    Args:
        member_logits: ``[B, M, K]``.

    Returns:
        ``float64 [B]`` in ``[−log min(M, K), 0]``; higher = more in-distribution.
    """
    return -entropy_decomposition(member_logits)[2]


@DETECTORS.register("mutual_info")
class MutualInformation(Detector):
    """Negative mutual information of the members of a deep ensemble or of MC-dropout passes (Houlsby et al. 2011,
    arXiv:1112.5745; Gal et al. 2017, arXiv:1703.02910, §3). Needs the members' logits (``Extracted.members``), so it
    runs on :class:`~rulab.models.ensemble.Ensemble` and :class:`~rulab.models.mc_dropout.MCDropout` only."""

    requires = frozenset({"members"})
    formula = "`−[H(p̄) − (1/M) Σ_m H(p_m)]`, p_m: member m's softmax, p̄ their mean (mutual information)"
    paper = "Houlsby et al. 2011, arXiv:1112.5745; Gal et al. 2017, arXiv:1703.02910"

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return mutual_information_score(need(ex, "members", self.name))
