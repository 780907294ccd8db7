"""Residual: the norm of the feature outside the principal subspace of the training features (Wang, Li, Feng &
Zhang, CVPR 2022, "ViM: Out-of-distribution with virtual-logit matching", arXiv:2203.10807).

The ViM paper defines the residual norm as a feature-only OOD score (CVPR 2022, §3 "OOD Score Based on Principal
Space", Eq. 3: ``Residual(x) = ‖x^{P⊥}‖``; its tables' "Residual" baseline is "defined in Eq. (3)", §6) and builds its
virtual logit from it (§4, Eq. 5). rulab returns the negative, so that higher = more in-distribution:

    s(x) = −‖(h − u) R‖,

with ``u = −W⁺ b`` (the point the head maps to all-zero logits; §3, Eq. 1) and ``R`` the eigenvectors of the
uncentred covariance of ``h − u`` on the training features outside the top ``dim`` (§4, Eq. 4;
:func:`rulab.detectors.vim.vim_fit`, shared with ViM). The principal dimension follows the paper as ViM does
(:func:`rulab.detectors.vim.vim_dim`). OpenOOD's ``residual_postprocessor.py`` computes the same score.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.vim import vim_dim, vim_fit
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["residual_score", "Residual"]


def residual_score(features: torch.Tensor, u: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``−‖(h − u) R‖₂``.

    Args:
        features: ``[B, D]``.
        u: ``[D]`` origin; r: ``[D, D − dim]`` residual basis (:func:`rulab.detectors.vim.vim_fit`).

    Returns:
        ``[B]`` (≤ 0); higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = features.to(dtype) - u.to(device=features.device, dtype=dtype)
    return -(z @ r.to(device=features.device, dtype=dtype)).norm(dim=1)


@DETECTORS.register("residual")
class Residual(Detector):
    """Minus the norm of the feature's residual outside the principal subspace of the training features (the
    "Residual" score of Wang et al. 2022, CVPR, arXiv:2203.10807, §3, Eq. 3).

    Args:
        dim: principal-subspace dimension; None chooses it from the feature dimension as ViM does. Must be smaller
            than D.
    """

    requires = frozenset({"features", "head"})
    formula = "`−‖(h − u) R‖`, R the residual of the principal subspace of the training features"
    fits_on = "training features"
    paper = "Wang et al. 2022, CVPR, arXiv:2203.10807, §3"

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and dim < 1:
            raise InputError(f"Residual needs dim >= 1 or None, got {dim}")
        self.dim = dim
        self.u: torch.Tensor | None = None
        self.r: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> Residual:
        z = need(train, "features", self.name)
        w = need(train, "head_weight", self.name)
        dim = self.dim if self.dim is not None else vim_dim(z.shape[1])
        self.u, self.r, _alpha = vim_fit(z, train.logits, w, train.head_bias, dim, scaled=False)
        self.fitted_dim = dim
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.u is None or self.r is None:
            raise RulabError("detector 'residual' is not fitted; call fit(train) on the training split first")
        return residual_score(need(ex, "features", self.name), self.u, self.r)

    def hparams(self) -> dict[str, int | None]:
        return {"dim": getattr(self, "fitted_dim", self.dim)}
