import math

import pytest
import torch
import torchvision.transforms.functional as TF

from rulab.config import AugmentCfg
from rulab.data.augment import augment_batch, random_crop, random_flip, random_rotate
from rulab.data.loader import TensorLoader, derive_seed, make_generator
from rulab.errors import InputError


def data(n=103, c=1, h=8, w=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return x, torch.arange(n)


def test_epoch_covers_every_example_once_and_shuffles():
    x, y = data()
    loader = TensorLoader(x, y, batch_size=10, drop_last=False, seed=1)
    seen = torch.cat([b["y"] for b in loader])
    assert sorted(seen.tolist()) == list(range(103)) and len(loader) == 11
    assert seen.tolist() != list(range(103))
    b = next(iter(TensorLoader(x, y, batch_size=10, seed=1)))
    assert b["x"].dtype == torch.float32 and b["x"].min() >= 0 and b["x"].max() <= 1
    # pixels are the dataset's own (no augmentation): x/255 of the gathered rows
    assert torch.equal(b["x"], x[b["y"]].float() / 255)


def test_drop_last_and_epochs_differ():
    x, y = data()
    loader = TensorLoader(x, y, batch_size=10, drop_last=True, seed=1)
    assert len(loader) == 10
    e0 = torch.cat([b["y"] for b in loader])
    e1 = torch.cat([b["y"] for b in loader])
    assert len(e0) == 100 and not torch.equal(e0, e1)


def test_position_resume_gives_identical_batches():
    x, y = data()
    aug = AugmentCfg(hflip=0.5, crop_padding=2, rotate_deg=10, rotate_p=0.5)
    full = TensorLoader(x, y, 16, augment=aug, seed=3)
    list(full)  # epoch 0
    ref = [b["x"] for b in full]  # epoch 1
    resumed = TensorLoader(x, y, 16, augment=aug, seed=3)
    resumed.set_position(1, 4)
    got = [b["x"] for b in resumed]
    assert len(got) == len(ref) - 4
    for a, b in zip(ref[4:], got):
        assert torch.equal(a, b)
    assert torch.equal(full.batch_at(len(full) + 2)["x"], ref[2])


def test_ranks_split_the_global_batch():
    x, y = data(64)
    whole = TensorLoader(x, y, 16, augment=AugmentCfg(hflip=0.5, crop_padding=1), seed=5)
    parts = [
        TensorLoader(x, y, 16, augment=AugmentCfg(hflip=0.5, crop_padding=1), seed=5, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for b, b0, b1 in zip(whole, parts[0], parts[1]):
        assert torch.equal(torch.cat([b0["x"], b1["x"]]), b["x"])
        assert torch.equal(torch.cat([b0["y"], b1["y"]]), b["y"])


def test_two_views_are_different_augmentations_of_the_same_images():
    x, y = data(32)
    b = next(iter(TensorLoader(x, y, 8, augment=AugmentCfg(hflip=0.5, crop_padding=2), seed=0, two_views=True)))
    assert b["x"].shape == b["x2"].shape and not torch.equal(b["x"], b["x2"])


def test_bad_input():
    x, y = data(4)
    with pytest.raises(InputError, match="uint8"):
        TensorLoader(x.float(), y, 2)
    with pytest.raises(InputError, match="empty"):
        TensorLoader(x[:0], y[:0], 2)
    with pytest.raises(InputError, match="multiple"):
        TensorLoader(x, y, 3, world_size=2)


def test_flip_matches_torchvision_and_probability():
    x = torch.rand(400, 1, 5, 5)
    out = random_flip(x, 0.5, make_generator(0))
    flipped = (out == TF.hflip(x)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 150 < int((flipped & ~same).sum()) < 250


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.rand(50, 3, 6, 7)
    out = random_crop(x, 2, make_generator(1))
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(50):
        hits = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out[i], xp[i, :, dy : dy + 6, dx : dx + 7])
        ]
        assert hits, i


def test_rotation_matches_torchvision_rotate():
    x = torch.rand(6, 1, 9, 9)
    out = random_rotate(x, 30.0, 1.0, make_generator(2))
    # recover the drawn angles with the same generator stream
    g = make_generator(2)
    torch.rand(6, generator=g)
    angles = (torch.rand(6, generator=g) * 2 - 1) * 30.0
    for i in range(6):
        ref = TF.rotate(x[i : i + 1], float(angles[i]), interpolation=TF.InterpolationMode.BILINEAR)
        assert torch.allclose(out[i : i + 1], ref, atol=1e-5), i  # same angle convention and zero fill


def test_augment_batch_is_seeded_and_pure():
    x = torch.rand(8, 1, 10, 10)
    keep = x.clone()
    cfg = AugmentCfg(hflip=0.5, vflip=0.4, crop_padding=2, rotate_deg=20, rotate_p=0.4)
    a = augment_batch(x, cfg, make_generator(9))
    b = augment_batch(x, cfg, make_generator(9))
    c = augment_batch(x, cfg, make_generator(10))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(x, keep)


def test_derive_seed_is_stable_and_spreads():
    assert derive_seed(1, 2) == derive_seed(1, 2)
    seeds = {derive_seed(0, i) for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert not math.isnan(float(derive_seed(3)))
