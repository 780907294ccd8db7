"""Tests for rulab.eval.protocols: the sizes and index sets of the W1, OE, ODIN and W3 protocols, and aggregation."""

from __future__ import annotations

import math

import pytest
import torch

import rulab.eval  # noqa: F401  (registers the protocols)
from rulab.errors import ConfigError, InputError
from rulab.eval.protocols import Hendrycks, Split, aggregate
from rulab.registry import PROTOCOLS


def test_registered_names():
    assert {"hendrycks", "hendrycks_oe", "odin", "hein", "full"} <= set(PROTOCOLS.list())


def test_hendrycks_five_runs_of_a_fifth():
    p = PROTOCOLS.create("hendrycks")
    runs = p.splits(10_000, 26_032, seed=0)
    assert p.num_runs == 5 and len(runs) == 5
    for s in runs:
        assert isinstance(s, Split)
        assert torch.equal(s.id, torch.arange(10_000))  # full ID test set, in order
        assert len(s.ood) == 2_000 and s.ood.dtype == torch.int64
        assert len(s.ood.unique()) == 2_000  # no repeats within a run
        assert s.ood.min() >= 0 and s.ood.max() < 26_032
    # runs are independent draws: different subsets, overlapping about 2000·2000/26032 ≈ 154 examples
    a, b = set(runs[0].ood.tolist()), set(runs[1].ood.tolist())
    assert a != b and 80 < len(a & b) < 240


def test_hendrycks_deterministic_and_seeded():
    p = PROTOCOLS.create("hendrycks")
    one, two, other = p.splits(1000, 500, seed=3), p.splits(1000, 500, seed=3), p.splits(1000, 500, seed=4)
    assert all(torch.equal(x.ood, y.ood) for x, y in zip(one, two))
    assert not torch.equal(one[0].ood, other[0].ood)


def test_hendrycks_small_ood_set_used_whole_each_run():
    runs = PROTOCOLS.create("hendrycks").splits(10_000, 1_500, seed=0)
    for s in runs:
        assert torch.equal(s.ood.sort().values, torch.arange(1_500))
    assert not torch.equal(runs[0].ood, runs[1].ood)  # a fresh shuffle per run


def test_hendrycks_oe_and_synthetic_pool():
    p = PROTOCOLS.create("hendrycks_oe")
    assert p.num_runs == 10 and p.name == "hendrycks_oe"
    assert len(p.splits(10_000, 20_000, seed=0)) == 10
    assert p.synthetic_size(10_000) == 20_000  # 2,000 per run × 10 runs, generated once
    assert PROTOCOLS.create("hendrycks").synthetic_size(10_000) == 10_000
    assert PROTOCOLS.create("hendrycks", num_runs=3).num_runs == 3


def test_hendrycks_test_batch_rounding_and_errors():
    assert Hendrycks(test_batch=200).per_run(10_000) == 2_000
    assert Hendrycks(test_batch=200).per_run(9_000) == 1_800
    assert Hendrycks(test_batch=200).per_run(9_999) == 1_800  # 1,999 → 9 whole batches of 200
    assert Hendrycks().per_run(9_999) == 1_999
    with pytest.raises(InputError):
        Hendrycks().splits(4, 100, seed=0)
    with pytest.raises(ConfigError):
        Hendrycks(num_runs=0)


def test_odin_skips_tuning_images_and_equalises():
    p = PROTOCOLS.create("odin")
    (s,) = p.splits(10_000, 10_000, seed=0)
    assert torch.equal(s.id, torch.arange(1_000, 10_000)) and torch.equal(s.ood, torch.arange(1_000, 10_000))
    (isun,) = p.splits(10_000, 8_925, seed=0)  # iSUN: N = 8,925 ⇒ 7,925 each
    assert len(isun.id) == len(isun.ood) == 7_925
    assert isun.id[0] == 1_000 and isun.id[-1] == 8_924 and isun.ood[-1] == 8_924
    t = p.tuning_split(10_000, 8_925)
    assert torch.equal(t.id, torch.arange(1_000)) and torch.equal(t.ood, torch.arange(1_000))
    assert set(t.ood.tolist()).isdisjoint(isun.ood.tolist())
    assert p.synthetic_size(10_000) == 10_000  # ODIN: 10,000 generated, 9,000 scored
    with pytest.raises(InputError):
        p.splits(10_000, 1_000, seed=0)


def test_hein_drop_last():
    p = PROTOCOLS.create("hein")
    (s,) = p.splits(10_000, 26_032, seed=0)
    # W3's data.get_next_batch / DataLoader(drop_last=True), batch 128: SVHN's 26,032 → 203 batches = 25,984
    assert len(s.id) == 9_984 and len(s.ood) == 25_984
    assert torch.equal(s.id, torch.arange(9_984))
    assert p.synthetic_size(10_000) == 9_984
    with pytest.raises(InputError):
        p.splits(100, 1_000, seed=0)


def test_full_and_no_tuning_split():
    p = PROTOCOLS.create("full")
    (s,) = p.splits(7, 3, seed=0)
    assert s.id.tolist() == list(range(7)) and s.ood.tolist() == [0, 1, 2]
    assert p.tuning_split(7, 3) is None and PROTOCOLS.create("hendrycks").tuning_split(7, 3) is None
    with pytest.raises(InputError):
        p.splits(0, 3, seed=0)


def test_aggregate_known_answer():
    runs = [{"auroc": 0.9, "fpr95_id": 0.3}, {"auroc": 0.8, "fpr95_id": 0.5}, {"auroc": 0.7, "fpr95_id": 0.1}]
    out = aggregate(runs)
    assert out["n_runs"] == 3
    assert out["mean"]["auroc"] == pytest.approx(0.8) and out["mean"]["fpr95_id"] == pytest.approx(0.3)
    assert out["std"]["auroc"] == pytest.approx(math.sqrt(0.02 / 3))  # np.std, ddof = 0 (W1/OE)
    assert out["std"]["fpr95_id"] == pytest.approx(math.sqrt(0.08 / 3))
    assert aggregate(runs, ddof=1)["std"]["auroc"] == pytest.approx(0.1)
    single = PROTOCOLS.create("odin").aggregate([{"auroc": 0.5}])
    assert single == {"mean": {"auroc": 0.5}, "std": {"auroc": 0.0}, "n_runs": 1}


def test_aggregate_errors():
    with pytest.raises(InputError):
        aggregate([])
    with pytest.raises(InputError):
        aggregate([{"auroc": 0.5}, {"aupr_in": 0.5}])


def test_protocols_are_frozen():
    p = PROTOCOLS.create("hein")
    with pytest.raises(AttributeError):
        p.batch_size = 64  # type: ignore[misc]
