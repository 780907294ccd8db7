"""Known answers for the feature detectors (Mahalanobis, KNN, ReAct, ViM) against NumPy re-computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.knn import knn_score
from rulab.detectors.react import feature_percentiles
from rulab.detectors.vim import vim_dim
from rulab.errors import InputError
from rulab.registry import DETECTORS


def two_clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated 3-D Gaussian clusters around (0, 0, 0) and (4, 4, 0), labels 0 / 1, float64."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.3, 0.5]], dtype=torch.float64)
    y = torch.arange(n) % 2
    z = torch.randn(n, 3, generator=g, dtype=torch.float64) @ mix + 4.0 * y.unsqueeze(1) * torch.tensor(
        [1.0, 1.0, 0.0], dtype=torch.float64
    )
    return z, y


def ex_of(z: torch.Tensor, y: torch.Tensor, k: int = 2, seed: int = 0) -> Extracted:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, z.shape[1], generator=g, dtype=z.dtype)
    b = torch.randn(k, generator=g, dtype=z.dtype)
    return Extracted(z @ w.T + b, y, features=z, head_weight=w, head_bias=b)


def test_mahalanobis_equals_numpy_and_ranks_a_far_point_lowest():
    z, y = two_clusters(400, seed=0)
    det = DETECTORS.create("mahalanobis").fit(ex_of(z, y))
    queries = torch.tensor(
        [[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0], [20.0, -20.0, 5.0]], dtype=torch.float64
    )
    s = det.score(ex_of(queries, torch.zeros(5, dtype=torch.long)))
    zn, yn, qn = z.numpy(), y.numpy(), queries.numpy()
    means = np.stack([zn[yn == c].mean(0) for c in (0, 1)])
    centered = zn - means[yn]
    prec = np.linalg.pinv(centered.T @ centered / len(zn))
    d = np.stack([np.einsum("nd,de,ne->n", qn - m, prec, qn - m) for m in means], axis=1)
    np.testing.assert_allclose(s.numpy(), -d.min(1), rtol=1e-8)
    assert int(s.argmin()) == 4 and s[0] > s[2] and s[1] > s[2]


def test_mahalanobis_handles_a_dead_feature_and_needs_every_class():
    z, y = two_clusters(200, seed=1)
    z = torch.cat([z, torch.zeros(200, 1, dtype=torch.float64)], dim=1)  # constant feature: singular covariance
    s = DETECTORS.create("mahalanobis").fit(ex_of(z, y)).score(ex_of(z[:5], y[:5]))
    assert bool(torch.isfinite(s).all())
    with pytest.raises(InputError, match="every class"):  # 3 classes in the head, labels only 0 and 1
        DETECTORS.create("mahalanobis").fit(ex_of(z, y, k=3))


@pytest.mark.parametrize("k", [1, 5, 37])
def test_knn_equals_brute_force(k, monkeypatch):
    g = torch.Generator().manual_seed(k)
    bank = torch.randn(300, 8, generator=g).relu() + 0.01
    q = torch.randn(40, 8, generator=g).relu() + 0.01
    monkeypatch.setattr("rulab.detectors.knn._CHUNK_ELEMENTS", 300 * 7)  # force several chunks of 7 queries
    det = DETECTORS.create("knn", k=k, max_bank=0).fit(
        Extracted(torch.zeros(300, 2), torch.zeros(300, dtype=torch.long), features=bank)
    )
    s = det.score(Extracted(torch.zeros(40, 2), torch.zeros(40, dtype=torch.long), features=q))
    bn = bank.numpy() / np.linalg.norm(bank.numpy(), axis=1, keepdims=True)
    qn = q.numpy() / np.linalg.norm(q.numpy(), axis=1, keepdims=True)
    dist = np.sort(np.linalg.norm(qn[:, None, :] - bn[None], axis=2), axis=1)
    np.testing.assert_allclose(s.numpy(), -dist[:, k - 1], atol=2e-4)
    torch.testing.assert_close(knn_score(q, det.bank, k), s)


def test_knn_bank_is_a_seeded_subset_and_tuning_matches_per_k_scores():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(500, 6, generator=g)
    train = Extracted(torch.zeros(500, 2), torch.zeros(500, dtype=torch.long), features=feats)
    a = DETECTORS.create("knn", max_bank=100, seed=3).fit(train)
    b = DETECTORS.create("knn", max_bank=100, seed=3).fit(train)
    assert a.bank.shape == (100, 6) and torch.equal(a.bank, b.bank)
    val = Extracted(torch.zeros(60, 2), torch.zeros(60, dtype=torch.long), features=feats[:60] + 0.01)
    ood = Extracted(torch.zeros(60, 2), torch.zeros(60, dtype=torch.long), features=5 * torch.randn(60, 6, generator=g))
    chosen = a.tune(None, val, {"far": ood})
    from rulab.detectors.base import tuning_objective

    brute = {
        k: tuning_objective(knn_score(val.features, a.bank, k), {"far": knn_score(ood.features, a.bank, k)})
        for k in a.grid["k"]
        if k <= 100
    }
    assert chosen["objective"] == pytest.approx(min(brute.values()))
    assert brute[chosen["k"]] == pytest.approx(min(brute.values())) and chosen["k"] == min(
        k for k, v in brute.items() if v == min(brute.values())
    )


def test_react_clips_at_the_training_percentile_then_scores_energy():
    g = torch.Generator().manual_seed(0)
    z = torch.rand(200, 5, generator=g, dtype=torch.float64) * 3
    y = torch.zeros(200, dtype=torch.long)
    train = ex_of(z, y, k=4)
    det = DETECTORS.create("react", percentile=90).fit(train)
    c = np.percentile(z.numpy().ravel(), 90)
    assert det.threshold == pytest.approx(c, rel=1e-12)
    q = ex_of(z[:10] * 2, y[:10], k=4)
    zc = np.minimum(q.features.numpy(), c)
    logits = zc @ q.head_weight.numpy().T + q.head_bias.numpy()
    m = logits.max(1, keepdims=True)
    expected = (m + np.log(np.exp(logits - m).sum(1, keepdims=True))).ravel()
    np.testing.assert_allclose(det.score(q).numpy(), expected, rtol=1e-10)
    det.percentile = 99.0  # every grid percentile was fitted
    assert det.threshold == pytest.approx(np.percentile(z.numpy().ravel(), 99), rel=1e-12)


def test_react_percentiles_subsample_rows_beyond_the_quantile_limit(monkeypatch):
    monkeypatch.setattr("rulab.detectors.react._QUANTILE_LIMIT", 1000)
    z = torch.rand(5000, 10, generator=torch.Generator().manual_seed(0))
    p = feature_percentiles(z, (50.0, 90.0))
    assert p[50.0] == pytest.approx(0.5, abs=0.05) and p[90.0] == pytest.approx(0.9, abs=0.05)


def test_vim_equals_the_reference_computation_in_numpy():
    g = torch.Generator().manual_seed(0)
    d, k, n = 12, 4, 300
    z = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    train = ex_of(z, torch.zeros(n, dtype=torch.long), k=k)
    det = DETECTORS.create("vim", dim=5).fit(train)
    q = ex_of(z[:20] + 0.5, torch.zeros(20, dtype=torch.long), k=k)
    # the reference code (haoqiwang/vim, benchmark.py), with np.linalg.eigh for the symmetric covariance
    w, b = train.head_weight.numpy(), train.head_bias.numpy()
    u = -np.linalg.pinv(w) @ b
    x = z.numpy() - u
    evals, evecs = np.linalg.eigh(x.T @ x / n)  # EmpiricalCovariance(assume_centered=True)
    ns = evecs[:, np.argsort(-evals)[5:]]
    alpha = train.logits.numpy().max(1).mean() / np.linalg.norm(x @ ns, axis=1).mean()
    lq = q.logits.numpy()
    m = lq.max(1, keepdims=True)
    energy = (m + np.log(np.exp(lq - m).sum(1, keepdims=True))).ravel()
    expected = energy - alpha * np.linalg.norm((q.features.numpy() - u) @ ns, axis=1)
    np.testing.assert_allclose(det.score(q).numpy(), expected, rtol=1e-8)
    assert det.alpha == pytest.approx(alpha, rel=1e-10)


def test_vim_dimension_choice_and_validation():
    # the paper's rule (CVPR 2022, §6): 1000 above 1500 dimensions (a 1536-d backbone too), else 512; small D: D // 2
    dims = (2048, 1536, 1501, 1500, 864, 768, 512, 16)
    assert tuple(vim_dim(d) for d in dims) == (1000, 1000, 1000, 512, 512, 512, 256, 8)
    z = torch.randn(50, 6, dtype=torch.float64)
    with pytest.raises(InputError, match="smaller than the feature dimension"):
        DETECTORS.create("vim", dim=6).fit(ex_of(z, torch.zeros(50, dtype=torch.long)))
