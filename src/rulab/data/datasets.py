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
    read_idx,
    read_imagenet32_batch,
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
        fi, fl = found[ik], found[lk]
        x, y = read_idx(fi.data(), fi.path), read_idx(fl.data(), fl.path)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(
                f"{fi.path} holds {x.dtype} data of shape {x.shape}, not uint8 images [N, H, W]; is it the right file?"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{fl.path} has {y.shape} labels for {len(x)} images in {fi.path}; delete both and fetch them again"
            )
        _labels_in_range(y, len(classes), fl.path)
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


# ----------------------------------------------------------------------------------------------- downsampled ImageNet
def _imagenet32_classes(root: PathLike | None) -> list[str]:
    """Names from ``map_clsloc.txt`` (``n02119789 1 kit_fox``) when it is in the dataset directory, else ``"0"``..``"999"``."""
    path = dataset_root(root) / "imagenet32" / "map_clsloc.txt"
    names = [str(i) for i in range(1000)]
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit() and 1 <= int(parts[1]) <= 1000:
                names[int(parts[1]) - 1] = parts[2]
    return names


@DATASETS.register("imagenet32")
def imagenet32(
    split: str = "train", root: PathLike | None = None, exclude_classes: Sequence[int] | None = None
) -> TensorDataset:
    """Downsampled ImageNet 32×32 (Chrabaszcz et al. 2017), W1's pre-training set (docs/protocols/hendrycks2019.md).

    Args:
        split: ``"train"`` (``train_data_batch_1..10``) or ``"test"`` (``val_data``, the official validation set).
        root: data cache directory; put the extracted batches (or the two zips) in ``<root>/imagenet32/``, and
            optionally ``map_clsloc.txt`` for class names.
        exclude_classes: class indices (0..999, after the 1 → 0 shift) to drop, e.g. the classes that overlap
            CIFAR for W1's "ImageNet minus CIFAR" pre-training. The remaining labels are renumbered 0..K'-1 in
            increasing original order; ``meta["class_index"]`` maps new → original index.

    Returns:
        ``x: uint8 [N, 3, 32, 32]``, ``y: int64 [N]``.
    """
    _check_split("imagenet32", split, ("train", "test"))
    keys = _IMAGENET32_TRAIN if split == "train" else ("val_data",)

    def parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        parts = [read_imagenet32_batch(found[k].data(), found[k].path) for k in keys]
        n = sum(len(p[0]) for p in parts)
        x = torch.empty((n, 3, 32, 32), dtype=torch.uint8)
        y = torch.empty(n, dtype=torch.int64)
        i = 0
        for px, py in parts:
            _labels_in_range(py, 1000, found[keys[0]].path)
            x[i : i + len(px)] = torch.from_numpy(px)
            y[i : i + len(px)] = torch.from_numpy(py)
            i += len(px)
        return x, y, {}

    prep = load_prepared("imagenet32", split, keys, parse, root)
    classes = _imagenet32_classes(root)
    if not exclude_classes:
        return _dataset("imagenet32", split, prep, classes)
    drop = sorted({int(c) for c in exclude_classes})
    if drop[0] < 0 or drop[-1] > 999:
        raise ConfigError(
            f"exclude_classes must be ImageNet class indices in 0..999, got {drop[0] if drop[0] < 0 else drop[-1]}"
        )
    keep = [c for c in range(1000) if c not in set(drop)]
    remap = torch.full((1000,), -1, dtype=torch.int64)
    remap[keep] = torch.arange(len(keep))
    mask = remap[prep.y] >= 0
    meta = {**prep.meta, "excluded_classes": drop, "class_index": keep}
    return _dataset("imagenet32", split, Prepared(prep.x[mask], remap[prep.y[mask]], meta), [classes[c] for c in keep])


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
