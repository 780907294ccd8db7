"""OOD sets made of image folders under ``$RULAB_DATA/<name>/`` (DTD, Places365, the ODIN release's LSUN,
Tiny ImageNet and iSUN, LSUN classroom): one :class:`FolderSet` row each, decoded once and cached as tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rulab.data.fetch import Archive, Prepared, Source, declare, load_prepared_folder
from rulab.data.ood.convert import PathLike, check_ood_shape, ood_dataset, subset_index
from rulab.data.tensors import TensorDataset
from rulab.registry import OOD_SETS

__all__ = ["FolderSet", "FOLDER_SETS", "register_folder_set"]


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
    from rulab.data.folders import find_images, load_image_files

    c, h, w = check_ood_shape(shape)
    crop_seed = seed if mode == "random_crop" else 0
    key = f"ood-{c}x{h}x{w}-{mode}" + (f"-seed{seed}" if mode == "random_crop" else "")

    def parse(directory: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        files, _, _, skipped = find_images(directory)
        x = load_image_files(files, (h, w), mode, c, crop_seed)
        return x, torch.full((len(x),), -1, dtype=torch.int64), {"skipped_files": skipped, "n_images": len(files)}

    prep: Prepared = load_prepared_folder(name, key, parse, root, {"shape": [c, h, w], "mode": mode, "seed": crop_seed})
    idx = subset_index(len(prep.x), n, seed, name)
    x = prep.x if idx is None else prep.x[idx]
    meta = {
        "shape": [c, h, w],
        "n": len(x),
        "seed": seed,
        "mode": mode,
        **{k: v for k, v in prep.meta.items() if k != "source"},
    }
    return ood_dataset(name, x, str(prep.meta.get("source", "")), meta)


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
