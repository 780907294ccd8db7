"""Registered studies (``STUDIES``): grids of presets × seeds that ``rulab study NAME`` runs end to end."""

from __future__ import annotations

from rulab.presets.study_spec import Study
from rulab.registry import STUDIES

__all__ = ["fmnist_default", "fmnist_uncertainty", "STUDY_EPOCHS", "MC_PASSES"]

STUDY_EPOCHS = 2
"""Training epochs of every cell of ``fmnist-default`` (2 × 55,000 images; 90.8% test accuracy for plain training,
mean of 3 seeds; docs/results.md)."""


@STUDIES.register("fmnist-default")
def fmnist_default() -> Study:
    """The README's first command (``make study``): the CPU default on Fashion-MNIST.

    Plain cross-entropy, MixUp, outlier exposure, CEDA and ACET (W3), three seeds each, every evaluation: all
    detectors of ``EvalCfg`` on the ``fmnist`` benchmark, the ``fmnist-default`` shift suite (brightness and blur
    grids of W2 plus common corruptions at severities 1, 3, 5) and the far-away tests (alpha scaling,
    adversarial noise and samples; W3). Each method's three seeds are then also evaluated as one deep ensemble
    (Lakshminarayanan et al. 2017; a run of its own, ``<preset>+ensemble``), so the report compares every method
    with its ensemble (``rulab study fmnist-default --no-ensemble`` leaves them out).

    Two settings differ from the presets run alone, both for the study's time budget on 2 CPU cores
    (docs/performance.md):

    * every method trains :data:`STUDY_EPOCHS` (2) epochs, plain cross-entropy included (``fmnist-plain`` alone trains
      5, the method presets 3), so the methods are compared at equal training length and the 15 runs with every
      evaluation fit in 20 minutes (rulab 0.1: 14 min 35 s, 44% of it training). The 95% intervals and the five
      ensembles added since make it 31 min on the same 2 cores on a slower day (docs/performance.md);
    * ODIN tunes (T, ε) on the ``coarse`` grid (4 temperatures × 5 step sizes spanning the paper's ranges) rather
      than the paper's 10 × 21 (:data:`rulab.detectors.odin.ODIN_GRIDS`), 24× cheaper; the ODIN paper presets
      keep the paper's grid.
    """
    return Study(
        name="fmnist-default",
        presets=("fmnist-plain", "fmnist-mixup", "fmnist-oe", "fmnist-ceda", "fmnist-acet"),
        seeds=(0, 1, 2),
        overrides=(
            f"train.epochs={STUDY_EPOCHS}",
            "eval.benchmark=fmnist",
            "eval.shift=fmnist-default",
            "eval.farconf=true",
            "eval.detector_kwargs.odin.search=coarse",
        ),
        description="Fashion-MNIST, fastcnn: plain, MixUp, OE, CEDA, ACET x 3 seeds; OOD, calibration, shift and far-away tests",
        compare_to="fmnist-plain",
        ensemble=True,
    )


MC_PASSES = 20
"""MC-dropout passes of ``fmnist-uncertainty``: the dropout sits before fastcnn's head, so the passes re-run only the
linear head (features once) and 20 cost little more than one forward pass."""


@STUDIES.register("fmnist-uncertainty")
def fmnist_uncertainty() -> Study:
    """The uncertainty baselines at CPU scale (docs/uncertainty.md): plain training and training with dropout, three
    seeds each, with the settings of ``fmnist-default`` (the plain cells are the same runs, by config hash), every
    evaluation, and the two averaged predictives:

    * each preset's three seeds as one **deep ensemble** (Lakshminarayanan et al. 2017), a run of its own;
    * every ``fmnist-dropout`` seed with **MC dropout** over :data:`MC_PASSES` passes (Gal & Ghahramani 2016), a run of
      its own per seed (so MC dropout gets intervals over seeds; an ensemble of three seeds is one number).
    """
    base = STUDIES.create("fmnist-default")
    return Study(
        name="fmnist-uncertainty",
        presets=("fmnist-plain", "fmnist-dropout"),
        seeds=(0, 1, 2),
        overrides=base.overrides,
        description="Fashion-MNIST, fastcnn: plain and dropout x 3 seeds, deep ensembles of the seeds, MC dropout (20 passes)",
        compare_to="fmnist-plain",
        ensemble=True,
        mc_dropout=MC_PASSES,
    )
