"""W4's protocol as a named protocol (``odin-paper``): per OOD set, ODIN's (T, ε) is tuned on that set's first
``skip`` images and the ID test set's, and the rest are scored with the chosen values (Liang et al. 2018, Section 4).

The expected numbers are recomputed here by brute force from :func:`rulab.detectors.odin.odin_score` (the score
itself is checked against ODIN's reference code in tests/detectors/test_odin.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rulab
from rulab.config import EvalCfg
from rulab.data.tensors import TensorDataset
from rulab.detectors.base import tuning_objective
from rulab.detectors.odin import ODIN_GRIDS, odin_score
from rulab.eval.ood_eval import protocol_metrics
from rulab.metrics.ood import auroc, fpr95_id
from rulab.registry import PROTOCOLS

SHAPE = (1, 6, 6)
N_TEST = 1150  # 1,000 tuning images + 150 scored


@pytest.fixture(scope="module")
def evaluated():
    g = torch.Generator().manual_seed(0)
    templates = 0.15 + 0.7 * torch.rand(3, *SHAPE, generator=g)
    y = torch.arange(N_TEST) % 3
    x = ((templates[y] + 0.1 * torch.randn(N_TEST, *SHAPE, generator=g)).clamp(0, 1) * 255).round().to(torch.uint8)
    test = TensorDataset(x, y, ["a", "b", "c"], "toy", "test", {})
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    xf = x.float() / 255
    for _ in range(80):
        loss = nn.functional.cross_entropy(net(xf), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    cfg = EvalCfg(
        detectors=("msp", "odin"),
        detector_kwargs={"odin": {"search": "coarse"}},
        shift="",
        farconf=False,
        batch_size=500,
    )
    table = rulab.evaluate(
        net,
        id_test=test,
        ood=["uniform", "gaussian"],
        eval_cfg=cfg,
        protocol="odin-paper",
        n_ood=1100,
        temperature=False,
        fit_size=0,
    )
    ood = {name: table_set for name, table_set in _ood_sets(test)}
    return net, test, ood, table


def _ood_sets(test):
    from rulab.eval.ood_eval import load_ood_set

    # synthetic sets under an ODIN protocol are as large as the ID test set (rulab.eval.ood_eval.ood_set_size)
    return [(name, load_ood_set(name, SHAPE, N_TEST, 0, base=test)) for name in ("uniform", "gaussian")]


def test_each_set_gets_the_grid_minimum_of_its_own_tuning_images(evaluated):
    net, test, ood, table = evaluated
    grid = ODIN_GRIDS["coarse"]
    for name, ds in ood.items():
        brute = {
            (t, e): tuning_objective(odin_score(net, test.x[:1000], t, e), {name: odin_score(net, ds.x[:1000], t, e)})
            for t in grid["t"]
            for e in grid["eps"]
        }
        best = min(brute.values())
        t = table.value(kind="ood", metric="odin_t", dataset=name, detector="odin")
        e = table.value(kind="ood", metric="odin_eps", dataset=name, detector="odin")
        assert brute[(t, e)] == pytest.approx(best)
        # the first grid point reaching the minimum (grid order breaks ties), as the detector documents
        first = next(k for k, v in brute.items() if v == pytest.approx(best))
        assert (t, e) == first
        # the whole grid is kept for the paper's plots: [nT, nE] of the tuning images' FPR95 and AUROC
        fpr = table.arrays[f"tuning/odin/{name}/fpr95_id"]
        au = table.arrays[f"tuning/odin/{name}/auroc"]
        assert fpr.shape == au.shape == (len(grid["t"]), len(grid["eps"]))
        assert torch.equal(table.arrays[f"tuning/odin/{name}/t"], torch.tensor(grid["t"], dtype=torch.float64))
        ti, ei = grid["t"].index(1000.0), grid["eps"].index(0.002)
        s_id, s_ood = odin_score(net, test.x[:1000], 1000.0, 0.002), odin_score(net, ds.x[:1000], 1000.0, 0.002)
        assert float(fpr[ti, ei]) == pytest.approx(fpr95_id(s_id, s_ood))
        assert float(au[ti, ei]) == pytest.approx(auroc(s_id, s_ood))


def test_each_set_is_scored_on_the_rest_with_its_own_choice(evaluated):
    net, test, ood, table = evaluated
    protocol = PROTOCOLS.create("odin-paper")
    for name, ds in ood.items():
        t = table.value(kind="ood", metric="odin_t", dataset=name, detector="odin")
        e = table.value(kind="ood", metric="odin_eps", dataset=name, detector="odin")
        expected, extra = protocol_metrics(odin_score(net, test.x, t, e), odin_score(net, ds.x, t, e), protocol, 0)
        got = {r.metric: r for r in table if r.dataset == name and r.detector == "odin" and r.kind == "ood"}
        for metric, value in expected.items():
            assert got[metric].value == pytest.approx(value, abs=1e-6)
            assert got[metric].extra["hparams"]["t"] == t and got[metric].extra["hparams"]["eps"] == e
        assert got["auroc"].n == min(N_TEST, len(ds)) - 1000 == extra["n_ood"]
        assert table.meta["detectors"]["odin"]["per_set"][name]["t"] == t
        # ID scores at this set's values are kept beside the set's scores, for the images its run scores (NaN elsewhere)
        kept = table.arrays[f"tuning/odin/{name}/id_scores"]
        scored = ~torch.isnan(kept)
        assert scored.nonzero().flatten().tolist() == list(range(1000, 1000 + got["auroc"].n))
        torch.testing.assert_close(kept[scored], odin_score(net, test.x, t, e)[scored])
        # its bootstrap interval is computed from those ID scores (never the NaN ones) and holds the value
        assert (
            got["auroc"].ci_low <= got["auroc"].value <= got["auroc"].ci_high
            and got["auroc"].ci_high > got["auroc"].ci_low
        )
    # MSP has no grid: scored as under the odin protocol, first 1,000 images skipped
    msp = [r for r in table if r.detector == "msp" and r.metric == "auroc" and r.kind == "ood"]
    assert msp and all(r.n == N_TEST - 1000 for r in msp)
    assert "scores/odin/id" not in table.arrays  # no single ID score array: each set has its own


def test_protocol_is_registered_and_only_it_tunes_per_set():
    p = PROTOCOLS.create("odin-paper")
    assert p.tunes_per_set and p.skip == 1000
    assert [s.id.tolist() for s in p.splits(1200, 1100)] == [list(range(1000, 1100))]
    assert p.tuning_split(1200, 1100).ood.tolist() == list(range(1000))
    assert not any(PROTOCOLS.create(n).tunes_per_set for n in PROTOCOLS.list() if n != "odin-paper")
