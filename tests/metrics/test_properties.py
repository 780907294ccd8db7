"""Property-based tests of the metric functions (hypothesis): bounds, invariances and agreement with scikit-learn on
arbitrary inputs with ties, not only on hand-picked cases.

Scores are drawn as small integers (many ties, which is where rank metrics go wrong) or as finite floats; every
property is exact or within float64 rounding (1e-12), so a failure is a bug, not noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rulab.errors import InputError
from rulab.metrics import ood
from rulab.metrics.calibration import calibration_error, reliability_bins

sklearn_metrics = pytest.importorskip("sklearn.metrics")

PROPS = settings(max_examples=60, deadline=None)  # no deadline: the suite must pass on a busy machine
tied = st.lists(st.integers(0, 5), min_size=1, max_size=40)
floats = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=40)


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@PROPS
@given(tied, tied)
def test_auroc_equals_sklearn_with_ties(s_id, s_ood):
    y = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
    expected = sklearn_metrics.roc_auc_score(y, np.r_[s_id, s_ood]) if 0 < y.sum() < len(y) else None
    assert ood.auroc(_t(s_id), _t(s_ood)) == pytest.approx(expected, abs=1e-12)


@PROPS
@given(tied, tied)
def test_auroc_is_the_mann_whitney_statistic(s_id, s_ood):
    a, b = np.array(s_id)[:, None], np.array(s_ood)[None, :]
    assert ood.auroc(_t(s_id), _t(s_ood)) == pytest.approx(float((a > b).mean() + 0.5 * (a == b).mean()), abs=1e-12)


@PROPS
@given(tied, tied)
def test_swapping_the_sides_gives_one_minus_the_auroc(s_id, s_ood):
    assert ood.auroc(_t(s_id), _t(s_ood)) + ood.auroc(_t(s_ood), _t(s_id)) == pytest.approx(1.0, abs=1e-12)


@PROPS
@given(tied, tied, st.integers(1, 7), st.integers(-50, 50))
def test_rank_metrics_ignore_strictly_increasing_transforms(s_id, s_ood, scale, shift):
    """AUROC, AUPR and FPR@95 depend on the order of the scores only: an exact increasing map changes nothing."""
    before = ood.ood_metrics(_t(s_id), _t(s_ood))
    f = lambda v: [scale * x**3 + shift for x in v]  # noqa: E731 - exact in float64 for these integers
    after = ood.ood_metrics(_t(f(s_id)), _t(f(s_ood)))
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error"):
        assert after[key] == pytest.approx(before[key], abs=1e-12), key


@PROPS
@given(floats, floats)
def test_every_detection_metric_is_a_fraction(s_id, s_ood):
    m = ood.ood_metrics(_t(s_id), _t(s_ood))
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error"):
        assert 0.0 <= m[key] <= 1.0, (key, m[key])
    assert m["n_id"] == len(s_id) and m["n_ood"] == len(s_ood)


@PROPS
@given(floats, floats)
def test_float32_and_float64_scores_agree_when_exact(s_id, s_ood):
    """Scores that float32 holds exactly give the same metrics in either precision (half is upcast exactly too)."""
    a, b = [float(np.float32(v)) for v in s_id], [float(np.float32(v)) for v in s_ood]
    m64 = ood.ood_metrics(_t(a), _t(b))
    m32 = ood.ood_metrics(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    assert m32["auroc"] == pytest.approx(m64["auroc"], abs=1e-12)


conf_correct = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n)
    )
)


@PROPS
@given(conf_correct, st.integers(1, 30))
def test_calibration_errors_are_ordered_fractions(pair, n_bins):
    """For one binning, weighted mean |gap| <= root weighted mean gap^2 <= max |gap|, all in [0, 1]."""
    conf, correct = _t(pair[0]), torch.tensor(pair[1])
    l1 = calibration_error(conf, correct, "l1", "uniform", n_bins=n_bins)
    l2 = calibration_error(conf, correct, "l2", "uniform", n_bins=n_bins)
    mx = calibration_error(conf, correct, "max", "uniform", n_bins=n_bins)
    assert 0.0 <= l1 <= l2 + 1e-12 and l2 <= mx + 1e-12 and mx <= 1.0


@PROPS
@given(conf_correct, st.integers(1, 30), st.randoms(use_true_random=False))
def test_uniform_binning_does_not_depend_on_the_order_of_examples(pair, n_bins, rnd):
    conf, correct = list(pair[0]), list(pair[1])
    order = list(range(len(conf)))
    rnd.shuffle(order)
    a = calibration_error(_t(conf), torch.tensor(correct), "l2", "uniform", n_bins=n_bins)
    b = calibration_error(
        _t([conf[i] for i in order]), torch.tensor([correct[i] for i in order]), "l2", "uniform", n_bins=n_bins
    )
    assert a == pytest.approx(b, abs=1e-12)
    bins = reliability_bins(_t(conf), torch.tensor(correct), "uniform", n_bins=n_bins)
    assert int(bins.count.sum()) == len(conf)


@PROPS
@given(
    st.one_of(
        st.integers(-5, 0),
        st.floats(allow_nan=True).filter(lambda v: not (v >= 1 and float(v).is_integer())),
        st.booleans(),
    )
)
def test_a_bad_bin_count_is_refused_whatever_the_binning(n_bins):
    for binning in ("uniform", "adaptive"):
        with pytest.raises(InputError, match=r"^n_bins must be a positive integer"):
            calibration_error(_t([0.2, 0.9]), torch.tensor([0, 1]), "l1", binning, n_bins=n_bins)


def test_the_sklearn_reference_is_what_it_claims():
    """The reference itself on a hand-computed case: ID {2, 1}, OOD {1, 0}: pairs (2>1, 2>0, 1=1, 1>0) -> 3.5/4."""
    assert sklearn_metrics.roc_auc_score([1, 1, 0, 0], [2, 1, 1, 0]) == 0.875 == ood.auroc(_t([2, 1]), _t([1, 0]))
    assert math.isclose(ood.auroc(_t([0]), _t([0])), 0.5)
