"""OOD sets that are the test split of another in-distribution dataset (``mnist``, ``svhn``, ``cifar10``,
``cifar100``), read through the source chain and converted to the ID shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from rulab.data import datasets as _datasets  # noqa: F401  (registers the ID datasets the OOD sets reuse)
from rulab.data.ood.convert import PathLike, check_ood_shape, ood_dataset, subset_index, to_shape
from rulab.data.tensors import TensorDataset
from rulab.registry import DATASETS, OOD_SETS

__all__ = ["mnist", "svhn", "cifar10", "cifar100"]


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
