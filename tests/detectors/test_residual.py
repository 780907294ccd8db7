"""Residual: against a float64 reference written from the ViM paper (pytorch-ood 0.4.0 has no Residual detector), with
scikit-learn's ``EmpiricalCovariance`` and NumPy's eigendecomposition as OpenOOD's ``residual_postprocessor.py``."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import EmpiricalCovariance

from rulab.detectors.base import Extracted
from rulab.registry import DETECTORS


def reference_residual(train_z: np.ndarray, w: np.ndarray, b: np.ndarray, dim: int, z: np.ndarray) -> np.ndarray:
    u = -np.linalg.pinv(w) @ b
    cov = EmpiricalCovariance(assume_centered=True).fit(train_z - u).covariance_
    vals, vecs = np.linalg.eigh(cov)
    ns = vecs[:, np.argsort(-vals)[dim:]]
    return -np.linalg.norm((z - u) @ ns, axis=1)


def test_matches_a_float64_reference_on_a_trained_network(fmnist, parity):
    train = fmnist.ex(fmnist.train)
    det = DETECTORS.create("residual").fit(train)
    assert det.hparams() == {"dim": 216}  # D // 2 for 432-d features, as ViM's choice for small networks
    w, b = train.head_weight.double().numpy(), train.head_bias.double().numpy()
    zt = train.features.double().numpy()
    ours, ref = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        ref[k] = torch.from_numpy(reference_residual(zt, w, b, 216, ex.features.double().numpy()))
        torch.testing.assert_close(ours[k].double(), ref[k], rtol=1e-3, atol=1e-3)
    assert max(parity(ours, ref).values()) < 1e-3


def test_a_feature_in_the_principal_subspace_has_no_residual():
    g = torch.Generator().manual_seed(0)
    # training features on a 2-d plane of R^4 through u = 0 (no bias); dim=2 leaves the plane's complement
    basis = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    z = torch.randn(200, 2, generator=g, dtype=torch.float64) @ basis
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    det = DETECTORS.create("residual", dim=2).fit(
        Extracted(z @ w.T, torch.zeros(200, dtype=torch.long), features=z, head_weight=w)
    )
    q = torch.tensor([[5.0, -2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0]], dtype=torch.float64)
    s = det.score(Extracted(q @ w.T, torch.zeros(2, dtype=torch.long), features=q))
    torch.testing.assert_close(s, torch.tensor([0.0, -5.0], dtype=torch.float64), atol=1e-9, rtol=0)
