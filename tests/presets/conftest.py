"""Tiny files in the real formats of the paper datasets (CIFAR pickles, SVHN .mat, downsampled-ImageNet pickles, MNIST
IDX, pathMNIST npz, Tiny ImageNet and Oxford Pets folders), written once per module into a temporary ``RULAB_DATA``.

The writers follow ``tests/data/test_datasets.py`` (whose helpers ``publish``, ``_cifar_batch`` and ``_png`` are
loaded from that file, so both test suites write the same formats); datasets with published MD5s get the test
files' MD5s patched in, as there.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "_rulab_test_datasets", Path(__file__).parents[1] / "data" / "test_datasets.py"
)
data_helpers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(data_helpers)

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_paper_data(root: Path, mp: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    """Write every paper dataset into ``root`` (the RULAB_DATA cache) and patch the sources' MD5s."""
    # CIFAR-10: 5 train batches of 4 images, a test batch of 6
    files = {
        f"data_batch_{i}": data_helpers._cifar_batch(
            rng.integers(0, 256, (4, 3072), dtype=np.uint8), [int(c) for c in rng.integers(0, 10, 4)]
        )
        for i in range(1, 6)
    }
    files["test_batch"] = data_helpers._cifar_batch(
        rng.integers(0, 256, (6, 3072), dtype=np.uint8), [int(c) for c in rng.integers(0, 10, 6)]
    )
    files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in CIFAR10_NAMES]}, protocol=2)
    for k, blob in files.items():
        _put(root / "cifar10" / "cifar-10-batches-py" / k, blob)
    data_helpers.publish(mp, "cifar10", files)
    # CIFAR-100: 20 train, 6 test, fine labels
    files = {
        "train": pickle.dumps(
            {
                b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                b"fine_labels": [int(c) for c in rng.integers(0, 100, 20)],
            },
            protocol=2,
        ),
        "test": pickle.dumps(
            {
                b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8),
                b"fine_labels": [int(c) for c in rng.integers(0, 100, 6)],
            },
            protocol=2,
        ),
        "meta": pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, protocol=2),
    }
    for k, blob in files.items():
        _put(root / "cifar100" / "cifar-100-python" / k, blob)
    data_helpers.publish(mp, "cifar100", files)
    # SVHN .mat (label 10 = digit 0)
    import scipy.io

    svhn = {}
    for split, n in (("train", 20), ("test", 6)):
        path = root / "svhn" / f"{split}_32x32.mat"
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(
            path,
            {
                "X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                "y": rng.integers(1, 11, (n, 1)).astype(np.uint8),
            },
        )
        svhn[split] = path.read_bytes()
    data_helpers.publish(mp, "svhn", svhn)
    # downsampled ImageNet: 10 pickled train batches of 2 images (labels 1..1000), val as npz
    for i in range(1, 11):
        blob = pickle.dumps(
            {
                "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                "labels": [int(c) for c in rng.integers(1, 1001, 2)],
                "mean": np.zeros(3072),
            }
        )
        _put(root / "imagenet32" / "Imagenet32_train" / f"train_data_batch_{i}", blob)
    buf = io.BytesIO()
    np.savez(buf, data=rng.integers(0, 256, (2, 3072), dtype=np.uint8), labels=np.array([1, 1000]))
    _put(root / "imagenet32" / "val_data.npz", buf.getvalue())
    # downsampled ImageNet 64x64: batches 1-5 in Imagenet64_train_part1/, 6-10 in part2/ (Python-3 pickles), val as npz
    for i in range(1, 11):
        blob = pickle.dumps(
            {
                "data": rng.integers(0, 256, (2, 12288), dtype=np.uint8),
                "labels": [1, int(rng.integers(4, 1001))],
                "mean": np.zeros(12288),
            }
        )
        _put(root / "imagenet64" / f"Imagenet64_train_part{1 if i <= 5 else 2}" / f"train_data_batch_{i}", blob)
    buf = io.BytesIO()
    np.savez(buf, data=rng.integers(0, 256, (2, 12288), dtype=np.uint8), labels=np.array([5, 1000]))
    _put(root / "imagenet64" / "Imagenet64_val_npz" / "val_data.npz", buf.getvalue())
    # MNIST IDX .gz
    mnist = {}
    for stem, n in (("train", 20), ("t10k", 6)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for key, arr in ((f"{stem}-images", imgs), (f"{stem}-labels", labels)):
            name = f"{key}-idx{3 if key.endswith('images') else 1}-ubyte.gz"
            mnist[key] = _put(root / "mnist" / name, gzip.compress(data_helpers.idx(arr))).read_bytes()
    data_helpers.publish(mp, "mnist", mnist)
    # pathMNIST npz (28×28×3, 9 classes)
    arrays = {}
    for split, n in (("train", 20), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1))
    path = root / "pathmnist" / "pathmnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    data_helpers.publish(mp, "pathmnist", {"npz": path.read_bytes()})
    # Tiny ImageNet folders: 3 classes × 4 train images, 3 val images
    base = root / "tiny_imagenet" / "tiny-imagenet-200"
    wnids = ["n01", "n02", "n03"]
    (base / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    for j, w in enumerate(wnids):
        for k in range(4):
            data_helpers._png(base / "train" / w / "images" / f"{w}_{k}.JPEG", (40 * j, 30 * k, 100))
    rows = [("val_0.JPEG", "n03"), ("val_1.JPEG", "n01"), ("val_2.JPEG", "n02")]
    for i, (f, _) in enumerate(rows):
        data_helpers._png(base / "val" / "images" / f, (i, 100, 50))
    (base / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t10\t10\n" for f, w in rows))
    # Oxford Pets: 3 breeds × 4 images, listed in trainval / test
    pets = root / "oxford_pets"
    lines, test_lines = [], []
    for c, breed in enumerate(("Abyssinian", "beagle", "yorkshire_terrier")):
        for k in range(4):
            data_helpers._png(pets / "images" / f"{breed}_{k}.jpg", (60 * c, 20 * k, 90), size=(80, 60))
            (test_lines if k == 3 else lines).append(f"{breed}_{k} {c + 1} 1 1\n")
    (pets / "annotations").mkdir(parents=True, exist_ok=True)
    (pets / "annotations" / "trainval.txt").write_text("".join(lines))
    (pets / "annotations" / "test.txt").write_text("".join(test_lines))


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    """A RULAB_DATA with every paper dataset in its real format (tiny), for the module; yields the directory."""
    root = tmp_path_factory.mktemp("rulab-data")
    system = tmp_path_factory.mktemp("rulab-system")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RULAB_DATA", str(root))
        mp.setenv("RULAB_SYSTEM_DATA", str(system))
        mp.setenv("RULAB_OFFLINE", "1")
        write_paper_data(root, mp, np.random.default_rng(0))
        yield root


def fake_map_clsloc(rng: np.random.Generator) -> tuple[str, dict[int, tuple[str, int]]]:
    """A ``map_clsloc.txt`` of 1,000 WordNet-like IDs whose sorted order puts every real anchor WNID of
    ``rulab.presets.hendrycks2019.IMAGENET_ANCHORS`` at its index, with the ids 1..1000 shuffled (the devkit order is
    not the sorted order). Returns the text and ``{sorted index: wnid}``."""
    from rulab.presets.hendrycks2019 import IMAGENET_ANCHORS

    anchors = {i: int(w[1:]) for i, w in IMAGENET_ANCHORS}
    keys = sorted(anchors)
    numbers = []
    for i in range(1000):
        if i in anchors:
            numbers.append(anchors[i])
        elif i < keys[0]:
            numbers.append(anchors[keys[0]] - 10 * (keys[0] - i))
        elif i > keys[-1]:
            numbers.append(anchors[keys[-1]] + 10 * (i - keys[-1]))
        else:
            a = max(k for k in keys if k < i)
            b = min(k for k in keys if k > i)
            numbers.append(anchors[a] + (anchors[b] - anchors[a]) * (i - a) // (b - a))
    assert numbers == sorted(numbers) and len(set(numbers)) == 1000
    wnids = {i: f"n{n:08d}" for i, n in enumerate(numbers)}
    ids = rng.permutation(1000) + 1
    lines = [f"{wnids[i]} {ids[i]} class_{i}" for i in rng.permutation(1000)]  # file order is irrelevant
    return "\n".join(lines) + "\n", {i: (wnids[i], int(ids[i])) for i in range(1000)}


@pytest.fixture(scope="session")
def make_map_clsloc():
    """:func:`fake_map_clsloc` as a fixture (test modules cannot import conftest under --import-mode=importlib)."""
    return fake_map_clsloc
