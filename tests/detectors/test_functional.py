"""Detector score functions and metrics on the user's own NumPy arrays (rulab.detectors.functional, rulab.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rulab
from rulab.detectors import energy, knn, mahalanobis, msp, react, vim
from rulab.detectors import functional as D

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(40, 5)) * 2  # logits
H = np.abs(RNG.normal(size=(40, 8)))  # features
Y = np.arange(40) % 5


def test_known_answers_in_numpy() -> None:
    z = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    np.testing.assert_allclose(D.msp_score(z), [0.5, 0.75])
    np.testing.assert_allclose(D.maxlogit_score(z), [0.0, np.log(3.0)])
    np.testing.assert_allclose(D.energy_score(z), [np.log(2.0), np.log(4.0)])
    np.testing.assert_allclose(D.entropy_score(z), [-np.log(2.0), 0.75 * np.log(0.75) + 0.25 * np.log(0.25)])
    np.testing.assert_allclose(D.odin_score_from_logits(z, 1000.0), D.msp_score(z / 1000.0))
    assert isinstance(D.msp_score(z), np.ndarray) and D.msp_score(z).dtype == np.float64


def test_numpy_and_torch_give_the_same_numbers() -> None:
    zt, ht, yt = torch.from_numpy(Z), torch.from_numpy(H), torch.from_numpy(Y)
    for fn, args in [
        (D.msp_score, (Z,)),
        (D.maxlogit_score, (Z,)),
        (D.energy_score, (Z, 2.0)),
        (D.entropy_score, (Z,)),
        (D.gen_score, (Z,)),
        (D.class_mean_softmax, (Z,)),
        (D.class_means, (H, Y, 5)),
    ]:
        out = fn(*args)
        ref = fn(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args))
        assert isinstance(out, np.ndarray) and isinstance(ref, torch.Tensor)
        np.testing.assert_array_equal(out, ref.numpy())
    # fitted detectors: the NumPy pipeline equals the library's torch functions step by step
    means = mahalanobis.class_means(ht, yt, 5)
    white = mahalanobis.whitening(mahalanobis.tied_covariance(ht, yt, means))
    np.testing.assert_allclose(
        D.mahalanobis_score(H, D.class_means(H, Y, 5), D.whitening(D.tied_covariance(H, Y, D.class_means(H, Y, 5)))),
        mahalanobis.mahalanobis_score(ht, means, white).numpy(),
    )
    bank = torch.nn.functional.normalize(ht, dim=1)
    np.testing.assert_array_equal(D.knn_score(H, bank.numpy(), 3), knn.knn_score(ht, bank, 3).numpy())
    w, b = RNG.normal(size=(5, 8)), RNG.normal(size=5)
    np.testing.assert_allclose(
        D.react_score(H, 0.5, w, b), energy.energy_score(torch.from_numpy(np.minimum(H, 0.5) @ w.T + b)).numpy()
    )
    u, r, alpha = D.vim_fit(H, Z, w, b, 4)
    assert isinstance(u, np.ndarray) and isinstance(alpha, float)
    np.testing.assert_allclose(
        D.vim_score(H, Z, u, r, alpha), vim.vim_score(ht, zt, torch.from_numpy(u), torch.from_numpy(r), alpha).numpy()
    )
    assert D.msp_score(zt) is not None and isinstance(D.msp_score(zt), torch.Tensor)  # torch in, torch out
    torch.testing.assert_close(D.msp_score(zt), msp.msp_score(zt), rtol=0, atol=0)
    assert isinstance(D.feature_percentiles(H, (50.0,)), dict) and react.feature_percentiles(ht, (50.0,)).keys() == {
        50.0
    }


def test_metrics_take_numpy_and_agree_with_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference for AUROC/AUPR")
    s_id, s_ood = RNG.normal(1.0, 1.0, 300), RNG.normal(0.0, 1.0, 200)
    labels = np.r_[np.ones(300), np.zeros(200)]
    scores = np.r_[s_id, s_ood]
    assert rulab.metrics.auroc(s_id, s_ood) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-9)
    assert rulab.metrics.aupr_in(s_id, s_ood) == pytest.approx(sk.average_precision_score(labels, scores), abs=1e-9)
    assert rulab.metrics.aupr_out(s_id, s_ood) == pytest.approx(
        sk.average_precision_score(1 - labels, -scores), abs=1e-9
    )
    m = rulab.metrics.ood_metrics(s_id.tolist(), s_ood.tolist())  # plain lists work too
    assert m["ood_ratio"] == pytest.approx(200 / 300) and 0 <= m["fpr95_id"] <= 1
    p = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    conf, correct = p.max(1), (p.argmax(1) == Y).astype(float)
    # ECE by hand: 15 equal-width bins, |mean confidence - accuracy| weighted by the bin's share
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = sum(
        abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
        for b in range(15)
        if (bins == b).any()
    )
    assert rulab.metrics.calibration_error(conf, correct, norm="l1", binning="uniform", n_bins=15) == pytest.approx(
        ece, abs=1e-12
    )
    assert rulab.metrics.nll(Z, Y) == pytest.approx(-np.log(p[np.arange(40), Y]).mean(), abs=1e-12)
    assert rulab.metrics.brier(Z, Y) == pytest.approx(((p - np.eye(5)[Y]) ** 2).sum(1).mean(), abs=1e-12)
    assert rulab.metrics.mmc(conf) == pytest.approx(conf.mean())
    t = rulab.detectors.fit_temperature(Z, Y)
    assert isinstance(t, float) and math.isfinite(t) and t > 0
