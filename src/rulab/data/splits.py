"""Turn a :class:`~rulab.config.DataCfg` into train / validation / test datasets.

Class filtering (keep ``classes`` relabelled 0..k-1, or drop ``exclude_classes`` as W1 did for ImageNet
pre-training; docs/protocols/hendrycks2019.md), a stratified labelled subset, and the validation hold-out (``random`` or
W1's contiguous ``tail``, ``utils/validation_dataset.py``) are applied in that order, all seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rulab.config import DataCfg
from rulab.data.loader import make_generator
from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError
from rulab.registry import DATASETS

__all__ = ["Splits", "load_splits", "filter_classes", "dataset_splits"]


@dataclass
class Splits:
    """The three splits of one run; ``classes`` are the (possibly relabelled) class names."""

    train: TensorDataset
    val: TensorDataset | None
    test: TensorDataset
    classes: list[str]


def filter_classes(ds: TensorDataset, keep: tuple[int, ...] = (), exclude: tuple[int, ...] = ()) -> TensorDataset:
    """Keep the classes ``keep`` (relabelled 0..k-1 in that order) or drop the classes ``exclude``.

    Dropping keeps the remaining labels compact (relabelled 0..k-1 in increasing original order).
    """
    k = len(ds.classes) or int(ds.y.max()) + 1
    for c in keep + exclude:
        if c >= k:
            raise ConfigError(
                f"class index {c} does not exist in '{ds.name}', which has classes 0..{k - 1}; fix data.classes / data.exclude_classes"
            )
    if not keep and not exclude:
        return ds
    kept = list(keep) if keep else [c for c in range(k) if c not in set(exclude)]
    if len(kept) < 2:
        left = f"only class {kept[0]}" if kept else "no class"
        raise ConfigError(
            f"data.classes / data.exclude_classes leave {left} of '{ds.name}', but a classifier needs at least two; keep two or more classes"
        )
    lut = torch.full((k,), -1, dtype=torch.int64)
    lut[torch.tensor(kept)] = torch.arange(len(kept))
    mask = lut[ds.y] >= 0
    names = [ds.classes[c] if ds.classes else str(c) for c in kept]
    out = TensorDataset(ds.x[mask], lut[ds.y[mask]], names, ds.name, ds.source, {**ds.meta, "kept_classes": kept})
    return out


def _stratified(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a seeded subset of size ``n`` with (nearly) equal counts per class, sorted."""
    g = make_generator(seed, 0x5B5E7)
    perm = torch.randperm(len(y), generator=g)
    classes = torch.unique(y)
    per = [perm[y[perm] == c] for c in classes]
    take = [p[: n // len(classes) + (1 if i < n % len(classes) else 0)] for i, p in enumerate(per)]
    return torch.cat(take).sort().values


def dataset_splits(name: str) -> tuple[str, ...]:
    """The splits the registered dataset ``name`` offers, read from its factory's ``SPLITS`` attribute (``("train",
    "test")`` when it declares none); a dataset with an official validation split lists ``"val"``."""
    return tuple(getattr(DATASETS.get(name), "SPLITS", ("train", "test")))


def load_splits(cfg: DataCfg, seed: int = 0) -> Splits:
    """Load the configured dataset and derive its splits.

    The validation split is the dataset's own ``val`` split with ``data.val_split=official`` (pathMNIST's 10,004
    images, W2), else ``data.val_size`` examples held out of the training split (seeded ``random`` or W1's contiguous
    ``tail``), else none. ``data.kwargs`` go to the dataset's factory for every split (``{"size": 224}``).

    Args:
        cfg: the data section of a run config.
        seed: seeds the validation split and the labelled subset.
    """
    root = cfg.root or None
    kwargs = dict(cfg.kwargs)
    if cfg.val_split == "official" and "val" not in dataset_splits(cfg.dataset):
        raise ConfigError(
            f"dataset '{cfg.dataset}' has no official validation split; set data.val_split to random or tail"
        )
    train = filter_classes(
        DATASETS.create(cfg.dataset, split="train", root=root, **kwargs), cfg.classes, cfg.exclude_classes
    )
    test = filter_classes(
        DATASETS.create(cfg.dataset, split="test", root=root, **kwargs), cfg.classes, cfg.exclude_classes
    )
    val = None
    if cfg.val_split == "official":
        val = filter_classes(
            DATASETS.create(cfg.dataset, split="val", root=root, **kwargs), cfg.classes, cfg.exclude_classes
        )
        val = TensorDataset(val.x, val.y, val.classes, f"{cfg.dataset}:val", val.source, val.meta)
    elif cfg.val_size:
        if cfg.val_size >= len(train):
            raise ConfigError(
                f"config key 'data.val_size' ({cfg.val_size}) must be smaller than the training set ({len(train)} examples)"
            )
        if cfg.val_split == "tail":
            idx_val = torch.arange(len(train) - cfg.val_size, len(train))
            idx_tr = torch.arange(len(train) - cfg.val_size)
        else:
            perm = torch.randperm(len(train), generator=make_generator(seed, 0x7A1))
            idx_val, idx_tr = perm[: cfg.val_size].sort().values, perm[cfg.val_size :].sort().values
        val = train.subset(idx_val, name=f"{cfg.dataset}:val")
        train = train.subset(idx_tr)
    if cfg.train_subset:
        if cfg.train_subset > len(train):
            raise ConfigError(
                f"config key 'data.train_subset' ({cfg.train_subset}) exceeds the {len(train)} training examples available"
            )
        train = train.subset(_stratified(train.y, cfg.train_subset, seed))
    return Splits(train, val, test, list(train.classes))
