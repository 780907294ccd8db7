"""EMNIST letters (Cohen et al. 2017), one of W3's OOD sets for MNIST (Hein et al. 2019, Section 6), through the
source chain: the official ``gzip.zip`` of NIST (checked against its MD5), whose ``gzip/`` folder holds the IDX files.

EMNIST stores every image transposed (column-major) relative to MNIST; the set is transposed back so that letters
stand upright, as W3 did ("EMNIST-letters (transposed)").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rulab.data.fetch import Archive, FoundFile, RawFile, Source, declare, load_prepared
from rulab.data.formats import read_idx_images
from rulab.data.ood.convert import PathLike, check_ood_shape, ood_dataset, subset_index, to_shape
from rulab.data.tensors import TensorDataset
from rulab.registry import OOD_SETS

__all__ = ["EMNIST_SOURCE", "emnist"]

_STEMS = {
    "letters-test-images": "emnist-letters-test-images-idx3-ubyte",
    "letters-test-labels": "emnist-letters-test-labels-idx1-ubyte",
}

EMNIST_SOURCE = declare(
    Source(
        name="emnist",
        title="EMNIST",
        # NIST publishes no per-file checksums; the archive's MD5 is the one torchvision checks
        files=tuple(RawFile(key, (f"gzip/{stem}.gz", f"{stem}.gz", stem)) for key, stem in _STEMS.items()),
        archives=(
            Archive(
                "gzip.zip",
                "58c8d27c78d21e728a6bc7b3cc06412e",
                ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
            ),
        ),
        system_subdirs=("emnist",),
    )
)
"""The EMNIST source: the letters test split's IDX files, from NIST's ``gzip.zip`` (535 MB, every EMNIST split)."""


def _parse(found: dict[str, FoundFile]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    x, y = read_idx_images(found["letters-test-images"], found["letters-test-labels"])
    upright = np.ascontiguousarray(x.transpose(0, 2, 1))  # EMNIST is stored transposed
    return torch.from_numpy(upright).unsqueeze(1), torch.from_numpy(y.astype(np.int64)), {"transposed": True}


@OOD_SETS.register("emnist")
def emnist(
    shape: tuple[int, int, int], n: int | None = None, seed: int = 0, root: PathLike | None = None
) -> TensorDataset:
    """EMNIST letters, the test split (20,800 handwritten letters, 28×28 grey), upright: an OOD set for MNIST
    (Hein et al. 2019, Section 6)."""
    prep = load_prepared("emnist", "letters-test", tuple(_STEMS), _parse, root)
    idx = subset_index(len(prep.x), n, seed, "emnist")
    x = prep.x if idx is None else prep.x[idx]
    meta = {
        "shape": list(check_ood_shape(shape)),
        "n": len(x),
        "seed": seed,
        "from": "EMNIST letters test split, transposed upright",
    }
    return ood_dataset("emnist", to_shape(x, shape), str(prep.meta.get("source", "")), meta)
