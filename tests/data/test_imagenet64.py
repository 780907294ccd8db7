"""Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017) through the source chain, on small files in the release's real
formats: ``Imagenet64_train_part1/train_data_batch_1..5`` and ``part2/..6..10`` (pickled dicts with ``data`` uint8
[N, 12288], ``labels`` 1..1000 and ``mean``), ``val_data`` as a pickle or an ``.npz``, the zip archives, and the class
exclusion by WordNet id that W1's Tiny ImageNet pre-training needs."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rulab.data.datasets  # noqa: F401  (registers the datasets)
from rulab.data.formats import read_map_clsloc
from rulab.errors import ConfigError, DataError, DatasetMissingError
from rulab.registry import DATASETS

SIDE = 64


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    cache, system = tmp_path / "cache", tmp_path / "system"
    cache.mkdir()
    system.mkdir()
    monkeypatch.setenv("RULAB_DATA", str(cache))
    monkeypatch.setenv("RULAB_SYSTEM_DATA", str(system))
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    return cache


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def batch_blob(rows: np.ndarray, labels: list[int]) -> bytes:
    """One training batch as the 64×64 release pickles it (Python 3: str keys, a list of labels, the mean image)."""
    return pickle.dumps({"data": rows, "labels": labels, "mean": rows.mean(axis=0)})


def class_map(wnids: list[str]) -> str:
    """A ``map_clsloc.txt`` of 1,000 classes whose first lines are ``wnids`` (ids 1, 2, ...), the rest made up."""
    rest = [f"n{90000000 + i:08d}" for i in range(1000 - len(wnids))]
    return "".join(f"{w} {i} class_{i}\n" for i, w in enumerate(wnids + rest, 1))


def write_release(cache: Path, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Ten training batches of 3 images (labels 1, 2 and 3 + i), val as a pickle; returns the rows per batch."""
    rows = {}
    for i in range(1, 11):
        rows[i] = rng.integers(0, 256, (3, 3 * SIDE * SIDE), dtype=np.uint8)
        part = 1 if i <= 5 else 2
        put(
            cache / "imagenet64" / f"Imagenet64_train_part{part}" / f"train_data_batch_{i}",
            batch_blob(rows[i], [1, 2, 3 + i]),
        )
    val = np.full((2, 3 * SIDE * SIDE), 9, np.uint8)
    put(cache / "imagenet64" / "Imagenet64_val" / "val_data", pickle.dumps({"data": val, "labels": [2, 1000]}))
    return rows


def test_imagenet64_reads_the_release_layout(data_env):
    rows = write_release(data_env, np.random.default_rng(0))
    ds = DATASETS.create("imagenet64", split="train")
    assert ds.x.shape == (30, 3, SIDE, SIDE) and ds.x.dtype.is_floating_point is False
    assert ds.y[:3].tolist() == [0, 1, 3] and ds.y[-3:].tolist() == [0, 1, 12]  # labels 1..1000 → 0..999
    # channel-planar rows: the first 4096 values are the red plane, row-major
    assert np.array_equal(ds.x[3].numpy().reshape(-1), rows[2][0])
    assert ds.x[3, 1, 0, 5].item() == rows[2][0][SIDE * SIDE + 5]
    assert ds.meta["files"]["train_data_batch_6"]["verified"] is False  # no published checksum
    val = DATASETS.create("imagenet64", split="test")
    assert val.y.tolist() == [1, 999] and int(val.x.float().mean()) == 9


def test_imagenet64_npz_release_and_zip_archives(data_env):
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the _npz release, as its zip holds it
        for i in range(1, 6):
            inner = io.BytesIO()
            np.savez(inner, data=rng.integers(0, 256, (2, 3 * SIDE * SIDE), dtype=np.uint8), labels=np.array([i, 1000]))
            z.writestr(f"Imagenet64_train_part1_npz/train_data_batch_{i}.npz", inner.getvalue())
    put(data_env / "imagenet64" / "Imagenet64_train_part1_npz.zip", buf.getvalue())
    for i in range(6, 11):
        inner = io.BytesIO()
        np.savez(inner, data=rng.integers(0, 256, (2, 3 * SIDE * SIDE), dtype=np.uint8), labels=np.array([i, 1]))
        put(data_env / "imagenet64" / f"train_data_batch_{i}.npz", inner.getvalue())
    put(
        data_env / "imagenet64" / "val_data",
        pickle.dumps({"data": np.zeros((1, 3 * SIDE * SIDE), np.uint8), "labels": [7]}),
    )
    ds = DATASETS.create("imagenet64", split="train")
    assert len(ds) == 20 and ds.y[:2].tolist() == [0, 999] and ds.y[-2:].tolist() == [9, 0]
    assert (data_env / "imagenet64" / "Imagenet64_train_part1_npz" / "train_data_batch_3.npz").is_file()  # extracted


def test_imagenet64_excludes_classes_by_wordnet_id(data_env):
    write_release(data_env, np.random.default_rng(2))
    tiny = ["n01443537", "n01629819"]  # two Tiny ImageNet classes: labels 1 and 2 in this class map
    put(data_env / "imagenet64" / "map_clsloc.txt", class_map(tiny).encode())
    by_wnid = DATASETS.create("imagenet64", split="train", exclude_wnids=tiny)
    assert len(by_wnid) == 10 and len(by_wnid.classes) == 998  # the 20 images of classes 0 and 1 are gone
    assert [by_wnid.meta["class_index"][c] for c in by_wnid.y.tolist()] == [3 + i - 1 for i in range(1, 11)]
    assert by_wnid.meta["excluded_wnids"] == sorted(tiny) and by_wnid.classes[0] == "class_3"
    # the same through the Tiny ImageNet folder's wnids.txt (what the W1 pre-training preset uses)
    base = data_env / "tiny_imagenet" / "tiny-imagenet-200"
    for w in tiny:
        put(base / "train" / w / "images" / f"{w}_0.JPEG", b"not decoded")
    put(base / "val" / "images" / "val_0.JPEG", b"not decoded")
    put(base / "wnids.txt", "".join(w + "\n" for w in tiny).encode())
    by_set = DATASETS.create("imagenet64", split="train", exclude_classes_of="tiny_imagenet")
    assert by_set.y.tolist() == by_wnid.y.tolist() and by_set.meta["excluded_classes_of"] == "tiny_imagenet"
    assert by_set.meta["excluded_classes"] == [0, 1]


def test_imagenet64_exclusion_errors(data_env):
    write_release(data_env, np.random.default_rng(3))
    with pytest.raises(DataError, match="map_clsloc.txt"):  # excluding by WordNet id needs the class map
        DATASETS.create("imagenet64", split="test", exclude_wnids=["n01443537"])
    put(data_env / "imagenet32" / "map_clsloc.txt", class_map(["n01443537"]).encode())  # found beside imagenet32 too
    with pytest.raises(DataError, match="not ImageNet-1k classes"):
        DATASETS.create("imagenet64", split="test", exclude_wnids=["n99999999"])
    assert len(DATASETS.create("imagenet64", split="test", exclude_wnids=["n01443537"])) == 2  # labels 2 and 1000 kept
    with pytest.raises(ConfigError, match="exclude_classes_of"):
        DATASETS.create("imagenet64", split="test", exclude_classes_of="cifar10")
    with pytest.raises(DatasetMissingError, match="Tiny ImageNet"):
        DATASETS.create("imagenet64", split="test", exclude_classes_of="tiny_imagenet")


def test_imagenet64_refuses_a_pickle_that_runs_code(data_env, tmp_path):
    write_release(data_env, np.random.default_rng(4))

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    put(data_env / "imagenet64" / "Imagenet64_val" / "val_data", pickle.dumps({"data": Exploit(), "labels": [1]}))
    with pytest.raises(DataError, match="not a plain data pickle"):
        DATASETS.create("imagenet64", split="test")
    assert not (tmp_path / "pwned").exists()


def test_imagenet64_wrong_image_size_is_refused(data_env):
    write_release(data_env, np.random.default_rng(5))
    put(
        data_env / "imagenet64" / "Imagenet64_val" / "val_data",
        pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}),
    )
    with pytest.raises(DataError, match="12288"):  # a 32×32 batch in the 64×64 directory
        DATASETS.create("imagenet64", split="test")


def test_imagenet64_missing_says_where_to_get_it(data_env):
    with pytest.raises(DatasetMissingError, match="image-net.org"):
        DATASETS.create("imagenet64", split="test")


def test_read_map_clsloc():
    ids = read_map_clsloc(class_map(["n01440764"]))
    assert ids["n01440764"] == 1 and len(ids) == 1000 and sorted(ids.values()) == list(range(1, 1001))
    with pytest.raises(DataError, match="1,000"):
        read_map_clsloc("n01440764 1 tench\n")
    with pytest.raises(DataError, match="line 1"):
        read_map_clsloc("tench one\n")


def test_dataset_facts_cover_every_dataset():
    """``rulab show`` sizes runs from DATASET_FACTS without reading data: every registered dataset has its entry, with
    the splits its factory offers and the sizes of the module's table (pathMNIST's official validation split too)."""
    from rulab.data.datasets import DATASET_FACTS
    from rulab.data.splits import dataset_splits

    assert set(DATASET_FACTS) == set(DATASETS.list())
    for name, facts in DATASET_FACTS.items():
        assert set(facts.sizes) == set(dataset_splits(name)), name
    assert DATASET_FACTS["pathmnist"].sizes == {"train": 89_996, "val": 10_004, "test": 7_180}
    assert DATASET_FACTS["imagenet64"].shape == (3, 64, 64) and DATASET_FACTS["imagenet64"].classes == 1000
