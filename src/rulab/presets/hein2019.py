"""W3 presets: Hein, Andriushchenko & Bitterwolf (CVPR 2019), "Why ReLU networks yield high-confidence predictions far
away from the training data and how to mitigate the problem" — plain training, CEDA and ACET (code
``max-andr/relu_networks_overconfident``; docs/protocols/hein2019.md).

``hein2019-<data>-{plain,ceda,acet}`` for ``<data>`` ∈ {mnist, svhn, cifar10, cifar100}, with the numbers of W3's README command and
``exps_paper/`` model names:

* models: ``lenet`` for MNIST, ``preact_resnet_hein`` (W3's ``resnet_small``) otherwise; raw [0, 1] inputs (no
  normalisation);
* SVHN / CIFAR: SGD with momentum 0.9 (not Nesterov), lr 0.1, batch 128, 100 epochs, lr ÷10 after 50%, 75% and 90%
  of the iterations; weight decay 1e-3 on weights and the FC bias only (``no_decay_norm``), the PyTorch equivalent
  of W3's ``5e-4 · Σ w²`` loss term (gradient ``2·5e-4·w``);
* MNIST: Adam with lr 1e-3, train.py's default — the paper's MNIST optimiser is [unverified]. rulab offers AdamW
  only, so the weight decay (1e-3) is decoupled, which is NOT W3's coupled L2 under Adam; the step schedule is W3's;
* augmentation: CIFAR crop 4 + flip, SVHN crop 4, MNIST crop 4 (pad 4, 28×28), no flips for digits;
* plain: ``at_frac = 0`` (ERM); CEDA: ``at_frac = 1``, ``frac_perm = 0.5``, low-pass σ ~ U[1, 2.5]; ACET: CEDA's noise
  moved by PGD, ε = 0.3, 40 steps of ε/40 = 0.0075 (W3's README);
* no validation split (W3 trains on the whole training set), so no temperature scaling.

Evaluation (W3's ``evaluation.py`` / ``analysis.py``): the ``<data>-hein`` benchmarks under the ``hein`` protocol (batches of 128 with drop_last), MSP;
MMC, AUROC and FPR@95 (``fpr95_id``) on the real OOD sets and W3's noise, plus adversarial noise and adversarial
samples (``farconf``: ε = 0.3, 80 PGD steps as in the README's evaluation command; up to 10,000 attacked images) and
α-scaling with 10,000 trials (the paper's Table 2). W3 evaluated PGD on noise with both 80 and 200 steps (which fed
the table is [unverified]), so the presets run both: ``eval.adv_noise_steps=[200]`` adds the rows ``adv_noise_200``
and ``adv_noise_uniform_200`` beside the 80-step ``adv_noise`` / ``adv_noise_uniform``. The step size of the
evaluation attack is [unverified] in W3; rulab's default is 2.5·ε/steps.

``hein2019-fmnist`` is the CPU counterpart: the ``fmnist-plain`` / ``fmnist-ceda`` / ``fmnist-acet`` presets (their
CPU-scale deviations are in :mod:`rulab.presets.fmnist`) at 3 epochs each, evaluated as W3 evaluates.
"""

from __future__ import annotations

from functools import partial

from rulab.config import AugmentCfg, DataCfg, EvalCfg, MethodCfg, ModelCfg, OptimCfg, RunCfg, TrainCfg
from rulab.presets.paper import PaperStudy, register_preset
from rulab.registry import STUDIES

__all__ = ["hein_config", "HEIN_METHODS", "HEIN_DATA"]

HEIN_METHODS: dict[str, MethodCfg] = {
    "plain": MethodCfg("erm"),
    "ceda": MethodCfg("ceda", {"at_frac": 1.0, "frac_perm": 0.5, "sigma_range": [1.0, 2.5]}),
    "acet": MethodCfg(
        "acet",
        {"at_frac": 1.0, "frac_perm": 0.5, "sigma_range": [1.0, 2.5], "eps": 0.3, "steps": 40, "step_size": 0.3 / 40},
    ),
}
"""W3's three training objectives (plain, CEDA, ACET), by preset suffix (data)."""

HEIN_DATA: dict[str, tuple[str, str, AugmentCfg]] = {
    "mnist": ("mnist", "lenet", AugmentCfg(hflip=0.0, crop_padding=4)),
    "svhn": ("svhn", "preact_resnet_hein", AugmentCfg(hflip=0.0, crop_padding=4)),
    "cifar10": ("cifar10", "preact_resnet_hein", AugmentCfg(hflip=0.5, crop_padding=4)),
    "cifar100": ("cifar100", "preact_resnet_hein", AugmentCfg(hflip=0.5, crop_padding=4)),
}
"""Per training set (data): the DATASETS name, the model and W3's augmentation."""


def hein_config(data: str, method: str) -> RunCfg:
    """The W3 run ``hein2019-<data>-<method>`` (module docstring)."""
    dataset, model, augment = HEIN_DATA[data]
    if data == "mnist":  # train.py's default optimiser (paper setting unverified)
        optim = OptimCfg(
            name="adamw",
            lr=1e-3,
            betas=(0.9, 0.999),
            nesterov=False,
            weight_decay=1e-3,
            no_decay_norm=True,
            schedule="step",
            milestones=(0.5, 0.75, 0.9),
            gamma=0.1,
            lr_floor=0.0,
        )
    else:
        optim = OptimCfg(
            name="sgd",
            lr=0.1,
            momentum=0.9,
            nesterov=False,
            weight_decay=1e-3,
            no_decay_norm=True,
            schedule="step",
            milestones=(0.5, 0.75, 0.9),
            gamma=0.1,
            lr_floor=0.0,
        )
    return RunCfg(
        name=f"hein2019-{data}-{method}",
        data=DataCfg(dataset=dataset, val_size=0, augment=augment),
        model=ModelCfg(model, {}),
        optim=optim,
        method=HEIN_METHODS[method],
        train=TrainCfg(epochs=100, batch_size=128),
        eval=EvalCfg(
            benchmark=f"{data}-hein",
            detectors=("msp",),
            shift="",
            farconf=True,
            temperature=False,
            alpha_trials=10_000,
            adv_eps=0.3,
            adv_steps=80,
            adv_noise_steps=(200,),
            adv_n=10_000,
        ),
    )


for _data in HEIN_DATA:
    for _method in HEIN_METHODS:
        register_preset(
            f"hein2019-{_data}-{_method}",
            partial(hein_config, _data, _method),
            f"W3 {_method} training on {_data} (Hein et al. 2019), evaluated on the {_data}-hein benchmark.",
        )


def _study(data: str) -> PaperStudy:
    presets = tuple(f"hein2019-{data}-{m}" for m in HEIN_METHODS)
    return PaperStudy(
        name=f"hein2019-{data}",
        presets=presets,
        compare_to=presets[0],
        description=f"W3 (Hein et al. 2019) on {data}: plain / CEDA / ACET; MMC, AUROC, FPR@95 on OOD sets, noise, adversarial noise and samples",
        paper_table="hein2019",
        paper_columns=tuple(zip(("Plain", "CEDA", "ACET"), presets)),
        paper_reference=data,
    )


@STUDIES.register("hein2019-mnist")
def hein2019_mnist() -> PaperStudy:
    """W3's MNIST models (LeNet): plain, CEDA, ACET, 3 seeds."""
    return _study("mnist")


@STUDIES.register("hein2019-svhn")
def hein2019_svhn() -> PaperStudy:
    """W3's SVHN models (resnet_small): plain, CEDA, ACET, 3 seeds."""
    return _study("svhn")


@STUDIES.register("hein2019-cifar10")
def hein2019_cifar10() -> PaperStudy:
    """W3's CIFAR-10 models (resnet_small): plain, CEDA, ACET, 3 seeds."""
    return _study("cifar10")


@STUDIES.register("hein2019-cifar100")
def hein2019_cifar100() -> PaperStudy:
    """W3's CIFAR-100 models (resnet_small): plain, CEDA, ACET, 3 seeds."""
    return _study("cifar100")


@STUDIES.register("hein2019-fmnist")
def hein2019_fmnist() -> PaperStudy:
    """W3 at CPU scale: ``fmnist-plain`` / ``fmnist-ceda`` / ``fmnist-acet`` (3 epochs each) evaluated as W3 evaluates:
    MSP under the ``hein`` protocol on the ``fmnist`` benchmark, adversarial noise and samples, α-scaling."""
    presets = ("fmnist-plain", "fmnist-ceda", "fmnist-acet")
    return PaperStudy(
        name="hein2019-fmnist",
        presets=presets,
        seeds=(0, 1, 2),
        overrides=(
            "train.epochs=3",
            "eval.benchmark=fmnist",
            "eval.protocol=hein",
            "eval.detectors=[msp]",
            "eval.shift=",
            "eval.farconf=true",
        ),
        compare_to=presets[0],
        description="W3 at CPU scale: Fashion-MNIST fastcnn plain / CEDA / ACET; MMC, AUROC, FPR@95, adversarial noise and samples, alpha-scaling",
        paper_table="hein2019",
        paper_columns=tuple(zip(("Plain", "CEDA", "ACET"), presets)),
    )
