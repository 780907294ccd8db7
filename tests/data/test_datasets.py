"""ID datasets through the source chain, on small files in the real formats (and the real Fashion-MNIST)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rulab.data.datasets  # noqa: F401  (registers the datasets)
from rulab.data.fetch import SOURCES, Archive
from rulab.errors import ConfigError, DataError, DatasetMissingError
from rulab.registry import DATASETS

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def publish(monkeypatch, name: str, contents: dict[str, bytes], *, content: bool = False) -> None:
    """Make the test files 'published': replace the source's MD5s by theirs (keyed by RawFile.key)."""
    src = SOURCES.get(name)
    files = []
    for rf in src.files:
        if rf.key in contents:
            digest = md5(contents[rf.key])
            rf = (
                dataclasses.replace(rf, md5=("f" * 32,), content_md5=(digest,))
                if content
                else dataclasses.replace(rf, md5=(digest,))
            )
        files.append(rf)
    monkeypatch.setitem(SOURCES._entries, name, dataclasses.replace(src, files=tuple(files)))


def test_every_dataset_factory_has_the_contract_signature():
    for name in DATASETS:
        params = DATASETS.parameters(name)
        assert list(params)[:2] == ["split", "root"], name
        assert params["split"].default in ("train",) and params["root"].default is None


# ----------------------------------------------------------------------------------------------- IDX
def _fmnist_files(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    arrays = {
        "train-images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train-labels": np.arange(12, dtype=np.uint8) % 10,
        "t10k-images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "t10k-labels": np.array([9, 8, 7, 6, 5], np.uint8),
    }
    return arrays, {k: idx(v) for k, v in arrays.items()}


def test_fashion_mnist_from_debian_style_system_dir(env, monkeypatch):
    cache, system = env
    arrays, raw = _fmnist_files(np.random.default_rng(0))
    for key, data in raw.items():  # Debian repacks the .gz files: only the decompressed bytes match
        put(
            system / "fashion-mnist" / f"{key}-idx{3 if 'images' in key else 1}-ubyte.gz", gzip.compress(data, mtime=99)
        )
    publish(monkeypatch, "fashion_mnist", raw, content=True)
    ds = DATASETS.create("fashion_mnist", split="train")
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == torch.uint8 and ds.y.dtype == torch.int64
    assert torch.equal(ds.x[:, 0], torch.from_numpy(arrays["train-images"]))
    assert ds.y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert (
        ds.source == "debian:dataset-fashion-mnist" and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    )
    assert ds.meta["files"]["train-images"]["checked"] == "decompressed" and ds.meta["split"] == "train"
    assert (cache / "fashion_mnist" / "train.safetensors").is_file()
    again = DATASETS.create("fashion_mnist", split="train")
    assert torch.equal(again.x, ds.x) and again.source == ds.source
    test = DATASETS.create("fashion_mnist", split="test")
    assert test.y.tolist() == [9, 8, 7, 6, 5] and test.x[3, 0, 27, 27] == int(arrays["t10k-images"][3, 27, 27])


def test_mnist_from_cache_and_truncated_file(env, monkeypatch):
    cache, _ = env
    arrays, raw = _fmnist_files(np.random.default_rng(1))
    gz = {k: gzip.compress(v, mtime=0) for k, v in raw.items()}
    for key, data in gz.items():
        put(cache / "mnist" / f"{key}-idx{3 if 'images' in key else 1}-ubyte.gz", data)
    publish(monkeypatch, "mnist", gz)
    ds = DATASETS.create("mnist", split="test")
    assert ds.classes == [str(i) for i in range(10)] and ds.y.tolist() == [9, 8, 7, 6, 5]
    assert ds.meta["files"]["t10k-images"]["origin"] == "cache" and ds.meta["files"]["t10k-images"]["checked"] == "file"
    # a truncated IDX inside an intact gzip (no published MD5 to catch it first): the parser names the file
    short = gzip.compress(raw["train-images"][:1000], mtime=0)
    put(cache / "mnist" / "train-images-idx3-ubyte.gz", short)
    src = SOURCES.get("mnist")
    monkeypatch.setitem(
        SOURCES._entries,
        "mnist",
        dataclasses.replace(src, files=tuple(dataclasses.replace(rf, md5=()) for rf in src.files)),
    )
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is truncated"):
        DATASETS.create("mnist", split="train")


def test_missing_dataset_message(env):
    cache, _ = env
    with pytest.raises(
        DatasetMissingError, match=r"apt-get install dataset-fashion-mnist.*rulab data fetch fashion_mnist.*copy"
    ):
        DATASETS.create("fashion_mnist")
    with pytest.raises(
        DatasetMissingError, match=rf"rulab data fetch cifar10.*cifar-10-python.tar.gz.*{cache / 'cifar10'}"
    ):
        DATASETS.create("cifar10", split="test")


def test_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="valid splits: train, test, extra"):
        DATASETS.create("svhn", split="validation")


# ----------------------------------------------------------------------------------------------- CIFAR
def _cifar_batch(rows: np.ndarray, labels: list[int], key: bytes = b"labels") -> bytes:
    return pickle.dumps(
        {b"batch_label": b"b", b"data": rows, key: labels, b"filenames": [b"f"] * len(labels)}, protocol=2
    )


def test_cifar10_from_official_tarball_in_cache(env, monkeypatch, tmp_path):
    cache, _ = env
    rng = np.random.default_rng(2)
    files = {}
    rows = {}
    for i in range(1, 6):
        rows[i] = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        files[f"data_batch_{i}"] = _cifar_batch(rows[i], [i, (i + 1) % 10])
    files["test_batch"] = _cifar_batch(rng.integers(0, 256, (3, 3072), dtype=np.uint8), [3, 4, 5])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, protocol=2)
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for k, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{k}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    put(cache / "cifar10" / "cifar-10-python.tar.gz", tar_path.read_bytes())
    publish(monkeypatch, "cifar10", files)
    src = SOURCES.get("cifar10")
    monkeypatch.setitem(
        SOURCES._entries,
        "cifar10",
        dataclasses.replace(src, archives=(Archive(src.archives[0].filename, md5(tar_path.read_bytes())),)),
    )
    ds = DATASETS.create("cifar10", split="train")
    assert ds.x.shape == (10, 3, 32, 32) and ds.classes == names
    assert ds.y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]  # batches 1..5 in order
    assert ds.x[4, 1, 0, 0] == rows[3][0, 1024] and ds.x[9, 2, 31, 31] == rows[5][1, 3071]
    assert (cache / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert DATASETS.create("cifar10", split="test").y.tolist() == [3, 4, 5]


def test_cifar100_fine_labels(env, monkeypatch):
    cache, _ = env
    rows = np.arange(2 * 3072, dtype=np.uint64).reshape(2, 3072).astype(np.uint8)
    files = {
        "train": pickle.dumps({b"data": rows, b"fine_labels": [99, 0], b"coarse_labels": [19, 4]}, protocol=2),
        "test": pickle.dumps({b"data": rows[:1], b"fine_labels": [42], b"coarse_labels": [1]}, protocol=2),
        "meta": pickle.dumps(
            {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": []}, protocol=2
        ),
    }
    for k, data in files.items():
        put(cache / "cifar100" / "cifar-100-python" / k, data)
    publish(monkeypatch, "cifar100", files)
    ds = DATASETS.create("cifar100", split="train")
    assert ds.y.tolist() == [99, 0] and len(ds.classes) == 100 and ds.classes[99] == "c99"
    assert torch.equal(ds.x.reshape(2, -1), torch.from_numpy(rows))


def test_cifar_label_out_of_range(env, monkeypatch):
    cache, _ = env
    files = {
        "test": pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [100]}, protocol=2),
        "meta": pickle.dumps({b"fine_label_names": [b"x"] * 100}, protocol=2),
    }
    for k, data in files.items():
        put(cache / "cifar100" / "cifar-100-python" / k, data)
    publish(monkeypatch, "cifar100", files)
    with pytest.raises(DataError, match="outside 0..99"):
        DATASETS.create("cifar100", split="test")


# ----------------------------------------------------------------------------------------------- SVHN
def test_svhn_mat_label_ten_is_zero(env, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    cache, _ = env
    X = np.random.default_rng(3).integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)
    path = cache / "svhn" / "extra_32x32.mat"
    path.parent.mkdir(parents=True)
    scipy_io.savemat(path, {"X": X, "y": np.array([[10], [3], [10]], dtype=np.uint8)})
    publish(monkeypatch, "svhn", {"extra": path.read_bytes()})
    ds = DATASETS.create("svhn", split="extra")
    assert ds.y.tolist() == [0, 3, 0] and ds.x.shape == (3, 3, 32, 32)
    assert ds.x[1, 2, 10, 20] == X[10, 20, 2, 1]


# ----------------------------------------------------------------------------------------------- downsampled ImageNet
def test_imagenet32_labels_exclusion_and_names(env):
    cache, _ = env
    rng = np.random.default_rng(4)
    labels = {i: [(i * 7) % 1000 + 1, 1, 1000] for i in range(1, 11)}
    for i in range(1, 11):
        blob = pickle.dumps(
            {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": labels[i], "mean": np.zeros(3072)}
        )
        put(cache / "imagenet32" / "Imagenet32_train" / f"train_data_batch_{i}", blob)
    buf = io.BytesIO()
    np.savez(buf, data=np.full((2, 3072), 7, np.uint8), labels=np.array([2, 3]))
    put(cache / "imagenet32" / "val_data.npz", buf.getvalue())
    put(
        cache / "imagenet32" / "map_clsloc.txt",
        b"n01440764 1 tench\nn01443537 2 goldfish\nn15075141 1000 toilet_tissue\n",
    )
    ds = DATASETS.create("imagenet32", split="train")
    assert len(ds) == 30 and ds.y[:3].tolist() == [7, 0, 999] and ds.y[3:6].tolist() == [14, 0, 999]
    assert ds.classes[0] == "tench" and ds.classes[999] == "toilet_tissue" and ds.classes[5] == "5"
    assert ds.meta["files"]["train_data_batch_1"]["verified"] is False  # no published checksum
    drop = DATASETS.create("imagenet32", split="train", exclude_classes=[0, 7])
    assert len(drop) == 30 - 10 - 1  # the ten class-0 images and the one class-7 image are dropped
    assert 0 not in drop.meta["class_index"] and len(drop.classes) == 998 and drop.classes[0] == "goldfish"
    original = [drop.meta["class_index"][c] for c in drop.y[:3].tolist()]
    assert original == [999, 14, 999] and drop.y.max().item() == 997  # batch 1 keeps only its label-999 image
    val = DATASETS.create("imagenet32", split="test")
    assert val.y.tolist() == [1, 2] and int(val.x.float().mean()) == 7
    with pytest.raises(ConfigError, match="0..999"):
        DATASETS.create("imagenet32", split="test", exclude_classes=[1000])


# ----------------------------------------------------------------------------------------------- MedMNIST
def test_pathmnist_npz_splits(env, monkeypatch):
    cache, _ = env
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1))
    path = cache / "pathmnist" / "pathmnist.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, **arrays)
    publish(monkeypatch, "pathmnist", {"npz": path.read_bytes()})
    for split in ("train", "val", "test"):
        ds = DATASETS.create("pathmnist", split=split)
        assert ds.x.shape == (len(arrays[f"{split}_labels"]), 3, 28, 28) and len(ds.classes) == 9
        assert torch.equal(ds.x.permute(0, 2, 3, 1), torch.from_numpy(arrays[f"{split}_images"]))
        assert ds.y.tolist() == arrays[f"{split}_labels"][:, 0].tolist()
    assert ds.classes[8] == "colorectal adenocarcinoma epithelium"


# ----------------------------------------------------------------------------------------------- image folders
def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def test_tiny_imagenet_train_and_val_layout(env):
    cache, _ = env
    base = cache / "tiny_imagenet" / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # wnids.txt order is not sorted; labels follow ImageFolder's sorted order
    (base).mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttench\nn03\tbullfrog, Rana\n")
    for j, w in enumerate(wnids):
        for k in range(2):
            _png(base / "train" / w / "images" / f"{w}_{k}.JPEG", (10 * j, 20 * k, 200))
        (base / "train" / w / f"{w}_boxes.txt").write_text("boxes")
    val_rows = [("val_0.JPEG", "n03"), ("val_1.JPEG", "n01"), ("val_2.JPEG", "n02")]
    for i, (f, _) in enumerate(val_rows):
        _png(base / "val" / "images" / f, (i, 100, 50))
    (base / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t10\t10\n" for f, w in val_rows))
    train = DATASETS.create("tiny_imagenet", split="train")
    assert train.classes == ["goldfish", "tench", "bullfrog"] and train.meta["wnids"] == ["n01", "n02", "n03"]
    assert train.y.tolist() == [0, 0, 1, 1, 2, 2] and train.x.shape == (6, 3, 64, 64)
    assert train.x[2, :, 5, 5].tolist() == [0, 0, 200]  # n02 is wnids.txt's first entry, colour (10*0, 20*0, 200)
    assert train.meta["skipped_files"] == 3
    test = DATASETS.create("tiny_imagenet", split="test")
    assert test.y.tolist() == [2, 0, 1] and test.x[1, :, 0, 0].tolist() == [1, 100, 50]


def test_oxford_pets_lists_and_resize(env):
    cache, _ = env
    root = cache / "oxford_pets"
    rows = [
        ("Abyssinian_1", 1, (250, 0, 0)),
        ("american_bulldog_10", 2, (0, 250, 0)),
        ("yorkshire_terrier_3", 37, (0, 0, 250)),
    ]
    for name, _, color in rows:
        _png(root / "images" / f"{name}.jpg", color, size=(90, 60), fmt="PNG")
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "trainval.txt").write_text(
        "#Image CLASS-ID SPECIES BREED ID\n" + "".join(f"{n} {c} 1 1\n" for n, c, _ in rows)
    )
    (root / "annotations" / "test.txt").write_text(f"{rows[0][0]} 1 1 1\n")
    ds = DATASETS.create("oxford_pets", split="train", size=16)
    assert ds.x.shape == (3, 3, 16, 16) and ds.y.tolist() == [0, 1, 36]
    assert (
        ds.classes[0] == "Abyssinian" and ds.classes[1] == "American Bulldog" and ds.classes[36] == "Yorkshire Terrier"
    )
    assert ds.x[1, :, 8, 8].tolist() == [0, 250, 0]
    assert len(DATASETS.create("oxford_pets", split="test", size=16)) == 1


def test_folder_dataset_with_corrupt_image(env):
    cache, _ = env
    root = cache / "oxford_pets"
    _png(root / "images" / "Abyssinian_1.jpg", (1, 2, 3))
    (root / "images" / "Abyssinian_2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\nAbyssinian_2 1 1 1\n")
    with pytest.raises(DataError, match="Abyssinian_2.jpg is not a readable image"):
        DATASETS.create("oxford_pets", split="train", size=8)


# ----------------------------------------------------------------------------------------------- the real Fashion-MNIST
@pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("RULAB_DATA", str(tmp_path))
    monkeypatch.setenv("RULAB_SYSTEM_DATA", str(FMNIST_DIR.parent))
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    t0 = time.perf_counter()
    train = DATASETS.create("fashion_mnist", split="train")
    first = time.perf_counter() - t0
    test = DATASETS.create("fashion_mnist", split="test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.source == "debian:dataset-fashion-mnist"
    for ds in (train, test):
        for f in ds.meta["files"].values():
            assert f["verified"] and f["origin"] == "system"
    assert train.meta["files"]["train-images"]["md5"] in (
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    )
    assert torch.bincount(train.y).tolist() == [6000] * 10 and torch.bincount(test.y).tolist() == [1000] * 10
    t0 = time.perf_counter()
    cached = DATASETS.create("fashion_mnist", split="train")
    second = time.perf_counter() - t0
    assert torch.equal(cached.x, train.x) and torch.equal(cached.y, train.y)
    assert second < 0.5, f"cached load took {second:.3f}s (first parse {first:.2f}s)"
    assert first < 10.0
