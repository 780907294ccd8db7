"""ViM: virtual-logit matching (Wang, Li, Feng & Zhang, CVPR 2022, "ViM: Out-of-distribution with virtual-logit
matching", arXiv:2203.10807).

Section and equation numbers are those of the CVPR 2022 paper (the same text as arXiv:2203.10807v1). The feature
space is re-centred at ``u = −(Wᵀ)⁺ b`` (§3, Eq. 1); the principal subspace P is spanned by the top ``dim``
eigenvectors of ``XᵀX`` over the re-centred training features (§4, Eq. 4), ``R`` holds the others; the virtual logit
is ``α ‖(h − u) R‖`` (§4, Eq. 5) with the matching constant ``α = Σ_i max_j l_ij / Σ_i ‖(h_i − u) R‖`` over training
examples (§4, Eq. 6). The ViM score is the softmax probability of the virtual logit (§4, Eq. 7); §4, Eq. 8 gives the
equivalent ``α ‖(h − u) R‖ − ln Σ_i exp(l_i)``, whose negative :func:`vim_score` returns.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.mahalanobis import rounding_floor
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["vim_dim", "vim_fit", "vim_score", "ViM"]


def vim_dim(feature_dim: int) -> int:
    """The principal-subspace dimension used when none is given.

    The paper's rule (Wang et al. 2022, CVPR, §6 "Experiment Settings"): 1000 for a feature dimension N > 1500, else
    512 (§6.4: 1000 for BiT, 512 for ViT); rulab applies it from N ≥ 768 (ResNet-50 and BiT: 1000; ViT-B, DeiT,
    Swin: 512). Smaller networks (CPU-scale models, CIFAR ResNets), for which 512 would leave little or no residual,
    get ``D // 2`` (OpenOOD's CIFAR setting: 256 of 512), inside the range [N/3, 2N/3] that §6.4 suggests when N is
    below the number of classes, so a residual of at least half the feature space is left.
    """
    if feature_dim > 1500:
        return 1000
    if feature_dim >= 768:
        return 512
    return max(1, feature_dim // 2)


def vim_fit(
    features: torch.Tensor,
    logits: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dim: int,
    *,
    scaled: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Origin, residual basis and α from the training features (Wang et al. 2022, CVPR, §4; the reference code's fit).

    * origin ``u = -pinv(W) b`` (the point the head maps to all-zero logits; §3, Eq. 1);
    * ``R``: eigenvectors of the uncentred covariance of ``z - u`` outside the top ``dim`` (the residual space; §4,
      Eq. 4);
    * ``α = mean_i max_k f_k(x_i) / mean_i ||(z_i - u) R||`` (§4, Eq. 6, over all the given training features; the
      paper samples K = 200,000 training images, §6).

    Everything runs in float64: ``z - u`` is formed and multiplied in float64, so the eigenvectors of the principal
    subspace are those of the data, not of float32 rounding noise (which would otherwise pick the principal subspace
    inside the null space when N is small). The principal subspace must lie within what the features resolve: its
    ``dim``-th eigenvalue must exceed ``max(rounding_floor(z), D · eps64 · λ_max)``
    (:func:`rulab.detectors.mahalanobis.rounding_floor`), otherwise the training residual would be rounding noise and α
    meaningless; that raises an error (:class:`ViM` with ``dim=None`` chooses a smaller dimension instead).

    Args:
        features: ``[N, D]`` training features.
        logits: ``[N, K]`` their logits.
        weight: ``[K, D]`` head weight.
        bias: ``[K]`` head bias or None (then ``u = 0``).
        dim: principal-subspace dimension, ``1 <= dim < D``.
        scaled: whether α is needed (ViM). Without it (the Residual detector) a principal subspace of exactly the
            resolved rank is allowed: its complement is then the null space of the training features, where their
            residual is zero by construction; only a ``dim`` above the rank (null-space directions counted as
            principal) is refused.

    Returns:
        ``(u [D], R [D, D - dim], alpha)`` (float64 tensors, float alpha).

    Raises:
        InputError: ``dim`` outside [1, D), or the features resolve at most ``dim`` directions.
    """
    evals, evecs, u = _eig(features, weight, bias)
    return _fit(features, logits, evals, evecs, u, dim, scaled)


def _fit(
    features: torch.Tensor,
    logits: torch.Tensor,
    evals: torch.Tensor,
    evecs: torch.Tensor,
    u: torch.Tensor,
    dim: int,
    scaled: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    d = features.shape[1]
    if not 1 <= dim < d:
        raise InputError(
            f"ViM needs a principal subspace smaller than the feature dimension ({d}), got dim={dim}; pass dim=None for the automatic choice"
        )
    rank = _rank(evals, features)
    if rank < dim or (scaled and rank == dim):
        raise InputError(
            f"ViM's principal subspace (dim={dim}) must be smaller than the {rank} directions the {features.shape[0]} training "
            f"features resolve, or their residual is rounding noise; fit on more examples or pass a dim below {rank}"
        )
    r = evecs[:, : d - dim].contiguous()  # eigh is ascending: the first d - dim columns span the residual space
    centered = features.to(torch.float64) - u
    vlogit = (centered @ r).norm(dim=1)
    alpha = float(logits.to(torch.float64).amax(dim=1).mean() / vlogit.mean())
    return u, r, alpha


def _eig(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending), eigenvectors of the uncentred float64 covariance of ``z - u``, and the origin ``u``."""
    d = features.shape[1]
    w = weight.to(device=features.device, dtype=torch.float64)
    u = (
        -(torch.linalg.pinv(w) @ bias.to(w))
        if bias is not None
        else torch.zeros(d, dtype=torch.float64, device=features.device)
    )
    centered = features.to(torch.float64) - u
    evals, evecs = torch.linalg.eigh((centered.T @ centered) / features.shape[0])
    return evals, evecs, u


def _rank(evals: torch.Tensor, features: torch.Tensor) -> int:
    """How many eigenvalues exceed ``max(rounding_floor(features), D · eps64 · λ_max)``: the numerical rank."""
    cutoff = max(rounding_floor(features), float(evals.abs().max()) * len(evals) * torch.finfo(torch.float64).eps)
    return int((evals > cutoff).sum())


def vim_score(
    features: torch.Tensor, logits: torch.Tensor, u: torch.Tensor, r: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``logsumexp_k f_k - α ||(z - u) R||``: minus Eq. 8 of Wang et al. 2022 (CVPR, §4). Eq. 8 is a strictly
    increasing function of the paper's OOD score, the virtual logit's softmax probability (Eq. 7), so this ranks as
    that score's negative (the reference code returns the same).

    Args:
        features: ``[B, D]``.
        logits: ``[B, K]``.
        u: ``[D]`` origin; r: ``[D, D - dim]`` residual basis; alpha: the scale α (:func:`vim_fit`).

    Returns:
        ``float64 [B]``; higher = more in-distribution. Computed in float64: ``z - u`` may cancel when the origin is far
        from the origin of feature space.
    """
    dev = features.device
    vlogit = (
        (features.to(torch.float64) - u.to(device=dev, dtype=torch.float64)) @ r.to(device=dev, dtype=torch.float64)
    ).norm(dim=1)
    return torch.logsumexp(logits.to(device=dev, dtype=torch.float64), dim=1) - alpha * vlogit


@DETECTORS.register("vim")
class ViM(Detector):
    """Virtual-logit matching (Wang et al. 2022, CVPR, arXiv:2203.10807, §4, Eq. 7, computed as minus its equivalent
    Eq. 8): energy minus the scaled norm of the feature's residual outside the principal subspace of the training
    features.

    Args:
        dim: principal-subspace dimension; None chooses it from the feature dimension (:func:`vim_dim`), or half the
            numerical rank of the training features when they resolve no more than that (few training examples). An
            explicit ``dim`` must be smaller than that rank.
    """

    requires = frozenset({"logits", "features", "head"})
    formula = "`logsumexp(z) − α ‖(h − u) R‖`, R the residual of the principal subspace"
    fits_on = "training features"
    paper = "Wang et al. 2022, CVPR, arXiv:2203.10807, §4"

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and dim < 1:
            raise InputError(f"ViM needs dim >= 1 or None, got {dim}")
        self.dim = dim
        self.u: torch.Tensor | None = None
        self.r: torch.Tensor | None = None
        self.alpha: float | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> ViM:
        z = need(train, "features", self.name)
        w = need(train, "head_weight", self.name)
        evals, evecs, u = _eig(z, w, train.head_bias)
        dim = self.dim
        if dim is None:
            rank = _rank(evals, z)
            dim = vim_dim(z.shape[1]) if rank > vim_dim(z.shape[1]) else max(1, rank // 2)
        self.u, self.r, self.alpha = _fit(z, train.logits, evals, evecs, u, dim)
        self.fitted_dim = dim
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.u is None or self.r is None or self.alpha is None:
            raise RulabError("detector 'vim' is not fitted; call fit(train) on the training split first")
        return vim_score(need(ex, "features", self.name), ex.logits, self.u, self.r, self.alpha)

    def hparams(self) -> dict[str, float]:
        return {"dim": getattr(self, "fitted_dim", self.dim), "alpha": self.alpha}
