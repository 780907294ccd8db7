"""A data directory with tiny files in the real format of every registered dataset and image-folder OOD set, shared
by the registry contract tests (tests/data/test_registry_contracts.py).

The paper datasets' writers are those of ``tests/presets/conftest.py`` (CIFAR pickles, SVHN .mat, downsampled-ImageNet
batches, MNIST IDX, pathMNIST npz, Tiny ImageNet and Oxford Pets folders); Fashion-MNIST's IDX files are added here;
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
