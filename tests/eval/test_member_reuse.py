"""A deep ensemble evaluated after its members composes what they already computed on the same data (the test set,
every shifted test set) from their extraction caches instead of running them again, and gets the numbers it would
get by running them (rulab.eval.extract.from_members, rulab.eval.shift's ``members_from``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rulab.eval.extract as extract_mod
import rulab.eval.shift as shift_mod
from rulab.config import DataCfg, EvalCfg, ModelCfg, RunCfg, TrainCfg
from rulab.data.tensors import TensorDataset
from rulab.errors import InputError
from rulab.eval.checkpoint import evaluate_checkpoint
from rulab.eval.ensemble import evaluate_ensemble
from rulab.eval.extract import dataset_key, extract
from rulab.eval.predict import predict
from rulab.eval.shift import evaluate_shift
from rulab.models.ensemble import Ensemble
from rulab.registry import MODELS

CELLS = [("gaussian_blur_sigma", 0.5), ("brightness_factor", 1.2)]


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.create("fastcnn", num_classes=10, in_channels=1, width=8).eval()


@pytest.fixture()
def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8, generator=g)
    return TensorDataset(x, torch.randint(0, 10, (120,), generator=g), name="toy")


def _no_forward(*args, **kwargs):
    raise AssertionError("the members were run again although their outputs were stored")


def test_ensemble_extraction_is_composed_from_the_members_caches(data, tmp_path, monkeypatch):
    nets = [_net(0), _net(1)]
    key = dataset_key(data, "test")
    caches = [(tmp_path / f"m{i}", f"member{i}") for i in range(2)]
    for net, (d, k) in zip(nets, caches):
        extract(net, data, features=True, cache_dir=d, key=key, model_key=k)
    ens = Ensemble(nets)
    direct = extract(ens, data, features=True)  # the members run inside the ensemble
    monkeypatch.setattr(extract_mod, "predict", _no_forward)
    reused = extract(
        ens, data, features=True, cache_dir=tmp_path / "ens", key=key, model_key="ens", members_from=caches
    )
    torch.testing.assert_close(reused.members, direct.members, rtol=0, atol=1e-6)
    torch.testing.assert_close(reused.logits, direct.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(reused.features, direct.features, rtol=0, atol=1e-6)
    assert reused.features.shape == (120, ens.feature_dim) and reused.head_weight is None
    assert torch.equal(reused.labels, data.y)
    # a key that one member lacks is computed, not half-composed
    other = TensorDataset(data.x[:60], data.y[:60], name="toy")
    with pytest.raises(AssertionError, match="run again"):
        extract(ens, other, cache_dir=tmp_path / "ens", model_key="ens", members_from=caches)


def test_members_from_must_name_one_cache_per_member_of_an_ensemble(data, tmp_path):
    nets = [_net(0), _net(1)]
    with pytest.raises(InputError, match="one \\(cache_dir, model_key\\) per member"):
        extract(nets[0], data, members_from=[(tmp_path, "a"), (tmp_path, "b")])
    with pytest.raises(InputError, match="of 2"):
        extract(Ensemble(nets), data, members_from=[(tmp_path, "a")])


def test_shift_cells_are_stored_per_checkpoint_and_averaged_for_the_ensemble(data, tmp_path, monkeypatch):
    nets = [_net(0), _net(1)]
    caches = [(tmp_path / f"m{i}", f"member{i}") for i in range(2)]
    first = [evaluate_shift(n, data, CELLS, seed=0, logits_cache=c) for n, c in zip(nets, caches)]
    assert first[0].meta["stored_cells"] == 0
    ens = Ensemble(nets)
    direct = evaluate_shift(ens, data, CELLS, seed=0, keep_logits=True)
    clean = {i: predict(m, data.x)["logits"] for i, m in enumerate([nets[0], ens])}  # the evaluation passes these
    monkeypatch.setattr(shift_mod, "_forward", _no_forward)
    # the same checkpoint again: every cell from its own cache, the same rows
    again = evaluate_shift(nets[0], data, CELLS, seed=0, logits_cache=caches[0], clean_logits=clean[0])
    assert again.meta["stored_cells"] == len(CELLS)
    for a, b in zip(again, first[0]):
        assert a.key == b.key and a.value == pytest.approx(b.value, abs=1e-6)
    # the ensemble: every cell averaged from the members' stored logits, the rows of running the ensemble
    reused = evaluate_shift(ens, data, CELLS, seed=0, members_from=caches, keep_logits=True, clean_logits=clean[1])
    assert reused.meta["stored_cells"] == len(CELLS)
    for corruption, level in CELLS:
        name = f"shift/{corruption}/{shift_mod.level_label(level)}/logits"
        torch.testing.assert_close(reused.arrays[name], direct.arrays[name], rtol=0, atol=1e-5)
    for a, b in zip(reused, direct):
        assert a.key == b.key and a.value == pytest.approx(b.value, abs=1e-5)
    # another seed is other shifted images: not taken from the stored cells
    with pytest.raises(AssertionError, match="run again"):
        evaluate_shift(ens, data, CELLS, seed=1, members_from=caches, clean_logits=clean[1])


def _cfg(name: str, seed: int, out: Path) -> RunCfg:
    return RunCfg(
        name=name,
        seed=seed,
        preset="fmnist-plain",
        out_dir=str(out),
        model=ModelCfg("fastcnn", {"width": 8}),
        data=DataCfg(train_subset=1000, val_size=500),
        train=TrainCfg(epochs=1, max_steps=20, batch_size=64, eval_every=0, deterministic=False),
        eval=EvalCfg(
            benchmark="fmnist-uncertainty-reuse",
            shift="blur_w2",
            farconf=False,
            detectors=("msp", "energy", "knn"),
        ),
    )


def test_a_study_ensemble_runs_no_shifted_image_its_members_ran(tmp_path, monkeypatch):
    from rulab.eval.benchmarks import Benchmark
    from rulab.registry import BENCHMARKS
    from rulab.train.loop import fit

    bench = Benchmark(
        name="fmnist-uncertainty-reuse",
        id_dataset="fashion_mnist",
        ood=("uniform",),
        val_ood=("photos",),
        protocol="full",
        n_ood=100,
        n_val_id=100,
        n_val_ood=100,
    )
    BENCHMARKS.register(bench.name, overwrite=True)(lambda: bench)
    runs = [fit(_cfg(f"fmnist-plain-s{s}", s, tmp_path), progress=False) for s in (0, 1)]
    for r in runs:
        evaluate_checkpoint(r, progress=False)
    fresh = evaluate_ensemble(runs, progress=False, cache=False, name="fresh")  # runs every member itself
    reused = evaluate_ensemble(runs, progress=False, name="reused")
    cells = len(shift_mod.shift_suite("blur_w2"))
    assert reused.meta["shift"]["stored_cells"] == cells and "stored_cells" not in fresh.meta["shift"]
    for metric in ("acc", "nll", "ece"):
        for row in fresh.filter(kind="shift", metric=metric):
            assert reused.get(row.key).value == pytest.approx(row.value, abs=1e-5), row.key
    for metric in ("acc", "nll"):
        assert reused.value(kind="id", metric=metric, detector="") == pytest.approx(
            fresh.value(kind="id", metric=metric, detector=""), abs=1e-5
        )
    a = reused.value(kind="ood", dataset="uniform", detector="knn", metric="auroc")
    assert a == pytest.approx(fresh.value(kind="ood", dataset="uniform", detector="knn", metric="auroc"), abs=1e-4)
