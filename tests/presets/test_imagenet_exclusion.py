"""W1's ImageNet-minus-CIFAR-10 pre-training (W1's ``cifar10_excluded`` snapshot): the class list, its conversion to downsampled-ImageNet
labels through map_clsloc.txt, and the preset that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from rulab.errors import ConfigError, DataError
from rulab.presets import load_config
from rulab.presets.hendrycks2019 import (
    CIFAR10_IMAGENET_CLASSES,
    IMAGENET_ANCHORS,
    cifar10_exclusion,
    imagenet_sorted_indices,
)


def test_class_list_counts_and_anchors():
    counts = {name: len(idx) for name, idx in CIFAR10_IMAGENET_CLASSES}
    assert counts == {
        "airplane": 2,
        "automobile": 9,
        "bird": 59,
        "cat": 5,
        "deer": 0,
        "dog": 118,
        "frog": 3,
        "horse": 1,
        "ship": 15,
        "truck": 7,
    }
    idx = imagenet_sorted_indices()
    assert len(idx) == 219 and len(set(idx)) == 219 and min(idx) == 7 and max(idx) == 914
    singles = {i for name, group in CIFAR10_IMAGENET_CLASSES if name not in ("bird", "dog", "cat") for i in group}
    assert singles <= {i for i, _ in IMAGENET_ANCHORS}  # every single class is checked against its WNID
    wnids = [w for _, w in IMAGENET_ANCHORS]
    assert wnids == sorted(wnids)  # sorted-WNID numbering: anchors increase with the index


def test_exclusion_follows_map_clsloc_order(tmp_path, make_map_clsloc):
    text, table = make_map_clsloc(np.random.default_rng(1))
    path = tmp_path / "map_clsloc.txt"
    path.write_text(text)
    got = cifar10_exclusion(path)
    expected = sorted(table[i][1] - 1 for i in imagenet_sorted_indices())  # ids are 1-based, labels 0-based
    assert list(got) == expected and len(got) == 219
    assert got != tuple(imagenet_sorted_indices())  # the devkit order differs from the sorted order


def test_exclusion_refuses_wrong_files(tmp_path, make_map_clsloc):
    with pytest.raises(DataError, match="missing"):
        cifar10_exclusion(tmp_path / "none.txt")
    text, table = make_map_clsloc(np.random.default_rng(2))
    short = tmp_path / "short.txt"
    short.write_text("\n".join(text.splitlines()[:999]) + "\n")
    with pytest.raises(DataError, match="999 classes"):
        cifar10_exclusion(short)
    swapped = tmp_path / "swapped.txt"
    airliner = table[404][0]
    swapped.write_text(text.replace(airliner, "n09999999"))  # an anchor WNID missing: the sorted order shifts
    with pytest.raises(DataError, match="sorted class"):
        cifar10_exclusion(swapped)


def test_nocifar_preset_resolves_with_the_file(tmp_path, monkeypatch, make_map_clsloc):
    monkeypatch.setenv("RULAB_DATA", str(tmp_path))
    with pytest.raises(ConfigError, match="map_clsloc.txt"):
        load_config("hendrycks2019-cifar10-pretrain-nocifar")
    text, _ = make_map_clsloc(np.random.default_rng(3))
    (tmp_path / "imagenet32").mkdir()
    (tmp_path / "imagenet32" / "map_clsloc.txt").write_text(text)
    cfg = load_config("hendrycks2019-cifar10-pretrain-nocifar")
    assert cfg.data.exclude_classes == cifar10_exclusion(tmp_path / "imagenet32" / "map_clsloc.txt")
    assert cfg.data.dataset == "imagenet32" and cfg.train.epochs == 100 and cfg.train.batch_size == 256
