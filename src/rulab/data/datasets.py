"""In-distribution datasets: ``DATASETS.create(name, split=..., root=None) -> TensorDataset``.

Every dataset goes through the source chain of :mod:`rulab.data.fetch` (cache → system directories → download,
MD5-checked) and is cached as tensors after the first parse. Images are ``uint8 [N, C, H, W]``, labels
``int64 [N]``, and ``classes`` holds the class names. ``root`` overrides the data cache ``$RULAB_DATA``
(default ``~/.cache/rulab``); the files of dataset ``name`` live in ``<root>/<name>/``.

| name | splits | shape | source |
|---|---|---|---|
| fashion_mnist | train 60,000 / test 10,000 | 1×28×28 | IDX ``.gz``; Debian ``dataset-fashion-mnist`` |
| mnist | train 60,000 / test 10,000 | 1×28×28 | IDX ``.gz`` |
| cifar10, cifar100 | train 50,000 / test 10,000 | 3×32×32 | CIFAR python batches (W1) |
| svhn | train 73,257 / test 26,032 / extra 531,131 | 3×32×32 | ``*_32x32.mat``, label 10 → 0 (W1's SVHN loader) |
| imagenet32 | train 1,281,167 / test (= val_data) 50,000 | 3×32×32 | downsampled ImageNet batches, labels 1..1000 → 0..999 (W1's ``imagenet_downsampled.py``) |
| imagenet64 | train 1,281,167 / test (= val_data) 50,000 | 3×64×64 | the same release at 64×64 (``Imagenet64_train_part1/2``, ``Imagenet64_val``), W1's Tiny ImageNet pre-training |
| pathmnist | train 89,996 / val 10,004 / test 7,180 | 3×28×28 | MedMNIST ``pathmnist.npz`` (W2) |
| tiny_imagenet | train 100,000 / test (= official val) 10,000 | 3×64×64 | ``tiny-imagenet-200.zip`` folders (W1) |
| oxford_pets | train (= trainval) 3,680 / test 3,669 | 3×size×size | images + annotations (W2) |

One concern, kept in one file (about 600 lines): the catalogue of in-distribution datasets. Each dataset is its
source declaration (files, archives, published MD5s, mirrors; the first half) and its parser plus registration (the
second half); the source chain, verification and tensor cache they use are in :mod:`rulab.data.fetch`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rulab.errors import ConfigError, DataError
from rulab.registry import DATASETS

from .fetch import (
    Archive,
    FoundFile,
    Prepared,
    RawFile,
    Source,
    dataset_root,
    declare,
    load_prepared,
    load_prepared_folder,
)
from .formats import (
    read_cifar_batch,
    read_cifar_meta,
    read_idx_images,
    read_imagenet32_batch,
    read_map_clsloc,
    read_medmnist_npz,
    read_svhn_mat,
)
from .tensors import TensorDataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "PATHMNIST_CLASSES",
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "imagenet32",
    "imagenet64",
    "tiny_imagenet_wnids",
    "DatasetFacts",
    "DATASET_FACTS",
    "pathmnist",
    "tiny_imagenet",
    "oxford_pets",
]

PathLike = str | os.PathLike[str]

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
PATHMNIST_CLASSES = [
    "adipose",
    "background",
    "debris",
    "lymphocytes",
    "mucus",
    "smooth muscle",
    "normal colon mucosa",
    "cancer-associated stroma",
    "colorectal adenocarcinoma epithelium",
]


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset is without reading it (for plans and cost estimates, ``rulab show``; data, not dispatch).

    Attributes:
        shape: ``(C, H, W)`` of its images (``H = W = size`` for a dataset whose factory takes ``size``).
        classes: number of classes.
        sizes: images per split as published.
    """

    shape: tuple[int, int, int]
    classes: int
    sizes: dict[str, int]


DATASET_FACTS: dict[str, DatasetFacts] = {
    "fashion_mnist": DatasetFacts((1, 28, 28), 10, {"train": 60_000, "test": 10_000}),
    "mnist": DatasetFacts((1, 28, 28), 10, {"train": 60_000, "test": 10_000}),
    "cifar10": DatasetFacts((3, 32, 32), 10, {"train": 50_000, "test": 10_000}),
    "cifar100": DatasetFacts((3, 32, 32), 100, {"train": 50_000, "test": 10_000}),
    "svhn": DatasetFacts((3, 32, 32), 10, {"train": 73_257, "test": 26_032, "extra": 531_131}),
    "imagenet32": DatasetFacts((3, 32, 32), 1000, {"train": 1_281_167, "test": 50_000}),
    "imagenet64": DatasetFacts((3, 64, 64), 1000, {"train": 1_281_167, "test": 50_000}),
    "pathmnist": DatasetFacts((3, 28, 28), 9, {"train": 89_996, "val": 10_004, "test": 7_180}),
    "tiny_imagenet": DatasetFacts((3, 64, 64), 200, {"train": 100_000, "test": 10_000}),
    "oxford_pets": DatasetFacts((3, 64, 64), 37, {"train": 3_680, "test": 3_669}),
}
"""The published split sizes, image shapes and class counts of the ID datasets (the table in the module docstring)."""


# ----------------------------------------------------------------------------------------------- sources
def _idx_files(
    urls: Sequence[str], md5: dict[str, str], content_md5: dict[str, str] | None = None
) -> tuple[RawFile, ...]:
    files = []
    for key in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        stem = f"{key}-idx{3 if key.endswith('images') else 1}-ubyte"
        inner = (content_md5[key],) if content_md5 else ()
        paths = (f"{stem}.gz", stem) if content_md5 else (f"{stem}.gz",)
        files.append(
            RawFile(key, paths, md5=(md5[key],), content_md5=inner, urls=tuple(u + f"{stem}.gz" for u in urls))
        )
    return tuple(files)


declare(
    Source(
        name="fashion_mnist",
        title="Fashion-MNIST",
        # torchvision's published .gz MD5s, and the MD5s of the decompressed IDX bytes (docs/guide/data.md)
        files=_idx_files(
            ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            {
                "train-images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            {
                "train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
                "t10k-images": "8181f5470baa50b63fa0f6fddb340f0a",
                "t10k-labels": "15d484375f8d13e6eb1aabb0c3f46965",
            },
        ),
        system_subdirs=("fashion-mnist",),
        apt_package="dataset-fashion-mnist",
    )
)

declare(
    Source(
        name="mnist",
        title="MNIST",
        files=_idx_files(
            ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
            {
                "train-images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels": "ec29112dd5afa0611ce80d1b7f02629c",
            },
        ),
        system_subdirs=("mnist",),
    )
)

declare(
    Source(
        name="cifar10",
        title="CIFAR-10",
        files=tuple(
            RawFile(k, (f"cifar-10-batches-py/{k}",), md5=(m,))
            for k, m in (
                ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                ("test_batch", "40351d587109b95175f43aff81a1287e"),
                ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
            )
        ),
        archives=(
            Archive(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            ),
        ),
        system_subdirs=("cifar10", "cifar-10"),
    )
)

declare(
    Source(
        name="cifar100",
        title="CIFAR-100",
        files=(
            RawFile("train", ("cifar-100-python/train",), md5=("16019d7e3df5f24257cddd939b257f8d",)),
            RawFile("test", ("cifar-100-python/test",), md5=("f0ef6b0ae62326f3e7ffdfab6717acfc",)),
            RawFile("meta", ("cifar-100-python/meta",), md5=("7973b15100ade9c7d40fb424638fde48",)),
        ),
        archives=(
            Archive(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
            ),
        ),
        system_subdirs=("cifar100", "cifar-100"),
    )
)

declare(
    Source(
        name="svhn",
        title="SVHN",
        files=tuple(
            RawFile(k, (f"{k}_32x32.mat",), md5=(m,), urls=(f"http://ufldl.stanford.edu/housenumbers/{k}_32x32.mat",))
            for k, m in (
                ("train", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                ("test", "eb5a983be6a315427106f1b164d9cef3"),
                ("extra", "a93ce644f1a588dc4d68dda5feec44a7"),
            )
        ),
        system_subdirs=("svhn",),
    )
)

_IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}" for i in range(1, 11))
declare(
    Source(
        name="imagenet32",
        title="Downsampled ImageNet 32x32",
        # no MD5 is published for these batches; they are read with the array-only unpickler (formats.safe_unpickle)
        files=tuple(
            RawFile(k, (f"{folder}/{k}", k, f"{folder}_npz/{k}.npz", f"{k}.npz"))
            for folder, keys in (("Imagenet32_train", _IMAGENET32_TRAIN), ("Imagenet32_val", ("val_data",)))
            for k in keys
        ),
        archives=(Archive("Imagenet32_train.zip", None), Archive("Imagenet32_val.zip", None)),
        system_subdirs=("imagenet32",),
        manual="https://image-net.org/download-images (Downsampled ImageNet 32x32 train and val; needs an ImageNet account)",
    )
)

_IMAGENET64_PART = {k: 1 if i <= 5 else 2 for i, k in enumerate(_IMAGENET32_TRAIN, 1)}
declare(
    Source(
        name="imagenet64",
        title="Downsampled ImageNet 64x64",
        # Chrabaszcz et al.'s 64x64 release: Imagenet64_train_part1.zip (batches 1-5), _part2.zip (6-10) and
        # Imagenet64_val.zip, each also as an _npz.zip; no MD5 is published, so the batches are read with the
        # array-only unpickler (formats.safe_unpickle) or np.load(allow_pickle=False)
        files=tuple(
            RawFile(k, (f"{folder}/{k}", f"Imagenet64_train/{k}", k, f"{folder}_npz/{k}.npz", f"{k}.npz"))
            for k, folder in ((k, f"Imagenet64_train_part{part}") for k, part in _IMAGENET64_PART.items())
        )
        + (
            RawFile(
                "val_data", ("Imagenet64_val/val_data", "val_data", "Imagenet64_val_npz/val_data.npz", "val_data.npz")
            ),
        ),
        archives=tuple(
            Archive(f"Imagenet64_{part}{suffix}.zip", None)
            for part in ("train_part1", "train_part2", "val")
            for suffix in ("", "_npz")
        ),
        system_subdirs=("imagenet64",),
        manual="https://image-net.org/download-images (Downsampled ImageNet 64x64 train parts 1-2 and val; needs an ImageNet account)",
    )
)

declare(
    Source(
        name="pathmnist",
        title="PathMNIST (MedMNIST v2)",
        files=(
            RawFile(
                "npz",
                ("pathmnist.npz",),
                md5=("a8b06965200029087d5bd730944a56c1",),
                urls=(
                    "https://zenodo.org/records/10519652/files/pathmnist.npz?download=1",
                    "https://zenodo.org/record/6496656/files/pathmnist.npz?download=1",
                ),
            ),
        ),
        system_subdirs=("medmnist", "pathmnist"),
    )
)

declare(
    Source(
        name="tiny_imagenet",
        title="Tiny ImageNet",
        archives=(
            Archive(
                "tiny-imagenet-200.zip",
                "90528d7ca1a48142e341f4ef8d21d0de",
                ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
            ),
        ),
        folders=("tiny-imagenet-200/train", "tiny-imagenet-200/val"),
        image_folder=True,
    )
)

declare(
    Source(
        name="oxford_pets",
        title="Oxford-IIIT Pets",
        archives=(
            Archive(
                "images.tar.gz",
                "5c4f3ee8e5d25df40f4fd59a7f44e54c",
                ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",),
                ("images",),
            ),
            Archive(
                "annotations.tar.gz",
                "95a8c909bbe2e81eed6a22bccdf3f68f",
                ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",),
                ("annotations",),
            ),
        ),
        folders=("images", "annotations"),
        image_folder=True,
    )
)


# ----------------------------------------------------------------------------------------------- helpers
def _check_split(name: str, split: str, valid: Sequence[str]) -> None:
    if split not in valid:
        raise ConfigError(f"dataset '{name}' has no split '{split}'; valid splits: {', '.join(valid)}")


def _dataset(name: str, split: str, prep: Prepared, classes: list[str] | None = None) -> TensorDataset:
    meta = dict(prep.meta)
    cls = classes if classes is not None else list(meta.pop("classes", []))
    meta.pop("classes", None)
    source = str(meta.pop("source", ""))
    return TensorDataset(prep.x, prep.y, cls, name, source, {"split": split, **meta})


def _labels_in_range(y: np.ndarray, k: int, path: Path | str) -> None:
    if y.size and (y.min() < 0 or y.max() >= k):
        raise DataError(
            f"{path} has labels from {int(y.min())} to {int(y.max())}, outside 0..{k - 1}; delete it and fetch it again"
        )


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- IDX
def _idx_dataset(name: str, split: str, root: PathLike | None, classes: list[str]) -> TensorDataset:
    _check_split(name, split, ("train", "test"))
    stem = "train" if split == "train" else "t10k"
    ik, lk = f"{stem}-images", f"{stem}-labels"

    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        x, y = read_idx_images(found[ik], found[lk])
        _labels_in_range(y, len(classes), found[lk].path)
        xt, yt = _tensors(x.copy(), y)
        return xt.unsqueeze(1), yt, {"classes": classes}

    return _dataset(name, split, load_prepared(name, split, (ik, lk), parse, root))


@DATASETS.register("fashion_mnist")
def fashion_mnist(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """Fashion-MNIST (Xiao et al. 2017): 28×28 grey clothing images, 10 classes; the CPU-scale default.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        root: data cache directory (default ``$RULAB_DATA`` or ``~/.cache/rulab``).

    Returns:
        ``x: uint8 [N, 1, 28, 28]``, ``y: int64 [N]``; ``source`` is ``"debian:dataset-fashion-mnist"`` when the
        Debian package supplied the files.
    """
    return _idx_dataset("fashion_mnist", split, root, FASHION_MNIST_CLASSES)


@DATASETS.register("mnist")
def mnist(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """MNIST handwritten digits: 28×28 grey, classes ``"0"``..``"9"``; ``split`` is ``"train"`` or ``"test"``."""
    return _idx_dataset("mnist", split, root, DIGIT_CLASSES)


# ----------------------------------------------------------------------------------------------- CIFAR
def _cifar_dataset(
    name: str, split: str, root: PathLike | None, batches: Sequence[str], meta_key: str, names_key: str
) -> TensorDataset:
    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        classes = read_cifar_meta(found[meta_key].data(), names_key, found[meta_key].path)
        xs, ys = [], []
        for k in batches:
            x, y = read_cifar_batch(found[k].data(), found[k].path)
            _labels_in_range(y, len(classes), found[k].path)
            xs.append(x)
            ys.append(y)
        xt, yt = _tensors(np.concatenate(xs), np.concatenate(ys))
        return xt, yt, {"classes": classes}

    return _dataset(name, split, load_prepared(name, split, (*batches, meta_key), parse, root))


@DATASETS.register("cifar10")
def cifar10(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """CIFAR-10: 32×32 colour, 10 classes; ``split`` is ``"train"`` (50,000) or ``"test"`` (10,000).

    Returns:
        ``x: uint8 [N, 3, 32, 32]``, ``y: int64 [N]``, class names from ``batches.meta``.
    """
    _check_split("cifar10", split, ("train", "test"))
    batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return _cifar_dataset("cifar10", split, root, batches, "batches.meta", "label_names")


@DATASETS.register("cifar100")
def cifar100(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """CIFAR-100 with the 100 fine labels; ``split`` is ``"train"`` (50,000) or ``"test"`` (10,000)."""
    _check_split("cifar100", split, ("train", "test"))
    return _cifar_dataset("cifar100", split, root, [split], "meta", "fine_label_names")


# ----------------------------------------------------------------------------------------------- SVHN
@DATASETS.register("svhn")
def svhn(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """SVHN cropped digits: 32×32 colour, classes ``"0"``..``"9"`` (the file's label 10 is digit 0).

    Args:
        split: ``"train"`` (73,257), ``"test"`` (26,032) or ``"extra"`` (531,131).
        root: data cache directory.
    """
    _check_split("svhn", split, ("train", "test", "extra"))

    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        x, y = read_svhn_mat(found[split].path)
        return (*_tensors(x, y), {"classes": DIGIT_CLASSES})

    return _dataset("svhn", split, load_prepared("svhn", split, (split,), parse, root))


svhn.SPLITS = ("train", "test", "extra")  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------- downsampled ImageNet
def _map_clsloc_path(root: PathLike | None, name: str) -> Path:
    """``map_clsloc.txt`` in the dataset's directory, else in the other downsampled-ImageNet directory."""
    base = dataset_root(root)
    for d in dict.fromkeys((name, "imagenet32", "imagenet64")):
        if (base / d / "map_clsloc.txt").is_file():
            return base / d / "map_clsloc.txt"
    return base / name / "map_clsloc.txt"


def _imagenet_classes(root: PathLike | None, name: str = "imagenet32") -> tuple[list[str], list[str]]:
    """``(names, wnids)`` per 0-based label from ``map_clsloc.txt`` (``n02119789 1 kit_fox``) when it is in the dataset
    directory, else ``"0"``..``"999"`` and no WordNet ids."""
    path = _map_clsloc_path(root, name)
    names = [str(i) for i in range(1000)]
    wnids: list[str] = []
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit() and 1 <= int(parts[1]) <= 1000:
                names[int(parts[1]) - 1] = parts[2]
        try:
            ids = read_map_clsloc(text, path)
        except DataError:
            return names, []
        wnids = [""] * 1000
        for wnid, i in ids.items():
            wnids[i - 1] = wnid
    return names, wnids


def tiny_imagenet_wnids(root: PathLike | None = None) -> list[str]:
    """The 200 WordNet ids of Tiny ImageNet, from ``tiny-imagenet-200/wnids.txt`` (else its ``train/`` folder names),
    without decoding any image; the folder is found or fetched through the source chain.

    Raises:
        DatasetMissingError: Tiny ImageNet is not available (the message says how to get it).
        DataError: the folder lists no WordNet ids.
    """
    from .fetch import ensure_folders

    directory, _ = ensure_folders("tiny_imagenet", root)
    base = directory / "tiny-imagenet-200"
    listing = base / "wnids.txt"
    if listing.is_file():
        wnids = [w.strip() for w in listing.read_text(encoding="utf-8").split() if w.strip()]
    else:
        wnids = sorted(p.name for p in (base / "train").iterdir() if p.is_dir() and p.name.startswith("n"))
    if not wnids:
        raise DataError(f"{base} lists no WordNet ids (wnids.txt or train/n*/); extract tiny-imagenet-200.zip again")
    return wnids


_WNID_SETS = {"tiny_imagenet": tiny_imagenet_wnids}
"""Datasets whose classes ``exclude_classes_of`` can drop from downsampled ImageNet, and where their WordNet ids come from."""


def _downsampled_imagenet(
    name: str,
    side: int,
    split: str,
    root: PathLike | None,
    keys: Sequence[str],
    exclude_classes: Sequence[int] | None,
    exclude_wnids: Sequence[str] | None,
    exclude_classes_of: str,
) -> TensorDataset:
    """Load one split of downsampled ImageNet at ``side`` pixels and drop the excluded classes (see :func:`imagenet64`)."""
    if exclude_classes_of and exclude_classes_of not in _WNID_SETS:
        raise ConfigError(f"exclude_classes_of names '{exclude_classes_of}'; valid choices: {', '.join(_WNID_SETS)}")

    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        # two passes, so that only the output and one batch are in memory at a time (a 64x64 batch is about 1.6 GB,
        # the whole training split 15.7 GB): the first counts the images, the second copies them into place
        sizes = [len(read_imagenet32_batch(found[k].data(), found[k].path, side=side)[1]) for k in keys]
        x = torch.empty((sum(sizes), 3, side, side), dtype=torch.uint8)
        y = torch.empty(sum(sizes), dtype=torch.int64)
        i = 0
        for k, n in zip(keys, sizes):
            px, py = read_imagenet32_batch(found[k].data(), found[k].path, side=side)
            _labels_in_range(py, 1000, found[k].path)
            if len(px) != n:
                raise DataError(f"{found[k].path} changed while it was read; read it again")
            x[i : i + n] = torch.from_numpy(px)
            y[i : i + n] = torch.from_numpy(py)
            i += n
        return x, y, {}

    prep = load_prepared(name, split, tuple(keys), parse, root)
    classes, wnids = _imagenet_classes(root, name)
    drop = {int(c) for c in exclude_classes or ()}
    wanted = list(exclude_wnids or ())
    if exclude_classes_of:
        wanted += _WNID_SETS[exclude_classes_of](root)
    if wanted:
        path = _map_clsloc_path(root, name)
        if not wnids:
            raise DataError(
                f"{path} is missing or malformed, but excluding classes by WordNet id needs it (ILSVRC devkit "
                "data/map_clsloc.txt, also shipped with the Imagenet32 scripts); copy it there"
            )
        index = {w: i for i, w in enumerate(wnids)}
        unknown = sorted(set(wanted) - set(index))
        if unknown:
            raise DataError(
                f"{len(unknown)} WordNet ids to exclude are not ImageNet-1k classes of {path}, e.g. {unknown[0]}; check the list"
            )
        drop |= {index[w] for w in wanted}
    if not drop:
        return _dataset(name, split, prep, classes)
    dropped = sorted(drop)
    if dropped[0] < 0 or dropped[-1] > 999:
        raise ConfigError(
            f"exclude_classes must be ImageNet class indices in 0..999, got {dropped[0] if dropped[0] < 0 else dropped[-1]}"
        )
    keep = [c for c in range(1000) if c not in drop]
    remap = torch.full((1000,), -1, dtype=torch.int64)
    remap[keep] = torch.arange(len(keep))
    mask = remap[prep.y] >= 0
    meta = {**prep.meta, "excluded_classes": dropped, "class_index": keep}
    if wanted:
        meta["excluded_wnids"] = sorted(set(wanted))
    if exclude_classes_of:
        meta["excluded_classes_of"] = exclude_classes_of
    return _dataset(name, split, Prepared(prep.x[mask], remap[prep.y[mask]], meta), [classes[c] for c in keep])


@DATASETS.register("imagenet32")
def imagenet32(
    split: str = "train",
    root: PathLike | None = None,
    exclude_classes: Sequence[int] | None = None,
    exclude_wnids: Sequence[str] | None = None,
    exclude_classes_of: str = "",
) -> TensorDataset:
    """Downsampled ImageNet 32×32 (Chrabaszcz et al. 2017), W1's pre-training set (docs/protocols/hendrycks2019.md).

    Args:
        split: ``"train"`` (``train_data_batch_1..10``) or ``"test"`` (``val_data``, the official validation set).
        root: data cache directory; put the extracted batches (or the two zips) in ``<root>/imagenet32/``, and
            optionally ``map_clsloc.txt`` for class names.
        exclude_classes: class indices (0..999, after the 1 → 0 shift) to drop, e.g. the classes that overlap
            CIFAR for W1's "ImageNet minus CIFAR" pre-training. The remaining labels are renumbered 0..K'-1 in
            increasing original order; ``meta["class_index"]`` maps new → original index.
        exclude_wnids: WordNet ids of classes to drop (needs ``map_clsloc.txt``).
        exclude_classes_of: drop the classes of this dataset by WordNet id (``"tiny_imagenet"``).

    Returns:
        ``x: uint8 [N, 3, 32, 32]``, ``y: int64 [N]``.
    """
    _check_split("imagenet32", split, ("train", "test"))
    keys = _IMAGENET32_TRAIN if split == "train" else ("val_data",)
    return _downsampled_imagenet(
        "imagenet32", 32, split, root, keys, exclude_classes, exclude_wnids, exclude_classes_of
    )


@DATASETS.register("imagenet64")
def imagenet64(
    split: str = "train",
    root: PathLike | None = None,
    exclude_classes: Sequence[int] | None = None,
    exclude_wnids: Sequence[str] | None = None,
    exclude_classes_of: str = "",
) -> TensorDataset:
    """Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017): W1's Tiny ImageNet pre-training set once the 200 Tiny
    ImageNet classes are dropped (``exclude_classes_of="tiny_imagenet"``; Hendrycks et al. 2019, Section 4.1).

    The release's ``Imagenet64_train_part1.zip`` (``train_data_batch_1..5``), ``Imagenet64_train_part2.zip`` (``6..10``)
    and ``Imagenet64_val.zip`` (``val_data``), or their ``_npz`` variants, go to ``<root>/imagenet64/`` (zips or
    extracted folders). Each batch holds ``data: uint8 [N, 12288]`` (channel-planar) and ``labels`` 1..1000 in the
    devkit order of ``map_clsloc.txt``. The whole training split is 15.7 GB of uint8 pixels in memory.

    Args:
        split: ``"train"`` (1,281,167 images) or ``"test"`` (``val_data``, 50,000).
        root: data cache directory.
        exclude_classes: 0-based class indices to drop (labels are then renumbered 0..K'-1 in increasing order;
            ``meta["class_index"]`` maps new → original index).
        exclude_wnids: WordNet ids of classes to drop; needs ``map_clsloc.txt`` (ILSVRC devkit) in
            ``<root>/imagenet64/`` or ``<root>/imagenet32/``.
        exclude_classes_of: drop every class of this dataset, by WordNet id: ``"tiny_imagenet"`` reads the 200 ids
            from ``tiny-imagenet-200/wnids.txt`` of the ``tiny_imagenet`` dataset (800 classes remain).

    Returns:
        ``x: uint8 [N, 3, 64, 64]``, ``y: int64 [N]``.
    """
    _check_split("imagenet64", split, ("train", "test"))
    keys = _IMAGENET32_TRAIN if split == "train" else ("val_data",)
    return _downsampled_imagenet(
        "imagenet64", 64, split, root, keys, exclude_classes, exclude_wnids, exclude_classes_of
    )


# ----------------------------------------------------------------------------------------------- MedMNIST
@DATASETS.register("pathmnist")
def pathmnist(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """PathMNIST (MedMNIST v2): 28×28 colour colon-pathology patches, 9 tissue classes (W2, report §5.1).

    Args:
        split: ``"train"`` (89,996), ``"val"`` (10,004) or ``"test"`` (7,180).
        root: data cache directory (the file is ``<root>/pathmnist/pathmnist.npz``).
    """
    _check_split("pathmnist", split, ("train", "val", "test"))

    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        x, y = read_medmnist_npz(found["npz"].path, split)
        _labels_in_range(y, len(PATHMNIST_CLASSES), found["npz"].path)
        return (*_tensors(x, y), {"classes": PATHMNIST_CLASSES})

    return _dataset("pathmnist", split, load_prepared("pathmnist", split, ("npz",), parse, root))


pathmnist.SPLITS = ("train", "val", "test")  # type: ignore[attr-defined]  # data.val_split=official reads "val"


# ----------------------------------------------------------------------------------------------- image folders
@DATASETS.register("tiny_imagenet")
def tiny_imagenet(split: str = "train", root: PathLike | None = None) -> TensorDataset:
    """Tiny ImageNet (200 classes, 64×64 colour) laid out as in the official ``tiny-imagenet-200.zip``.

    ``train`` reads ``train/<wnid>/images/*.JPEG``; ``test`` is the 10,000 official validation images
    ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (W1 tests on them, as OE's ``TinyImageNet`` scripts do).
    Labels follow ImageFolder's sorted-wnid order; ``classes`` are the first name in ``words.txt``.

    Args:
        split: ``"train"`` (100,000) or ``"test"`` (10,000).
        root: data cache directory (the folder is ``<root>/tiny_imagenet/tiny-imagenet-200/``).
    """
    from .folders import find_images, load_image_files

    _check_split("tiny_imagenet", split, ("train", "test"))

    def parse(directory: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        base = directory / "tiny-imagenet-200"
        files, labels, wnids, skipped = find_images(base / "train")  # skipped: the *_boxes.txt files
        if split == "test":
            skipped = 0
            index = {w: i for i, w in enumerate(wnids)}
            ann = base / "val" / "val_annotations.txt"
            if not ann.is_file():
                raise DataError(
                    f"{ann} is missing, so the validation images have no labels; extract tiny-imagenet-200.zip again"
                )
            files, labels = [], []
            for n, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split("\t")
                if not line.strip():
                    continue
                if len(parts) < 2 or parts[1] not in index:
                    raise DataError(
                        f"{ann} line {n} names an unknown class ('{line[:60]}'); extract tiny-imagenet-200.zip again"
                    )
                files.append(base / "val" / "images" / parts[0])
                labels.append(index[parts[1]])
        words = {}
        if (base / "words.txt").is_file():
            for line in (base / "words.txt").read_text(encoding="utf-8").splitlines():
                w, _, desc = line.partition("\t")
                words[w] = desc.split(",")[0].strip()
        x = load_image_files(files, (64, 64), "resize", 3)
        classes = [words.get(w, w) for w in wnids]
        return (
            x,
            torch.tensor(labels, dtype=torch.int64),
            {"classes": classes, "wnids": wnids, "skipped_files": skipped},
        )

    return _dataset("tiny_imagenet", split, load_prepared_folder("tiny_imagenet", split, parse, root, {"size": 64}))


@DATASETS.register("oxford_pets")
def oxford_pets(split: str = "train", root: PathLike | None = None, size: int = 64) -> TensorDataset:
    """Oxford-IIIT Pets: 37 cat and dog breeds, resized to ``size × size`` (W2, report §5.2).

    Images are ``images/<Breed>_<n>.jpg``; the splits are ``annotations/trainval.txt`` (``"train"``, 3,680) and
    ``annotations/test.txt`` (``"test"``, 3,669), lines ``<image> <class 1..37> <species> <breed id>``. Each image
    is scaled so its short side is ``size`` and centre-cropped (no aspect distortion). Class names are the breeds
    as torchvision writes them ("American Bulldog").

    Args:
        split: ``"train"`` or ``"test"``.
        root: data cache directory (``<root>/oxford_pets/images``, ``<root>/oxford_pets/annotations``).
        size: output side in pixels (default 64 for CPU; W2 used ImageNet-size inputs).
    """
    from .folders import load_image_files

    _check_split("oxford_pets", split, ("train", "test"))
    if int(size) < 1:
        raise ConfigError(f"oxford_pets size must be a positive number of pixels, got {size}")
    listing = "trainval.txt" if split == "train" else "test.txt"

    def parse(directory: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        ann = directory / "annotations" / listing
        if not ann.is_file():
            raise DataError(f"{ann} is missing; extract annotations.tar.gz into {directory}")
        files, labels, names = [], [], {}
        for n, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 37:
                raise DataError(
                    f"{ann} line {n} is not '<image> <class 1..37> ...' ('{line[:60]}'); extract annotations.tar.gz again"
                )
            label = int(parts[1]) - 1
            files.append(directory / "images" / f"{parts[0]}.jpg")
            labels.append(label)
            names[label] = " ".join(p.title() for p in parts[0].rsplit("_", 1)[0].split("_"))
        classes = [names.get(i, str(i)) for i in range(37)]
        x = load_image_files(files, (int(size), int(size)), "resize_crop", 3)
        return x, torch.tensor(labels, dtype=torch.int64), {"classes": classes}

    return _dataset(
        "oxford_pets",
        split,
        load_prepared_folder("oxford_pets", f"{split}-{int(size)}", parse, root, {"size": int(size)}),
    )
