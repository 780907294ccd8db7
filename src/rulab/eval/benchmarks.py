"""Evaluation benchmarks as data (style-anchors.md §16): which ID test set, which OOD sets, which validation-OOD
sets may be used to tune detector hyperparameters, and the protocol.

The validation-OOD sets are never test sets (checked when a benchmark is built), so tuned detectors such as ODIN
are not tuned on what they are tested on (a leak users of OpenOOD and the ODIN code have reported).
"""

from __future__ import annotations

from dataclasses import dataclass

from rulab.registry import BENCHMARKS

__all__ = ["Benchmark"]


@dataclass(frozen=True)
class Benchmark:
    """An evaluation protocol for one ID dataset.

    Attributes:
        name: registry name.
        id_dataset: the DATASETS entry whose ``test`` split is the ID test set.
        ood: test OOD sets (OOD_SETS entries), in report order.
        val_ood: OOD sets used only to tune detector hyperparameters (disjoint from ``ood``).
        protocol: PROTOCOLS entry deciding subsampling and repetitions (``full``, ``hendrycks``, ``odin``, ``hein``).
        n_ood: images generated/loaded per test OOD set (before the protocol subsamples).
        n_val_id, n_val_ood: validation ID (from the run's held-out split) and validation-OOD images for tuning.
        near, far: which of ``ood`` are near / far OOD (for report grouping).
        shift: the default shift suite.
    """

    name: str
    id_dataset: str
    ood: tuple[str, ...]
    val_ood: tuple[str, ...]
    protocol: str = "full"
    n_ood: int = 2000
    n_val_id: int = 1000
    n_val_ood: int = 1000
    near: tuple[str, ...] = ()
    far: tuple[str, ...] = ()
    shift: str = ""

    def __post_init__(self) -> None:
        leak = set(self.ood) & set(self.val_ood)
        if leak:
            raise ValueError(f"benchmark '{self.name}' tunes on its test OOD set(s) {sorted(leak)}; validation-OOD sets must differ from test sets")
        unknown = set(self.near + self.far) - set(self.ood)
        if unknown:
            raise ValueError(f"benchmark '{self.name}' groups {sorted(unknown)} as near/far but does not test them")


@BENCHMARKS.register("fmnist")
def fmnist() -> Benchmark:
    """The CPU default: Fashion-MNIST against real and synthetic OOD sets that are all available offline.

    Test OOD: scikit-learn's digits (upsampled, near), scikit-image textures (far) and the noise families of W1
    (Gaussian, Rademacher, Blobs), W3/W4 (uniform) and W3 (low-pass filtered permuted/uniform noise built from the
    test images). Validation OOD (tuning only): scikit-image photographs cut into crops.
    """
    return Benchmark(
        name="fmnist",
        id_dataset="fashion_mnist",
        ood=("digits", "textures", "gaussian", "uniform", "rademacher", "blobs", "hein"),
        val_ood=("photos",),
        protocol="full",
        n_ood=2000,
        near=("digits",),
        far=("textures", "gaussian", "uniform", "rademacher", "blobs", "hein"),
        shift="fmnist-default",
    )
