"""Deep nearest neighbours (Sun, Ming, Zhu & Li 2022, "Out-of-distribution detection with deep nearest neighbors",
arXiv:2204.06165)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rulab.detectors.base import Detector, Extracted, need, tuning_objective
from rulab.errors import InputError, RulabError, RulabWarning
from rulab.registry import DETECTORS

__all__ = ["BANK_BUDGET", "normalize_features", "knn_similarities", "knn_distances", "knn_score", "KNN"]

_CHUNK_ELEMENTS = 1 << 23
"""Query rows per matmul are chosen so that one ``[rows, M]`` similarity block holds about 8M floats (32 MB)."""

BANK_BUDGET = 1 << 24
"""The default bank keeps every training feature while ``M · D`` (bank rows × feature dimension) is at most this many
values (16.8M: 64 MiB of float32, e.g. 19,418 of fastcnn's 864-dimensional features or 8,192 of a ResNet-50's 2048),
and a seeded random subset of ``BANK_BUDGET // D`` rows beyond that. Exact search costs ``2 · M · D`` flops per query,
at most 34 MFLOP: about 1 ms per query on 2 CPU cores. Measured (``benchmarks/knn_bank.py``, docs/benchmarks.md): on
Fashion-MNIST a 5,000-feature bank costs 0.004 AUROC on digits against the 10,000 the default evaluation fits on, for
0.7× the scoring time."""


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """``z / ||z||`` per row, in float64 (no overflow or underflow of ``||z||²`` for any float32 feature); a zero row
    stays zero.

    Args:
        features: ``[N, D]``.

    Returns:
        ``float64 [N, D]``.
    """
    return F.normalize(features.to(torch.float64), dim=1, eps=torch.finfo(torch.float64).tiny)


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
    return _search(features, bank, k)[0]


def _search(features: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(similarities [B, k], bank indices [B, k], float64 normalised queries [B, D])`` of the exact k-NN search."""
    if not 1 <= k <= bank.shape[0]:
        raise InputError(f"KNN needs 1 <= k <= {bank.shape[0]} (the bank size), got k={k}")
    q64 = normalize_features(features.to(bank.device))
    q = q64.to(bank.dtype)
    rows = max(1, _CHUNK_ELEMENTS // max(bank.shape[0], 1))
    sims = torch.empty(q.shape[0], k, dtype=bank.dtype, device=bank.device)
    idx = torch.empty(q.shape[0], k, dtype=torch.int64, device=bank.device)
    for i in range(0, q.shape[0], rows):
        top = (q[i : i + rows] @ bank.T).topk(k, dim=1, sorted=True)
        sims[i : i + rows], idx[i : i + rows] = top.values, top.indices
    return sims, idx, q64


def knn_distances(features: torch.Tensor, bank: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Distances ``||z/||z|| - b_(k)||`` to the k-th nearest bank row, for each k in ``ks``, ``float64 [B, len(ks)]``.

    One exact search for the largest k finds the neighbours (the ranking in the bank's dtype); each distance is then
    computed in float64 from the two vectors rather than as ``sqrt(2 - 2 cos)``, which cancels for near neighbours
    (a float32 cosine of two near-duplicate features leaves ``sqrt(2 - 2 cos)`` with an error of ~3e-4 instead of
    ~1e-7).

    Args:
        features: ``[B, D]`` queries (normalised here, in float64).
        bank: ``[M, D]`` L2-normalised training features.
        ks: neighbour ranks, each in ``[1, M]``.
    """
    kmax = max(ks)
    _, idx, q64 = _search(features, bank, kmax)
    out = torch.empty(q64.shape[0], len(ks), dtype=torch.float64, device=bank.device)
    for j, k in enumerate(ks):
        out[:, j] = (q64 - bank[idx[:, k - 1]].to(torch.float64)).norm(dim=1)
    return out


def knn_score(features: torch.Tensor, bank: torch.Tensor, k: int = 50) -> torch.Tensor:
    """``-|| z/||z|| - b_(k) ||_2``: minus the distance to the k-th nearest normalised training feature (Sun et al.
    2022, §3: features are L2-normalised before the search).

    For unit vectors ``||u - v||² = 2 - 2 u·v``, so the k-th nearest neighbour is the k-th most similar one
    (:func:`knn_distances` computes its distance in float64). The reference code returns minus the SQUARED distance
    from faiss; the ranking, hence every metric, is the same.

    Args:
        features: ``[B, D]``.
        bank: ``[M, D]`` L2-normalised training features.
        k: the neighbour rank (paper: 50 for CIFAR-10).

    Returns:
        ``float64 [B]`` in ``[-2, 0]``; higher = more in-distribution.
    """
    return -knn_distances(features, bank, [k])[:, 0]


@DETECTORS.register("knn")
class KNN(Detector):
    """Distance to the k-th nearest L2-normalised training feature (Sun et al. 2022, arXiv:2204.06165).

    Args:
        k: neighbour rank (paper: 50); tuned over :attr:`grid` on validation data when the evaluator tunes.
        max_bank: keep at most this many training features (a seeded random subset); ``0`` keeps all; None (default)
            keeps all while ``M · D`` fits :data:`BANK_BUDGET` (every training subset of the default evaluation, which
            fits on at most 10,000 images), else ``BANK_BUDGET // D`` rows. Subsampling warns, and the bank size is
            recorded with the result (``hparams()``: ``bank``, ``bank_of``). Sun et al. use 1% of ImageNet's training
            set (§4.2) and show little loss from subsampling when k is scaled with it, which :meth:`tune` does.
        seed: seeds the bank subset.
    """

    requires = frozenset({"features"})
    formula = "`−‖h/‖h‖ − b_(k)‖`, distance to the k-th nearest normalised training feature"
    fits_on = "training features (all of the fit set up to 64 MiB)"
    paper = "Sun et al. 2022, arXiv:2204.06165"
    grid = {"k": (1, 5, 10, 20, 50, 100, 200)}

    def __init__(self, k: int = 50, max_bank: int | None = None, seed: int = 0) -> None:
        if k < 1 or (max_bank is not None and max_bank < 0):
            raise InputError(f"KNN needs k >= 1 and max_bank >= 0 (or None), got k={k}, max_bank={max_bank}")
        self.k = int(k)
        self.max_bank = None if max_bank is None else int(max_bank)
        self.seed = int(seed)
        self.bank: torch.Tensor | None = None
        self.bank_of: int | None = None

    def bank_limit(self, n: int, d: int) -> int:
        """How many of ``n`` training features of dimension ``d`` the bank keeps."""
        if self.max_bank is None:
            return n if n * d <= BANK_BUDGET else max(1, BANK_BUDGET // max(d, 1))
        return n if self.max_bank == 0 else min(n, self.max_bank)

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> KNN:
        z = need(train, "features", self.name)
        n, d = z.shape
        keep = self.bank_limit(n, d)
        if keep < n:
            why = (
                f"max_bank={self.max_bank}"
                if self.max_bank is not None
                else f"the default budget of {BANK_BUDGET:,} values"
            )
            warnings.warn(
                f"KNN keeps a random {keep:,} of the {n:,} training features in its bank ({why}); pass max_bank=0 to keep all",
                RulabWarning,
                stacklevel=2,
            )
            g = torch.Generator().manual_seed(self.seed)
            z = z[torch.randperm(n, generator=g)[:keep].sort().values.to(z.device)]
        self.bank = normalize_features(z).to(torch.float32)
        self.bank_of = n
        return self

    def _bank(self) -> torch.Tensor:
        if self.bank is None:
            raise RulabError("detector 'knn' is not fitted; call fit(train) on the training split first")
        return self.bank

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        bank = self._bank().to(z.device)
        return knn_score(z, bank, min(self.k, bank.shape[0]))

    def hparams(self) -> dict[str, Any]:
        """``k``, and the bank size ``bank`` out of ``bank_of`` training features."""
        return {"k": self.k, "bank": None if self.bank is None else int(self.bank.shape[0]), "bank_of": self.bank_of}

    def tune(
        self, model: torch.nn.Module | None, val_id: Extracted, val_ood: Mapping[str, Extracted]
    ) -> dict[str, Any]:
        """Pick k on validation data with ONE search for the largest k (every smaller k is a column of it)."""
        if not val_ood:
            raise RulabError(
                "detector 'knn' tunes k on validation-OOD data, but none was given; add val_ood to the benchmark"
            )
        bank = self._bank()
        ks = [k for k in self.grid["k"] if k <= bank.shape[0]]

        def scores(ex: Extracted) -> torch.Tensor:
            z = need(ex, "features", self.name)
            return -knn_distances(z, bank.to(z.device), ks)

        s_id = scores(val_id)
        s_ood = {n: scores(e) for n, e in val_ood.items()}
        best = min(
            (tuning_objective(s_id[:, j], {n: s[:, j] for n, s in s_ood.items()}), j, k) for j, k in enumerate(ks)
        )
        self.k = best[2]
        return {"k": self.k, "objective": best[0]}
