"""``parity=True`` evaluations score with the originals' own metric code (rulab.metrics.parity) under the protocol that
reproduces their sampling, and every OOD row records which definition produced it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rulab.eval.ood_eval import PARITY_METRICS, protocol_metrics
from rulab.metrics.ood import ood_metrics
from rulab.metrics.parity import hein_fpr95, hendrycks_fpr_and_fdr_at_recall, hendrycks_measures
from rulab.registry import PROTOCOLS


@pytest.fixture(scope="module")
def scores() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # coarse scores (many ties), where the closest-recall and percentile rules differ from the exact FPR95s
    s_id = (torch.randn(1000, generator=g) + 1.0).mul(4).round().div(4)
    s_ood = torch.randn(900, generator=g).mul(4).round().div(4)
    return s_id, s_ood


def test_hendrycks_parity_uses_w1_get_measures_run_by_run(scores):
    s_id, s_ood = scores
    protocol = PROTOCOLS.create("hendrycks")
    exact, ex = protocol_metrics(s_id, s_ood, protocol, seed=3)
    parity, px = protocol_metrics(s_id, s_ood, protocol, seed=3, parity=True)
    runs = protocol.splits(len(s_id), len(s_ood), 3)
    want = np.mean([hendrycks_fpr_and_fdr_at_recall(s_id[r.id], s_ood[r.ood]) for r in runs])
    assert parity["fpr95_ood"] == pytest.approx(want, abs=1e-12)
    assert parity["fpr95_ood"] != pytest.approx(exact["fpr95_ood"], abs=1e-6)  # the closest-recall rule differs here
    m = [hendrycks_measures(s_id[r.id], s_ood[r.ood]) for r in runs]
    assert parity["auroc"] == pytest.approx(np.mean([x["auroc"] for x in m])) == pytest.approx(exact["auroc"])
    assert parity["fpr95_id"] == exact["fpr95_id"]  # a metric W1's code does not compute stays exact
    assert px["definitions"]["fpr95_ood"] == "hendrycks_measures" and px["definitions"]["fpr95_id"] == "exact"
    assert set(ex["definitions"].values()) == {"exact"} and set(ex["definitions"]) == set(exact)
    assert px["std"]["fpr95_ood"] == pytest.approx(
        np.std([hendrycks_fpr_and_fdr_at_recall(s_id[r.id], s_ood[r.ood]) for r in runs])
    )


def test_hein_parity_uses_the_percentile_rule():
    # ID scores 0..255: W3's threshold is the interpolated 5th percentile 12.75, the exact rule's the largest threshold
    # keeping 95% of ID (244 of 256), 12; OOD scores of 12.5 lie between the two
    s_id, s_ood = torch.arange(256, dtype=torch.float64), torch.full((256,), 12.5, dtype=torch.float64)
    protocol = PROTOCOLS.create("hein")
    parity, px = protocol_metrics(s_id, s_ood, protocol, seed=0, parity=True)
    (run,) = protocol.splits(len(s_id), len(s_ood), 0)
    assert parity["fpr95_id"] == pytest.approx(hein_fpr95(s_id[run.id], s_ood[run.ood]))
    exact = ood_metrics(s_id[run.id], s_ood[run.ood])
    assert (parity["fpr95_id"], exact["fpr95_id"]) == (0.0, 1.0)
    assert px["definitions"] == {k: ("hein_fpr95" if k == "fpr95_id" else "exact") for k in parity}


def test_protocols_without_a_port_stay_exact(scores):
    s_id, s_ood = scores
    values, extra = protocol_metrics(s_id, s_ood, PROTOCOLS.create("full"), seed=0, parity=True)
    assert values == pytest.approx({k: v for k, v in ood_metrics(s_id, s_ood).items() if k not in ("n_id", "n_ood")})
    assert set(extra["definitions"].values()) == {"exact"}
    assert set(PARITY_METRICS) == {"hendrycks", "hendrycks_oe", "hein"}


def test_a_parity_evaluation_stores_the_definition_with_each_row():
    from torch import nn

    import rulab

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (600, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (600,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    kwargs = dict(id_test=(x, y), ood=["uniform"], n_ood=300, detectors=["msp"], protocol="hendrycks")
    table = rulab.evaluate(net, parity=True, **kwargs)
    row = next(iter(table.filter(kind="ood", dataset="uniform", detector="msp", metric="fpr95_ood")))
    assert row.extra["definitions"]["fpr95_ood"] == "hendrycks_measures"
    plain = rulab.evaluate(net, **kwargs)
    row = next(iter(plain.filter(kind="ood", dataset="uniform", detector="msp", metric="fpr95_ood")))
    assert row.extra["definitions"]["fpr95_ood"] == "exact"
