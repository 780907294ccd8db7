"""Deep nearest neighbours (Sun, Ming, Zhu & Li 2022, "Out-of-distribution detection with deep nearest neighbors",
arXiv:2204.06165)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rulab.detectors.base import Detector, Extracted, need, tuning_objective
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["knn_similarities", "knn_score", "KNN"]

_CHUNK_ELEMENTS = 1 << 23
"""Query rows per matmul are chosen so that one ``[rows, M]`` similarity block holds about 8M floats (32 MB)."""


def knn_similarities(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Cosine similarities of each L2-normalised query to its ``k`` most similar bank rows, sorted descending.

    The search is an exact brute-force matmul in chunks of query rows, so memory stays at ~32 MB whatever N and M.

    Args:
        features: ``[B, D]`` queries (normalised here).
        bank: ``[M, D]`` L2-normalised training features.
        k: neighbours (``1 <= k <= M``).

    Returns:
        ``[B, k]``, in the bank's dtype, on the bank's device.
    """
    if not 1 <= k <= bank.shape[0]:
        raise InputError(f"KNN needs 1 <= k <= {bank.shape[0]} (the bank size), got k={k}")
    q = F.normalize(features.to(device=bank.device, dtype=bank.dtype), dim=1)
    rows = max(1, _CHUNK_ELEMENTS // max(bank.shape[0], 1))
    out = torch.empty(q.shape[0], k, dtype=bank.dtype, device=bank.device)
    for i in range(0, q.shape[0], rows):
        out[i : i + rows] = (q[i : i + rows] @ bank.T).topk(k, dim=1, sorted=True).values
    return out


def knn_score(features: torch.Tensor, bank: torch.Tensor, k: int = 50) -> torch.Tensor:
    """``-|| z/||z|| - b_(k) ||_2``: minus the distance to the k-th nearest normalised training feature.

    For unit vectors ``||u - v||² = 2 - 2 u·v``, so the k-th nearest neighbour is the k-th most similar one. (The
    reference code returns minus the SQUARED distance from faiss; the ranking, hence every metric, is the same.)

    Args:
        features: ``[B, D]``.
        bank: ``[M, D]`` L2-normalised training features.
        k: the neighbour rank (paper: 50 for CIFAR-10).

    Returns:
        ``[B]`` in ``[-2, 0]``; higher = more in-distribution.
    """
    sims = knn_similarities(features, bank, k)[:, k - 1]
    return -(2.0 - 2.0 * sims).clamp_min(0.0).sqrt()


@DETECTORS.register("knn")
class KNN(Detector):
    """Distance to the k-th nearest L2-normalised training feature (Sun et al. 2022, arXiv:2204.06165).

    Args:
        k: neighbour rank (paper: 50); tuned over :attr:`grid` on validation data when the evaluator tunes.
        max_bank: keep at most this many training features (a seeded random subset; the paper uses 1% of ImageNet and
            shows little loss from subsampling when k is scaled with it, which :meth:`tune` does); ``0`` keeps all.
            The default (10% of CIFAR-10) keeps exact brute-force search at ~2 s for 24,000 queries on 2 CPU cores.
        seed: seeds the bank subset.
    """

    requires = frozenset({"features"})
    formula = "`−‖h/‖h‖ − b_(k)‖`, distance to the k-th nearest normalised training feature"
    fits_on = "training features (bank ≤ 5,000)"
    paper = "Sun et al. 2022, arXiv:2204.06165"
    grid = {"k": (1, 5, 10, 20, 50, 100, 200)}

    def __init__(self, k: int = 50, max_bank: int = 5_000, seed: int = 0) -> None:
        if k < 1 or max_bank < 0:
            raise InputError(f"KNN needs k >= 1 and max_bank >= 0, got k={k}, max_bank={max_bank}")
        self.k = int(k)
        self.max_bank = int(max_bank)
        self.seed = int(seed)
        self.bank: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> KNN:
        z = need(train, "features", self.name)
        if self.max_bank and z.shape[0] > self.max_bank:
            g = torch.Generator().manual_seed(self.seed)
            z = z[torch.randperm(z.shape[0], generator=g)[: self.max_bank].sort().values.to(z.device)]
        self.bank = F.normalize(z.float(), dim=1)
        return self

    def _bank(self) -> torch.Tensor:
        if self.bank is None:
            raise RulabError("detector 'knn' is not fitted; call fit(train) on the training split first")
        return self.bank

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        bank = self._bank().to(z.device)
        return knn_score(z, bank, min(self.k, bank.shape[0]))

    def tune(self, model: torch.nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]) -> dict[str, Any]:
        """Pick k on validation data with ONE search for the largest k (every smaller k is a column of it)."""
        if not val_ood:
            raise RulabError("detector 'knn' tunes k on validation-OOD data, but none was given; add val_ood to the benchmark")
        bank = self._bank()
        ks = [k for k in self.grid["k"] if k <= bank.shape[0]]
        kmax = max(ks)

        def dists(ex: Extracted) -> torch.Tensor:
            z = need(ex, "features", self.name)
            return -(2.0 - 2.0 * knn_similarities(z, bank.to(z.device), kmax)).clamp_min(0.0).sqrt()

        d_id = dists(val_id)
        d_ood = {n: dists(e) for n, e in val_ood.items()}
        best = min(
            ((tuning_objective(d_id[:, k - 1], {n: d[:, k - 1] for n, d in d_ood.items()}), i, k) for i, k in enumerate(ks)),
        )
        self.k = best[2]
        return {"k": self.k, "objective": best[0]}
