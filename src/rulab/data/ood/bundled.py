"""OOD sets offline on any machine: data shipped inside scikit-learn and scikit-image (``digits``, ``textures``,
``photos``), the latter cut into seeded random crops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rulab.data.ood.convert import LUMA, PathLike, check_ood_shape, ood_dataset, subset_index
from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError, RulabError
from rulab.registry import OOD_SETS

__all__ = ["CROP_SETS_DEFAULT_N", "TEXTURE_IMAGES", "PHOTO_IMAGES", "digits", "textures", "photos"]

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
    c, h, w = check_ood_shape(shape)
    sk = _need("sklearn.datasets", "scikit-learn")
    imgs = torch.from_numpy(sk.load_digits().images).float()  # [1797, 8, 8] in 0..16
    idx = subset_index(len(imgs), n, seed, "digits")
    if idx is not None:
        imgs = imgs[idx]
    up = F.interpolate(imgs.unsqueeze(1) * (255.0 / 16.0), size=(h, w), mode="bilinear", align_corners=False)
    x = up.round_().clamp_(0, 255).to(torch.uint8).expand(-1, c, -1, -1).contiguous()
    return ood_dataset(
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
    c, h, w = check_ood_shape(shape)
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
    return ood_dataset("textures", x, "bundled:scikit-image (skimage.data textures)", meta)


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
    return ood_dataset("photos", x, "bundled:scikit-image (skimage.data photographs)", meta)
