"""A data directory with tiny files in the real format of every registered dataset and image-folder OOD set, shared
by the registry contract tests (tests/data/test_registry_contracts.py).

The paper datasets' writers are those of ``tests/presets/conftest.py`` (CIFAR pickles, SVHN .mat, downsampled-ImageNet
batches, MNIST IDX, pathMNIST npz, Tiny ImageNet and Oxford Pets folders); Fashion-MNIST's IDX files, NIST's EMNIST
``gzip.zip`` and a downsampled-ImageNet validation file with ``map_clsloc.txt`` (for ``imagenet_minus``) are added here;
every OOD set whose source is an image folder gets a few PNG images of different sizes in its folder. Published MD5s
are replaced by the test files' MD5s, as in ``tests/data/test_datasets.py``.

Also the ``env`` fixture of the data tests: an empty private data cache and system data directory.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "_rulab_test_paper_data", Path(__file__).parents[1] / "presets" / "conftest.py"
)
paper = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paper)


def _write_fashion_mnist(root: Path, mp: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    raw = {}
    for stem, n in (("train", 12), ("t10k", 5)):
        arrays = {
            f"{stem}-images": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            f"{stem}-labels": (np.arange(n) % 10).astype(np.uint8),
        }
        for key, arr in arrays.items():
            raw[key] = gzip.compress(paper.data_helpers.idx(arr), mtime=0)
            paper._put(root / "fashion_mnist" / f"{key}-idx{3 if key.endswith('images') else 1}-ubyte.gz", raw[key])
    paper.data_helpers.publish(mp, "fashion_mnist", raw)


def emnist_zip(images: np.ndarray, labels: np.ndarray) -> bytes:
    """NIST's ``gzip.zip`` layout: ``gzip/emnist-letters-test-{images-idx3,labels-idx1}-ubyte.gz`` (only the letters
    test split; images ``[N, 28, 28]`` as stored, i.e. transposed)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "gzip/emnist-letters-test-images-idx3-ubyte.gz", gzip.compress(paper.data_helpers.idx(images), mtime=0)
        )
        zf.writestr(
            "gzip/emnist-letters-test-labels-idx1-ubyte.gz", gzip.compress(paper.data_helpers.idx(labels), mtime=0)
        )
    return buf.getvalue()


def publish_archive(mp: pytest.MonkeyPatch, name: str, blob: bytes, urls: tuple[str, ...] = ()) -> None:
    """Make ``blob`` the published archive of source ``name`` (its MD5, and download URLs if given)."""
    import dataclasses
    import hashlib

    from rulab.data.fetch import SOURCES
    from rulab.data.fetch.sources import get_source

    src = get_source(name)
    arc = dataclasses.replace(src.archives[0], md5=hashlib.md5(blob).hexdigest(), urls=urls or src.archives[0].urls)
    mp.setitem(SOURCES._entries, name, dataclasses.replace(src, archives=(arc,)))


def _write_emnist(root: Path, mp: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    blob = emnist_zip(rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), (np.arange(10) % 26 + 1).astype(np.uint8))
    paper._put(root / "emnist" / "gzip.zip", blob)
    publish_archive(mp, "emnist", blob)


def imagenet_val_npz(labels: list[int], rng: np.random.Generator) -> bytes:
    """Downsampled ImageNet's ``val_data.npz`` (rows of 3,072 bytes, labels 1..1000) with the given labels."""
    import io

    buf = io.BytesIO()
    np.savez(buf, data=rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), labels=np.array(labels))
    return buf.getvalue()


def _write_imagenet_minus(root: Path, rng: np.random.Generator) -> None:
    """``map_clsloc.txt`` and a validation file of 12 images, 8 outside the CIFAR-10 classes and 4 inside."""
    from rulab.data.imagenet_classes import imagenet_sorted_indices

    text, table = paper.fake_map_clsloc(rng)
    (root / "imagenet32").mkdir(parents=True, exist_ok=True)
    (root / "imagenet32" / "map_clsloc.txt").write_text(text)
    inside = set(imagenet_sorted_indices())
    keep = [i for i in range(1000) if i not in inside][:8]
    labels = [table[i][1] for i in keep] + [table[i][1] for i in sorted(inside)[:4]]
    paper._put(root / "imagenet32" / "val_data.npz", imagenet_val_npz(labels, rng))


def _write_image_folders(root: Path, rng: np.random.Generator) -> list[str]:
    """A few images in the folder of every OOD set whose source is an image folder; returns their names."""
    from PIL import Image

    from rulab.data.fetch import SOURCES
    from rulab.registry import OOD_SETS

    written = []
    for name in OOD_SETS:
        if name not in SOURCES or not SOURCES.get(name).image_folder:
            continue
        src = SOURCES.get(name)
        folder = root / name / (src.folders[0] if src.folders else "images")
        folder.mkdir(parents=True, exist_ok=True)
        for k, (h, w) in enumerate(((40, 56), (64, 48), (36, 36), (50, 50), (33, 70), (70, 33))):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img_{k}.png")
        written.append(name)
    return written


@pytest.fixture(scope="module")
def every_dataset(tmp_path_factory):
    """``RULAB_DATA`` (offline, no system directories) holding every registered dataset and image-folder OOD set in
    its real format, tiny; yields the directory."""
    root = tmp_path_factory.mktemp("rulab-data")
    system = tmp_path_factory.mktemp("rulab-system")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RULAB_DATA", str(root))
        mp.setenv("RULAB_SYSTEM_DATA", str(system))
        mp.setenv("RULAB_OFFLINE", "1")
        rng = np.random.default_rng(0)
        paper.write_paper_data(root, mp, rng)
        _write_fashion_mnist(root, mp, rng)
        _write_emnist(root, mp, rng)
        _write_imagenet_minus(root, rng)
        _write_image_folders(root, rng)
        yield root


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A private data cache (``$RULAB_DATA``) and system data directory (``$RULAB_SYSTEM_DATA``), downloads off.

    Returns:
        ``(cache, system)``, both empty directories.
    """
    cache, system = tmp_path / "cache", tmp_path / "system"
    cache.mkdir()
    system.mkdir()
    monkeypatch.setenv("RULAB_DATA", str(cache))
    monkeypatch.setenv("RULAB_SYSTEM_DATA", str(system))
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    return cache, system
