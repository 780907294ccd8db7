"""Contract tests run over every registered protocol and benchmark: a new one is covered by being registered, with no
list in a test to extend."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rulab.data.corruptions import SHIFT_SUITES
from rulab.eval.benchmarks import Benchmark
from rulab.eval.protocols import Protocol, Split
from rulab.registry import BENCHMARKS, DATASETS, OOD_SETS, PROTOCOLS

SIZES = [(3000, 2500), (1500, 4000), (2100, 2100)]


@pytest.mark.parametrize("name", PROTOCOLS.list())
def test_protocol_is_a_frozen_protocol_named_as_registered(name):
    p = PROTOCOLS.create(name)
    assert isinstance(p, Protocol) and p.name == name and p.num_runs >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("n_id,n_ood", SIZES)
@pytest.mark.parametrize("name", PROTOCOLS.list())
def test_protocol_splits_index_within_the_sets_without_repeats(name, n_id, n_ood):
    p = PROTOCOLS.create(name)
    runs = p.splits(n_id, n_ood, seed=0)
    assert len(runs) == p.num_runs
    tuning = p.tuning_split(n_id, n_ood)
    for run in runs:
        assert isinstance(run, Split)
        for idx, n in ((run.id, n_id), (run.ood, n_ood)):
            assert idx.dtype == torch.int64 and idx.ndim == 1 and len(idx) >= 1
            assert int(idx.min()) >= 0 and int(idx.max()) < n
            assert len(idx.unique()) == len(idx), f"protocol '{name}' repeats an example within a run"
        if tuning is not None:  # the images a protocol tunes on are never scored
            assert not set(tuning.id.tolist()) & set(run.id.tolist()) and not set(tuning.ood.tolist()) & set(
                run.ood.tolist()
            )
    again = p.splits(n_id, n_ood, seed=0)
    assert all(torch.equal(a.id, b.id) and torch.equal(a.ood, b.ood) for a, b in zip(runs, again))


@pytest.mark.parametrize("name", PROTOCOLS.list())
def test_protocol_synthetic_pool_and_aggregate(name):
    p = PROTOCOLS.create(name)
    pool = p.synthetic_size(3000)
    assert isinstance(pool, int) and pool >= 1
    # a synthetic pool of that size serves every run without repeats within a run
    for run in p.splits(3000, pool, seed=1):
        assert len(run.ood.unique()) == len(run.ood)
    runs = [{"auroc": 0.5 + 0.1 * i, "fpr95_id": 0.2} for i in range(p.num_runs)]
    agg = p.aggregate(runs)
    assert agg["n_runs"] == p.num_runs
    assert agg["mean"]["auroc"] == pytest.approx(sum(r["auroc"] for r in runs) / p.num_runs)
    assert agg["mean"]["fpr95_id"] == pytest.approx(0.2) and agg["std"]["fpr95_id"] == pytest.approx(0.0)


@pytest.mark.parametrize("name", BENCHMARKS.list())
def test_benchmark_names_registered_things(name):
    b = BENCHMARKS.create(name)
    assert isinstance(b, Benchmark) and b.name == name
    assert b.id_dataset in DATASETS, f"benchmark '{name}': unknown dataset '{b.id_dataset}'"
    assert b.protocol in PROTOCOLS, f"benchmark '{name}': unknown protocol '{b.protocol}'"
    unknown = [s for s in (*b.ood, *b.val_ood) if s not in OOD_SETS]
    assert not unknown, f"benchmark '{name}' names OOD sets that are not registered: {unknown}"
    assert not set(b.ood) & set(b.val_ood)
    assert not b.shift or b.shift in {s.name for s in SHIFT_SUITES}, (
        f"benchmark '{name}': unknown shift suite '{b.shift}'"
    )
    assert b.n_ood >= 1 and b.n_val_id >= 0 and b.n_val_ood >= 0
