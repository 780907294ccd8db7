"""Image folders → ``uint8 [N, C, H, W]`` tensors, with the crop/resize protocols of the OOD benchmarks.

``load_image_folder`` follows torchvision's ``ImageFolder``: each sub-directory of ``root`` is a class (sorted
names → labels 0..K-1) and every image below it, at any depth, belongs to it. A folder holding images but no
class sub-directories is one class named after the folder (the ODIN / iSUN archives are laid out like that).
Files whose extension is not an image extension are skipped and counted; a file with an image extension that
PIL cannot decode raises :class:`rulab.errors.DataError` naming it.

Preprocessing modes (PIL, bilinear with PIL's antialiasing, as torchvision's ``Resize`` on PIL images):
    * ``"resize_crop"``: scale so the image covers ``H × W`` (the short side becomes ``H`` for a square target),
      then centre-crop: ``Resize(32) + CenterCrop(32)``, the DTD / Places365 / LSUN protocol of W1's ``test.py``.
    * ``"resize"``: scale to exactly ``H × W``, ignoring the aspect ratio: ODIN's "resize" sets and iSUN
      (Liang et al. 2018) and Hein's ``Resize((32, 32))`` LSUN classroom (W3's ``evaluation.py``).
    * ``"crop"``: centre ``H × W`` patch at full resolution (zero padding where the image is smaller).
    * ``"random_crop"``: a seeded random ``H × W`` patch at full resolution (ODIN's "crop" sets, Liang et al. 2018).

Channels: ``1`` converts with PIL's ``convert("L")`` (ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B), ``3``
with ``convert("RGB")`` (grey images are replicated).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rulab.errors import ConfigError, DataError, RulabError

__all__ = ["IMAGE_EXTENSIONS", "MODES", "FolderImages", "find_images", "load_image_files", "load_image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
"""Extensions treated as images (case-insensitive), as torchvision's ``IMG_EXTENSIONS`` plus ``.gif``."""
MODES: tuple[str, ...] = ("resize_crop", "resize", "crop", "random_crop")


class FolderImages(NamedTuple):
    """Decoded images of a folder.

    Attributes:
        x: images, ``uint8 [N, C, H, W]``.
        y: labels, ``int64 [N]`` (index into ``classes``).
        classes: class names (sub-directory names, sorted).
        files: the decoded files, in the order of ``x``.
        skipped: number of files skipped because they are not images.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    files: list[Path]
    skipped: int


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(top: Path) -> tuple[list[Path], int]:
    files, skipped = [], 0
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            if _is_image(f):
                files.append(Path(dirpath) / f)
            else:
                skipped += 1
    return files, skipped


def find_images(root: str | os.PathLike[str]) -> tuple[list[Path], list[int], list[str], int]:
    """List the images of an ImageFolder tree.

    Returns:
        ``(files, labels, classes, skipped)``: sorted image paths, their class indices, the sorted class names and
        the number of non-image files skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; create it or point the dataset root elsewhere")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    skipped = 0
    for d in class_dirs:
        fs, sk = _walk(d)
        skipped += sk
        if fs:
            labels += [len(classes)] * len(fs)
            classes.append(d.name)
            files += fs
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    loose_images = sorted(p for p in loose if _is_image(p.name))
    if loose_images and not classes:  # a flat folder of images: one class named after the folder
        files, labels, classes = loose_images, [0] * len(loose_images), [root.name]
        skipped += len(loose) - len(loose_images)
    else:  # ImageFolder ignores files beside the class folders
        skipped += len(loose)
    if not files:
        raise DataError(
            f"image folder {root} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)}); put the images in it or in class sub-folders"
        )
    return files, labels, classes, skipped


def _fit(img: object, size: tuple[int, int], mode: str, rng: np.random.Generator | None) -> object:
    """Apply the preprocessing ``mode`` to a PIL image; returns a PIL image of ``size = (H, W)``."""
    from PIL import Image

    h, w = size
    iw, ih = img.size  # type: ignore[attr-defined]
    if mode == "resize":
        return img.resize((w, h), Image.Resampling.BILINEAR) if (iw, ih) != (w, h) else img  # type: ignore[attr-defined]
    if mode == "resize_crop":
        # torchvision Resize(short side) + CenterCrop: the limiting side becomes exact, the other is truncated
        if h / ih >= w / iw:
            nh, nw = h, max(w, int(h * iw / ih))
        else:
            nh, nw = max(h, int(w * ih / iw)), w
        if (nw, nh) != (iw, ih):
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)  # type: ignore[attr-defined]
        left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
        return img.crop((left, top, left + w, top + h))  # type: ignore[attr-defined]
    if mode == "crop":
        left, top = int(round((iw - w) / 2.0)), int(round((ih - h) / 2.0))
    else:  # random_crop
        assert rng is not None
        left = int(rng.integers(0, iw - w + 1)) if iw > w else -((w - iw) // 2)
        top = int(rng.integers(0, ih - h + 1)) if ih > h else -((h - ih) // 2)
    # PIL pads with zeros outside the image, like torchvision's CenterCrop
    return img.crop((left, top, left + w, top + h))  # type: ignore[attr-defined]


def load_image_files(
    files: Sequence[str | os.PathLike[str]],
    size: tuple[int, int],
    mode: str = "resize_crop",
    channels: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Decode and preprocess image files.

    Args:
        files: image paths.
        size: ``(H, W)`` of the output.
        mode: one of :data:`MODES` (see the module docstring).
        channels: 1 (ITU-R 601-2 luma) or 3 (RGB).
        seed: seeds the crop positions of ``"random_crop"`` (image ``i`` gets the ``i``-th draw).
        progress: show a progress bar on a terminal.

    Returns:
        ``uint8 [N, channels, H, W]``.

    Raises:
        DataError: a file cannot be decoded (the message names it).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown image-folder mode '{mode}'; valid modes: {', '.join(MODES)}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ConfigError(f"image size must be positive, got {tuple(size)}")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise RulabError("reading image folders needs Pillow; install it with: pip install pillow") from None
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed) if mode == "random_crop" else None
    out = np.empty((len(files), h, w, channels), dtype=np.uint8)
    pil_mode = "L" if channels == 1 else "RGB"
    for i, f in enumerate(
        tqdm(files, desc="decoding images", unit="img", disable=None if progress else True, leave=False)
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    im.load()
                    img = im.convert(pil_mode)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(
                f"{f} is not a readable image ({type(err).__name__}: {err}); delete or replace the file"
            ) from None
        arr = np.asarray(_fit(img, (h, w), mode, rng), dtype=np.uint8)
        out[i] = arr.reshape(h, w, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_image_folder(
    root: str | os.PathLike[str],
    size: tuple[int, int],
    mode: str = "resize_crop",
    channels: int = 3,
    limit: int | None = None,
    seed: int = 0,
) -> FolderImages:
    """Load an ImageFolder tree as tensors (see the module docstring for the layout and modes).

    Args:
        root: the folder.
        size: ``(H, W)`` of the output.
        mode: ``"resize_crop"``, ``"resize"``, ``"crop"`` or ``"random_crop"``.
        channels: 1 or 3.
        limit: decode at most this many images, a seeded random subset (kept in folder order); ``None`` = all.
        seed: seeds the subset and the random crops.

    Returns:
        :class:`FolderImages` with ``x: uint8 [N, C, H, W]`` and ``y: int64 [N]``.
    """
    files, labels, classes, skipped = find_images(root)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be a positive number of images or None, got {limit}")
        if limit < len(files):
            g = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(files), generator=g)[:limit].sort().values.tolist()
            files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    x = load_image_files(files, size, mode, channels, seed)
    return FolderImages(x, torch.tensor(labels, dtype=torch.int64), classes, files, skipped)
