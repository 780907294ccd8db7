"""Calibration metrics: hand-computed bins, the OE calib_err port, a loop-based uniform ECE, Soft-F1, NLL, Brier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rulab.errors import InputError
from rulab.metrics import calibration as cal

# ------------------------------------------------------------------------------------- reference ports


def calib_err_port(confidence, correct, p="2", beta=100):
    """hendrycks/outlier-exposure utils/calibration_tools.py calib_err, verbatim (incl. the skipped last bin)."""
    idxs = np.argsort(confidence)
    confidence = confidence[idxs]
    correct = correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]

    cerr = 0
    total_examples = len(confidence)
    for i in range(len(bins) - 1):
        bin_confidence = confidence[bins[i][0] : bins[i][1]]
        bin_correct = correct[bins[i][0] : bins[i][1]]
        num_examples_in_bin = len(bin_confidence)

        if num_examples_in_bin > 0:
            difference = np.abs(np.nanmean(bin_confidence) - np.nanmean(bin_correct))

            if p == "2":
                cerr += num_examples_in_bin / total_examples * np.square(difference)
            elif p == "1":
                cerr += num_examples_in_bin / total_examples * difference
            elif p == "infty" or p == "infinity" or p == "max":
                cerr = np.maximum(cerr, difference)
            else:
                raise AssertionError("p must be '1', '2', or 'infty'")

    if p == "2":
        cerr = np.sqrt(cerr)

    return cerr


def soft_f1_port(confidence, correct):
    """OE calibration_tools.soft_f1."""
    wrong = 1 - correct
    return 2 * ((1 - confidence) * wrong).sum() / (1 - confidence + wrong).sum()


def uniform_loop(conf: torch.Tensor, correct: torch.Tensor, n_bins: int, norm: str) -> float:
    """torchmetrics 0.x-style loop: bins (lo, hi] from linspace edges in the confidences' dtype, conf == 0 in bin 0."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype)
    n = conf.numel()
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        in_bin = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            in_bin |= conf == 0
        k = int(in_bin.sum())
        if k == 0:
            continue
        d = abs(conf[in_bin].double().mean().item() - correct[in_bin].double().mean().item())
        total += k / n * (d if norm == "l1" else d * d)
        worst = max(worst, d)
    return worst if norm == "max" else (total if norm == "l1" else math.sqrt(total))


def synthetic(n: int, seed: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (tie-free) confidences in [0.1, 1) and overconfident correctness (most of all at the top)."""
    rng = np.random.default_rng(seed)
    conf = (0.1 + 0.9 * rng.random(n)).astype(dtype)
    correct = (rng.random(n) < 0.85 * conf**1.5).astype(np.float64)
    return conf, correct


# ------------------------------------------------------------------------------------- adaptive binning


def test_adaptive_rms_hand_computed_with_remainder_and_dropped_last_bin():
    # 7 examples, bin_size 2: 7 // 2 = 3 bins, the remainder (1) is merged into the last: sizes 2, 2, 3.
    conf_sorted = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    correct_sorted = np.array([0, 1, 1, 1, 0, 1, 1])
    perm = np.array([4, 0, 6, 2, 5, 1, 3])  # shuffled input order
    conf, correct = conf_sorted[perm], correct_sorted[perm]
    # bin 1: conf {0.1, 0.2} mean 0.15, acc 1/2 -> d = 0.35
    # bin 2: conf {0.3, 0.4} mean 0.35, acc 1   -> d = 0.65
    # bin 3: conf {0.5, 0.6, 0.7} mean 0.6, acc 2/3 -> d = 1/15
    # dropped last bin, weights still over n = 7: sqrt(2/7 * 0.35^2 + 2/7 * 0.65^2) = sqrt(2/7 * 0.545)
    expected_dropped = math.sqrt(2 / 7 * 0.35**2 + 2 / 7 * 0.65**2)
    assert expected_dropped == pytest.approx(0.394606, abs=1e-6)
    got = cal.calibration_error(conf, correct, "l2", "adaptive", bin_size=2, drop_last_bin=True)
    assert got == pytest.approx(expected_dropped, abs=1e-12)
    expected_full = math.sqrt(2 / 7 * 0.35**2 + 2 / 7 * 0.65**2 + 3 / 7 * (0.6 - 2 / 3) ** 2)
    assert cal.calibration_error(conf, correct, "l2", "adaptive", bin_size=2) == pytest.approx(expected_full, abs=1e-12)
    assert cal.calibration_error(conf, correct, "l1", "adaptive", bin_size=2) == pytest.approx(
        2 / 7 * 0.35 + 2 / 7 * 0.65 + 3 / 7 / 15, abs=1e-12
    )
    assert cal.calibration_error(conf, correct, "max", "adaptive", bin_size=2) == pytest.approx(0.65, abs=1e-12)
    assert calib_err_port(conf, correct, "2", beta=2) == pytest.approx(expected_dropped, abs=1e-12)


@pytest.mark.parametrize("norm, p", [("l2", "2"), ("l1", "1"), ("max", "infty")])
def test_drop_last_bin_equals_oe_calib_err_at_10000(norm, p):
    conf, correct = synthetic(10_000, seed=0)
    got = cal.calibration_error(conf, correct, norm, "adaptive", bin_size=100, drop_last_bin=True)
    assert got == pytest.approx(float(calib_err_port(conf, correct, p)), abs=1e-12)
    # the fix changes the number: the top bin (the most overconfident here) is counted
    fixed = cal.calibration_error(conf, correct, norm, "adaptive")
    assert fixed > got + 1e-4 if norm != "max" else fixed >= got


@pytest.mark.parametrize("n, last_size", [(12_000, 100), (12_099, 199)])
def test_remainder_handling_at_12000(n, last_size):
    conf, correct = synthetic(n, seed=1, dtype=np.float32)
    bins = cal.reliability_bins(conf, correct, "adaptive", bin_size=100)
    assert len(bins.count) == 120 and int(bins.count[-1]) == last_size and int(bins.count.sum()) == n
    assert bool((bins.count[:-1] == 100).all())
    for norm, p in (("l2", "2"), ("l1", "1"), ("max", "infty")):
        got = cal.calibration_error(conf, correct, norm, "adaptive", drop_last_bin=True)
        assert got == pytest.approx(float(calib_err_port(conf.astype(np.float64), correct, p)), abs=1e-12)
        # on the float32 array itself the original's np.nanmean accumulates in float32
        assert got == pytest.approx(float(calib_err_port(conf, correct, p)), abs=1e-6)
    # without the bug: explicit sum over all 120 bins of the sorted data
    order = np.argsort(conf, kind="stable")
    c, y = conf[order].astype(np.float64), correct[order]
    edges = list(range(0, 119 * 100 + 1, 100)) + [n]
    ref = sum((b - a) / n * (c[a:b].mean() - y[a:b].mean()) ** 2 for a, b in zip(edges[:-1], edges[1:]))
    assert cal.calibration_error(conf, correct) == pytest.approx(math.sqrt(ref), abs=1e-9)


def test_oe_ood_calibration_pool():
    # OE: 10,000 ID + 2,000 OOD with correct = 0 -> 120 bins, the last skipped in parity mode
    conf_id, correct_id = synthetic(10_000, seed=2)
    conf_ood = np.random.default_rng(3).uniform(0.1, 0.6, 2_000)
    pooled_conf = np.r_[conf_id, conf_ood]
    pooled_correct = np.r_[correct_id, np.zeros(2_000)]
    got = cal.ood_calibration(conf_id, correct_id, conf_ood, norm="l2", drop_last_bin=True)
    assert got == pytest.approx(float(calib_err_port(pooled_conf, pooled_correct, "2")), abs=1e-12)
    assert cal.ood_calibration(conf_id, correct_id, conf_ood, norm="l1") == pytest.approx(
        cal.calibration_error(pooled_conf, pooled_correct, "l1"), abs=1e-15
    )


def test_fewer_examples_than_bin_size_form_one_bin():
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 0, 0])
    # one bin: |mean conf 0.75 - acc 0.5| = 0.25 for every norm
    for norm in ("l1", "l2", "max"):
        assert cal.calibration_error(conf, correct, norm, "adaptive", bin_size=100) == pytest.approx(0.25)
    # parity mode drops the only bin (what OE returns for 100 <= n < 200)
    assert cal.calibration_error(conf, correct, "l2", "adaptive", bin_size=100, drop_last_bin=True) == 0.0
    conf150, correct150 = synthetic(150, seed=4)
    assert calib_err_port(conf150, correct150, "2") == 0.0
    assert cal.calibration_error(conf150, correct150, drop_last_bin=True) == 0.0


def test_adaptive_sort_is_stable_on_ties():
    # 400 identical confidences; the first 200 correct: a stable sort keeps them in two pure bins pairs
    conf = np.full(400, 0.5)
    correct = np.r_[np.ones(200), np.zeros(200)]
    assert cal.calibration_error(conf, correct, "l1", "adaptive", bin_size=100) == pytest.approx(0.5)
    bins = cal.reliability_bins(conf, correct, "adaptive", bin_size=100)
    assert bins.accuracy.tolist() == [1.0, 1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------- uniform binning


@pytest.mark.parametrize("n_bins, norm", [(15, "l1"), (10, "l2"), (15, "max"), (7, "l2")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_equals_loop_reference(n_bins, norm, dtype):
    g = torch.Generator().manual_seed(n_bins)
    conf = torch.rand(3000, generator=g, dtype=dtype)
    # put examples exactly on every bin edge, at 0 and at 1
    edges = torch.linspace(0, 1, n_bins + 1, dtype=dtype)
    conf = torch.cat([conf, edges, edges, torch.zeros(3, dtype=dtype), torch.ones(5, dtype=dtype)])
    correct = (torch.rand(conf.numel(), generator=g) < conf.float()).double()
    got = cal.calibration_error(conf, correct, norm, "uniform", n_bins=n_bins)
    assert got == pytest.approx(uniform_loop(conf, correct, n_bins, norm), abs=1e-12)


def test_confidence_one_falls_in_the_last_bin():
    # torchmetrics 1.x puts conf == 1.0 in a phantom extra bin; here it joins (0.9, 1.0]
    conf = torch.tensor([1.0, 1.0, 0.95])
    correct = torch.tensor([1, 0, 1])
    bins = cal.reliability_bins(conf, correct, "uniform", n_bins=10)
    assert bins.count.tolist() == [0] * 9 + [3]
    expected = abs((1.0 + 1.0 + 0.95) / 3 - 2 / 3)
    assert cal.calibration_error(conf, correct, "l1", "uniform", n_bins=10) == pytest.approx(expected)
    # and conf == 0 joins the first bin [0, 0.1]
    assert cal.reliability_bins([0.0, 0.05], [0, 0], "uniform", n_bins=10).count.tolist() == [2] + [0] * 9


def test_uniform_skips_empty_bins_and_reports_them_as_nan():
    conf = [0.15, 0.15, 0.85, 0.85]
    correct = [0, 1, 1, 1]
    # bins (0.1, 0.2]: d = 0.35, (0.8, 0.9]: d = 0.15; weights 1/2 each
    assert cal.calibration_error(conf, correct, "l1", "uniform", n_bins=10) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)
    assert cal.calibration_error(conf, correct, "l2", "uniform", n_bins=10) == pytest.approx(
        math.sqrt(0.5 * 0.35**2 + 0.5 * 0.15**2)
    )
    assert cal.calibration_error(conf, correct, "max", "uniform", n_bins=10) == pytest.approx(0.35)
    bins = cal.reliability_bins(conf, correct, "uniform", n_bins=10)
    assert bins.lower[1].item() == pytest.approx(0.1) and bins.upper[1].item() == pytest.approx(0.2)
    assert bins.count.tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 2, 0]
    assert bins.mean_conf[1].item() == pytest.approx(0.15) and bins.accuracy[8].item() == 1.0
    assert torch.isnan(bins.mean_conf[0]) and torch.isnan(bins.accuracy[9])


def test_calibrated_toy_case_has_zero_error():
    conf = np.full(10, 0.8)
    correct = np.r_[np.ones(8), np.zeros(2)]
    for binning in ("uniform", "adaptive"):
        for norm in ("l1", "l2", "max"):
            assert cal.calibration_error(conf, correct, norm, binning) == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------------------- other metrics


def test_soft_f1_matches_oe_and_seed_definitions():
    conf, correct = synthetic(500, seed=5)
    got = cal.soft_f1(conf, correct)
    assert got == pytest.approx(soft_f1_port(conf, correct), abs=1e-12)
    # seed 000's SoftF: precision := 1 - c, recall := 1 - correct, sum(p r) / (sum(p + r) / 2)
    p, r = 1 - conf, 1 - correct
    assert got == pytest.approx(np.sum(p * r) / (np.sum(p + r) / 2), abs=1e-12)
    # known answer: one wrong example with confidence 0 and one right with confidence 1 -> perfect, 1.0
    assert cal.soft_f1([0.0, 1.0], [0, 1]) == 1.0
    assert cal.soft_f1([1.0, 1.0], [1, 1]) == 0.0  # 0/0 -> 0 (scikit-learn's zero_division)


def test_nll_brier_mmc_accuracy_known_answers():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]])
    labels = torch.tensor([0, 2, 0])
    logp = torch.log_softmax(logits.double(), dim=1)
    assert cal.nll(logits, labels) == pytest.approx(-(logp[0, 0] + logp[1, 2] + logp[2, 0]).item() / 3, abs=1e-12)
    assert cal.nll(logits, labels) == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
    assert cal.nll(logits.numpy(), labels.numpy()) == cal.nll(logits, labels)

    # Brier: sum over classes, mean over examples
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    assert cal.brier(probs, y) == pytest.approx((0.0 + 0.5 + 2.0) / 3)
    p = logits.double().softmax(dim=1)
    expected = ((p - F.one_hot(labels, 3)) ** 2).sum(dim=1).mean().item()
    assert cal.brier(logits, labels) == pytest.approx(expected, abs=1e-12)  # logits detected
    assert cal.brier(p, labels) == pytest.approx(expected, abs=1e-12)  # probabilities detected
    assert cal.brier(p, labels, from_logits=True) != pytest.approx(expected, abs=1e-3)

    assert cal.mmc([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert cal.accuracy(logits, labels) == pytest.approx(1 / 3)
    assert cal.accuracy(torch.tensor([0, 2, 1]), labels) == pytest.approx(2 / 3)


def test_calibration_metrics_names_and_values():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(700, 10, generator=g)
    labels = torch.randint(0, 10, (700,), generator=g)
    labels[:400] = logits[:400].argmax(dim=1)
    m = cal.calibration_metrics(logits, labels)
    assert set(m) == {"acc", "nll", "brier", "ece", "mce", "rms", "mad", "rms_uniform10", "soft_f1", "mmc"}
    p = logits.double().softmax(dim=1)
    conf, pred = p.max(dim=1)
    correct = (pred == labels).double()
    assert m["acc"] == pytest.approx(correct.mean().item())
    assert m["ece"] == pytest.approx(uniform_loop(conf, correct, 15, "l1"), abs=1e-12)
    assert m["mce"] == pytest.approx(uniform_loop(conf, correct, 15, "max"), abs=1e-12)
    assert m["rms_uniform10"] == pytest.approx(uniform_loop(conf, correct, 10, "l2"), abs=1e-12)
    assert m["rms"] == pytest.approx(cal.calibration_error(conf, correct, "l2", "adaptive", bin_size=100))
    assert m["mad"] == pytest.approx(cal.calibration_error(conf, correct, "l1", "adaptive", bin_size=100))
    assert m["mmc"] == pytest.approx(conf.mean().item())
    assert m["nll"] == pytest.approx(cal.nll(logits, labels)) and m["brier"] == pytest.approx(cal.brier(logits, labels))
    assert all(0 <= v <= 1 for k, v in m.items() if k not in ("nll", "brier"))
    parity = cal.calibration_metrics(logits, labels, drop_last_bin=True)
    assert parity["rms"] == pytest.approx(float(calib_err_port(conf.numpy(), correct.numpy(), "2")), abs=1e-12)


# ------------------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence": [], "correct": []}, "confidence is empty"),
        ({"confidence": [0.5, float("nan")], "correct": [1, 0]}, "confidence has 1 NaN"),
        ({"confidence": [0.5, 1.5], "correct": [1, 0]}, r"must lie in \[0, 1\]"),
        ({"confidence": [0.5, 0.6], "correct": [1, 2]}, "only 0 and 1"),
        ({"confidence": [0.5, 0.6], "correct": [1]}, "one entry per confidence"),
        ({"confidence": [[0.5, 0.6]], "correct": [1]}, "must be 1-D"),
        ({"confidence": [0.5], "correct": [1], "norm": "l3"}, "norm must be"),
        ({"confidence": [0.5], "correct": [1], "binning": "quantile"}, "binning must be"),
        ({"confidence": [0.5], "correct": [1], "bin_size": 0}, "bin_size"),
        ({"confidence": [0.5], "correct": [1], "binning": "uniform", "n_bins": 0}, "n_bins"),
        (
            {"confidence": [0.5], "correct": [1], "binning": "uniform", "drop_last_bin": True},
            "only with binning='adaptive'",
        ),
    ],
)
def test_calibration_error_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        cal.calibration_error(**kwargs)


def test_logit_metric_bad_input():
    with pytest.raises(InputError, match=r"\[N, K\]"):
        cal.nll(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match=r"must lie in \[0, 2\]"):
        cal.nll(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(InputError, match="integer class indices"):
        cal.brier(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError, match="1 NaN and 1 inf"):
        cal.calibration_metrics(torch.tensor([[0.0, float("nan")], [float("inf"), 0.0]]), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="one label per row"):
        cal.calibration_metrics(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
