"""SHE: simplified Hopfield energy (Zhang, Fu, Chen, Du, Li, Wang, Liu, Han & Zhang, ICLR 2023, "Out-of-distribution
detection based on in-distribution data patterns memorization with modern Hopfield energy", OpenReview KkazG4lgKL).

The paper's method section stores one pattern per class, the mean penultimate feature of the TRAINING images of
that class that the network classifies correctly,

    S_c = mean{ h(x_i) : y_i = c, argmax f(x_i) = c },

and scores a test image by the inner product of its features with the pattern of its predicted class,

    s(x) = h(x)ᵀ S_ŷ,   ŷ = argmax_k f_k(x)

(the simplified Hopfield energy with inner-product similarity; OpenOOD's ``she_postprocessor.py`` ``inner_product``).
No hyperparameters. A class the network never classifies correctly on the training split (an undertrained model)
stores the mean of all its training images instead.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["she_patterns", "she_score", "SHE"]


def she_patterns(
    features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, num_classes: int, fallback: bool = False
) -> torch.Tensor:
    """``S [C, D]`` (float64): per class, the mean feature of its correctly classified training images.

    Args:
        features: ``[N, D]`` training features.
        logits: ``[N, C]`` their logits (the prediction is ``argmax``).
        labels: ``[N]`` true classes.
        num_classes: C.
        fallback: a class without a correctly classified image takes the mean of all its images (else an error).

    Raises:
        InputError: a class has no correctly classified training image (and ``fallback`` is off), or no image.
    """
    correct = logits.argmax(dim=1) == labels
    if fallback:
        correct |= (torch.bincount(labels[correct], minlength=num_classes) == 0).to(labels.device)[labels]
    z, y = features[correct].to(torch.float64), labels[correct]
    counts = torch.bincount(y, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise InputError(
            f"SHE stores the mean feature of each class's correctly classified training images, but classes {missing} "
            "have none; fit on the run's training split of a trained model"
        )
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device).index_add_(0, y, z)
    return sums / counts.unsqueeze(1).to(torch.float64)


def she_score(features: torch.Tensor, logits: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """``h · S_ŷ`` with ``ŷ = argmax logits``.

    Args:
        features: ``[B, D]``.
        logits: ``[B, C]``.
        patterns: ``[C, D]`` from :func:`she_patterns`.

    Returns:
        ``[B]`` in the features' dtype; higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    s = patterns.to(device=features.device, dtype=dtype)[logits.argmax(dim=1).to(features.device)]
    return (features.to(dtype) * s).sum(dim=1)


@DETECTORS.register("she")
class SHE(Detector):
    """Inner product of the features with the stored pattern (mean correctly classified training feature) of the
    predicted class (Zhang et al. 2023, ICLR, method section; OpenReview KkazG4lgKL)."""

    requires = frozenset({"logits", "features"})
    formula = "`hᵀ S_ŷ`, `S_c` the mean feature of class c's correctly classified training images"
    fits_on = "training features (correctly classified)"
    paper = "Zhang et al. 2023, ICLR (OpenReview KkazG4lgKL)"

    def __init__(self) -> None:
        self.patterns: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> SHE:
        z = need(train, "features", self.name)
        self.patterns = she_patterns(z, train.logits, train.labels, train.num_classes, fallback=True)
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.patterns is None:
            raise RulabError("detector 'she' is not fitted; call fit(train) on the training split first")
        return she_score(need(ex, "features", self.name), ex.logits, self.patterns)
