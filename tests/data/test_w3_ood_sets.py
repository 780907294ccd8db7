"""W3's OOD sets that were missing (Hein et al. 2019, Section 6): Fashion-MNIST and EMNIST letters for MNIST, and
"ImageNet−" for SVHN / CIFAR; each through the data chain on small files in the real format (NIST's ``gzip.zip``,
downsampled ImageNet's ``val_data.npz`` with ``map_clsloc.txt``)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from rulab.errors import ChecksumError, DataError, DatasetMissingError
from rulab.registry import BENCHMARKS, DATASETS, OOD_SETS

_SPEC = importlib.util.spec_from_file_location("_rulab_test_data_conftest", Path(__file__).parent / "conftest.py")
writers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(writers)


def test_emnist_from_the_official_zip_is_transposed_upright(env, monkeypatch):
    cache, _ = env
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (9, 28, 28), dtype=np.uint8)
    blob = writers.emnist_zip(stored, np.arange(1, 10, dtype=np.uint8))
    (cache / "emnist").mkdir()
    (cache / "emnist" / "gzip.zip").write_bytes(blob)
    writers.publish_archive(monkeypatch, "emnist", blob)
    ds = OOD_SETS.create("emnist", shape=(1, 28, 28))
    assert ds.x.dtype == torch.uint8 and ds.x.shape == (9, 1, 28, 28) and ds.y.tolist() == [-1] * 9
    # EMNIST stores images column-major: the set holds the transposes, letters upright as MNIST digits
    assert torch.equal(ds.x[:, 0], torch.from_numpy(stored).transpose(1, 2))
    assert (cache / "emnist" / "gzip" / "emnist-letters-test-images-idx3-ubyte.gz").is_file()  # extracted from the zip
    sub = OOD_SETS.create("emnist", shape=(3, 32, 32), n=4, seed=1)
    assert sub.x.shape == (4, 3, 32, 32) and torch.equal(sub.x[:, 0], sub.x[:, 2])  # grey replicated to colour


def test_emnist_downloads_the_zip_and_checks_its_md5(env, monkeypatch, tmp_path):
    cache, _ = env
    monkeypatch.setenv("RULAB_OFFLINE", "0")
    blob = writers.emnist_zip(np.zeros((7, 28, 28), np.uint8), np.ones(7, np.uint8))
    server = tmp_path / "server" / "gzip.zip"
    server.parent.mkdir()
    server.write_bytes(blob)
    from rulab.data.fetch import SOURCES
    from rulab.data.fetch.sources import get_source

    real = get_source("emnist")
    assert real.archives[0].md5 == "58c8d27c78d21e728a6bc7b3cc06412e"  # NIST's gzip.zip, as torchvision checks it
    assert real.archives[0].urls == ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",)
    wrong = dataclasses.replace(real.archives[0], md5="0" * 32, urls=(server.as_uri(),))
    monkeypatch.setitem(SOURCES._entries, "emnist", dataclasses.replace(real, archives=(wrong,)))
    with pytest.raises(ChecksumError, match="gzip.zip"):
        OOD_SETS.create("emnist", shape=(1, 28, 28))
    assert not (cache / "emnist" / "gzip.zip").exists()  # a download that fails its check leaves nothing
    writers.publish_archive(monkeypatch, "emnist", blob, (server.as_uri(),))
    assert len(OOD_SETS.create("emnist", shape=(1, 28, 28))) == 7


def test_emnist_missing_says_where_to_get_it(env):
    with pytest.raises(DatasetMissingError, match="gzip.zip"):
        OOD_SETS.create("emnist", shape=(1, 28, 28))


def _imagenet(cache: Path, rng: np.random.Generator, labels_of) -> tuple[dict, list[int]]:
    from rulab.data.imagenet_classes import imagenet_sorted_indices

    text, table = writers.paper.fake_map_clsloc(rng)
    (cache / "imagenet32").mkdir()
    (cache / "imagenet32" / "map_clsloc.txt").write_text(text)
    sorted_idx = labels_of(set(imagenet_sorted_indices()))
    labels = [table[i][1] for i in sorted_idx]
    (cache / "imagenet32" / "val_data.npz").write_bytes(writers.imagenet_val_npz(labels, rng))
    return table, sorted_idx


def test_imagenet_minus_drops_exactly_the_cifar10_classes(env):
    cache, _ = env
    rng = np.random.default_rng(1)
    # sorted class indices: 0-3 (tench, goldfish, white shark, tiger shark) stay; 7 (cock), 151 (Chihuahua),
    # 404 (airliner), 817 (sports car) are CIFAR-10 classes and go
    _, order = _imagenet(cache, rng, lambda inside: [0, 7, 1, 151, 2, 404, 3, 817])
    full = DATASETS.create("imagenet32", split="test")
    ds = OOD_SETS.create("imagenet_minus", shape=(3, 32, 32))
    kept = [k for k, i in enumerate(order) if i in (0, 1, 2, 3)]
    assert torch.equal(ds.x, full.x[kept]) and ds.y.tolist() == [-1] * 4
    assert ds.meta["excluded_classes"] == 219
    grey = OOD_SETS.create("imagenet_minus", shape=(1, 28, 28), n=2, seed=0)
    assert grey.x.shape == (2, 1, 28, 28)


def test_imagenet_minus_needs_the_class_map(env):
    cache, _ = env
    (cache / "imagenet32").mkdir()
    (cache / "imagenet32" / "val_data.npz").write_bytes(writers.imagenet_val_npz([1, 2, 3], np.random.default_rng(2)))
    with pytest.raises(DataError, match="map_clsloc.txt"):
        OOD_SETS.create("imagenet_minus", shape=(3, 32, 32))


def test_imagenet_minus_defaults_to_w3s_10000_images(env, monkeypatch):
    import rulab.data.ood.from_datasets as fd

    cache, _ = env
    _imagenet(cache, np.random.default_rng(3), lambda inside: [i for i in range(40) if i not in inside][:12])
    monkeypatch.setattr(fd, "IMAGENET_MINUS_N", 5)  # the cap W3's 10,000 stands for, on a 12-image file
    assert len(OOD_SETS.create("imagenet_minus", shape=(3, 32, 32))) == 5
    monkeypatch.setattr(fd, "IMAGENET_MINUS_N", 50)
    assert len(OOD_SETS.create("imagenet_minus", shape=(3, 32, 32))) == 12  # fewer than the cap: all of them


def test_fashion_mnist_ood_set_is_the_test_split(every_dataset):
    test = DATASETS.create("fashion_mnist", split="test")
    ds = OOD_SETS.create("fashion_mnist", shape=(1, 28, 28))
    assert torch.equal(ds.x, test.x) and ds.y.tolist() == [-1] * len(test)


def test_the_w3_benchmarks_use_them():
    assert BENCHMARKS.create("mnist-hein").ood == ("fashion_mnist", "emnist", "cifar10", "hein")
    for name in ("svhn-hein", "cifar10-hein", "cifar100-hein"):
        assert "imagenet_minus" in BENCHMARKS.create(name).ood


def test_data_fetch_of_imagenet_minus_fetches_imagenet32(env):
    from rulab.data.fetch import list_data

    cache, _ = env
    _imagenet(cache, np.random.default_rng(4), lambda inside: [0, 1])
    rows = {r["name"]: r for r in list_data()}
    assert rows["imagenet_minus"]["path"] == rows["imagenet32"]["path"]
