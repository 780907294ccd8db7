"""Parity ports of the original metric code (ODIN calMetric.py, W3 percentile FPR, W1/OE display_results.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.errors import InputError
from rulab.metrics import ood, parity

# ------------------------------------------------------------------------------------- literal reference ports


def calmetric_port(X1: np.ndarray, Y1: np.ndarray, start: float, end: float, n: int, odin_branch: bool) -> dict:
    """facebookresearch/odin code/calMetric.py, loop for loop (np.float -> float), with n grid steps."""
    gap = (end - start) / n
    total = 0.0
    fpr = 0.0
    for delta in np.arange(start, end, gap):
        tpr = np.sum(np.sum(X1 >= delta)) / float(len(X1))
        error2 = np.sum(np.sum(Y1 > delta)) / float(len(Y1))
        if tpr <= 0.9505 and tpr >= 0.9495:
            fpr += error2
            total += 1
    fpr95 = fpr / total

    error = 1.0
    for delta in np.arange(start, end, gap):
        tpr = np.sum(np.sum(X1 < delta)) / float(len(X1))
        error2 = np.sum(np.sum(Y1 > delta)) / float(len(Y1))
        error = np.minimum(error, (tpr + error2) / 2.0)

    auroc = 0.0
    fprTemp = 1.0
    for delta in np.arange(start, end, gap):
        tpr = np.sum(np.sum(X1 >= delta)) / float(len(X1))
        if odin_branch:
            fpr = np.sum(np.sum(Y1 >= delta)) / float(len(Y1))
        else:
            fpr = np.sum(np.sum(Y1 > delta)) / float(len(Y1))
        auroc += (-fpr + fprTemp) * tpr
        fprTemp = fpr
    auroc += fpr * tpr

    auprin = 0.0
    recallTemp = 1.0
    for delta in np.arange(start, end, gap):
        tp = np.sum(np.sum(X1 >= delta)) / float(len(X1))
        fp = np.sum(np.sum(Y1 >= delta)) / float(len(Y1))
        if tp + fp == 0:
            continue
        precision = tp / (tp + fp)
        recall = tp
        auprin += (recallTemp - recall) * precision
        recallTemp = recall
    auprin += recall * precision

    auprout = 0.0
    recallTemp = 1.0
    for delta in np.arange(end, start, -gap):
        fp = np.sum(np.sum(X1 < delta)) / float(len(X1))
        tp = np.sum(np.sum(Y1 < delta)) / float(len(Y1))
        if tp + fp == 0:
            break
        precision = tp / (tp + fp)
        recall = tp
        auprout += (recallTemp - recall) * precision
        recallTemp = recall
    auprout += recall * precision
    return {"fpr95_id": fpr95, "detection_error": float(error), "auroc": auroc, "aupr_in": auprin, "aupr_out": auprout}


def display_results_port(_pos, _neg, recall_level=0.95):
    """hendrycks/outlier-exposure utils/display_results.py get_measures + fpr_and_fdr_at_recall, verbatim logic."""
    sk = pytest.importorskip("sklearn.metrics")

    def fpr_and_fdr_at_recall(y_true, y_score, recall_level):
        y_true = y_true == 1.0
        desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
        y_score = y_score[desc_score_indices]
        y_true = y_true[desc_score_indices]
        distinct_value_indices = np.where(np.diff(y_score))[0]
        threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
        tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
        fps = 1 + threshold_idxs - tps
        recall = tps / tps[-1]
        last_ind = tps.searchsorted(tps[-1])
        sl = slice(last_ind, None, -1)
        recall, fps, tps = np.r_[recall[sl], 1], np.r_[fps[sl], 0], np.r_[tps[sl], 0]
        cutoff = np.argmin(np.abs(recall - recall_level))
        return fps[cutoff] / (np.sum(np.logical_not(y_true)))

    pos = np.array(_pos[:]).reshape((-1, 1))
    neg = np.array(_neg[:]).reshape((-1, 1))
    examples = np.squeeze(np.vstack((pos, neg)))
    labels = np.zeros(len(examples), dtype=np.int32)
    labels[: len(pos)] += 1
    return (
        sk.roc_auc_score(labels, examples),
        sk.average_precision_score(labels, examples),
        fpr_and_fdr_at_recall(labels, examples, recall_level),
    )


def gaussian_scores(seed: int, n: int = 9000, lo: float = 0.1, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """ODIN-style 9,000 / 9,000 scores inside the baseline CIFAR-10 grid range [0.1, 1)."""
    rng = np.random.default_rng(seed)
    s_in = np.clip(rng.normal(0.75, 0.1, n), lo + 1e-3, hi - 1e-3)
    s_out = np.clip(rng.normal(0.55, 0.1, n), lo + 1e-3, hi - 1e-3)
    return s_in, s_out


# ------------------------------------------------------------------------------------- ODIN


def grid_tied_case(seed: int, start: float, end: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous scores plus scores exactly on grid thresholds, so every >= / > / < in calMetric.py matters."""
    rng = np.random.default_rng(seed)
    grid = np.arange(start, end, (end - start) / n)
    s_in = np.r_[rng.normal(0.70, 0.08, 900), rng.choice(grid, 100)]
    s_out = np.r_[rng.normal(0.55, 0.08, 500), rng.choice(grid, 300)]
    return s_in, s_out


@pytest.mark.parametrize("variant", ["odin", "baseline"])
@pytest.mark.parametrize("seed", range(3))
def test_odin_grid_equals_literal_calmetric(seed, variant):
    start, end, n = 0.4, 0.95, 6000
    s_in, s_out = grid_tied_case(seed, start, end, n)
    got = parity.odin_grid_metrics(s_in, s_out, start, end, n, variant=variant)
    ref = calmetric_port(s_in, s_out, start, end, n, odin_branch=variant == "odin")
    assert got == ref  # bit for bit


@pytest.mark.slow
def test_odin_grid_equals_literal_calmetric_at_full_scale():
    # 100,000 thresholds on 9,000 / 9,000 scores, as in the paper (~15 s for the literal loops)
    s_in, s_out = gaussian_scores(0)
    got = parity.odin_grid_metrics(s_in, s_out, 0.1, 1, 100000)
    assert got == calmetric_port(s_in, s_out, 0.1, 1, 100000, odin_branch=True)
    assert all(type(v) is float for v in got.values())


def test_odin_branches_differ_only_in_auroc_on_grid_ties():
    start, end, n = 0.4, 0.95, 6000
    s_in, s_out = grid_tied_case(0, start, end, n)
    a = parity.odin_grid_metrics(s_in, s_out, start, end, n, variant="odin")
    b = parity.odin_grid_metrics(s_in, s_out, start, end, n, variant="baseline")
    assert {k: v for k, v in a.items() if k != "auroc"} == {k: v for k, v in b.items() if k != "auroc"}
    assert a["auroc"] != b["auroc"]  # OOD scores on grid points count as s >= δ in one branch, not in the other


def test_odin_grid_close_to_exact_metrics_in_range():
    s_in, s_out = gaussian_scores(0)
    grid = parity.odin_grid_metrics(s_in, s_out, 0.1, 1, 100000)
    exact = ood.ood_metrics(s_in, s_out)
    for key in ("auroc", "aupr_in", "aupr_out", "detection_error", "fpr95_id"):
        assert abs(grid[key] - exact[key]) < 0.005, key  # < 0.5 points in range (docs/protocols/odin.md "Metrics")


def test_fpr95_conventions_agree_on_gaussian_scores():
    # fpr95_id vs W3's percentile rule vs ODIN's window rule differ by <= 0.2 points
    for seed in range(3):
        s_in, s_out = gaussian_scores(seed)
        exact = ood.fpr95_id(s_in, s_out)
        hein = parity.hein_fpr95(s_in, s_out)
        window = parity.odin_grid_metrics(s_in, s_out, 0.1, 1, 100000)["fpr95_id"]
        assert abs(exact - hein) <= 0.002 and abs(exact - window) <= 0.002 and abs(hein - window) <= 0.002


def test_odin_detection_error_is_the_min_rule_not_the_error_at_95_tpr():
    # the published numbers (e.g. FPR 34.7% with detection error 10.0%) only fit the min-over-thresholds rule
    s_in, s_out = gaussian_scores(1)
    grid = parity.odin_grid_metrics(s_in, s_out, 0.1, 1, 100000)
    at_95 = 0.5 * 0.05 + 0.5 * grid["fpr95_id"]
    assert grid["detection_error"] < at_95 - 0.03
    assert grid["detection_error"] == pytest.approx(ood.detection_error(s_in, s_out), abs=0.005)


def test_odin_grid_errors_instead_of_zero_division():
    s_in, s_out = gaussian_scores(0, n=200)
    with pytest.raises(InputError, match="TPR in"):
        parity.odin_grid_metrics(s_in, s_out, 0.1, 1, 10)  # 10 grid points: none lands in [0.9495, 0.9505]
    with pytest.raises(InputError, match="start < end"):
        parity.odin_grid_metrics(s_in, s_out, 1, 0.1)
    with pytest.raises(InputError, match="variant"):
        parity.odin_grid_metrics(s_in, s_out, 0.1, 1, variant="ours")


def test_odin_grid_needs_the_hard_coded_range_to_cover_the_scores():
    # CIFAR-100 ODIN scores (T=1000) sit just above 1/K = 0.01; on the CIFAR-10 baseline range [0.1, 1) every
    # threshold rejects everything: the original divides by zero, the port says so
    rng = np.random.default_rng(0)
    s_in = 0.01 + 0.0003 * rng.random(2000) + 0.0001
    s_out = 0.01 + 0.0003 * rng.random(2000)
    with pytest.raises(InputError, match="TPR in"):
        parity.odin_grid_metrics(s_in, s_out, 0.1, 1)
    grid = parity.odin_grid_metrics(s_in, s_out, 0.01, 0.0104)
    assert grid["auroc"] == pytest.approx(ood.auroc(s_in, s_out), abs=0.005)


# ------------------------------------------------------------------------------------- W3 (Hein)


def test_hein_fpr95_known_answer_and_interpolation():
    s_id = np.arange(101) / 100.0  # percentile 5 = 0.05 exactly
    s_ood = np.array([0.0, 0.04, 0.05, 0.06, 0.5])
    assert parity.hein_fpr95(s_id, s_ood) == 3 / 5
    # two ID points 0 and 1: the 5th percentile interpolates to 0.05
    assert parity.hein_fpr95([0.0, 1.0], [0.049, 0.051]) == 0.5


def test_hein_fpr95_equals_literal_rule_in_float32():
    rng = np.random.default_rng(3)
    s_id = rng.random(9984).astype(np.float32)
    s_ood = (rng.random(5000) * 0.8).astype(np.float32)
    ref = np.sum(s_ood >= np.percentile(s_id, 5)) / len(s_ood)
    assert parity.hein_fpr95(torch.from_numpy(s_id), torch.from_numpy(s_ood)) == ref


# ------------------------------------------------------------------------------------- W1/OE (Hendrycks)


@pytest.mark.parametrize("seed", range(10))
def test_hendrycks_measures_equal_display_results(seed):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(5, 500, size=2)
    decimals = (1, 2, 3)[seed % 3]
    s_id = np.round(rng.normal(0.7, 0.2, n_id), decimals)
    s_ood = np.round(rng.normal(0.5, 0.2, n_ood), decimals)
    # W1/OE call get_measures(out_score, in_score) with anomaly scores -MSP: OOD is the positive class
    auroc, aupr, fpr = display_results_port(-s_ood, -s_id)
    got = parity.hendrycks_measures(s_id, s_ood)
    assert got["auroc"] == pytest.approx(auroc, abs=1e-12)
    assert got["aupr_out"] == pytest.approx(aupr, abs=1e-12)
    assert got["fpr_closest"] == fpr
    assert parity.hendrycks_fpr_and_fdr_at_recall(s_id, s_ood) == fpr


def test_hendrycks_closest_recall_can_fall_below_95_percent():
    # 10 OOD: recall steps of 0.1, so 0.9 and 1.0 are candidates; |0.9 - 0.95| < |1.0 - 0.95| in float64
    s_ood = np.arange(10) / 10.0  # 0.0 ... 0.9 (lower = more OOD)
    s_id = np.array([0.9, 0.95, 1.0, 1.1])  # one ID example ties with the top OOD score 0.9
    assert parity.hendrycks_fpr_and_fdr_at_recall(s_id, s_ood) == 0.0  # closest: recall 0.9 at t = 0.8, no ID flagged
    assert ood.fpr95_ood(s_id, s_ood) == 0.25  # >= 95% of OOD caught needs t = 0.9, which flags the tied ID
