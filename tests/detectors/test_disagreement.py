"""Disagreement of ensemble members as the variation ratio of their votes (rulab.detectors.disagreement)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.disagreement import disagreement_score, variation_ratio, vote_counts
from rulab.errors import InputError
from rulab.registry import DETECTORS


def _onehot_logits(votes: list[list[int]], k: int) -> torch.Tensor:
    """Member logits whose argmax is the given class: ``votes[b][m]`` → ``[B, M, K]``."""
    z = torch.zeros(len(votes), len(votes[0]), k)
    for b, row in enumerate(votes):
        for m, c in enumerate(row):
            z[b, m, c] = 5.0
    return z


def test_votes_by_hand():
    """Three members: (0, 0, 1) → f = 2, ratio 1/3; (2, 2, 2) → 0; (0, 1, 2) → f = 1, ratio 2/3."""
    z = _onehot_logits([[0, 0, 1], [2, 2, 2], [0, 1, 2]], k=4)
    assert vote_counts(z).tolist() == [[2, 1, 0, 0], [0, 0, 3, 0], [1, 1, 1, 0]]
    np.testing.assert_allclose(variation_ratio(z).numpy(), [1 / 3, 0.0, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(disagreement_score(z).numpy(), [-1 / 3, 0.0, -2 / 3], rtol=1e-15)


def test_against_a_numpy_mode_count():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, 6, generator=g)
    votes = z.argmax(dim=2).numpy()
    f = np.array([np.bincount(v, minlength=6).max() for v in votes])
    np.testing.assert_allclose(variation_ratio(z).numpy(), 1 - f / 5, rtol=1e-15)
    assert bool((variation_ratio(z) <= 1 - 1 / 5).all())


def test_detector_scores_members_and_refuses_without_them():
    z = _onehot_logits([[0, 0, 1], [1, 1, 1]], k=2)
    ex = Extracted(z.mean(1), torch.zeros(2, dtype=torch.long), members=z)
    det = DETECTORS.create("disagreement")
    assert det.score(ex).tolist() == pytest.approx([-1 / 3, 0.0])
    with pytest.raises(InputError, match="disagreement' needs members"):
        det.score(Extracted(z.mean(1), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(InputError, match=r"\[B, M, K\]"):
        vote_counts(z[0])
