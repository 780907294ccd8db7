"""The metric catalogue (rulab.metrics.catalog): every metric the evaluation code writes is declared, the lists the
views read are derived from the declarations, and a bad or duplicate declaration is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rulab
from rulab.config import EvalCfg
from rulab.data.tensors import TensorDataset
from rulab.eval.ood_eval import OOD_METRICS, ood_calibration_metrics
from rulab.eval.shift import evaluate_shift, shift_errors
from rulab.metrics import calibration_metrics, ood_metrics
from rulab.metrics.catalog import GROUPS, Metric, declare, get, is_percent, metrics, names
from rulab.registry import METRICS, UnknownNameError

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def toy():
    """A 3-class toy problem of 3×8×8 uint8 images (a fixed pattern per class plus noise) and an MLP fitted to it."""
    g = torch.Generator().manual_seed(0)
    templates = 0.2 + 0.6 * torch.rand(3, *SHAPE, generator=g)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(3, (n,), generator=g)
        x = (templates[y] + 0.08 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y

    train, val, test = images(240), images(120), images(120)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 24), nn.ReLU(), nn.Linear(24, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xb = train[0].float() / 255
    for _ in range(60):
        loss = nn.functional.cross_entropy(net(xb), train[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), train, val, test


def test_every_metric_the_evaluation_writes_is_declared(toy) -> None:
    """Runs the evaluation with every part switched on (ID calibration raw and temperature-scaled, every detector on a
    registered OOD set, OE's pooled calibration, a shift suite with a baseline for CE, the far-away tests): a metric
    written without a declaration would be silently left out of the report's tables and formatted as a raw number."""
    net, train, val, test = toy
    cfg = EvalCfg(alpha_trials=8, adv_steps=2, adv_n=16)
    table = rulab.evaluate(
        net,
        id_test=test,
        ood=["uniform"],
        ood_val=["gaussian"],
        id_train=train,
        id_val=val,
        shifts=[("gaussian_blur_sigma", 0.5), ("brightness_factor", 0.8)],
        farconf=True,
        eval_cfg=cfg,
        n_ood=100,
        n_val_ood=60,
        protocol="full",
    )
    ds = TensorDataset(test[0], test[1], ["a", "b", "c"], "toy")
    cells = [("gaussian_blur_sigma", 0.5), ("gaussian_blur_sigma", 0.9)]
    baseline = dict.fromkeys(
        shift_errors(evaluate_shift(net, ds, cells, seed=0)), 0.5
    )  # a baseline model with 50% error
    shift = evaluate_shift(net, ds, cells, seed=0, temperature=1.5, baseline=baseline)
    written = {r.metric for r in table} | {r.metric for r in shift}
    assert {r.kind for r in table} == {"id", "ood", "shift", "farconf"}
    assert {"ce", "mce_rel", "alpha_median", "resistance", "ood_rms", "temperature"} <= written  # every part ran
    undeclared = sorted(written - set(METRICS))
    assert not undeclared, f"metrics written but not declared in rulab.metrics.catalog: {undeclared}"


def test_every_key_of_the_metric_dicts_is_declared() -> None:
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(50) % 4
    keys = set(calibration_metrics(z, y)) | set(ood_calibration_metrics(z, y, z[:20] * 0.1))
    keys |= set(ood_metrics(torch.rand(30), torch.rand(20))) - {"n_id", "n_ood"}
    assert keys <= set(METRICS), sorted(keys - set(METRICS))
    assert set(names("calibration")) >= set(calibration_metrics(z, y))
    assert set(names("detection")) == set(ood_metrics(torch.rand(30), torch.rand(20))) - {"n_id", "n_ood"}


def test_derived_lists_hold_the_former_hand_kept_ones() -> None:
    """The lists the views used to keep by hand, now read from the declarations: same members, same order
    (behaviour unchanged); a metric declared later joins them."""

    def kept(derived, former):
        return [m for m in derived if m in former] == list(former)

    assert kept(OOD_METRICS, ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error", "ood_ratio"))
    former_percent = {
        "acc",
        "ece",
        "mce",
        "rms",
        "mad",
        "rms_uniform10",
        "soft_f1",
        "mmc",
        "auroc",
        "aupr_in",
        "aupr_out",
        "fpr95_id",
        "fpr95_ood",
        "detection_error",
        "overconf_frac",
        "ce",
        "mce_rel",
    }
    # the pooled OOD calibration errors were missing from the old hand-kept list; they are fractions like ``rms``
    assert former_percent | {"ood_rms", "ood_mad", "ood_soft_f1"} <= {m.name for m in metrics() if m.percent}
    for name in ("nll", "brier", "ood_ratio", "temperature", "alpha_median", "resistance", "not_a_metric"):
        assert not is_percent(name)
    summary_id = [m.name for m in metrics("calibration") if m.summary]
    assert kept(summary_id, ("acc", "nll", "ece", "rms", "mad", "soft_f1", "brier", "mmc", "temperature"))
    assert "mce" not in summary_id and "rms_uniform10" not in summary_id
    summary_ood = [m.name for m in metrics("detection") if m.summary]
    assert (
        kept(summary_ood, ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error"))
        and "ood_ratio" not in summary_ood
    )
    assert get("fpr95_id").heading == "FPR at 95% TPR (%)" and get("temperature").heading == "temperature"


def test_declarations_are_complete_and_checked() -> None:
    for m in metrics():
        assert m.label and m.caption and m.group in GROUPS, m
        assert METRICS.get(m.name) is m
    assert [m.name for m in metrics()] == list(names())
    with pytest.raises(ValueError, match="already registered"):
        declare(Metric("auroc", "x", "y", True, True, "detection"))
    with pytest.raises(ValueError, match="valid groups"):
        Metric("thing", "x", "y", True, True, "misc")
    with pytest.raises(ValueError, match="lower-case word"):
        Metric("Bad Name", "x", "y", True, True, "farconf")
    with pytest.raises(UnknownNameError, match="unknown metric 'aurco'.*did you mean 'auroc'"):
        get("aurco")
    with pytest.raises(ValueError, match="unknown metric group"):
        metrics("misc")
