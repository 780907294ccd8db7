"""Corruption Error (Hendrycks & Dietterich 2019): tiny known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.errors import InputError
from rulab.metrics import robustness as rob

# 2 corruptions x 3 severities, error rates as fractions
MODEL = [[0.1, 0.2, 0.3], [0.2, 0.2, 0.2]]
BASE = [[0.2, 0.4, 0.6], [0.3, 0.3, 0.6]]


def test_corruption_error_known_answer():
    ce = rob.corruption_error(MODEL, BASE)
    # (0.1 + 0.2 + 0.3) / (0.2 + 0.4 + 0.6) = 0.5 ; 0.6 / 1.2 = 0.5
    assert ce.tolist() == pytest.approx([0.5, 0.5])
    assert rob.mean_corruption_error(MODEL, [[0.2, 0.4, 0.6], [0.2, 0.2, 0.2]]) == pytest.approx((0.5 + 1.0) / 2)
    assert rob.corruption_error([0.1, 0.3], [0.2, 0.2]).tolist() == pytest.approx([1.0])  # 1-D = one corruption


def test_relative_ce_known_answer():
    # model clean error 0.1: excess (0, 0.1, 0.2) and (0.1, 0.1, 0.1) -> 0.3 each
    # baseline clean error 0.2: excess (0, 0.2, 0.4) = 0.6 and (0.1, 0.1, 0.4) = 0.6
    rce = rob.relative_ce(MODEL, 0.1, BASE, 0.2)
    assert rce.tolist() == pytest.approx([0.5, 0.5])
    assert rob.mean_relative_ce(MODEL, 0.1, BASE, 0.2) == pytest.approx(0.5)
    # per-corruption clean errors are accepted too
    assert rob.relative_ce(MODEL, [0.1, 0.2], BASE, [0.2, 0.2]).tolist() == pytest.approx([0.5, 0.0])


def test_mean_over_severities_and_input_types():
    assert rob.mean_over_severities(MODEL).tolist() == pytest.approx([0.2, 0.2])
    assert rob.mean_over_severities(np.array([0.1, 0.5])).tolist() == pytest.approx([0.3])
    t = rob.corruption_error(torch.tensor(MODEL, dtype=torch.float32), np.array(BASE))
    assert t.dtype == torch.float64 and t.tolist() == pytest.approx([0.5, 0.5])


def test_bad_input():
    with pytest.raises(InputError, match="same"):
        rob.corruption_error(MODEL, [[0.2, 0.4]])
    with pytest.raises(InputError, match="baseline's summed error is 0"):
        rob.corruption_error(MODEL, [[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    with pytest.raises(InputError, match="1 NaN"):
        rob.mean_corruption_error([[0.1, float("nan"), 0.2]], [[0.1, 0.1, 0.1]])
    with pytest.raises(InputError, match="one clean error or one per corruption"):
        rob.relative_ce(MODEL, [0.1, 0.1, 0.1], BASE, 0.2)
    with pytest.raises(InputError, match="non-empty"):
        rob.mean_over_severities(np.zeros((2, 2, 2)))
