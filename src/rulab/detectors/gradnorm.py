"""GradNorm (Huang, Geng & Li, NeurIPS 2021, "On the importance of gradients for detecting distributional shifts in
the wild", arXiv:2110.00218).

The paper's method section scores an image by the L1 norm of the gradient, with respect to the weights ``W`` of the last
layer, of the KL divergence between the uniform distribution and the softmax at temperature T. Up to a constant that has
no gradient, that divergence is the cross-entropy to the all-ones target the authors' code uses
(``loss = Σ_k −log softmax_k(f(x)/T)``, ``test_ood.py``):

    S(x) = ‖∂L/∂W‖₁,   L(x) = −Σ_k log softmax_k(z / T),   z = W h + b.

For a linear head the per-image gradient is an outer product, ``∂L/∂W = g hᵀ`` with ``g_k = (K · p_k − 1) / T`` and
``p = softmax(z / T)``, so its entrywise L1 norm is exact in closed form:

    S(x) = (1/T) · Σ_k |K · p_k − 1| · ‖h‖₁.

That is what :func:`gradnorm_score` computes from the cached logits and features: no backward pass (the authors run
one backward pass per image). Only the weight's gradient counts, not the bias's, as in the authors' code. T = 1 (the
paper's choice).
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["gradnorm_score", "GradNorm"]


def gradnorm_score(features: torch.Tensor, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """``(1/T) · Σ_k |K · softmax_k(z/T) − 1| · ‖h‖₁``: the L1 norm of the last-layer weight gradient of the
    cross-entropy to the uniform target.

    Args:
        features: ``[B, D]`` penultimate features ``h`` (the head's input).
        logits: ``[B, K]`` the head's output ``z``.
        t: temperature T > 0 (paper: 1).

    Returns:
        ``[B]`` (≥ 0) in the features' dtype; higher = more in-distribution.
    """
    if not t > 0:
        raise InputError(f"the GradNorm temperature must be positive, got {t}")
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = logits.to(device=features.device, dtype=dtype)
    k = z.shape[1]
    g = (k * (z / t).softmax(dim=1) - 1.0).abs().sum(dim=1) / t
    return g * features.to(dtype).abs().sum(dim=1)


@DETECTORS.register("gradnorm")
class GradNorm(Detector):
    """L1 norm of the last-layer weight gradient of KL(uniform ‖ softmax) (Huang et al. 2021, NeurIPS,
    arXiv:2110.00218, method section), in closed form from the cached features and logits.

    Args:
        t: temperature T (paper: 1).
    """

    requires = frozenset({"logits", "features"})
    formula = "`‖∂ KL(u ‖ softmax(z/T)) / ∂W‖₁ = (1/T) Σ_k |K p_k − 1| · ‖h‖₁`, T = 1"
    paper = "Huang et al. 2021, NeurIPS, arXiv:2110.00218"

    def __init__(self, t: float = 1.0) -> None:
        if not t > 0:
            raise InputError(f"the GradNorm temperature must be positive, got {t}")
        self.t = float(t)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return gradnorm_score(need(ex, "features", self.name), ex.logits, self.t)
