"""Decoupled MaxLogit (Zhang & Xiang, CVPR 2023, "Decoupling MaxLogit for out-of-distribution detection", method
section): the maximum logit split into a direction term and a norm term, recombined with a weight.

A logit of a linear head is ``z_k = w_kᵀ h + b_k``; without the bias, ``z_k = ‖w_k‖ ‖h‖ cos(h, w_k)``, so for
equal-norm class weights MaxLogit is ``‖w‖ · MaxNorm · MaxCosine`` with

    MaxCosine(x) = max_k cos(h, w_k),        MaxNorm(x) = ‖h‖₂

(``h`` the penultimate features). The paper finds MaxCosine to carry most of MaxLogit's separation and MaxNorm to add
to it, and scores the weighted sum ``DML(x) = λ · MaxCosine(x) + MaxNorm(x)``. (Its DML+ variant takes the two terms
from two networks trained with different losses; that is a training recipe, not a post-hoc score.)

The value of λ: the two terms live on different scales (a cosine in [−1, 1], a norm of tens), so λ is tied to the
network. The paper's default λ could not be checked offline for this implementation, so rulab fixes the scale from
the data and tunes the rest like ODIN's (T, ε): ``fit`` computes ``λ₀ = mean ‖h‖ / mean MaxCosine`` over the training
features (the λ at which both terms contribute equally on average; the OpenHAIV toolkit's DML code,
``ncdia/algorithms/ood/dml.py``, balances its two terms the same way, dividing each by its sum over in-distribution
images), and λ = ``scale`` · λ₀ with ``scale`` searched over :attr:`DML.grid` on the validation-OOD
sets (default 1). ``scale → ∞`` ranks as MaxCosine, ``scale = 0`` as MaxNorm.

The authors' code agrees on the balancing: their README writes the score as ``MaxCosine + λ · MaxNorm`` (λ on the
norm term; the same ranking as here with the reciprocal λ), and their evaluation script ``test_DML+.py`` divides each
term by its sum over the in-distribution TEST images before adding them, with equal weights (the first author's
copy; the lab's copy weights the cosine term 3 : 1). rulab takes the sums over the training features instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["max_cosine", "max_norm", "dml_score", "DML"]


def max_cosine(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``max_k cos(h, w_k)``: the largest cosine between the features and a class weight (the bias is not used).

    Args:
        features: ``[B, D]`` penultimate features ``h``.
        weight: ``[K, D]`` the linear head's weight.

    Returns:
        ``float64 [B]`` in [−1, 1] (0 for an all-zero feature vector).
    """
    h = F.normalize(features.to(torch.float64), dim=1, eps=torch.finfo(torch.float64).tiny)
    w = F.normalize(weight.to(device=features.device, dtype=torch.float64), dim=1, eps=torch.finfo(torch.float64).tiny)
    return (h @ w.T).amax(dim=1)


def max_norm(features: torch.Tensor) -> torch.Tensor:
    """``‖h‖₂`` per row: ``[B, D]`` → ``float64 [B]``."""
    return torch.linalg.vector_norm(features.to(torch.float64), dim=1)


def dml_score(features: torch.Tensor, weight: torch.Tensor, lam: float) -> torch.Tensor:
    """``λ · MaxCosine + MaxNorm`` (module docstring).

    Args:
        features: ``[B, D]``.
        weight: ``[K, D]``.
        lam: λ ≥ 0, the weight of the cosine term.

    Returns:
        ``float64 [B]``; higher = more in-distribution.
    """
    if not lam >= 0:
        raise InputError(f"DML needs lam >= 0, got {lam}")
    return lam * max_cosine(features, weight) + max_norm(features)


@DETECTORS.register("dml")
class DML(Detector):
    """Decoupled MaxLogit, ``λ · MaxCosine + MaxNorm`` (Zhang & Xiang 2023, CVPR, method section), with λ = scale · λ₀
    and λ₀ balancing the two terms on the training features (module docstring).

    Args:
        scale: the multiple of λ₀ (tuned over :attr:`grid` on validation-OOD data).
        lam: a fixed λ instead (``scale`` and λ₀ are then ignored).

    Attributes:
        lam0: after ``fit``, ``mean ‖h‖ / mean MaxCosine`` on the training features.
    """

    requires = frozenset({"features", "head"})
    formula = "`λ · max_k cos(h, w_k) + ‖h‖`, λ = scale · mean‖h‖ / mean max-cosine on training features"
    fits_on = "training features (the balancing λ₀)"
    paper = "Zhang & Xiang 2023, CVPR"
    grid = {"scale": (1.0, 0.25, 0.5, 2.0, 4.0, 8.0)}

    def __init__(self, scale: float = 1.0, lam: float | None = None) -> None:
        if not scale >= 0 or (lam is not None and not lam >= 0):
            raise InputError(f"DML needs scale >= 0 and lam >= 0, got scale={scale}, lam={lam}")
        self.scale = float(scale)
        self.lam = None if lam is None else float(lam)
        self.lam0: float | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> DML:
        z = need(train, "features", self.name)
        cos = float(max_cosine(z, need(train, "head_weight", self.name)).mean())
        if not cos > 0:
            raise InputError(
                f"DML balances its terms by the training features' mean max-cosine, which is {cos:.3g} (not positive); "
                "pass a fixed lam"
            )
        self.lam0 = float(max_norm(z).mean()) / cos
        return self

    def weight(self) -> float:
        """The λ in use: ``lam`` if fixed, else ``scale · λ₀``."""
        if self.lam is not None:
            return self.lam
        if self.lam0 is None:
            raise RulabError("detector 'dml' is not fitted; call fit(train) on the training split first (or pass lam)")
        return self.scale * self.lam0

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return dml_score(need(ex, "features", self.name), need(ex, "head_weight", self.name), self.weight())

    def hparams(self) -> dict[str, float | None]:
        """``scale`` and the λ it gives."""
        return {
            "scale": self.scale,
            "lam": self.lam if self.lam is not None else (None if self.lam0 is None else self.weight()),
        }
