"""fDBD: a hand-computed boundary distance and parity with pytorch-ood 0.4.0's ``fDBD`` on a trained fastcnn."""

from __future__ import annotations

import pytest
import torch
from pytorch_ood.detector import fDBD

from rulab.detectors.fdbd import boundary_distances, fdbd_score
from rulab.errors import InputError
from rulab.registry import DETECTORS


def test_boundary_distance_by_hand():
    """Two classes with w_0 = (1, 0), w_1 = (0, 1), b = 0: the boundary is the diagonal and the distance of h = (3, 1)
    to it is |3 − 1| / ‖(1, −1)‖ = √2; with μ = (1, 1), ‖h − μ‖ = 2."""
    w = torch.eye(2)
    h = torch.tensor([[3.0, 1.0]])
    d = boundary_distances(h @ w.T, w)
    torch.testing.assert_close(d, torch.tensor([[0.0, 2**0.5]]))
    torch.testing.assert_close(fdbd_score(h, h @ w.T, w, torch.tensor([1.0, 1.0])), torch.tensor([2**0.5 / 2]))
    torch.testing.assert_close(fdbd_score(h, h @ w.T, w, None), torch.tensor([2**0.5 / 10**0.5]))
    with pytest.raises(InputError, match="normalizer"):
        DETECTORS.create("fdbd", normalizer="max")


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    train = fmnist.ex(fmnist.train)
    ref = fDBD(encoder=None, head=fmnist.model.fc).fit_features(train.features)
    det = DETECTORS.create("fdbd").fit(train)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_features(ex.features)
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=1e-5)
    assert max(parity(ours, theirs).values()) < 1e-3
