"""SHE: hand-computed patterns and parity with pytorch-ood 0.4.0's ``SHE`` on a trained fastcnn."""

from __future__ import annotations

import pytest
import torch
from pytorch_ood.detector import SHE

from rulab.detectors.base import Extracted
from rulab.detectors.she import she_patterns, she_score
from rulab.errors import InputError
from rulab.registry import DETECTORS


def test_patterns_use_correctly_classified_images_only():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # the last image (class 1) is misclassified
    s = she_patterns(z, logits, labels, 2)
    torch.testing.assert_close(s, torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
    # a test image predicted as class 1 is scored against pattern 1
    q = torch.tensor([[1.0, 3.0]])
    torch.testing.assert_close(she_score(q, torch.tensor([[0.0, 1.0]]), s), torch.tensor([6.0]))
    torch.testing.assert_close(she_score(q, torch.tensor([[1.0, 0.0]]), s), torch.tensor([2.0]))
    with pytest.raises(InputError, match=r"classes \[1\]"):
        she_patterns(z, torch.tensor([[2.0, 0.0]] * 4), labels, 2)
    # an undertrained network that never predicts class 1: its pattern is the mean of all its images
    fallback = she_patterns(z, torch.tensor([[2.0, 0.0]] * 4), labels, 2, fallback=True)
    torch.testing.assert_close(fallback, torch.tensor([[2.0, 0.0], [4.5, 5.5]], dtype=torch.float64))
    det = DETECTORS.create("she").fit(Extracted(logits, labels, features=z))
    torch.testing.assert_close(det.patterns, s)


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's SHE fitted on the same training features and head: the same patterns and scores."""
    train = fmnist.ex(fmnist.train)
    head = fmnist.model.fc
    ref = SHE(encoder=None, head=head).fit_features(train.features, train.labels)
    det = DETECTORS.create("she").fit(train)
    torch.testing.assert_close(det.patterns.float(), ref.patterns, rtol=1e-5, atol=1e-5)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_features(ex.features)
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-4)
    assert max(parity(ours, theirs).values()) < 1e-3
