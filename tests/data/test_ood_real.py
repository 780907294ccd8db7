"""Real OOD sets: the bundled ones (digits, textures, photos), ID test splits reused as OOD, and image folders."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import rulab.data.ood  # noqa: F401  (registers the OOD sets)
from rulab.data.fetch import SOURCES
from rulab.data.ood import CROP_SETS_DEFAULT_N, to_shape
from rulab.errors import ConfigError, DatasetMissingError
from rulab.registry import OOD_SETS

REAL_SETS = [n for n in OOD_SETS if not hasattr(OOD_SETS.get(n), "needs_base")]  # every set that is not a noise family


@pytest.fixture
def env(env):
    """The data cache of the shared data directories (tests/data/conftest.py), downloads off."""
    return env[0]


def save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_real_sets_are_registered_with_the_contract_signature():
    for name in REAL_SETS:
        params = OOD_SETS.parameters(name)
        assert list(params)[:4] == ["shape", "n", "seed", "root"], name
        assert params["n"].default is None and params["seed"].default == 0 and params["root"].default is None


# ----------------------------------------------------------------------------------------------- to_shape
def test_to_shape_known_answers():
    rgb = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    rgb[:, 0], rgb[:, 1], rgb[:, 2] = 100, 200, 50
    grey = to_shape(rgb, (1, 4, 4))
    assert grey.unique().tolist() == [round(0.299 * 100 + 0.587 * 200 + 0.114 * 50)]  # ITU-R 601-2 luma = 153
    back = to_shape(grey, (3, 4, 4))
    assert back.shape == (2, 3, 4, 4) and torch.equal(back[:, 0], back[:, 2])
    const = to_shape(torch.full((1, 1, 32, 32), 77, dtype=torch.uint8), (1, 28, 28))
    assert const.shape == (1, 1, 28, 28) and const.unique().tolist() == [77]
    assert to_shape(rgb, (3, 4, 4)) is rgb
    with pytest.raises(ConfigError, match="C in"):
        to_shape(rgb, (2, 4, 4))


# ----------------------------------------------------------------------------------------------- bundled sets
def test_digits_known_answer_and_subset():
    datasets = pytest.importorskip("sklearn.datasets")
    images = datasets.load_digits().images
    full = OOD_SETS.create("digits", shape=(1, 8, 8))
    assert full.x.shape == (1797, 1, 8, 8) and full.x.dtype == torch.uint8
    np.testing.assert_array_equal(
        full.x[:, 0].numpy(), np.round(images * 255 / 16).astype(np.uint8)
    )  # no resampling at 8x8
    assert full.y.unique().tolist() == [-1] and full.classes == []
    up = OOD_SETS.create("digits", shape=(1, 28, 28))
    assert up.x.shape == (1797, 1, 28, 28) and up.x.max() == 255 and up.x.min() == 0
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(images[:1]).float()[None] * 255 / 16, size=(28, 28), mode="bilinear"
    )
    assert torch.equal(up.x[0, 0], ref[0, 0].round().to(torch.uint8))
    sub = OOD_SETS.create("digits", shape=(3, 28, 28), n=100, seed=5)
    assert sub.x.shape == (100, 3, 28, 28) and torch.equal(sub.x[:, 0], sub.x[:, 2])
    assert torch.equal(sub.x, OOD_SETS.create("digits", shape=(3, 28, 28), n=100, seed=5).x)
    assert not torch.equal(sub.x, OOD_SETS.create("digits", shape=(3, 28, 28), n=100, seed=6).x)
    with pytest.raises(ConfigError, match="has 1797 images but n=5000"):
        OOD_SETS.create("digits", shape=(1, 28, 28), n=5000)


@pytest.mark.parametrize("name", ["textures", "photos"])
def test_crop_sets_shape_determinism_and_n(name):
    pytest.importorskip("skimage")
    a = OOD_SETS.create(name, shape=(1, 28, 28), n=300, seed=1)
    assert a.x.shape == (300, 1, 28, 28) and a.x.dtype == torch.uint8 and a.y.unique().tolist() == [-1]
    assert torch.equal(a.x, OOD_SETS.create(name, shape=(1, 28, 28), n=300, seed=1).x)
    assert not torch.equal(a.x, OOD_SETS.create(name, shape=(1, 28, 28), n=300, seed=2).x)
    assert a.x.float().std() > 10  # real image content, not a constant
    assert len(torch.unique(a.x.reshape(300, -1), dim=0)) >= 290  # crops (almost) never repeat
    c = OOD_SETS.create(name, shape=(3, 32, 24), n=50, seed=1)
    assert c.x.shape == (50, 3, 32, 24)
    assert a.meta["n"] == 300 and a.meta["seed"] == 1


def test_textures_are_grey_and_photos_have_colour():
    pytest.importorskip("skimage")
    tex = OOD_SETS.create("textures", shape=(3, 16, 16), n=64, seed=0)
    assert torch.equal(tex.x[:, 0], tex.x[:, 1]) and torch.equal(tex.x[:, 1], tex.x[:, 2])  # grey sources replicated
    ph = OOD_SETS.create("photos", shape=(3, 16, 16), n=200, seed=0)
    assert (ph.x[:, 0].float() - ph.x[:, 2].float()).abs().mean() > 5  # astronaut, coffee, ... are colour
    assert len(OOD_SETS.create("textures", shape=(1, 8, 8), seed=0)) == CROP_SETS_DEFAULT_N


def test_texture_crop_matches_its_source_image():
    skd = pytest.importorskip("skimage.data")
    # at 64x64 with crops of 1/4 .. 1 of a 512-pixel image, each crop's mean is within the source's range of
    # 128-pixel block means: a wrong channel/axis order or an off-image window would break this
    x = OOD_SETS.create("textures", shape=(1, 64, 64), n=40, seed=3).x.float()
    lo = min(
        float(getattr(skd, n)().reshape(4, 128, 4, 128).mean(axis=(1, 3)).min()) for n in ("brick", "grass", "gravel")
    )
    hi = max(
        float(getattr(skd, n)().reshape(4, 128, 4, 128).mean(axis=(1, 3)).max()) for n in ("brick", "grass", "gravel")
    )
    means = x.mean(dim=(1, 2, 3))
    assert (means >= lo - 2).all() and (means <= hi + 2).all()


# ----------------------------------------------------------------------------------------------- ID test splits as OOD
def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_mnist_ood_through_the_chain(env, monkeypatch):
    with pytest.raises(DatasetMissingError, match="rulab data fetch mnist"):
        OOD_SETS.create("mnist", shape=(1, 28, 28))
    imgs = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    raw = {
        "t10k-images": gzip.compress(_idx(imgs), mtime=0),
        "t10k-labels": gzip.compress(_idx(np.arange(7, dtype=np.uint8)), mtime=0),
    }
    src = SOURCES.get("mnist")
    files = []
    for rf in src.files:
        if rf.key in raw:
            (env / "mnist").mkdir(exist_ok=True)
            (env / "mnist" / rf.paths[0]).write_bytes(raw[rf.key])
            rf = dataclasses.replace(rf, md5=(hashlib.md5(raw[rf.key]).hexdigest(),))
        files.append(rf)
    monkeypatch.setitem(SOURCES._entries, "mnist", dataclasses.replace(src, files=tuple(files)))
    ood = OOD_SETS.create("mnist", shape=(1, 28, 28))
    assert torch.equal(ood.x[:, 0], torch.from_numpy(imgs)) and ood.y.unique().tolist() == [-1]
    sub = OOD_SETS.create("mnist", shape=(3, 32, 32), n=3, seed=0)
    assert sub.x.shape == (3, 3, 32, 32) and sub.meta["from"] == "mnist test split"


def test_cifar10_as_grey_ood_for_mnist_scale(env, monkeypatch):
    rows = np.zeros((2, 3072), np.uint8)
    rows[:, :1024], rows[:, 1024:2048], rows[:, 2048:] = 100, 200, 50
    files = {
        "test_batch": pickle.dumps({b"data": rows, b"labels": [0, 1]}, protocol=2),
        "batches.meta": pickle.dumps({b"label_names": [b"c"] * 10}, protocol=2),
    }
    src = SOURCES.get("cifar10")
    new = []
    for rf in src.files:
        if rf.key in files:
            path = env / "cifar10" / rf.paths[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[rf.key])
            rf = dataclasses.replace(rf, md5=(hashlib.md5(files[rf.key]).hexdigest(),))
        new.append(rf)
    monkeypatch.setitem(SOURCES._entries, "cifar10", dataclasses.replace(src, files=tuple(new)))
    ood = OOD_SETS.create("cifar10", shape=(1, 28, 28))
    assert ood.x.shape == (2, 1, 28, 28) and ood.x.unique().tolist() == [153]  # luma of (100, 200, 50), resized


# ----------------------------------------------------------------------------------------------- image-folder sets
def test_dtd_folder_resize_crop(env):
    rng = np.random.default_rng(0)
    for cls in ("banded", "zigzagged"):
        for k in range(3):
            save(
                env / "dtd" / "dtd" / "images" / cls / f"{cls}_{k}.jpg",
                rng.integers(0, 256, (60, 90, 3), dtype=np.uint8),
            )
    (env / "dtd" / "dtd" / "labels").mkdir(parents=True)
    (env / "dtd" / "dtd" / "labels" / "train1.txt").write_text("banded/banded_0.jpg\n")
    ood = OOD_SETS.create("dtd", shape=(3, 32, 32))
    assert ood.x.shape == (6, 3, 32, 32) and ood.meta["mode"] == "resize_crop" and ood.y.unique().tolist() == [-1]
    assert (env / "dtd" / "ood-3x32x32-resize_crop.safetensors").is_file()
    again = OOD_SETS.create("dtd", shape=(3, 32, 32), n=4, seed=1)
    assert again.x.shape == (4, 3, 32, 32) and all(any(torch.equal(a, b) for b in ood.x) for a in again.x)
    assert OOD_SETS.create("dtd", shape=(1, 28, 28)).x.shape == (6, 1, 28, 28)
    shutil.rmtree(env / "dtd" / "dtd")  # images gone: the tensors cached from them still serve
    cached = OOD_SETS.create("dtd", shape=(3, 32, 32))
    assert torch.equal(cached.x, ood.x) and "no longer present" in cached.meta["note"]
    with pytest.raises(DatasetMissingError, match="dtd-r1.0.1.tar.gz"):
        OOD_SETS.create("dtd", shape=(3, 16, 16))  # never cached at this shape


def test_lsun_resize_distorts_and_crop_sets_are_seeded(env):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white: a resize keeps half of the columns white, a crop need not
    for k in range(3):
        save(env / "lsun_resize" / "LSUN_resize" / f"{k}.jpg", arr)
        save(
            env / "tin_crop" / "Imagenet" / "test" / f"{k}.png",
            np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8),
        )
    r = OOD_SETS.create("lsun_resize", shape=(3, 32, 32))
    assert r.x.shape == (3, 3, 32, 32)
    assert (r.x[0, 0, 16, :15] > 240).all() and (r.x[0, 0, 16, 17:] < 15).all()
    a = OOD_SETS.create("tin_crop", shape=(3, 32, 32), seed=0)
    b = OOD_SETS.create("tin_crop", shape=(3, 32, 32), seed=0)
    c = OOD_SETS.create("tin_crop", shape=(3, 32, 32), seed=1)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x) and a.meta["mode"] == "random_crop"


@pytest.mark.parametrize(
    "name,where",
    [
        ("dtd", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"),
        ("isun", "https://www.dropbox.com/s/raw/ssz7qxfqae0cca5/iSUN.tar.gz"),
        ("places365", "http://data.csail.mit.edu/places/places365/val_256.tar"),
        ("lsun_classroom", "http://dl.yf.io/lsun/scenes/classroom_train_lmdb.zip"),
    ],
)
def test_missing_folder_sets_name_the_download(env, name, where):
    with pytest.raises(DatasetMissingError) as info:
        OOD_SETS.create(name, shape=(3, 32, 32))
    msg = str(info.value)
    assert where in msg and str(env / name) in msg and "downloads are off" in msg
    assert ("rulab data fetch " + name in msg) == (name != "lsun_classroom")  # LSUN is an LMDB: exported by hand
