"""Add a new OOD detector in one file, register it, and use it.

The detector: **cosine to the nearest class mean** of the penultimate features (a simple feature-space score in the
spirit of Mahalanobis without the covariance). Adding a detector is three pieces, all below:

1. a pure score function (the math; takes tensors, returns ``[N]``, **higher = more in-distribution**);
2. a small class registered with ``@DETECTORS.register(name)``: ``requires`` says what it reads (``logits``,
   ``features`` or the ``model``), ``fit`` learns state from the TRAINING split, ``score`` returns confidences,
   ``grid`` (optional) lists hyperparameters tuned on validation-OOD data;
3. nothing else: ``rulab eval --detectors cosine_mean``, ``rulab.evaluate(..., detectors=["cosine_mean"])`` and the
   contract tests (``tests/detectors/test_contract.py`` runs over every registered detector) pick it up.

Run:  python examples/custom_detector.py [--tiny]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import rulab
from rulab.detectors import Detector, Extracted
from rulab.detectors.base import need
from rulab.registry import DATASETS, DETECTORS


def cosine_mean_score(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``max_c cos(h, μ_c)``: cosine similarity of each feature vector to its nearest class mean.

    Args:
        features: ``[N, D]`` penultimate features.
        means: ``[K, D]`` class means of the training features.

    Returns:
        ``[N]`` in [-1, 1]; higher = more in-distribution.
    """
    return (F.normalize(features.double(), dim=1) @ F.normalize(means.double(), dim=1).T).amax(dim=1)


@DETECTORS.register("cosine_mean", overwrite=True)  # overwrite: the example may be imported twice in a session
class CosineMean(Detector):
    """Cosine similarity to the nearest class mean of the training features."""

    requires = frozenset({"features"})

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> CosineMean:
        h = need(train, "features", self.name).double()
        k = int(train.labels.max()) + 1
        self.means = torch.stack([h[train.labels == c].mean(dim=0) for c in range(k)])
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.means is None:
            raise rulab.errors.RulabError("detector 'cosine_mean' is not fitted; call fit(train) first")
        return cosine_mean_score(need(ex, "features", self.name), self.means)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", default=os.environ.get("RULAB_EXAMPLE_TINY") == "1")
    args = p.parse_args()
    n_train, n_test, steps = (2000, 500, 60) if args.tiny else (20_000, 10_000, 600)

    train = DATASETS.create("fashion_mnist", split="train")
    test = DATASETS.create("fashion_mnist", split="test")
    torch.manual_seed(0)
    model = small_cnn()  # takes [0, 1] pixels: no mean/std needed below
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(n_train, (128,), generator=g)
        loss = F.cross_entropy(model(train.x[idx].float() / 255), train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    # 1. through the evaluation, next to built-in detectors
    table = rulab.evaluate(
        model,
        id_test=(test.x[:n_test], test.y[:n_test]),
        ood=["digits", "gaussian"],
        id_train=(train.x[:n_train], train.y[:n_train]),
        detectors=["msp", "mahalanobis", "cosine_mean"],
        n_ood=500,
        temperature=False,
    )
    print(table.summary())

    # 2. on your own arrays: the pure function with NumPy in, metrics from rulab.metrics
    from rulab.detectors.functional import numpy_compatible

    score = numpy_compatible(cosine_mean_score)
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 8))
    near = means[rng.integers(0, 3, 200)] + 0.3 * rng.normal(size=(200, 8))
    far = rng.normal(size=(200, 8))
    s_id, s_ood = score(near, means), score(far, means)
    print(
        f"toy features: AUROC {rulab.metrics.auroc(s_id, s_ood):.3f}, FPR95 {rulab.metrics.fpr95_id(s_id, s_ood):.3f} (scores are {type(s_id).__name__})"
    )


if __name__ == "__main__":
    main()
