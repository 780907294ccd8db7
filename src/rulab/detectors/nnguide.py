"""NNGuide: nearest-neighbour guidance (Park, Jung & Teoh, ICCV 2023, "Nearest neighbor guidance for
out-of-distribution detection", arXiv:2309.14888).

The paper's method section multiplies a classifier-based confidence, the energy ``E(x) = logsumexp f(x)``, by a guidance
term: the mean similarity of the image's normalised feature to its k nearest entries of a bank of training features,
each scaled by its own confidence,

    B = { E(x_i) · h_i / ‖h_i‖ : x_i in a random subset of the training set },
    G(x) = (1/k) Σ_{b ∈ top-k of B by ⟨ĥ, b⟩} ⟨ĥ, b⟩,   ĥ = h(x) / ‖h(x)‖,
    s(x) = E(x) · G(x).

Defaults are the authors' (``ood_detectors/nnguide.py``, ``dataloaders/factory.py``): k = 10 and a bank of 1% of
the training images (``bankset_ratio=0.01``), drawn with a seed. rulab draws the bank from the training subset the
detectors are fitted on, and keeps at least k images. The exact search is a chunked matmul
(:func:`rulab.detectors.knn.knn_similarities`); the authors use faiss' exact inner-product index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rulab.detectors.base import Detector, Extracted, need, tuning_objective
from rulab.detectors.energy import energy_score
from rulab.detectors.knn import knn_similarities
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["nnguide_bank", "nnguide_score", "NNGuide"]


def nnguide_bank(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``E(x_i) · h_i / ‖h_i‖``: ``[M, D]`` confidence-scaled normalised bank features (float32).

    Args:
        features: ``[M, D]`` training features of the bank images.
        logits: ``[M, K]`` their logits.
    """
    z = features.float()
    return F.normalize(z, dim=1) * energy_score(logits.to(z)).unsqueeze(1)


def nnguide_score(features: torch.Tensor, logits: torch.Tensor, bank: torch.Tensor, k: int = 10) -> torch.Tensor:
    """``logsumexp(z) · mean of the k largest ⟨h/‖h‖, b⟩ over the bank``.

    Args:
        features: ``[B, D]``.
        logits: ``[B, K]``.
        bank: ``[M, D]`` from :func:`nnguide_bank`.
        k: neighbours (``1 <= k <= M``).

    Returns:
        ``[B]`` in the bank's dtype, on the features' device; higher = more in-distribution.
    """
    bank = bank.to(features.device)
    guidance = knn_similarities(features, bank, k).mean(dim=1)
    return energy_score(logits.to(device=features.device, dtype=bank.dtype)) * guidance


@DETECTORS.register("nnguide")
class NNGuide(Detector):
    """Energy times the mean similarity to the k nearest confidence-scaled training features (Park et al. 2023, ICCV,
    arXiv:2309.14888, method section).

    Args:
        k: neighbours (authors' default 10); tuned over :attr:`grid` on validation data when the evaluator tunes.
        bank_ratio: the fraction of the fitting images kept in the bank (authors: 0.01), at least ``k`` images.
        seed: seeds the bank subset.
    """

    requires = frozenset({"logits", "features"})
    formula = "`logsumexp(z) · mean_top-k ⟨h/‖h‖, E_i h_i/‖h_i‖⟩` over a 1% bank of training features"
    fits_on = "training features (1% bank)"
    paper = "Park et al. 2023, ICCV, arXiv:2309.14888"
    grid = {"k": (1, 5, 10, 20, 50)}

    def __init__(self, k: int = 10, bank_ratio: float = 0.01, seed: int = 0) -> None:
        if k < 1 or not 0 < bank_ratio <= 1:
            raise InputError(f"NNGuide needs k >= 1 and 0 < bank_ratio <= 1, got k={k}, bank_ratio={bank_ratio}")
        self.k = int(k)
        self.bank_ratio = float(bank_ratio)
        self.seed = int(seed)
        self.bank: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> NNGuide:
        z = need(train, "features", self.name)
        n = z.shape[0]
        m = min(n, max(self.k, math.ceil(self.bank_ratio * n)))
        g = torch.Generator().manual_seed(self.seed)
        rows = torch.randperm(n, generator=g)[:m].sort().values.to(z.device)
        self.bank = nnguide_bank(z[rows], train.logits[rows.to(train.logits.device)])
        return self

    def _bank(self) -> torch.Tensor:
        if self.bank is None:
            raise RulabError("detector 'nnguide' is not fitted; call fit(train) on the training split first")
        return self.bank

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        bank = self._bank()
        return nnguide_score(need(ex, "features", self.name), ex.logits, bank, min(self.k, bank.shape[0]))

    def tune(
        self, model: torch.nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]
    ) -> dict[str, Any]:
        """Pick k on validation data with ONE search for the largest k (every smaller k is a prefix of it)."""
        if not val_ood:
            raise RulabError(
                "detector 'nnguide' tunes k on validation-OOD data, but none was given; add val_ood to the benchmark"
            )
        bank = self._bank()
        ks = [k for k in self.grid["k"] if k <= bank.shape[0]] or [bank.shape[0]]
        kmax = max(ks)

        def parts(ex: Extracted) -> tuple[torch.Tensor, torch.Tensor]:
            z = need(ex, "features", self.name)
            sims = knn_similarities(z, bank.to(z.device), kmax)
            return energy_score(ex.logits.to(device=z.device, dtype=bank.dtype)), sims.cumsum(dim=1)

        def at(p: tuple[torch.Tensor, torch.Tensor], k: int) -> torch.Tensor:
            return p[0] * (p[1][:, k - 1] / k)

        p_id = parts(val_id)
        p_ood = {n: parts(e) for n, e in val_ood.items()}
        best = min(
            (tuning_objective(at(p_id, k), {n: at(p, k) for n, p in p_ood.items()}), i, k) for i, k in enumerate(ks)
        )
        self.k = best[2]
        return {"k": self.k, "objective": best[0]}
