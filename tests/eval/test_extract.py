"""The extraction cache: one forward pass per (model, dataset), loaded from disk afterwards, recomputed when corrupt."""

from __future__ import annotations

import torch
from torch import nn

from rulab.data.tensors import TensorDataset
from rulab.eval.extract import cache_path, dataset_key, extract, weights_hash
from rulab.models.base import Classifier, Normalize


class Counting(Classifier):
    """A tiny classifier that counts how many images went through ``forward_features``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.normalize = Normalize([0.5], [0.25])
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU())
        self.fc = nn.Linear(6, 3)
        self.feature_dim, self.num_classes = 6, 3
        self.seen = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.body(x)


def data(n: int = 50, seed: int = 0, name: str = "toy") -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8),
        torch.randint(3, (n,), generator=g),
        ["a", "b", "c"],
        name,
    )


def test_second_call_loads_from_disk_without_a_forward_pass(tmp_path):
    model, ds = Counting(), data()
    a = extract(model, ds, batch_size=16, cache_dir=tmp_path)
    assert model.seen == 50
    b = extract(model, ds, batch_size=16, cache_dir=tmp_path)
    assert model.seen == 50  # no forward pass
    for name in ("logits", "features", "labels", "head_weight", "head_bias"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert b.x is ds.x and b.features.shape == (50, 6) and b.head_weight.shape == (3, 6)
    # the cached values are the model's outputs
    with torch.no_grad():
        torch.testing.assert_close(a.logits, model(ds.float()))
        torch.testing.assert_close(a.features, model.features(ds.float()))
    assert cache_path(tmp_path, weights_hash(model), dataset_key(ds)).is_file()


def test_corrupt_or_truncated_cache_is_recomputed(tmp_path):
    model, ds = Counting(), data()
    first = extract(model, ds, cache_dir=tmp_path)
    path = cache_path(tmp_path, weights_hash(model), dataset_key(ds))
    for damage in (b"garbage, not safetensors", path.read_bytes()[:100]):
        path.write_bytes(damage)
        seen = model.seen
        again = extract(model, ds, cache_dir=tmp_path)
        assert model.seen == seen + 50 and torch.equal(again.logits, first.logits)
        extract(model, ds, cache_dir=tmp_path)
        assert model.seen == seen + 50  # the rewritten file is good


def test_cache_is_keyed_by_model_and_dataset(tmp_path):
    model, ds = Counting(), data()
    extract(model, ds, cache_dir=tmp_path)
    extract(model, data(seed=1), cache_dir=tmp_path)  # other images, same name and size
    assert model.seen == 100
    extract(model, ds, cache_dir=tmp_path, model_key="another-checkpoint")
    assert model.seen == 150
    with torch.no_grad():
        model.fc.weight.add_(1.0)  # other weights → other default model key
    out = extract(model, ds, cache_dir=tmp_path)
    assert model.seen == 200
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(ds.float()))
    assert dataset_key(ds, "test", 3, "fog:2").startswith("toy|test|n=50|seed=3|shift=fog:2|fp=")


def test_features_are_recomputed_when_the_cache_has_only_logits(tmp_path):
    model, ds = Counting(), data()
    logits_only = extract(model, ds, features=False, cache_dir=tmp_path)
    assert logits_only.features is None and logits_only.head_weight is None
    full = extract(model, ds, features=True, cache_dir=tmp_path)
    assert model.seen == 100 and full.features is not None
    extract(model, ds, features=False, cache_dir=tmp_path)  # a file with features serves a logits-only request
    assert model.seen == 100


def test_no_cache_dir_runs_the_model_each_time_and_restores_train_mode():
    model, ds = Counting(), data(10)
    model.train()
    extract(model, ds)
    extract(model, ds, keep_images=False)
    assert model.seen == 20 and model.training
