"""Contract tests run over every registered OOD set, dataset and augmentation: a new one is covered by being
registered, with no list in a test to extend.

Data that needs files comes from the ``every_dataset`` fixture (tests/data/conftest.py): tiny files in the real
format of every dataset and a few images in the folder of every image-folder OOD set, offline.
"""

from __future__ import annotations

import importlib.util
import inspect

import pytest
import torch

from rulab.config import AugmentCfg
from rulab.data.augment import augment_batch
from rulab.data.tensors import TensorDataset
from rulab.errors import DatasetMissingError
from rulab.registry import AUGMENTATIONS, DATASETS, OOD_SETS

SHAPES = [(1, 12, 12), (3, 16, 20)]


def _build(name: str, shape: tuple[int, int, int], **kwargs) -> TensorDataset:
    factory = OOD_SETS.get(name)
    bundled = getattr(factory, "bundled_with", None)
    if bundled and importlib.util.find_spec(bundled[1]) is None:
        pytest.skip(f"OOD set '{name}' ships with {bundled[0]}, which is not installed (pip install {bundled[0]})")
    if getattr(factory, "needs_base", False):
        g = torch.Generator().manual_seed(7)
        base = TensorDataset(
            torch.randint(0, 256, (40, *shape), generator=g, dtype=torch.uint8),
            torch.arange(40) % 4,
            list("abcd"),
            "base",
        )
        kwargs["base"] = base
    try:
        return OOD_SETS.create(name, shape=shape, **kwargs)
    except DatasetMissingError as err:
        pytest.fail(
            f"OOD set '{name}' needs files that tests/data/conftest.py does not write; add a writer of small files in "
            f"its real format there ({err})"
        )


# ----------------------------------------------------------------------------------------------- OOD sets
@pytest.mark.parametrize("name", OOD_SETS.list())
def test_ood_set_signature(name):
    params = list(OOD_SETS.parameters(name))
    assert params[:3] == ["shape", "n", "seed"], (
        f"OOD set factories take (shape, n, seed, ...); '{name}' takes {params}"
    )
    assert OOD_SETS.parameters(name)["seed"].default == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", OOD_SETS.list())
def test_ood_set_gives_uint8_images_at_the_requested_shape_labelled_minus_one(every_dataset, name, shape):
    ds = _build(name, shape, n=5, seed=3)
    assert isinstance(ds, TensorDataset) and ds.name == name
    assert ds.x.dtype == torch.uint8 and tuple(ds.x.shape) == (5, *shape)
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == [-1] * 5 and ds.classes == []
    again = _build(name, shape, n=5, seed=3)
    assert torch.equal(again.x, ds.x), f"OOD set '{name}' is not deterministic in its arguments"


@pytest.mark.parametrize("name", OOD_SETS.list())
def test_ood_set_seed_changes_the_draw(every_dataset, name):
    """Another seed draws other images (a generator) or another subset (a finite set: 3 of at least 6)."""
    a, b = _build(name, (3, 16, 16), n=3, seed=0), _build(name, (3, 16, 16), n=3, seed=1)
    assert not torch.equal(a.x, b.x)


# ----------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", DATASETS.list())
def test_dataset_splits_hold_labelled_uint8_images(every_dataset, name):
    shapes = set()
    for split in ("train", "test"):
        try:
            ds = DATASETS.create(name, split=split)
        except DatasetMissingError as err:
            pytest.fail(
                f"dataset '{name}' needs files that tests/data/conftest.py does not write; add a writer of small "
                f"files in its real format there ({err})"
            )
        assert isinstance(ds, TensorDataset) and ds.name == name, (name, split)
        assert ds.x.dtype == torch.uint8 and ds.x.ndim == 4 and ds.x.shape[1] in (1, 3) and len(ds) >= 1
        assert ds.y.dtype == torch.int64 and len(ds.y) == len(ds.x)
        k = len(ds.classes)
        assert k >= 2 and all(isinstance(c, str) and c for c in ds.classes)
        assert int(ds.y.min()) >= 0 and int(ds.y.max()) < k, f"{name}/{split}: labels outside 0..{k - 1}"
        again = DATASETS.create(name, split=split)
        assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)
        shapes.add(tuple(ds.x.shape[1:]))
    assert len(shapes) == 1, f"dataset '{name}': train and test images differ in shape {shapes}"


# ----------------------------------------------------------------------------------------------- augmentations
@pytest.mark.parametrize("name", AUGMENTATIONS.list())
def test_augmentation_preset_is_a_valid_config(name):
    cfg = AUGMENTATIONS.create(name)
    assert isinstance(cfg, AugmentCfg)
    for p in (cfg.hflip, cfg.vflip, cfg.rotate_p):
        assert 0.0 <= p <= 1.0
    assert cfg.crop_padding >= 0 and cfg.rotate_deg >= 0
    assert not [p for p in inspect.signature(AUGMENTATIONS.get(name)).parameters.values() if p.default is p.empty]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", AUGMENTATIONS.list())
def test_augmentation_keeps_shape_dtype_range_and_is_seeded(name, channels):
    cfg = AUGMENTATIONS.create(name)
    x = torch.rand(16, channels, 12, 10, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    out = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(x, before), "augmentation must not modify its input in place"
    assert torch.equal(out, augment_batch(x, cfg, torch.Generator().manual_seed(5)))
    moves = cfg.hflip > 0 or cfg.vflip > 0 or cfg.crop_padding > 0 or (cfg.rotate_deg > 0 and cfg.rotate_p > 0)
    assert torch.equal(out, x) != moves, (
        f"augmentation '{name}' {'changed' if not moves else 'did not change'} the batch"
    )
