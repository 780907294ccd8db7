"""Per-image bootstrap intervals of an evaluation (rulab.eval.intervals): which rows get one, that each is the
percentile interval of replicates computed from the evaluation's own scores with resamples that depend only on the
data (so two models are paired), and that ``eval.bootstrap=0`` switches them off."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rulab
from rulab.config import EvalCfg, RunCfg
from rulab.eval.intervals import SHIFT_METRICS, Resampler
from rulab.metrics.bootstrap import detection_replicates, percentile_interval
from rulab.registry import PROTOCOLS
from rulab.results.store import ResultStore

SHAPE = (3, 8, 8)
B = 200
DETECTION = ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error")


def _images(g: torch.Generator, templates: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(3, (n,), generator=g)
    x = (templates[y] + 0.6 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def toy():
    """A 3-class toy problem of noisy 3×8×8 class templates, and two small MLPs (different seeds) fitted to it."""
    g = torch.Generator().manual_seed(0)
    templates = 0.2 + 0.6 * torch.rand(3, *SHAPE, generator=g)
    train, val, test = _images(g, templates, 240), _images(g, templates, 120), _images(g, templates, 300)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(8):
            loss = nn.functional.cross_entropy(net(train[0].float() / 255), train[1])
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets.append(net.eval())
    return nets, train, val, test


def _evaluate(
    net,
    data,
    bootstrap: int = B,
    protocol: str = "full",
    shifts=(("gaussian_blur_sigma", 0.5), ("brightness_factor", 0.8)),
):
    _, train, val, test = data
    return rulab.evaluate(
        net,
        id_test=test,
        ood=["uniform", "gaussian"],
        ood_val=["rademacher"],
        id_train=train,
        id_val=val,
        shifts=list(shifts),
        farconf=False,
        detectors=["msp", "energy", "knn"],
        eval_cfg=EvalCfg(bootstrap=bootstrap),
        n_ood=200,
        n_val_ood=60,
        protocol=protocol,
    )


def test_which_rows_get_an_interval_and_what_it_is(toy, tmp_path) -> None:
    nets, *_ = toy
    t = _evaluate(nets[0], toy)
    rows = {r.key: r for r in t}
    method = f"bootstrap-percentile-{B}"
    for det in ("msp", "energy", "knn"):
        for s in ("uniform", "gaussian"):
            for m in DETECTION:
                r = rows[("ood", s, "", "", det, m)]
                reps = t.replicates(r.key)
                assert r.ci_method == method and reps.shape == (B,), r.key
                assert (r.ci_low, r.ci_high) == percentile_interval(reps)
            assert not rows[("ood", s, "", "", det, "ood_ratio")].has_interval
    for det in ("", "ts"):
        for m in ("acc", "nll", "ece", "rms", "mad", "soft_f1", "brier", "mmc", "mce", "rms_uniform10"):
            assert rows[("id", "id", "", "", det, m)].ci_method == method, (det, m)
    assert not rows[("id", "id", "", "", "ts", "temperature")].has_interval
    assert rows[("ood", "uniform", "", "", "msp", "mmc")].has_interval
    assert not rows[("ood", "uniform", "", "", "msp", "ood_rms")].has_interval
    for shift, sev in (("clean", "0"), ("gaussian_blur_sigma", "0.5"), ("gaussian_blur_sigma", "mean")):
        for m in SHIFT_METRICS:
            assert rows[("shift", "id", shift, sev, "", m)].ci_method == method, (shift, sev, m)
        assert not rows[("shift", "id", shift, sev, "", "rms")].has_interval
        assert not rows[("shift", "id", shift, sev, "ts", "ece")].has_interval
    # a known answer: the accuracy replicates are the resampled fraction correct, with the data's own resamples
    n = len(toy[3][1])
    counts = Resampler(B).counts("id", n).double()
    correct = (t.arrays["id/logits"].argmax(dim=1) == t.arrays["id/labels"]).double()
    assert torch.allclose(t.replicates(("id", "id", "", "", "", "acc")).double(), counts @ correct / n, atol=1e-6)
    # the mean over a corruption's levels has the mean of their replicates (here one level)
    assert torch.equal(
        t.replicates(("shift", "id", "gaussian_blur_sigma", "mean", "", "acc")),
        t.replicates(("shift", "id", "gaussian_blur_sigma", "0.5", "", "acc")),
    )
    assert t.meta["bootstrap"]["resamples"] == B and "intervals" in t.meta["timing"]
    assert t.to_csv().splitlines()[0].endswith(",ci_low,ci_high,ci_method")
    # stored in the database with the rows
    store = ResultStore(tmp_path / "r.db")
    rid = store.start_run(RunCfg(name="toy"))
    store.write_results(rid, t)
    back = {r.key: r for r in store.table(rid)}
    key = ("ood", "uniform", "", "", "knn", "auroc")
    assert (back[key].ci_low, back[key].ci_high, back[key].ci_method) == (rows[key].ci_low, rows[key].ci_high, method)


def test_two_models_see_the_same_resampled_images(toy) -> None:
    """The resamples depend only on the data: re-evaluating gives the same intervals, and a second model's replicates
    are its own scores resampled with the first model's counts, which is what makes a difference of replicates a
    paired bootstrap."""
    nets, *_ = toy
    a, again, b = (_evaluate(net, toy, shifts=()) for net in (nets[0], nets[0], nets[1]))
    key = ("ood", "uniform", "", "", "energy", "auroc")
    assert torch.equal(a.replicates(key), again.replicates(key))
    s_id, s_ood = b.arrays["scores/energy/id"], b.arrays["scores/energy/uniform"]
    r = Resampler(B)
    want = detection_replicates(s_id, s_ood, r.counts("id", len(s_id)), r.counts("ood/uniform", len(s_ood)))["auroc"]
    assert torch.allclose(b.replicates(key).double(), want, atol=1e-6)
    assert not torch.equal(a.replicates(key), b.replicates(key))


def test_a_protocol_with_several_runs_averages_the_runs_replicates(toy) -> None:
    """W1's protocol scores five draws of OOD images; the value is their mean, and so is each replicate."""
    nets, *_ = toy
    t = _evaluate(nets[0], toy, protocol="hendrycks", shifts=())
    s_id, s_ood = t.arrays["scores/msp/id"], t.arrays["scores/msp/gaussian"]
    splits = PROTOCOLS.create("hendrycks").splits(len(s_id), len(s_ood), 0)
    r = Resampler(B)
    runs = [
        detection_replicates(
            s_id[sp.id], s_ood[sp.ood], r.counts("id", len(sp.id)), r.counts(f"ood/gaussian/run{i}", len(sp.ood))
        )["fpr95_id"]
        for i, sp in enumerate(splits)
    ]
    assert len(runs) == 5
    assert torch.allclose(
        t.replicates(("ood", "gaussian", "", "", "msp", "fpr95_id")).double(), sum(runs) / 5, atol=1e-6
    )


def test_bootstrap_zero_switches_intervals_off(toy) -> None:
    nets, *_ = toy
    t = _evaluate(nets[0], toy, bootstrap=0, shifts=())
    assert not t.has_intervals() and not any(k.startswith("bootstrap/") for k in t.arrays)
    assert all(math.isnan(r.ci_low) and r.ci_method == "" for r in t)
