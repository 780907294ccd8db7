"""OOD sets that are the test split of another in-distribution dataset (``mnist``, ``fashion_mnist``, ``svhn``,
``cifar10``, ``cifar100``, and ``imagenet_minus``: downsampled-ImageNet validation images outside the CIFAR-10
classes), read through the source chain and converted to the ID shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from rulab.data import datasets as _datasets  # noqa: F401  (registers the ID datasets the OOD sets reuse)
from rulab.data.fetch import dataset_root
from rulab.data.imagenet_classes import cifar10_exclusion
from rulab.data.ood.convert import PathLike, check_ood_shape, ood_dataset, subset_index, to_shape
from rulab.data.tensors import TensorDataset
from rulab.registry import DATASETS, OOD_SETS

__all__ = ["mnist", "fashion_mnist", "svhn", "cifar10", "cifar100", "imagenet_minus", "IMAGENET_MINUS_N"]

IMAGENET_MINUS_N = 10_000
"""Images ``imagenet_minus`` returns when ``n`` is None: W3's 10,000 random images (Hein et al. 2019, Section 6)."""


def _from_dataset(
    name: str, dataset: str, shape: Sequence[int], n: int | None, seed: int, root: PathLike | None
) -> TensorDataset:
    ds = DATASETS.create(dataset, split="test", root=root)
    idx = subset_index(len(ds), n, seed, name)
    x = ds.x if idx is None else ds.x[idx]
    meta = {
        "shape": list(check_ood_shape(shape)),
        "n": len(x),
        "seed": seed,
        "from": f"{dataset} test split",
        "source_meta": ds.meta,
    }
    return ood_dataset(name, to_shape(x, shape), ds.source, meta)


# ----------------------------------------------------------------------------------------------- other ID datasets' test splits
@OOD_SETS.register("mnist")
def mnist(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The MNIST test set (10,000) through the source chain; a near OOD set for Fashion-MNIST."""
    return _from_dataset("mnist", "mnist", shape, n, seed, root)


@OOD_SETS.register("fashion_mnist")
def fashion_mnist(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """The Fashion-MNIST test set (10,000): one of W3's OOD sets for MNIST (Hein et al. 2019, Section 6)."""
    return _from_dataset("fashion_mnist", "fashion_mnist", shape, n, seed, root)


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


@OOD_SETS.register("imagenet_minus")
def imagenet_minus(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """W3's "ImageNet−" (Hein et al. 2019, Section 6): ImageNet validation images of the classes outside CIFAR-10.

    Built from downsampled ImageNet 32×32's validation split (the ``imagenet32`` dataset, ``val_data``; through the
    source chain, which needs an ImageNet account to download it) without the 219 classes of
    :data:`rulab.data.imagenet_classes.CIFAR10_IMAGENET_CLASSES`, numbered through ``map_clsloc.txt`` in the same
    directory; ``n=None`` gives W3's 10,000, a seeded random subset (W3's was an unseeded permutation). W3 removed
    147 classes (853 kept) from full-resolution validation images; its list is not published
    (docs/protocols/hein2019.md).
    """
    drop = cifar10_exclusion(dataset_root(root) / "imagenet32" / "map_clsloc.txt")
    ds = DATASETS.create("imagenet32", split="test", root=root, exclude_classes=drop)
    idx = subset_index(len(ds), min(IMAGENET_MINUS_N, len(ds)) if n is None else n, seed, "imagenet_minus")
    x = ds.x if idx is None else ds.x[idx]
    meta = {
        "shape": list(check_ood_shape(shape)),
        "n": len(x),
        "seed": seed,
        "from": "imagenet32 test split (ILSVRC-2012 validation) without the CIFAR-10 classes",
        "excluded_classes": len(drop),
        "source_meta": {k: v for k, v in ds.meta.items() if k not in ("class_index", "excluded_classes")},
    }
    return ood_dataset("imagenet_minus", to_shape(x, shape), ds.source, meta)


imagenet_minus.data_source = "imagenet32"  # type: ignore[attr-defined]  # what `rulab data fetch imagenet_minus` fetches
