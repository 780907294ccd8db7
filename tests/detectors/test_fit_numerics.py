"""The feature detectors' fits at the edges: N < D, N ≈ D, N ≫ D, near-duplicate features, large feature norms.

References are computed here in float64: scikit-learn's ``EmpiricalCovariance`` (the fit of Lee et al.'s Mahalanobis
code), NumPy's ``eigh``/``pinv`` (ViM's reference code) and brute-force NumPy distances (KNN).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.detectors import mahalanobis as M
from rulab.detectors.base import Extracted
from rulab.detectors.knn import BANK_BUDGET, knn_score
from rulab.detectors.vim import vim_fit, vim_score
from rulab.errors import InputError
from rulab.metrics.ood import auroc
from rulab.registry import DETECTORS

C = 10


def features(n: int, d: int, seed: int, ood: bool = False, latent: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """CNN-like float32 features: ReLU of a 48-dimensional class-structured latent code, mapped to D dimensions with
    per-feature scales in [0.2, 2]; OOD codes have no class mean. Labels 0..9."""
    r = np.random.default_rng(seed)
    a = np.random.default_rng(99).normal(size=(latent, d)) / np.sqrt(latent)
    mu = np.random.default_rng(98).normal(size=(C, latent))
    y = r.integers(0, C, n)
    lat = r.normal(size=(n, latent)) + (r.normal(size=(n, latent)) * 0.9 if ood else mu[y])
    z = np.maximum(lat @ a + 0.3, 0.0) * np.random.default_rng(97).uniform(0.2, 2.0, d)
    return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(y)


def sklearn_scores(z: torch.Tensor, y: torch.Tensor, queries: list[torch.Tensor]) -> list[torch.Tensor]:
    """Lee et al.'s fit: EmpiricalCovariance on the class-centred features (float64), ``-min_c (q-μ_c)ᵀ P (q-μ_c)``."""
    cov_mod = pytest.importorskip("sklearn.covariance", reason="scikit-learn's EmpiricalCovariance is the reference")
    zn, yn = z.double().numpy(), y.numpy()
    means = np.stack([zn[yn == c].mean(0) for c in range(C)])
    prec = cov_mod.EmpiricalCovariance(assume_centered=False).fit(zn - means[yn]).precision_
    out = []
    for q in queries:
        qn = q.double().numpy()
        d = np.stack([(((qn - m) @ prec) * (qn - m)).sum(1) for m in means], axis=1)
        out.append(torch.from_numpy(-d.min(1)))
    return out


def float32_gram_fit(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rulab 0.1's fit (the bug): the centred product in float32, float64's cut-off D·eps64·λ_max."""
    means = M.class_means(z, y, C)
    c = (z.double() - means[y]).float()
    cov = (c.T @ c).double() / len(z)
    evals, evecs = torch.linalg.eigh(cov)
    keep = evals > evals.abs().max() * cov.shape[0] * torch.finfo(torch.float64).eps
    return means, evecs[:, keep] * evals[keep].rsqrt()


def fit(z: torch.Tensor, y: torch.Tensor) -> M.Mahalanobis:
    return DETECTORS.create("mahalanobis").fit(Extracted(torch.zeros(len(z), C), y, features=z))


def scores(det: M.Mahalanobis, q: torch.Tensor) -> torch.Tensor:
    return det.score(Extracted(torch.zeros(len(q), C), torch.zeros(len(q), dtype=torch.long), features=q))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


# ------------------------------------------------------------------------------------------------- Mahalanobis


@pytest.fixture(scope="module")
def issue_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, M.Mahalanobis]:
    """600 fitting images, fastcnn's 864 features (rank 590 = N - C), 1,000 ID and 1,000 OOD queries, and the fit."""
    z, y = features(600, 864, seed=1)
    zt, zo = features(1000, 864, seed=2)[0], features(1000, 864, seed=3, ood=True)[0]
    return z, y, zt, zo, fit(z, y)


def test_singular_covariance_600_by_864_equals_sklearn(issue_case):
    """The issue's case: ``rulab.evaluate`` without ``id_train`` fits on 600 validation images."""
    z, y, zt, zo, det = issue_case
    assert det.rank == 590 and det.hparams() == {"rank": 590}
    s_id, s_ood = scores(det, zt), scores(det, zo)
    r_id, r_ood = sklearn_scores(z, y, [zt, zo])
    assert rel_err(s_id, r_id) < 1e-9 and rel_err(s_ood, r_ood) < 1e-9
    assert auroc(s_id, s_ood) == pytest.approx(auroc(r_id, r_ood), abs=1e-12)
    assert auroc(r_id, r_ood) == pytest.approx(0.954315, abs=1e-6)  # the reference value
    # the float32 Gram product inverts ~140 rounding-noise eigenvalues: scores off by orders of magnitude
    means, w = float32_gram_fit(z, y)
    assert w.shape[1] > 700
    bad_id, bad_ood = M.mahalanobis_score(zt, means, w), M.mahalanobis_score(zo, means, w)
    assert rel_err(bad_id, r_id) > 1.0 and auroc(bad_id, bad_ood) < 0.8


@pytest.mark.parametrize(
    ("n", "d", "rank", "tol"),
    [(80, 128, 70, 1e-9), (138, 128, 128, 1e-6), (4000, 128, 128, 1e-9)],
    ids=["N<D", "N~D", "N>>D"],
)
def test_equals_sklearn_for_every_shape(n, d, rank, tol):
    z, y = features(n, d, seed=1)
    zt, zo = features(500, d, seed=2)[0], features(500, d, seed=3, ood=True)[0]
    det = fit(z, y)
    assert det.rank == rank
    s, r = [scores(det, zt), scores(det, zo)], sklearn_scores(z, y, [zt, zo])
    assert rel_err(s[0], r[0]) < tol and rel_err(s[1], r[1]) < tol  # N ≈ D: condition number ~1e6, so 1e-6
    assert auroc(*s) == pytest.approx(auroc(*r), abs=1e-6)


def test_a_1e_6_feature_perturbation_moves_auroc_by_less_than_1e_4(issue_case):
    z, y, zt, zo, fitted = issue_case
    g = torch.Generator().manual_seed(0)
    for det in (
        fitted,
        fit(z + 1e-6 * torch.randn(z.shape, generator=g), y),
    ):  # perturb the queries, then the fitting data too
        base = auroc(scores(det, zt), scores(det, zo))
        moved = auroc(
            scores(det, zt + 1e-6 * torch.randn(zt.shape, generator=g)),
            scores(det, zo + 1e-6 * torch.randn(zo.shape, generator=g)),
        )
        assert abs(moved - base) < 1e-4
        assert base == pytest.approx(0.954315, abs=1e-4)


def test_near_duplicate_features_add_nothing():
    """Five features repeated with float32-rounding-size differences (features with a mean of ~5, as ReLU features
    have a positive mean): the extra directions are rounding noise and are dropped, so the scores equal those without
    the copies. The float64 cut-off alone (pinvh's) keeps them and they dominate the distances."""
    z, y = features(2000, 64, seed=4)
    q = features(300, 64, seed=5, ood=True)[0]
    z, q = z + 5, q + 5
    g = torch.Generator().manual_seed(1)

    def dup(t: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [t, (t[:, :5].double() * (1 + 1e-7 * torch.randn(len(t), 5, generator=g, dtype=torch.float64))).float()],
            dim=1,
        )

    plain, doubled = fit(z, y), fit(dup(z), y)
    assert doubled.rank == plain.rank == 64
    assert rel_err(scores(doubled, dup(q)), scores(plain, q)) < 1e-4
    means = M.class_means(dup(z), y, C)
    w = M.whitening(M.tied_covariance(dup(z), y, means))  # no precision floor
    assert w.shape[1] == 69 and rel_err(M.mahalanobis_score(dup(q), means, w), scores(plain, q)) > 0.1


def test_large_feature_norms_do_not_cancel():
    """Features around 1e4 (float32 resolution 1e-3): the fit and the score equal the float64 reference on the same
    float32 values."""
    z, y = features(3000, 32, seed=6)
    big, q = z + 1e4, features(300, 32, seed=7)[0] + 1e4
    det = fit(big, y)
    (ref,) = sklearn_scores(big, y, [q])
    assert rel_err(scores(det, q), ref) < 1e-8
    # float32 scoring of the same fit (rulab 0.1's mahalanobis_score) loses everything to cancellation
    zq = q @ det.white.float()
    mq = det.means.float() @ det.white.float()
    assert rel_err(-torch.cdist(zq, mq).square().amin(1), ref) > 1e-3


def test_rounding_floor_is_u_squared_times_the_mean_squared_norm():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float32)  # ||z||² = 25, 0
    u = torch.finfo(torch.float32).eps / 2
    assert M.rounding_floor(z) == pytest.approx(u * u * 12.5, rel=1e-12)
    assert M.rounding_floor(z.double()) == pytest.approx((torch.finfo(torch.float64).eps / 2) ** 2 * 12.5, rel=1e-12)
    assert M.rounding_floor(torch.ones(3, 2, dtype=torch.int64)) == 0.0


# ---------------------------------------------------------------------------------------------------------- ViM


def vim_reference(
    z: torch.Tensor, logits: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dim: int, q: torch.Tensor, lq: torch.Tensor
) -> np.ndarray:
    """haoqiwang/vim's fit and score in NumPy float64 (eigh of the uncentred covariance of z - u)."""
    zn, wn, bn = z.double().numpy(), w.double().numpy(), b.double().numpy()
    u = -np.linalg.pinv(wn) @ bn
    x = zn - u
    evals, evecs = np.linalg.eigh(x.T @ x / len(x))
    ns = evecs[:, np.argsort(-evals)[dim:]]
    alpha = logits.double().numpy().max(1).mean() / np.linalg.norm(x @ ns, axis=1).mean()
    lqn = lq.double().numpy()
    m = lqn.max(1, keepdims=True)
    energy = (m + np.log(np.exp(lqn - m).sum(1, keepdims=True))).ravel()
    return energy - alpha * np.linalg.norm((q.double().numpy() - u) @ ns, axis=1)


@pytest.mark.parametrize(
    ("n", "d", "dim"), [(100, 128, 64), (140, 128, 64), (4000, 128, 64)], ids=["N<D", "N~D", "N>>D"]
)
def test_vim_equals_the_float64_reference(n, d, dim):
    z, _ = features(n, d, seed=8)
    q = features(200, d, seed=9, ood=True)[0]
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(C, d, generator=g) / 10, torch.randn(C, generator=g)
    logits, lq = z @ w.T + b, q @ w.T + b
    u, r, alpha = vim_fit(z, logits, w, b, dim)
    ours = vim_score(q, lq, u, r, alpha).numpy()
    np.testing.assert_allclose(ours, vim_reference(z, logits, w, b, dim, q, lq), rtol=1e-7)


def test_vim_principal_subspace_must_fit_in_the_resolved_rank():
    z, _ = features(40, 128, seed=10)  # 40 examples resolve at most 40 directions
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(C, 128, generator=g), torch.randn(C, generator=g)
    ex = Extracted(z @ w.T + b, torch.zeros(40, dtype=torch.long), features=z, head_weight=w, head_bias=b)
    with pytest.raises(InputError, match="directions the 40 training features resolve"):
        DETECTORS.create("vim", dim=64).fit(ex)
    auto = DETECTORS.create("vim").fit(ex)  # vim_dim(128) = 64 > rank 40: half the rank instead
    assert auto.hparams()["dim"] == 20 and bool(torch.isfinite(auto.score(ex)).all())


# ---------------------------------------------------------------------------------------------------------- KNN


def test_knn_distances_are_exact_for_near_duplicates_and_any_norm():
    bank_raw = features(500, 64, seed=11)[0] + 0.01
    q = torch.cat(
        [bank_raw[:20] * 1.0000001, bank_raw[20:40] * 3e30, bank_raw[40:60] * 1e-30]
    )  # near-duplicates, huge and tiny norms
    det = DETECTORS.create("knn", k=1, max_bank=0).fit(
        Extracted(torch.zeros(500, 2), torch.zeros(500, dtype=torch.long), features=bank_raw)
    )
    s = det.score(Extracted(torch.zeros(60, 2), torch.zeros(60, dtype=torch.long), features=q))
    assert (
        float(s.abs().max()) < 1e-6
    )  # each query's nearest bank row is its own direction (sqrt(2 - 2cos) gives ~3e-4)
    b64 = bank_raw.double().numpy() / np.linalg.norm(bank_raw.double().numpy(), axis=1, keepdims=True)
    qq = torch.randn(30, 64, generator=torch.Generator().manual_seed(4)).relu().double().numpy() + 0.01
    qn = qq / np.linalg.norm(qq, axis=1, keepdims=True)
    ref = np.sort(np.linalg.norm(qn[:, None] - b64[None], axis=2), axis=1)[:, 9]
    np.testing.assert_allclose(-knn_score(torch.from_numpy(qq).float(), det.bank, 10).numpy(), ref, atol=1e-6)


def test_knn_keeps_the_full_bank_within_budget_and_says_when_it_subsamples(monkeypatch, recwarn):
    feats = torch.rand(3000, 16, generator=torch.Generator().manual_seed(0))
    train = Extracted(torch.zeros(3000, 2), torch.zeros(3000, dtype=torch.long), features=feats)
    det = DETECTORS.create("knn").fit(train)
    assert (
        det.bank.shape == (3000, 16) and det.hparams() == {"k": 50, "bank": 3000, "bank_of": 3000} and not recwarn.list
    )
    assert 10_000 * 864 <= BANK_BUDGET  # the default evaluation's fit set (10,000 fastcnn features) is kept whole
    monkeypatch.setattr("rulab.detectors.knn.BANK_BUDGET", 16 * 1000)
    with pytest.warns(UserWarning, match="keeps a random 1,000 of the 3,000"):
        small = DETECTORS.create("knn").fit(train)
    assert small.hparams() == {"k": 50, "bank": 1000, "bank_of": 3000}
    assert DETECTORS.create("knn", max_bank=0).fit(train).bank.shape[0] == 3000
