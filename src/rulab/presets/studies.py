"""Registered studies (``STUDIES``): grids of presets × seeds that ``rulab study NAME`` runs end to end."""

from __future__ import annotations

from rulab.presets.study import Study
from rulab.registry import STUDIES

__all__ = ["fmnist_default"]


@STUDIES.register("fmnist-default")
def fmnist_default() -> Study:
    """The README's first command (``make study``): the CPU default on Fashion-MNIST.

    Plain cross-entropy, MixUp, outlier exposure, CEDA and ACET (W3), three seeds each, every evaluation: all
    detectors of ``EvalCfg`` on the ``fmnist`` benchmark, the ``fmnist-default`` shift suite (brightness and blur
    grids of W2 plus common corruptions at severities 1, 3, 5) and the far-away tests (alpha scaling,
    adversarial noise; W3 §3.3).
    """
    return Study(
        name="fmnist-default",
        presets=("fmnist-plain", "fmnist-mixup", "fmnist-oe", "fmnist-ceda", "fmnist-acet"),
        seeds=(0, 1, 2),
        overrides=("eval.benchmark=fmnist", "eval.shift=fmnist-default", "eval.farconf=true"),
        description="Fashion-MNIST, fastcnn: plain, MixUp, OE, CEDA, ACET x 3 seeds; OOD, calibration, shift and far-away tests",
        compare_to="fmnist-plain",
    )
