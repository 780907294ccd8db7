"""Mahalanobis distance to class means with a tied covariance (Lee et al. 2018, "A simple unified framework for
detecting out-of-distribution samples and adversarial attacks", arXiv:1807.03888).

Numerics (the fit must hold for N < D, near-duplicate features and large feature norms):

* **float64 from the start.** The features are centred on their class means in float64 and the covariance
  ``Σ = (1/N) Σ_i (z_i - μ_{y_i})(z_i - μ_{y_i})^T`` is accumulated in float64 (:func:`tied_covariance`). A float32
  product leaves rounding noise of ~1e-7·λ_max in every direction, which hides the null space of a rank-deficient Σ.
* **A rank cut-off that matches the data.** Extracted features are float32: each value is known only to within half
  a unit in the last place, ``u = eps/2`` relative. Rounding the N×D data matrix to that precision moves its singular
  values by at most ``u ||Z||_F`` (Weyl), so every direction whose variance is below
  ``u² · mean_i ||z_i||²`` (:func:`rounding_floor`) could be created or removed by the rounding alone; it counts as 0.
  The cut-off is the larger of that and ``D · eps64 · λ_max`` (the float64 arithmetic's own floor, the cut-off of
  ``scipy.linalg.pinvh``) (:func:`whitening`).
* **A pseudo-inverse on the supported subspace.** ``Σ^+`` inverts the eigenvalues above the cut-off and ignores the
  rest, as Lee et al.'s code does (it fits scikit-learn's ``EmpiricalCovariance``, whose precision matrix is
  ``pinvh(Σ)``); with N < D the score therefore measures distances within the span of the training features.
* **Scores in float64, relative to the mean of the class means**, so that large feature norms do not cancel.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["class_means", "tied_covariance", "rounding_floor", "whitening", "mahalanobis_score", "Mahalanobis"]


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean features ``float64 [C, D]`` (the paper's ``μ_c``, Lee et al. 2018 §2, Eq. 1).

    Args:
        features: ``[N, D]``.
        labels: ``[N]`` class indices in [0, C).
        num_classes: C.

    Raises:
        InputError: a class has no example.
    """
    z = features.to(torch.float64)
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise InputError(
            f"class-conditional statistics need examples of every class, but classes {missing} have none in the fitting split; "
            f"fit on a split that holds all {num_classes} classes (the run's training split)"
        )
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device).index_add_(0, labels, z)
    return sums / counts.unsqueeze(1).to(torch.float64)


def tied_covariance(features: torch.Tensor, labels: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The shared covariance ``Σ = (1/N) sum_i (z_i - μ_{y_i})(z_i - μ_{y_i})^T``, ``float64 [D, D]`` (Lee et al.
    2018 §2, Eq. 1).

    The features are centred and multiplied in float64 (float32 features are exact in float64), so the rounding error
    of Σ is ~1e-16 relative and a rank-deficient Σ (N < D, duplicate features) keeps its null space to that precision.

    Args:
        features: ``[N, D]``.
        labels: ``[N]`` class indices into ``means``.
        means: ``[C, D]``.
    """
    centered = features.to(torch.float64) - means.to(device=features.device, dtype=torch.float64)[labels]
    return (centered.T @ centered) / features.shape[0]


def rounding_floor(features: torch.Tensor) -> float:
    """The variance that rounding ``features`` to their dtype can create or hide in any direction:
    ``u² · mean_i ||z_i||²`` with ``u = eps/2`` of the dtype (0 for integer features).

    Rounding perturbs each value by at most ``u |z_ij|``; the perturbation of the centred ``N × D`` data matrix has
    spectral norm at most ``u ||Z||_F``, so (Weyl) no covariance eigenvalue below ``u² ||Z||_F² / N`` is resolved by the
    data. For float32 features of norm ~10 this is ~4e-13.

    Args:
        features: ``[N, D]`` the features as they were computed (their dtype sets ``u``).

    Returns:
        The floor, in the features' squared units.
    """
    if not features.is_floating_point() or features.shape[0] == 0:
        return 0.0
    u = torch.finfo(features.dtype).eps / 2
    return float(u * u * features.to(torch.float64).square().sum(dim=1).mean())


def whitening(cov: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """``W [D, r]`` with ``W W^T = Σ^+``, the pseudo-inverse on the numerically supported subspace, so that the
    squared Mahalanobis distance is ``||(z - μ) W||²``.

    Eigenvalues at or below ``max(floor, D · eps64 · λ_max)`` count as 0 (their directions are dropped: ``r`` is the
    numerical rank). ``D · eps64 · λ_max`` is the cut-off of ``scipy.linalg.pinvh``, which scikit-learn's
    ``EmpiricalCovariance`` (used by Lee et al.'s code) applies; pass ``floor=rounding_floor(features)`` to also drop
    directions that the features' own precision cannot resolve (what :class:`Mahalanobis` does).

    Args:
        cov: symmetric ``[D, D]`` (computed in float64: :func:`tied_covariance`).
        floor: an absolute eigenvalue cut-off (e.g. :func:`rounding_floor`), in ``cov``'s units.

    Returns:
        ``float64 [D, r]``, columns ordered by decreasing eigenvalue.
    """
    evals, evecs = torch.linalg.eigh(cov.to(torch.float64))
    cutoff = (
        max(float(floor), float(evals.abs().max()) * cov.shape[0] * torch.finfo(torch.float64).eps)
        if len(evals)
        else 0.0
    )
    keep = evals > cutoff
    return (evecs[:, keep] * evals[keep].rsqrt()).flip(1)


def mahalanobis_score(features: torch.Tensor, means: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    """``-min_c (z - μ_c)^T Σ^+ (z - μ_c)``: Lee et al.'s confidence score M(x) (§2, Eq. 2, no input preprocessing).

    Computed in float64 relative to the mean of the class means (``(z - m̄) W`` and ``(μ_c - m̄) W``), so large feature
    norms do not cancel.

    Args:
        features: ``[B, D]``.
        means: ``[C, D]`` class means.
        white: ``[D, r]`` whitening matrix from :func:`whitening`.

    Returns:
        ``float64 [B]`` (≤ 0); higher = more in-distribution.
    """
    dev = features.device
    w = white.to(device=dev, dtype=torch.float64)
    mu = means.to(device=dev, dtype=torch.float64)
    ref = mu.mean(dim=0)
    y = (features.to(torch.float64) - ref) @ w  # [B, r]
    m = (mu - ref) @ w  # [C, r]
    d2 = torch.cdist(y.unsqueeze(0), m.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist").squeeze(0).square()
    return -d2.amin(dim=1)


@DETECTORS.register("mahalanobis")
class Mahalanobis(Detector):
    """Minimum squared Mahalanobis distance to the class means, tied covariance (Lee et al. 2018, arXiv:1807.03888).

    Class means and covariance are fitted on the TRAINING split's penultimate features and true labels, in float64,
    with the pseudo-inverse on the subspace the features resolve (module docstring). Lee et al.'s input preprocessing
    and feature ensemble (§2.2) are not applied (the common "Mahalanobis" baseline of later work).

    Attributes:
        rank: after ``fit``, the number of covariance directions kept (the numerical rank; ≤ min(N - C, D)).
    """

    requires = frozenset({"features"})
    formula = "`−min_c (h − μ_c)ᵀ Σ⁺ (h − μ_c)`, class means and tied covariance (Σ⁺ its pseudo-inverse)"
    fits_on = "training features"
    paper = "Lee et al. 2018, arXiv:1807.03888"

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None
        self.white: torch.Tensor | None = None
        self.rank: int | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> Mahalanobis:
        z = need(train, "features", self.name)
        self.means = class_means(z, train.labels, train.num_classes)
        self.white = whitening(tied_covariance(z, train.labels, self.means), floor=rounding_floor(z))
        self.rank = int(self.white.shape[1])
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.means is None or self.white is None:
            raise RulabError("detector 'mahalanobis' is not fitted; call fit(train) on the training split first")
        return mahalanobis_score(need(ex, "features", self.name), self.means, self.white)

    def hparams(self) -> dict[str, int | None]:
        """The fitted covariance rank (``rank``); nothing is tuned."""
        return {"rank": self.rank}
