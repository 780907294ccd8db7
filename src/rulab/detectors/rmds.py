"""RMDS: the relative Mahalanobis distance (Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan 2021, "A simple fix to
Mahalanobis distance for improving near-OOD detection", ICML 2021 Uncertainty & Robustness in Deep Learning workshop,
arXiv:2106.09022).

The paper's method section: besides the class-conditional Gaussians of the Mahalanobis detector (class means ``μ_k``,
one shared covariance ``Σ``; Lee et al. 2018), fit one "background" Gaussian to all training features regardless of
class (mean ``μ₀``, covariance ``Σ₀``), and subtract its distance:

    RMD_k(h) = MD_k(h) − MD₀(h),   MD_k(h) = (h − μ_k)ᵀ Σ⁻¹ (h − μ_k),   MD₀(h) = (h − μ₀)ᵀ Σ₀⁻¹ (h − μ₀),

with confidence ``−min_k RMD_k(h)``. The directions in which every class varies alike (where MD₀ is as large as
MD_k) stop dominating the distance. Covariances are maximum-likelihood (divided by N) and inverted as a
pseudo-inverse, as in :mod:`rulab.detectors.mahalanobis`. No hyperparameters.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.mahalanobis import class_means, mahalanobis_score, tied_covariance, whitening
from rulab.errors import RulabError
from rulab.registry import DETECTORS

__all__ = ["background_gaussian", "rmds_score", "RMDS"]


def background_gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(μ₀ [1, D], W₀ [D, D])``: the mean of all training features and the whitening matrix of their covariance
    (``W₀ W₀ᵀ = Σ₀⁺``), float64."""
    mu0 = features.to(torch.float64).mean(dim=0, keepdim=True)
    zeros = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
    return mu0, whitening(tied_covariance(features, zeros, mu0))


def rmds_score(
    features: torch.Tensor, means: torch.Tensor, white: torch.Tensor, mu0: torch.Tensor, white0: torch.Tensor
) -> torch.Tensor:
    """``−min_k (MD_k(h) − MD₀(h))``.

    Args:
        features: ``[B, D]``.
        means: ``[C, D]`` class means; white: ``[D, D]`` whitening matrix of the tied class covariance.
        mu0: ``[1, D]`` mean of all training features; white0: ``[D, D]`` whitening matrix of their covariance.

    Returns:
        ``[B]`` in the features' dtype; higher = more in-distribution.
    """
    # mahalanobis_score returns −min_k MD_k, and the same function with one "class" returns −MD₀
    return mahalanobis_score(features, means, white) - mahalanobis_score(features, mu0, white0)


@DETECTORS.register("rmds")
class RMDS(Detector):
    """Relative Mahalanobis distance: class-conditional minus background Mahalanobis distance (Ren et al. 2021, ICML
    UDL workshop, arXiv:2106.09022, method section). Both Gaussians are fitted on the TRAINING split's penultimate
    features."""

    requires = frozenset({"features"})
    formula = "`−min_k [(h − μ_k)ᵀ Σ⁻¹ (h − μ_k) − (h − μ₀)ᵀ Σ₀⁻¹ (h − μ₀)]`, `μ₀, Σ₀` of all training features"
    fits_on = "training features"
    paper = "Ren et al. 2021, ICML UDL workshop, arXiv:2106.09022"

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None
        self.white: torch.Tensor | None = None
        self.mu0: torch.Tensor | None = None
        self.white0: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> RMDS:
        z = need(train, "features", self.name)
        self.means = class_means(z, train.labels, train.num_classes)
        self.white = whitening(tied_covariance(z, train.labels, self.means))
        self.mu0, self.white0 = background_gaussian(z)
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.means is None or self.white is None or self.mu0 is None or self.white0 is None:
            raise RulabError("detector 'rmds' is not fitted; call fit(train) on the training split first")
        return rmds_score(need(ex, "features", self.name), self.means, self.white, self.mu0, self.white0)
