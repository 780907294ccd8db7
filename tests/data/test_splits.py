import pytest
import torch

from rulab.config import DataCfg
from rulab.data.splits import _stratified, filter_classes, load_splits
from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError


def ds():
    x = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    y = torch.arange(40) % 4
    return TensorDataset(x, y, ["a", "b", "c", "d"], "toy")


def test_keep_classes_relabels_in_given_order():
    out = filter_classes(ds(), keep=(3, 1))
    assert out.classes == ["d", "b"] and len(out) == 20
    assert set(out.y.tolist()) == {0, 1}
    assert torch.equal(out.y[out.x[:, 0, 0, 0] % 4 == 3], torch.zeros(10, dtype=torch.int64))


def test_exclude_classes_keeps_labels_compact():
    out = filter_classes(ds(), exclude=(0, 2))
    assert out.classes == ["b", "d"] and sorted(set(out.y.tolist())) == [0, 1] and len(out) == 20
    with pytest.raises(ConfigError, match="class index 7 does not exist"):
        filter_classes(ds(), keep=(7,))


def test_stratified_subset_is_balanced_and_seeded():
    y = torch.arange(1000) % 10
    idx = _stratified(y, 95, seed=1)
    counts = torch.bincount(y[idx], minlength=10)
    assert len(idx) == 95 and counts.max() - counts.min() <= 1
    assert torch.equal(idx, _stratified(y, 95, seed=1)) and not torch.equal(idx, _stratified(y, 95, seed=2))


def test_fashion_mnist_splits():
    s = load_splits(DataCfg(val_size=5000), seed=0)
    assert len(s.train) == 55000 and len(s.val) == 5000 and len(s.test) == 10000
    tail = load_splits(DataCfg(val_size=5000, val_split="tail"), seed=0)
    full = load_splits(DataCfg(val_size=0), seed=0)
    assert torch.equal(tail.val.x, full.train.x[-5000:])  # W1's validation_split: contiguous last 10%
    sub = load_splits(DataCfg(val_size=1000, train_subset=500, classes=(5, 6, 7, 8, 9)), seed=3)
    assert len(sub.train) == 500 and sub.classes == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert torch.bincount(sub.train.y).tolist() == [100] * 5
    # train and validation partition the original training split (compare images by a random projection)
    proj = torch.randn(784, dtype=torch.float64)
    key = lambda d: (d.x.view(len(d), -1).double() @ proj).sort().values  # noqa: E731
    both = torch.cat([s.train.x, s.val.x])
    assert torch.allclose(key(full.train), (both.view(len(both), -1).double() @ proj).sort().values)
