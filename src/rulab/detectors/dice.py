"""DICE: directed sparsification of the last layer (Sun & Li, ECCV 2022, "DICE: Leveraging sparsification for
out-of-distribution detection", arXiv:2111.09805).

The paper's method section: the contribution of weight ``W_kj`` to class ``k`` is the mean contribution on ID training
data, ``V = m ⊙ W`` with ``m = E_train[h] ∈ R^D`` the mean penultimate feature (``V_kj = m_j W_kj``); DICE keeps the
weights whose contribution is above the p-th percentile of all ``K × D`` entries of ``V`` (mask ``M = 1[V > q_p(V)]``)
and scores the energy of the sparsified head,

    s(x) = logsumexp((M ⊙ W) h + b).

As in the authors' ``models/route.py`` the percentile is NumPy's (linear interpolation) and the comparison strict.
Defaults: p = 90, the paper's CIFAR setting (ImageNet: 70); the tuning grid 10, 30, 50, 70, 90 is the sparsity range
the paper's ablation covers. The contribution uses the mean of the training features the detector is fitted on.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.energy import energy_score
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["dice_contribution", "dice_mask", "dice_score", "DICE"]


def dice_contribution(mean_features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``V = m ⊙ W``: ``[K, D]`` with ``V_kj = m_j W_kj`` (float64).

    Args:
        mean_features: ``[D]`` mean penultimate feature of the ID training data.
        weight: ``[K, D]`` head weight.
    """
    return mean_features.to(torch.float64).unsqueeze(0) * weight.to(device=mean_features.device, dtype=torch.float64)


def dice_mask(contribution: torch.Tensor, p: float) -> torch.Tensor:
    """``1[V > q_p(V)]``, ``q_p`` the p-th percentile of all entries (linear interpolation, as ``np.percentile``).

    Args:
        contribution: ``[K, D]``.
        p: sparsity in [0, 100).

    Returns:
        ``bool [K, D]``.
    """
    if not 0 <= p < 100:
        raise InputError(f"DICE's sparsity p must be in [0, 100), got {p}")
    v = contribution.to(torch.float64)
    return v > torch.quantile(v.reshape(-1), p / 100.0)


def dice_score(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mask: torch.Tensor, t: float = 1.0
) -> torch.Tensor:
    """``T · logsumexp(((M ⊙ W) h + b) / T)``.

    Args:
        features: ``[B, D]``.
        weight: ``[K, D]`` head weight.
        bias: ``[K]`` head bias or None.
        mask: ``bool [K, D]`` from :func:`dice_mask`.
        t: energy temperature (paper: 1).

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = features.to(dtype)
    w = weight.to(device=z.device, dtype=dtype) * mask.to(device=z.device, dtype=dtype)
    logits = z @ w.T
    if bias is not None:
        logits = logits + bias.to(device=z.device, dtype=dtype)
    return energy_score(logits, t)


@DETECTORS.register("dice")
class DICE(Detector):
    """Energy of the head with the weights of the lowest mean contribution removed (Sun & Li 2022,
    ECCV, arXiv:2111.09805, method section).

    Args:
        p: sparsity, the percentage of weights removed (paper, CIFAR: 90); tuned over :attr:`grid` on validation
            data when the evaluator tunes.
        t: energy temperature (paper: 1).
    """

    requires = frozenset({"features", "head"})
    formula = "`logsumexp((M ⊙ W) h + b)`, `M = 1[m ⊙ W > q_p]`, `m` the mean training feature"
    fits_on = "training features (their mean)"
    paper = "Sun & Li 2022, ECCV, arXiv:2111.09805"
    grid = {"p": (10.0, 30.0, 50.0, 70.0, 90.0)}

    def __init__(self, p: float = 90.0, t: float = 1.0) -> None:
        if not 0 <= p < 100 or not t > 0:
            raise InputError(f"DICE needs 0 <= p < 100 and t > 0, got p={p}, t={t}")
        self.p = float(p)
        self.t = float(t)
        self.contribution: torch.Tensor | None = None
        self._masks: dict[float, torch.Tensor] = {}

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> DICE:
        z = need(train, "features", self.name)
        w = need(train, "head_weight", self.name)
        self.contribution = dice_contribution(z.to(torch.float64).mean(dim=0), w)
        self._masks = {}
        return self

    def mask(self) -> torch.Tensor:
        """The mask at the current ``p`` (computed once per p)."""
        if self.contribution is None:
            raise RulabError("detector 'dice' is not fitted; call fit(train) on the training split first")
        if self.p not in self._masks:
            self._masks[self.p] = dice_mask(self.contribution, self.p)
        return self._masks[self.p]

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        return dice_score(z, need(ex, "head_weight", self.name), ex.head_bias, self.mask(), self.t)
