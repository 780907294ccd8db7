"""Exact OOD metrics: known answers, brute-force definitions, scikit-learn agreement, input errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from rulab.errors import InputError
from rulab.metrics import ood

KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error")


def metrics(s_id, s_ood) -> dict[str, float]:
    return {k: v for k, v in ood.ood_metrics(s_id, s_ood).items() if k in KEYS}


def tied_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unequal sizes, heavy ties: scores rounded to 1 or 2 decimals, partly overlapping."""
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(1, 400, size=2)
    decimals = 1 if seed % 2 else 2
    s_id = np.round(rng.normal(0.6, 0.25, n_id), decimals)
    s_ood = np.round(rng.normal(0.4, 0.25, n_ood), decimals)
    return s_id, s_ood


# ---------------------------------------------------------------------------------------------- known answers


def test_perfect_separation():
    m = ood.ood_metrics(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.1, 0.2]))
    assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    assert m["fpr95_id"] == 0.0 and m["fpr95_ood"] == 0.0 and m["detection_error"] == 0.0
    assert m["ood_ratio"] == pytest.approx(2 / 3) and m["n_id"] == 3 and m["n_ood"] == 2


def test_reversed_scores():
    m = metrics(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.8, 0.9]))
    assert m["auroc"] == 0.0
    assert m["fpr95_id"] == 1.0 and m["fpr95_ood"] == 1.0
    assert m["detection_error"] == 0.5  # only the trivial thresholds are no worse than chance
    # ID (positive) ranks 3rd, 4th, 5th: AP = 1/3 (1/3 + 2/4 + 3/5)
    assert m["aupr_in"] == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3)
    # OOD (positive on -s) ranks 4th, 5th: AP = 1/2 (1/4 + 2/5)
    assert m["aupr_out"] == pytest.approx((1 / 4 + 2 / 5) / 2)


def test_all_scores_tied():
    m = metrics(np.full(3, 0.5), np.full(5, 0.5))
    # one threshold accepting everything: ROC (0,0)->(1,1) diagonal, precision = class share
    assert m == pytest.approx(
        {"auroc": 0.5, "aupr_in": 3 / 8, "aupr_out": 5 / 8, "fpr95_id": 1.0, "fpr95_ood": 1.0, "detection_error": 0.5}
    )


def test_identical_score_sets_give_chance_auroc():
    s = torch.linspace(0, 1, 37)
    assert ood.auroc(s, s.clone()) == 0.5
    assert ood.detection_error(s, s.clone()) == 0.5  # TPR == FPR at every threshold
    assert (
        ood.fpr95_id(s, s.clone()) == ood.fpr95_ood(s, s.clone()) == pytest.approx(36 / 37)
    )  # ceil(0.95 * 37) = 36 accepted


def test_one_element_per_side():
    assert metrics([0.7], [0.3]) == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "fpr95_id": 0.0,
        "fpr95_ood": 0.0,
        "detection_error": 0.0,
    }
    m = metrics([0.3], [0.7])
    assert m["auroc"] == 0.0 and m["aupr_in"] == 0.5 and m["aupr_out"] == 0.5 and m["fpr95_id"] == 1.0
    m = metrics([0.5], [0.5])
    assert m["auroc"] == 0.5 and m["fpr95_id"] == 1.0 and m["detection_error"] == 0.5


def test_partial_ties_hand_computed():
    # ID: 0.9, 0.5, 0.5 ; OOD: 0.5, 0.1.  Groups (desc): {0.9: 1 ID}, {0.5: 2 ID + 1 OOD}, {0.1: 1 OOD}
    s_id, s_ood = [0.9, 0.5, 0.5], [0.5, 0.1]
    # ROC points (fpr, tpr): (0,0) (0,1/3) (1/2,1) (1,1): area = 1/2 * (1/3 + 1)/2 + 1/2 * 1 = 5/6
    assert ood.auroc(s_id, s_ood) == pytest.approx(5 / 6)
    # AUPR-In: R 0->1/3 at P 1, 1/3->1 at P 3/4
    assert ood.aupr_in(s_id, s_ood) == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 4)
    # AUPR-Out (-s ascending s): {0.1: 1 OOD} P 1, {0.5: +1 OOD, +2 ID} P 2/4
    assert ood.aupr_out(s_id, s_ood) == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 4)
    assert ood.fpr95_id(s_id, s_ood) == 0.5  # t = 0.5 accepts all ID and the tied OOD
    assert ood.fpr95_ood(s_id, s_ood) == pytest.approx(2 / 3)  # t = 0.5 catches both OOD and two ID
    assert ood.detection_error(s_id, s_ood) == pytest.approx(min(0.5, 0.5 * (2 / 3), 0.5 * 0.5))


# ---------------------------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("seed", range(6))
def test_fpr95_rules_match_their_written_definitions(seed):
    s_id, s_ood = tied_case(seed)
    # fpr95_id: t = s_(ceil(0.95 n_id)) of ID sorted descending; FPR = #{OOD: s >= t} / n_ood
    t = np.sort(s_id)[::-1][math.ceil(0.95 * len(s_id)) - 1]
    assert ood.fpr95_id(s_id, s_ood) == pytest.approx(np.mean(s_ood >= t), abs=1e-12)
    # fpr95_ood: t = smallest threshold with >= 95% of OOD having s <= t; FPR = #{ID: s <= t} / n_id
    t = np.sort(s_ood)[math.ceil(0.95 * len(s_ood)) - 1]
    assert ood.fpr95_ood(s_id, s_ood) == pytest.approx(np.mean(s_id <= t), abs=1e-12)
    for tpr in (0.5, 0.8, 1.0):
        t = np.sort(s_id)[::-1][math.ceil(tpr * len(s_id)) - 1]
        assert ood.fpr_at_tpr(s_id, s_ood, tpr) == pytest.approx(np.mean(s_ood >= t), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_detection_error_is_min_over_every_threshold(seed):
    s_id, s_ood = tied_case(seed)
    thresholds = np.r_[np.unique(np.r_[s_id, s_ood]), np.inf]
    brute = min(0.5 * (1 - np.mean(s_id >= t)) + 0.5 * np.mean(s_ood >= t) for t in thresholds)
    assert ood.detection_error(s_id, s_ood) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_is_mann_whitney(seed):
    s_id, s_ood = tied_case(seed)
    diff = s_id[:, None] - s_ood[None, :]
    assert ood.auroc(s_id, s_ood) == pytest.approx(np.mean(diff > 0) + 0.5 * np.mean(diff == 0), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_orientation_symmetries(seed):
    s_id, s_ood = tied_case(seed)
    # AUROC(ID positive, s) == AUROC(OOD positive, -s); AUPR-Out is AUPR-In with the roles and sign swapped
    assert ood.auroc(s_id, s_ood) == pytest.approx(ood.auroc(-s_ood, -s_id), abs=1e-12)
    assert ood.auroc(s_id, s_ood) == pytest.approx(1 - ood.auroc(s_ood, s_id), abs=1e-12)
    assert ood.aupr_out(s_id, s_ood) == pytest.approx(ood.aupr_in(-s_ood, -s_id), abs=1e-12)
    assert ood.fpr95_ood(s_id, s_ood) == pytest.approx(ood.fpr95_id(-s_ood, -s_id), abs=1e-12)


# ---------------------------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_scikit_learn_on_tied_scores(seed):
    skm = pytest.importorskip("sklearn.metrics")
    s_id, s_ood = tied_case(seed)
    y = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
    s = np.r_[s_id, s_ood]
    got = ood.ood_metrics(torch.from_numpy(s_id).float(), torch.from_numpy(s_ood).float())
    s = np.r_[np.float32(s_id), np.float32(s_ood)].astype(np.float64)  # the same float32 values
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-6)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(1 - y, -s), abs=1e-6)  # W1/OE: OOD positive on -s
    assert got["aupr_in"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-6)
    assert got["aupr_out"] == pytest.approx(skm.average_precision_score(1 - y, -s), abs=1e-6)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert got["fpr95_id"] == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=1e-6)
    assert got["detection_error"] == pytest.approx(np.min(0.5 * (1 - tpr) + 0.5 * fpr), abs=1e-6)
    fpr_o, tpr_o, _ = skm.roc_curve(1 - y, -s, drop_intermediate=False)
    assert got["fpr95_ood"] == pytest.approx(fpr_o[np.searchsorted(tpr_o, 0.95)], abs=1e-6)
    assert got["ood_ratio"] == len(s_ood) / len(s_id)


def test_roc_curve_matches_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    s_id, s_ood = tied_case(3)
    y = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
    s = np.r_[s_id, s_ood]
    fpr, tpr, thr = ood.roc_curve(s_id, s_ood)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr.numpy(), ref_tpr, atol=1e-12)
    np.testing.assert_array_equal(thr.numpy()[1:], ref_thr[1:])
    assert thr[0] == math.inf


def test_agrees_with_scikit_learn_without_ties_large():
    skm = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    s_id = torch.randn(20000, generator=g, dtype=torch.float64) + 1
    s_ood = torch.randn(7000, generator=g, dtype=torch.float64)
    y = np.r_[np.ones(20000), np.zeros(7000)]
    s = torch.cat([s_id, s_ood]).numpy()
    got = ood.ood_metrics(s_id, s_ood)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-9)
    assert got["aupr_in"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-9)
    assert got["aupr_out"] == pytest.approx(skm.average_precision_score(1 - y, -s), abs=1e-9)


# ---------------------------------------------------------------------------------------------- inputs


def test_input_types_and_dtypes_agree():
    s_id, s_ood = tied_case(5)
    ref = metrics(s_id, s_ood)  # float64 NumPy
    assert metrics(torch.from_numpy(s_id), torch.from_numpy(s_ood)) == ref
    assert metrics(list(s_id), list(s_ood)) == ref
    as32 = metrics(s_id.astype(np.float32), s_ood.astype(np.float32))
    assert as32 == pytest.approx(ref, abs=1e-12)  # rounding to float32 keeps the order and the ties here
    half = metrics(torch.from_numpy(s_id).half(), torch.from_numpy(s_ood).bfloat16())
    assert half["auroc"] == pytest.approx(ref["auroc"], abs=0.05)
    ints = metrics(np.array([3, 2, 2]), np.array([2, 1]))  # integer scores are accepted
    assert ints["auroc"] == pytest.approx((1 + 0.5 + 1 + 1 + 0.5 + 1) / 6)


def test_ood_metrics_equals_individual_functions():
    s_id, s_ood = tied_case(7)
    m = ood.ood_metrics(s_id, s_ood)
    assert m["auroc"] == ood.auroc(s_id, s_ood)
    assert m["aupr_in"] == ood.aupr_in(s_id, s_ood)
    assert m["aupr_out"] == ood.aupr_out(s_id, s_ood)
    assert m["fpr95_id"] == ood.fpr95_id(s_id, s_ood) == ood.fpr_at_tpr(s_id, s_ood, 0.95, "id")
    assert m["fpr95_ood"] == ood.fpr95_ood(s_id, s_ood) == ood.fpr_at_tpr(s_id, s_ood, 0.95, "ood")
    assert m["detection_error"] == ood.detection_error(s_id, s_ood)


@pytest.mark.parametrize(
    "s_id, s_ood, match",
    [
        ([], [0.1], "s_id is empty"),
        ([0.1], np.array([]), "s_ood is empty"),
        ([0.1, float("nan")], [0.2], "s_id has 1 NaN and 0 inf"),
        ([0.1], [float("nan"), float("inf"), -float("inf")], "s_ood has 1 NaN and 2 inf"),
        (np.zeros((2, 2)), [0.1], r"s_id must be 1-D"),
        ([0.1], torch.tensor(0.3), r"s_ood must be 1-D"),
        (["a"], [0.1], "real numbers"),
        (torch.tensor([1 + 1j]), [0.1], "real numbers"),
    ],
)
def test_bad_input_raises_one_clear_error(s_id, s_ood, match):
    with pytest.raises(InputError, match=match):
        ood.ood_metrics(s_id, s_ood)


def test_bad_arguments():
    with pytest.raises(InputError, match="fraction in"):
        ood.fpr_at_tpr([0.2], [0.1], tpr=95)
    with pytest.raises(InputError, match="fraction in"):
        ood.fpr_at_tpr([0.2], [0.1], tpr=0.0)
    with pytest.raises(InputError, match="positive must be"):
        ood.fpr_at_tpr([0.2], [0.1], positive="in")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sort_keys_follow_float_order_and_equality(dtype):
    # the exact metrics sort integer keys built from the float bits; their ascending order must be the
    # descending float order, with equal keys exactly for equal floats (-0.0 == +0.0)
    rng = np.random.default_rng(0)
    tiny = np.finfo(dtype).tiny
    special = np.array(
        [
            0.0,
            -0.0,
            tiny,
            -tiny,
            tiny / 4,
            -tiny / 4,
            np.finfo(dtype).max,
            -np.finfo(dtype).max,
            np.inf,
            -np.inf,
            1.0,
            -1.0,
            1.0,
        ],
        dtype=dtype,
    )
    x = np.r_[special, rng.normal(0, 1, 500).astype(dtype), np.round(rng.normal(0, 1, 500), 1).astype(dtype)]
    keys = ood._descending_keys(torch.from_numpy(x.copy())).numpy()
    order = np.argsort(keys, kind="stable")
    xs, ks = x[order], keys[order]
    assert np.all(xs[:-1] >= xs[1:])  # descending floats
    assert np.array_equal(ks[:-1] == ks[1:], xs[:-1] == xs[1:])  # ties exactly where the floats tie


def test_signed_zeros_tie():
    assert ood.auroc([0.0], [-0.0]) == 0.5
    assert ood.auroc(torch.tensor([0.0, 1.0]), torch.tensor([-0.0, -1.0])) == pytest.approx(0.75 + 0.5 * 0.25)


@pytest.mark.parametrize("where", [0, 7, -1])
def test_nan_and_inf_anywhere_are_caught(where):
    neg_nan = np.copysign(np.nan, -1.0)
    for bad, side, match in (
        (np.nan, "id", "1 NaN and 0 inf"),
        (neg_nan, "ood", "1 NaN and 0 inf"),
        (np.inf, "ood", "0 NaN and 1 inf"),
        (-np.inf, "id", "0 NaN and 1 inf"),
    ):
        s_id, s_ood = np.linspace(0, 1, 10), np.linspace(0.2, 0.8, 12)
        target = s_id if side == "id" else s_ood
        target[where] = bad
        with pytest.raises(InputError, match=f"s_{side} has {match}"):
            ood.ood_metrics(s_id.astype(np.float32), s_ood.astype(np.float32))


def test_does_not_modify_inputs():
    s_id = torch.tensor([0.3, 0.9, -0.0])
    s_ood = np.array([0.5, -0.0])
    ood.ood_metrics(s_id, s_ood)
    ood.roc_curve(s_id, s_ood)
    assert s_id.tolist() == pytest.approx([0.3, 0.9, 0.0]) and s_ood.tolist() == [0.5, 0.0]
    assert torch.signbit(s_id[2]) and np.signbit(s_ood[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_matches_cpu():
    s_id, s_ood = tied_case(9)
    ref = metrics(s_id, s_ood)
    got = metrics(torch.from_numpy(s_id).cuda(), torch.from_numpy(s_ood).cuda())
    assert got == pytest.approx(ref, abs=1e-12)


def test_metrics_import_without_sklearn_or_plotting():
    code = (
        "import sys, rulab.metrics, rulab.detectors.temperature; "
        "bad = [m for m in ('sklearn', 'matplotlib', 'scipy', 'pandas') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
