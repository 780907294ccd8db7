"""Real out-of-distribution sets: ``OOD_SETS.create(name, shape=(C, H, W), n=None, seed=0, root=None)``.

Every factory returns a :class:`~rulab.data.tensors.TensorDataset` with ``y = -1`` and images converted to the
ID shape ``(C, H, W)``. Synthetic noise families live in :mod:`rulab.data.noise_ood`, not here.

Conversions (one rule for every set):
    * grey from colour: ITU-R 601-2 luma, ``0.299 R + 0.587 G + 0.114 B`` (what PIL's ``convert("L")`` does).
      Hein et al.'s grey CIFAR-10 used the plain channel mean (W3's ``evaluation.py``); the two differ by a few
      grey levels, which does not change what the set is.
    * colour from grey: the grey channel is replicated.
    * size: bilinear resampling with antialiasing (``F.interpolate(..., antialias=True)``) for tensor sets; image
      folders use their protocol's crop or resize (:mod:`rulab.data.folders`).
    * ``n``: a seeded random subset (kept in the set's order); ``None`` = the whole set (for the crop sets
      ``textures`` and ``photos``: 10,000 crops). Asking for more images than a finite set has is an error.

Sets offline on any machine (the Fashion-MNIST default):
    * ``digits``: scikit-learn's 1,797 8×8 digits, values 0..16 scaled to 0..255, bilinear upsampling.
    * ``textures``: scikit-image's texture images (brick, grass, gravel) cut into seeded random crops.
    * ``photos``: scikit-image's photographs (astronaut, camera, chelsea, coffee, …) cut into crops.
    * ``mnist``: the MNIST test set through the source chain (near OOD for Fashion-MNIST).

CIFAR-scale sets (W1, W3 and W4; see docs/protocols/), through the source chain:
    * ``svhn`` (test split), ``cifar10`` / ``cifar100`` (the other CIFAR's test split);
    * image folders under ``$RULAB_DATA/<name>/``: ``dtd`` and ``places365`` (Resize(short side) + CenterCrop),
      ``lsun_crop`` and ``tin_crop`` (ODIN: random ``H × W`` crops, seeded), ``lsun_resize``, ``tin_resize``,
      ``isun`` (ODIN: resize), ``lsun_classroom`` (Hein: ``Resize((32, 32))``, aspect-distorting).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rulab.errors import ConfigError, RulabError
from rulab.registry import DATASETS, OOD_SETS

from . import datasets as _datasets  # noqa: F401  (registers the ID datasets the OOD sets reuse)
from .fetch import Archive, Prepared, Source, declare, load_prepared_folder
from .tensors import TensorDataset, check_image_shape

__all__ = [
    "LUMA",
    "CROP_SETS_DEFAULT_N",
    "TEXTURE_IMAGES",
    "PHOTO_IMAGES",
    "to_shape",
    "FolderSet",
    "FOLDER_SETS",
    "register_folder_set",
    "digits",
    "textures",
    "photos",
]

PathLike = str | os.PathLike[str]
LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights used to turn RGB into grey."""
CROP_SETS_DEFAULT_N = 10_000
"""Number of crops ``textures`` and ``photos`` return when ``n`` is ``None``."""
TEXTURE_IMAGES: tuple[str, ...] = ("brick", "grass", "gravel")
"""scikit-image's texture images (``skimage.data.<name>()``, all 512×512 grey)."""
PHOTO_IMAGES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)
"""scikit-image's photographs (``skimage.data.<name>()``), all shipped inside the scikit-image wheel."""
_CROP_FRACTIONS = tuple(0.125 * 4 ** (k / 7) for k in range(8))
"""Crop side as a fraction of the image's short side: 8 geometric levels from 1/8 to 1/2 (at 1/2 a 512-pixel
texture still offers ~800 distinct 28×28 windows per image, so crops rarely repeat)."""


# ----------------------------------------------------------------------------------------------- helpers
_check_shape = functools.partial(check_image_shape, channels=(1, 3), what="OOD shape", error=ConfigError)
"""``(C, H, W)`` with C in {1, 3}: OOD images convert between grey and colour (:func:`to_shape`)."""


def _bundled(dist: str, module: str) -> Callable[[Callable[..., TensorDataset]], Callable[..., TensorDataset]]:
    """Mark an OOD factory as using data shipped inside a Python package (read by ``fetch.list_data``)."""

    def mark(fn: Callable[..., TensorDataset]) -> Callable[..., TensorDataset]:
        fn.bundled_with = (dist, module)  # type: ignore[attr-defined]
        return fn

    return mark


def _need(module: str, dist: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RulabError(f"this OOD set needs {dist}; install it with: pip install 'rulab[datasets]'") from None


def _subset_index(total: int, n: int | None, seed: int, name: str) -> torch.Tensor | None:
    """Seeded random subset of ``range(total)`` of size ``n`` (sorted), or ``None`` for all."""
    if n is None or n == total:
        return None
    if n < 1:
        raise ConfigError(f"n must be a positive number of images or None, got {n}")
    if n > total:
        raise ConfigError(
            f"OOD set '{name}' has {total} images but n={n} was asked for; ask for at most {total} (or n=None for all)"
        )
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values


def to_shape(x: torch.Tensor, shape: Sequence[int], chunk: int = 4096) -> torch.Tensor:
    """Convert images to ``shape`` (grey via ITU-R 601-2 luma, colour by replication, antialiased bilinear resize).

    Args:
        x: ``uint8 [N, C, H, W]`` with C in {1, 3}.
        shape: target ``(C', H', W')``.
        chunk: images converted at a time (bounds the float memory).

    Returns:
        ``uint8 [N, C', H', W']``; ``x`` itself when it already has that shape.
    """
    c, h, w = _check_shape(shape)
    if tuple(x.shape[1:]) == (c, h, w):
        return x
    out = torch.empty((len(x), c, h, w), dtype=torch.uint8)
    luma = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].float()
        if xb.shape[1] == 3 and c == 1:
            xb = (xb * luma).sum(1, keepdim=True)
        if tuple(xb.shape[2:]) != (h, w):
            xb = F.interpolate(xb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = xb.round_().clamp_(0, 255).to(torch.uint8)  # a grey source broadcasts to 3 channels
    return out


def _ood(name: str, x: torch.Tensor, source: str, meta: dict[str, Any]) -> TensorDataset:
    return TensorDataset(x, torch.full((len(x),), -1, dtype=torch.int64), [], name, source, meta)


def _from_dataset(
    name: str, dataset: str, shape: Sequence[int], n: int | None, seed: int, root: PathLike | None
) -> TensorDataset:
    ds = DATASETS.create(dataset, split="test", root=root)
    idx = _subset_index(len(ds), n, seed, name)
    x = ds.x if idx is None else ds.x[idx]
    meta = {
        "shape": list(_check_shape(shape)),
        "n": len(x),
        "seed": seed,
        "from": f"{dataset} test split",
        "source_meta": ds.meta,
    }
    return _ood(name, to_shape(x, shape), ds.source, meta)


# ----------------------------------------------------------------------------------------------- bundled sets
@OOD_SETS.register("digits")
@_bundled("scikit-learn", "sklearn")
def digits(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """scikit-learn's bundled handwritten digits (1,797 images, 8×8, values 0..16), a near OOD set for Fashion-MNIST.

    Values are scaled by 255/16 and upsampled to ``H × W`` with bilinear interpolation (``align_corners=False``);
    white digits on black like MNIST. ``root`` is unused (the data ships with scikit-learn).

    Returns:
        ``x: uint8 [n, C, H, W]``, ``y = -1``.
    """
    c, h, w = _check_shape(shape)
    sk = _need("sklearn.datasets", "scikit-learn")
    imgs = torch.from_numpy(sk.load_digits().images).float()  # [1797, 8, 8] in 0..16
    idx = _subset_index(len(imgs), n, seed, "digits")
    if idx is not None:
        imgs = imgs[idx]
    up = F.interpolate(imgs.unsqueeze(1) * (255.0 / 16.0), size=(h, w), mode="bilinear", align_corners=False)
    x = up.round_().clamp_(0, 255).to(torch.uint8).expand(-1, c, -1, -1).contiguous()
    return _ood(
        "digits",
        x,
        "bundled:scikit-learn (sklearn.datasets.load_digits)",
        {"shape": [c, h, w], "n": len(x), "seed": seed},
    )


@functools.lru_cache(maxsize=4)
def _skimage_images(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The named ``skimage.data`` images as read-only ``uint8`` arrays (``[H, W]`` grey or ``[H, W, 3]`` RGB)."""
    data = _need("skimage.data", "scikit-image")
    out = []
    for name in names:
        img = getattr(data, name)()
        arr = np.array(img[..., :3] if img.ndim == 3 else img, dtype=np.uint8)
        arr.setflags(write=False)
        out.append(arr)
    return tuple(out)


def _random_crops(
    images: Sequence[np.ndarray], shape: Sequence[int], n: int, seed: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``n`` seeded random crops of ``images`` resized to ``shape``, as ``uint8 [n, C, H, W]``.

    Each crop picks an image uniformly, a crop side from :data:`_CROP_FRACTIONS` of the image's short side
    (aspect ``H:W``) and a uniform position. Resizing happens once per (image, scale) with antialiased bilinear
    interpolation and crops are ``H × W`` windows of the resized image: the same as cropping then resizing up to
    resampling round-off, and ~100× faster than resizing every crop.
    """
    c, h, w = _check_shape(shape)
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (n,), generator=g)
    level = torch.randint(len(_CROP_FRACTIONS), (n,), generator=g)
    pos = torch.rand((n, 2), generator=g, dtype=torch.float64)
    out = torch.empty((n, c, h, w), dtype=torch.float32)
    for i, img in enumerate(images):
        t = torch.from_numpy(np.asarray(img, dtype=np.float32))
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.unsqueeze(0)
        t = _to_channels(t, c).contiguous()
        ih, iw = t.shape[-2:]
        # shrink once to the resolution the smallest crops need (large photographs would otherwise be resampled
        # at full size for every level); every level below is then a further antialiased downscale
        s0 = h / (_CROP_FRACTIONS[0] * min(ih, iw * h / w))
        if s0 < 1:
            ih, iw = max(h, round(ih * s0)), max(w, round(iw * s0))
            t = F.interpolate(t.unsqueeze(0), size=(ih, iw), mode="bilinear", align_corners=False, antialias=True)[0]
        for k, frac in enumerate(_CROP_FRACTIONS):
            sel = ((which == i) & (level == k)).nonzero().flatten()
            if len(sel) == 0:
                continue
            crop_h = frac * min(ih, iw * h / w)  # crop height in source pixels; its width is crop_h * w / h
            rh, rw = max(h, round(ih * h / crop_h)), max(w, round(iw * h / crop_h))
            r = F.interpolate(t.unsqueeze(0), size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)[0]
            tops = (pos[sel, 0] * (rh - h + 1)).long().clamp_(max=rh - h)
            lefts = (pos[sel, 1] * (rw - w + 1)).long().clamp_(max=rw - w)
            for j, top, left in zip(sel.tolist(), tops.tolist(), lefts.tolist()):
                out[j] = r[:, top : top + h, left : left + w]
    return out.round_().clamp_(0, 255).to(torch.uint8), {"crop_fractions": list(_CROP_FRACTIONS)}


def _to_channels(t: torch.Tensor, channels: int) -> torch.Tensor:
    """``float [C, H, W]`` with C in {1, 3} → ``channels`` channels (ITU-R 601-2 luma or replication)."""
    if t.shape[0] == 3 and channels == 1:
        return (t * torch.tensor(LUMA, dtype=t.dtype).view(3, 1, 1)).sum(0, keepdim=True)
    if t.shape[0] == 1 and channels == 3:
        return t.expand(3, -1, -1)
    return t


@OOD_SETS.register("textures")
@_bundled("scikit-image", "skimage")
def textures(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """Seeded random crops of scikit-image's texture photographs (brick, grass, gravel), resized to ``H × W``.

    An offline stand-in for W1's Textures (DTD) set (W1's ``test.py``): crops of ``1/8 .. 1/2`` of the image's
    short side, antialiased bilinear resize, grey for ``C = 1`` and replicated grey for ``C = 3``.

    Returns:
        ``x: uint8 [n, C, H, W]`` (``n`` defaults to :data:`CROP_SETS_DEFAULT_N`), ``y = -1``.
    """
    n = CROP_SETS_DEFAULT_N if n is None else int(n)
    if n < 1:
        raise ConfigError(f"n must be a positive number of crops, got {n}")
    x, meta = _random_crops(_skimage_images(TEXTURE_IMAGES), shape, n, seed)
    meta = {"shape": list(x.shape[1:]), "n": n, "seed": seed, "images": list(TEXTURE_IMAGES), **meta}
    return _ood("textures", x, "bundled:scikit-image (skimage.data textures)", meta)


@OOD_SETS.register("photos")
@_bundled("scikit-image", "skimage")
def photos(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """Seeded random crops of scikit-image's bundled photographs (:data:`PHOTO_IMAGES`), resized to ``H × W``.

    A far OOD set of natural-image patches (a Places/LSUN-like stand-in at CPU scale): colour photographs turn
    grey via ITU-R 601-2 luma for ``C = 1``; grey ones are replicated for ``C = 3``.

    Returns:
        ``x: uint8 [n, C, H, W]`` (``n`` defaults to :data:`CROP_SETS_DEFAULT_N`), ``y = -1``.
    """
    n = CROP_SETS_DEFAULT_N if n is None else int(n)
    if n < 1:
        raise ConfigError(f"n must be a positive number of crops, got {n}")
    x, meta = _random_crops(_skimage_images(PHOTO_IMAGES), shape, n, seed)
    meta = {"shape": list(x.shape[1:]), "n": n, "seed": seed, "images": list(PHOTO_IMAGES), **meta}
    return _ood("photos", x, "bundled:scikit-image (skimage.data photographs)", meta)


# ----------------------------------------------------------------------------------------------- other ID datasets' test splits
@OOD_SETS.register("mnist")
def mnist(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The MNIST test set (10,000) through the source chain; a near OOD set for Fashion-MNIST."""
    return _from_dataset("mnist", "mnist", shape, n, seed, root)


@OOD_SETS.register("svhn")
def svhn(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The SVHN test set (26,032; OOD in W1 and W3)."""
    return _from_dataset("svhn", "svhn", shape, n, seed, root)


@OOD_SETS.register("cifar10")
def cifar10(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The CIFAR-10 test set (10,000): OOD for CIFAR-100 and SVHN (W1, W3); grey + 28×28 for MNIST-like IDs."""
    return _from_dataset("cifar10", "cifar10", shape, n, seed, root)


@OOD_SETS.register("cifar100")
def cifar100(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The CIFAR-100 test set (10,000): OOD for CIFAR-10 and SVHN (W1, W3)."""
    return _from_dataset("cifar100", "cifar100", shape, n, seed, root)


# ----------------------------------------------------------------------------------------------- image-folder sets
@dataclass(frozen=True)
class FolderSet:
    """An OOD set made of the images in a folder under ``$RULAB_DATA/<name>/``.

    Attributes:
        source: where the images come from (an image-folder :class:`~rulab.data.fetch.Source`; its name is the set's
            name in :data:`~rulab.registry.OOD_SETS`).
        mode: how an image becomes ``H × W``: ``"resize_crop"`` (Resize(short side) + CenterCrop), ``"random_crop"``
            (seeded random crops at full resolution) or ``"resize"`` (:func:`rulab.data.folders.load_image_files`).
        doc: the registered factory's docstring.
    """

    source: Source
    mode: str
    doc: str


def register_folder_set(spec: FolderSet) -> Callable[..., TensorDataset]:
    """Declare ``spec.source`` and register ``factory(shape, n=None, seed=0, root=None) -> TensorDataset`` for it.

    The whole folder is decoded once per (shape, mode[, seed for random crops]) and cached as tensors; ``n`` is then a
    seeded subset. Returns the factory.
    """
    name = declare(spec.source).name

    def factory(
        shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
    ) -> TensorDataset:
        return _folder_ood(name, spec.mode, shape, n, seed, root)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = spec.doc
    return OOD_SETS.register(name)(factory)


def _odin(name: str, title: str, filename: str, md5: str, dropbox: str) -> Source:
    # archives and MD5s of the ODIN release (facebookresearch/odin README links; MD5s as pytorch-ood checks them)
    return Source(
        name=name,
        title=title,
        archives=(Archive(filename, md5, (f"https://www.dropbox.com/s/raw/{dropbox}/{filename}",)),),
        image_folder=True,
    )


def _folder_ood(
    name: str, mode: str, shape: Sequence[int], n: int | None, seed: int, root: PathLike | None
) -> TensorDataset:
    """Decode the whole folder once per (shape, mode[, seed for random crops]), cache it, then take the seeded subset."""
    from .folders import find_images, load_image_files

    c, h, w = _check_shape(shape)
    crop_seed = seed if mode == "random_crop" else 0
    key = f"ood-{c}x{h}x{w}-{mode}" + (f"-seed{seed}" if mode == "random_crop" else "")

    def parse(directory: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        files, _, _, skipped = find_images(directory)
        x = load_image_files(files, (h, w), mode, c, crop_seed)
        return x, torch.full((len(x),), -1, dtype=torch.int64), {"skipped_files": skipped, "n_images": len(files)}

    prep: Prepared = load_prepared_folder(name, key, parse, root, {"shape": [c, h, w], "mode": mode, "seed": crop_seed})
    idx = _subset_index(len(prep.x), n, seed, name)
    x = prep.x if idx is None else prep.x[idx]
    meta = {
        "shape": [c, h, w],
        "n": len(x),
        "seed": seed,
        "mode": mode,
        **{k: v for k, v in prep.meta.items() if k != "source"},
    }
    return _ood(name, x, str(prep.meta.get("source", "")), meta)


FOLDER_SETS: tuple[FolderSet, ...] = (
    FolderSet(
        Source(
            name="dtd",
            title="Describable Textures (DTD)",
            archives=(
                Archive(
                    "dtd-r1.0.1.tar.gz",
                    "fff73e5086ae6bdbea199a49dfb8a4c1",
                    ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
                ),
            ),
            folders=("dtd/images",),
            image_folder=True,
        ),
        "resize_crop",
        """DTD textures, all 5,640 images of ``dtd/images``: Resize(short side) + CenterCrop (W1's ``test.py``).""",
    ),
    FolderSet(
        Source(
            name="places365",
            title="Places365 (val_256)",
            archives=(
                Archive(
                    "val_256.tar",
                    "e27b17d8d44f4af9a78502beb927f808",
                    ("http://data.csail.mit.edu/places/places365/val_256.tar",),
                ),
            ),
            image_folder=True,
        ),
        "resize_crop",
        """Places365 scenes: Resize(short side) + CenterCrop (W1's ``test.py``).

    Any images under ``$RULAB_DATA/places365/`` are used (W1 used a local ``test_subset``); the automatic
    download is the 36,500-image ``val_256.tar``. Pass ``n`` to subsample.
    """,
    ),
    FolderSet(
        _odin(
            "lsun_crop",
            "LSUN (crop), ODIN release",
            "LSUN.tar.gz",
            "458a0a0ab8e5f1cb4516d7400568e460",
            "fhtsw1m3qxlwj6h",
        ),
        "random_crop",
        """LSUN (crop), ODIN's 10,000 test images: seeded random ``H × W`` crops at full resolution (Liang et al. 2018).""",
    ),
    FolderSet(
        _odin(
            "lsun_resize",
            "LSUN (resize), ODIN release",
            "LSUN_resize.tar.gz",
            "278b7b31c8cb7e804a1465a8ce03a2dc",
            "moqh2wh8696c3yl",
        ),
        "resize",
        """LSUN (resize), ODIN's 10,000 test images downsampled to ``H × W`` (Liang et al. 2018).""",
    ),
    FolderSet(
        _odin(
            "tin_crop",
            "Tiny ImageNet (crop), ODIN release",
            "Imagenet.tar.gz",
            "7c0827e4246c3718a5ee076e999e52e5",
            "avgm2u562itwpkl",
        ),
        "random_crop",
        """Tiny ImageNet (crop), ODIN's 10,000 test images: seeded random ``H × W`` crops (Liang et al. 2018).""",
    ),
    FolderSet(
        _odin(
            "tin_resize",
            "Tiny ImageNet (resize), ODIN release",
            "Imagenet_resize.tar.gz",
            "0f9ff11d45babf2eff5fe12281d1ac31",
            "kp3my3412u5k9rl",
        ),
        "resize",
        """Tiny ImageNet (resize), ODIN's 10,000 test images downsampled to ``H × W`` (Liang et al. 2018).""",
    ),
    FolderSet(
        _odin("isun", "iSUN, ODIN release", "iSUN.tar.gz", "be77b0f2c26fda898afac5f99645ee70", "ssz7qxfqae0cca5"),
        "resize",
        """iSUN, ODIN's 8,925 images resized to ``H × W`` (Liang et al. 2018).""",
    ),
    FolderSet(
        Source(
            name="lsun_classroom",
            title="LSUN classroom",
            image_folder=True,
            manual=(
                "http://dl.yf.io/lsun/scenes/classroom_train_lmdb.zip (export the first 10,000 images of classroom_train "
                "to JPEG files with https://github.com/fyu/lsun, as Hein et al. did)"
            ),
        ),
        "resize",
        """LSUN classroom (Hein et al.: the first 10,000 ``classroom_train`` images), ``Resize((H, W))`` (W3's ``evaluation.py``).

    LSUN ships as an LMDB database; export the images to ``$RULAB_DATA/lsun_classroom/`` first (the missing-data
    error says how).
    """,
    ),
)
"""The image-folder OOD sets, one row each (registered below)."""

for _spec in FOLDER_SETS:
    register_folder_set(_spec)
