"""RMDS: a NumPy float64 reference of the relative Mahalanobis distance and parity with pytorch-ood 0.4.0's ``RMD`` on a
trained fastcnn."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_ood.detector import RMD

from rulab.detectors.base import Extracted
from rulab.registry import DETECTORS


def test_equals_a_numpy_reference_of_the_paper():
    """Ren et al.'s RMD_k = MD_k − MD_0 with maximum-likelihood covariances (class: pooled within-class scatter / N;
    background: all features' scatter / N), confidence −min_k RMD_k; NumPy float64, pinv."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    z = torch.randn(300, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    z = z + 3.0 * torch.nn.functional.one_hot(y, 4)[:, :4].to(torch.float64)
    q = torch.randn(20, 4, generator=g, dtype=torch.float64) * 2.0
    det = DETECTORS.create("rmds").fit(Extracted(torch.zeros(300, 3), y, features=z))
    s = det.score(Extracted(torch.zeros(20, 3), torch.zeros(20, dtype=torch.long), features=q))
    zn, yn, qn = z.numpy(), y.numpy(), q.numpy()
    means = np.stack([zn[yn == c].mean(0) for c in range(3)])
    prec = np.linalg.pinv((zn - means[yn]).T @ (zn - means[yn]) / len(zn))
    mu0 = zn.mean(0)
    prec0 = np.linalg.pinv((zn - mu0).T @ (zn - mu0) / len(zn))
    md = np.stack([np.einsum("nd,de,ne->n", qn - m, prec, qn - m) for m in means], axis=1)
    md0 = np.einsum("nd,de,ne->n", qn - mu0, prec0, qn - mu0)
    np.testing.assert_allclose(s.numpy(), -(md - md0[:, None]).min(1), rtol=1e-8, atol=1e-8)


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's RMD on the same training features. Its covariances are scatter matrices not divided by N (plus a
    1e-6 ridge, inverted in float32), so its distances are rulab's divided by N = 2,000 up to the ridge: the scores
    are proportional and rank the same."""
    train = fmnist.ex(fmnist.train)
    ref = RMD(encoder=None).fit_features(train.features, train.labels)
    det = DETECTORS.create("rmds").fit(train)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_features(ex.features)
        corr = np.corrcoef(ours[k].numpy(), theirs[k].numpy())[0, 1]
        assert corr > 0.999, (k, corr)
    assert max(parity(ours, theirs).values()) < 1e-3
