"""ViM: virtual-logit matching (Wang, Li, Feng & Zhang 2022, "ViM: Out-of-distribution with virtual-logit
matching", arXiv:2203.10807)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["vim_dim", "vim_fit", "vim_score", "ViM"]


def vim_dim(feature_dim: int) -> int:
    """The principal-subspace dimension used when none is given.

    The paper's choices (§4): 1000 for D ≥ 2048 (ResNet-50, BiT), 512 for D ≥ 768 (ViT-B, DeiT, Swin). Smaller
    networks (CPU-scale models, CIFAR ResNets) get ``D // 2`` (OpenOOD's CIFAR setting: 256 of 512), so a residual
    of at least half the feature space is always left.
    """
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return max(1, feature_dim // 2)


def vim_fit(features: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dim: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Origin, residual basis and α from the training features (the reference code's ``vim`` fit).

    * origin ``u = -pinv(W) b`` (the point the head maps to all-zero logits);
    * ``R``: eigenvectors of the uncentred covariance of ``z - u`` outside the top ``dim`` (the residual space);
    * ``α = mean_i max_k f_k(x_i) / mean_i ||(z_i - u) R||``.

    Args:
        features: ``[N, D]`` training features.
        logits: ``[N, K]`` their logits.
        weight: ``[K, D]`` head weight.
        bias: ``[K]`` head bias or None (then ``u = 0``).
        dim: principal-subspace dimension, ``1 <= dim < D``.

    Returns:
        ``(u [D], R [D, D - dim], alpha)`` (float64 tensors, float alpha).
    """
    d = features.shape[1]
    if not 1 <= dim < d:
        raise InputError(f"ViM needs a principal subspace smaller than the feature dimension ({d}), got dim={dim}; pass dim=None for the automatic choice")
    w = weight.to(device=features.device, dtype=torch.float64)
    u = -(torch.linalg.pinv(w) @ bias.to(w)) if bias is not None else torch.zeros(d, dtype=torch.float64, device=features.device)
    dtype = features.dtype if features.is_floating_point() else torch.float64
    centered = (features.to(torch.float64) - u).to(dtype)
    cov = (centered.T @ centered).to(torch.float64) / features.shape[0]
    _evals, evecs = torch.linalg.eigh(cov)  # ascending: the first d - dim columns span the residual space
    r = evecs[:, : d - dim].contiguous()
    vlogit = (centered @ r.to(dtype)).norm(dim=1).to(torch.float64)
    alpha = float(logits.to(torch.float64).amax(dim=1).mean() / vlogit.mean())
    return u, r, alpha


def vim_score(features: torch.Tensor, logits: torch.Tensor, u: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """``logsumexp_k f_k - α ||(z - u) R||``: the negative ViM score of the paper (its OOD score is the virtual logit's
    softmax probability; the reference code returns this monotone equivalent).

    Args:
        features: ``[B, D]``.
        logits: ``[B, K]``.
        u: ``[D]`` origin; r: ``[D, D - dim]`` residual basis; alpha: the scale α (:func:`vim_fit`).

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    vlogit = ((features.to(dtype) - u.to(device=features.device, dtype=dtype)) @ r.to(device=features.device, dtype=dtype)).norm(dim=1)
    return torch.logsumexp(logits.to(dtype), dim=1) - alpha * vlogit


@DETECTORS.register("vim")
class ViM(Detector):
    """Virtual-logit matching (Wang et al. 2022, arXiv:2203.10807): energy minus the scaled norm of the feature's
    residual outside the principal subspace of the training features.

    Args:
        dim: principal-subspace dimension; None chooses it from the feature dimension (:func:`vim_dim`). Must be
            smaller than D.
    """

    requires = frozenset({"logits", "features"})
    formula = "`logsumexp(z) − α ‖(h − u) R‖`, R the residual of the principal subspace"
    fits_on = "training features"
    paper = "Wang et al. 2022, arXiv:2203.10807"

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
        dim = self.dim if self.dim is not None else vim_dim(z.shape[1])
        self.u, self.r, self.alpha = vim_fit(z, train.logits, w, train.head_bias, dim)
        self.fitted_dim = dim
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.u is None or self.r is None or self.alpha is None:
            raise RulabError("detector 'vim' is not fitted; call fit(train) on the training split first")
        return vim_score(need(ex, "features", self.name), ex.logits, self.u, self.r, self.alpha)

    def hparams(self) -> dict[str, float]:
        return {"dim": getattr(self, "fitted_dim", self.dim), "alpha": self.alpha}
