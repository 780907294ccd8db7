"""W1 presets: Hendrycks, Lee & Mazeika (ICML 2019), "Using Pre-Training Can Improve Model Robustness and Uncertainty".

Every number below is from the hendrycks/pre-training code (file by file in docs/protocols/hendrycks2019.md); the
tests read them back from the resolved configs (``tests/presets/test_paper_hparams.py``).

========================================  ====================================================================
``hendrycks2019-cifar10`` (-cifar100)     "Normal": WRN-40-2, dropout 0.3, 100 epochs, SGD Nesterov 0.9, lr 0.1,
                                          weight decay 5e-4, batch 128, cosine per iteration to 1e-6,
                                          mean = std = 0.5, crop 4 + flip (``uncertainty/CIFAR/baseline.py``);
                                          all 50,000 images, last batch kept (``drop_last=False``)
``hendrycks2019-*-calibration``           the same with W1's calibration split held out (``--calibration``)
``hendrycks2019-tinyimagenet``            the same at 64×64 with crop 8 + flip, 200 classes
``hendrycks2019-cifar10-pretrain``        downsampled ImageNet 32×32, 1,000 classes, 100 epochs, lr 0.1, batch
(``-cifar100-pretrain``)                  256, dropout 0 (``downsampled_train/baseline.py``); identical
                                          configs under two names
``hendrycks2019-tinyimagenet-pretrain``   downsampled ImageNet 64×64 without the 200 Tiny ImageNet classes (by
                                          WordNet id), 800 classes, the 32×32 recipe with crop 8 [unverified]
``hendrycks2019-cifar10-pretrain-         the leakage control: ImageNet without the classes of CIFAR-10
nocifar``                                 (:data:`CIFAR10_IMAGENET_CLASSES`, resolved with ``map_clsloc.txt``)
``hendrycks2019-*-finetune``              "Pre-Train": a new head with PyTorch's default initialisation, all
                                          layers trained, lr 0.001, 10 epochs (Tiny ImageNet 20 [unverified
                                          lr]), dropout 0, same cosine rule (``tune.py``)
``hendrycks2019-*-parity``                the same with ``parity=True``: scheduler stepped before the optimizer,
                                          calibration with the top adaptive bin dropped and T = 1 only
                                          (``utils/calibration_tools.py``, ``test_calibration.py``), and W1's
                                          ``get_measures`` (closest-recall FPR95, ``display_results.py``)
``hendrycks2019-adv-*``                   the adversarial part (Table 2): WRN-28-10 normal / PGD-10 adversarial
                                          training / adversarial ImageNet 32×32 pre-training → 5 epochs of
                                          adversarial tuning; clean and PGD-20 accuracy (``robustness/adversarial/``)
========================================  ====================================================================

W1 trained its OOD models on every training image (CIFAR 50,000) and its "calibration" models on 45,000, holding
out its 10% contiguous tail validation split (``data.val_split=tail``, W1's ``validation_split``; Tiny ImageNet: a
seeded random 10%, W1's ``validation_split_folder``). The presets do the same: ``hendrycks2019-<data>`` and
``-finetune`` train on everything (no temperature scaling, which needs held-out data; W1 reports T = 1 anyway), the
``-calibration`` presets hold the split out, and the studies fill the paper's OOD table from the former and its
calibration table from the latter. Evaluation: MSP on the ``*-hendrycks`` benchmarks (8 OOD sets, 2,000 per run × 5
runs, W1's ``test.py``). What still differs from the paper is listed in docs/paper-presets.md.

One concern, kept in one file: W1's presets, together so that every number can be checked against the paper's code
in one place.
"""

from __future__ import annotations

from dataclasses import replace

from rulab.config import AugmentCfg, DataCfg, EvalCfg, MethodCfg, ModelCfg, OptimCfg, RunCfg, TrainCfg
from rulab.data.imagenet_classes import (
    CIFAR10_IMAGENET_CLASSES,
    IMAGENET_ANCHORS,
    cifar10_exclusion,
    imagenet_sorted_indices,
)
from rulab.errors import ConfigError, DataError
from rulab.presets.paper import PaperStudy, register_preset, with_data, with_eval, with_train
from rulab.registry import STUDIES

__all__ = [
    "W1_MEAN",
    "W1_STD",
    "CIFAR10_IMAGENET_CLASSES",
    "IMAGENET_ANCHORS",
    "imagenet_sorted_indices",
    "cifar10_exclusion",
    "w1_baseline",
    "w1_pretrain",
    "w1_finetune",
]

W1_MEAN = (0.5, 0.5, 0.5)
W1_STD = (0.5, 0.5, 0.5)
"""W1's normalisation (its uncertainty scripts): mean = std = 0.5, so the normalised input is exactly [−1, 1]."""

# ------------------------------------------------------------------------------------------------ configs

_CIFAR_AUG = AugmentCfg(hflip=0.5, crop_padding=4)  # W1 CIFAR: RandomHorizontalFlip, RandomCrop(32, padding=4)
_TIN_AUG = AugmentCfg(hflip=0.5, crop_padding=8)  # OE Tiny ImageNet: RandomHorizontalFlip, RandomCrop(64, padding=8)
_DATASETS = {
    "cifar10": ("cifar10", _CIFAR_AUG, 5000, "tail"),
    "cifar100": ("cifar100", _CIFAR_AUG, 5000, "tail"),
    "tinyimagenet": ("tiny_imagenet", _TIN_AUG, 10_000, "random"),
}
"""Per ID dataset (data, not dispatch): DATASETS name, training augmentation, and the validation size and split of
W1's calibration models (``utils/validation_dataset.py``)."""


def _w1(
    name: str,
    dataset: str,
    augment: AugmentCfg,
    val_size: int,
    val_split: str,
    *,
    dropout: float,
    lr: float,
    epochs: int,
    batch: int,
    benchmark: str,
    model: str = "wrn40_2",
) -> RunCfg:
    """The W1 recipe (``models/wrn.py``, ``baseline.py``): WRN-40-2, SGD Nesterov 0.9, weight decay 5e-4, cosine per
    iteration to 1e-6, ``drop_last=False`` loaders (the last batch of an epoch is smaller, PyTorch's default), no
    validation split unless ``val_size`` (then temperature scaling is also reported)."""
    return RunCfg(
        name=name,
        data=DataCfg(dataset=dataset, val_size=val_size, val_split=val_split, augment=augment),
        model=ModelCfg(model, {"dropout": dropout, "mean": list(W1_MEAN), "std": list(W1_STD)}),
        optim=OptimCfg(
            name="sgd",
            lr=lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="cosine",
            lr_floor=1e-6,
            warmup_frac=0.0,
        ),
        method=MethodCfg("erm"),
        train=TrainCfg(epochs=epochs, batch_size=batch, drop_last=False),
        eval=EvalCfg(benchmark=benchmark, detectors=("msp",), shift="", farconf=False, temperature=val_size > 0),
    )


def _split(which: str, calibration: bool) -> tuple[str, AugmentCfg, int, str]:
    """``(dataset, augmentation, val_size, val_split)``: W1's OOD models train on the whole training set (CIFAR
    50,000), its calibration models (``--calibration``) hold out the validation split."""
    dataset, aug, val_size, split = _DATASETS[which]
    return (dataset, aug, val_size, split) if calibration else (dataset, aug, 0, "random")


def w1_baseline(which: str, calibration: bool = False) -> RunCfg:
    """W1 "Normal" (``uncertainty/CIFAR/baseline.py``): 100 epochs, lr 0.1, batch 128, dropout 0.3, on ``which`` ∈ {cifar10,
    cifar100, tinyimagenet}; the OOD model on every training image, or (``calibration``) the calibration model with W1's
    held-out split (CIFAR: the last 5,000)."""
    dataset, aug, val_size, split = _split(which, calibration)
    name = f"hendrycks2019-{which}" + ("-calibration" if calibration else "")
    return _w1(
        name, dataset, aug, val_size, split, dropout=0.3, lr=0.1, epochs=100, batch=128, benchmark=f"{which}-hendrycks"
    )


def w1_pretrain(name: str, exclude: tuple[int, ...] = ()) -> RunCfg:
    """W1 pre-training on downsampled ImageNet 32×32 (``downsampled_train/baseline.py``): 100 epochs, lr 0.1, batch 256,
    dropout 0, crop 4 + flip, no validation split (W1 keeps none), all 1,000 classes unless ``exclude`` names some."""
    cfg = _w1(
        name,
        "imagenet32",
        _CIFAR_AUG,
        0,
        "random",
        dropout=0.0,
        lr=0.1,
        epochs=100,
        batch=256,
        benchmark="cifar10-hendrycks",
    )
    return with_data(cfg, exclude_classes=tuple(exclude)) if exclude else cfg


def w1_pretrain_tinyimagenet() -> RunCfg:
    """W1's Tiny ImageNet pre-training (Hendrycks et al. 2019, Section 4): downsampled ImageNet 64×64 without the 200
    Tiny ImageNet classes (800 remain, dropped by WordNet id: ``data.kwargs.exclude_classes_of=tiny_imagenet``).

    The script is not in W1's repository; the recipe is the 32×32 pre-training's (100 epochs, lr 0.1, batch 256,
    dropout 0) with Tiny ImageNet's crop 8 + flip [unverified].
    """
    cfg = _w1(
        "hendrycks2019-tinyimagenet-pretrain",
        "imagenet64",
        _TIN_AUG,
        0,
        "random",
        dropout=0.0,
        lr=0.1,
        epochs=100,
        batch=256,
        benchmark="tinyimagenet-hendrycks",
    )
    return with_data(cfg, kwargs={"exclude_classes_of": "tiny_imagenet"})


def w1_finetune(which: str, name: str = "", calibration: bool = False) -> RunCfg:
    """W1 "Pre-Train" (``uncertainty/CIFAR/tune.py``): a fresh head with PyTorch's default initialisation, all layers
    trained, lr 0.001, dropout 0, cosine to 1e-6 over 10 epochs (Tiny ImageNet: 20, per its snapshot csv; lr 0.001
    unverified there, no tune script exists); on the whole training set, or (``calibration``) with the held-out split.

    ``train.init_from`` stays empty: a study fills it with ``{run:<pre-training preset>}``, or pass
    ``--train.init_from=<run dir>``.
    """
    dataset, aug, val_size, split = _split(which, calibration)
    default = f"hendrycks2019-{which}-finetune" + ("-calibration" if calibration else "")
    cfg = _w1(
        name or default,
        dataset,
        aug,
        val_size,
        split,
        dropout=0.0,
        lr=0.001,
        epochs=20 if which == "tinyimagenet" else 10,
        batch=128,
        benchmark=f"{which}-hendrycks",
    )
    return with_train(cfg, reset_head=True, head_init="pytorch")


def _parity(cfg: RunCfg) -> RunCfg:
    """W1 parity (the register of convention 5 in docs/conventions.md): scheduler before optimizer, top adaptive bin
    dropped, T = 1 only, and W1's own ``get_measures`` for AUROC, AUPR and the closest-recall FPR95 (``hendrycks``
    protocol, :data:`rulab.eval.ood_eval.PARITY_METRICS`)."""
    cfg = with_eval(cfg, temperature=False)
    return replace(cfg, parity=True, name=cfg.name + "-parity")


for _which in ("cifar10", "cifar100", "tinyimagenet"):
    for _cal in (False, True):
        _sfx = "-calibration" if _cal else ""
        _what = "calibration model (held-out split)" if _cal else "OOD model (every training image)"
        register_preset(
            f"hendrycks2019-{_which}{_sfx}",
            lambda w=_which, c=_cal: w1_baseline(w, c),
            f"W1 'Normal' WRN-40-2 on {_which}, the {_what} (Hendrycks et al. 2019).",
        )
        register_preset(
            f"hendrycks2019-{_which}{_sfx}-parity",
            lambda w=_which, c=_cal: _parity(w1_baseline(w, c)),
            f"hendrycks2019-{_which}{_sfx} with W1's quirks (parity=True, T = 1, W1's metric code).",
        )
        register_preset(
            f"hendrycks2019-{_which}-finetune{_sfx}",
            lambda w=_which, c=_cal: w1_finetune(w, calibration=c),
            f"W1 'Pre-Train' fine-tuning on {_which}, the {_what}; needs train.init_from.",
        )
        register_preset(
            f"hendrycks2019-{_which}-finetune{_sfx}-parity",
            lambda w=_which, c=_cal: _parity(w1_finetune(w, calibration=c)),
            f"hendrycks2019-{_which}-finetune{_sfx} with W1's quirks (parity=True, T = 1, W1's metric code).",
        )
for _which in ("cifar10", "cifar100"):
    register_preset(
        f"hendrycks2019-{_which}-pretrain",
        lambda w=_which: w1_pretrain(f"hendrycks2019-{w}-pretrain"),
        "W1 pre-training of WRN-40-2 on downsampled ImageNet 32×32, all 1,000 classes.",
    )
register_preset(
    "hendrycks2019-tinyimagenet-pretrain",
    w1_pretrain_tinyimagenet,
    "W1 pre-training of WRN-40-2 on downsampled ImageNet 64×64 without the 200 Tiny ImageNet classes.",
)
register_preset(
    "hendrycks2019-cifar10-pretrain-nocifar",
    lambda: w1_pretrain("hendrycks2019-cifar10-pretrain-nocifar", _exclusion_or_config_error()),
    "W1's leakage control: ImageNet 32×32 pre-training without the CIFAR-10 classes (CIFAR10_IMAGENET_CLASSES).",
)
register_preset(
    "hendrycks2019-cifar10-finetune-nocifar",
    lambda: w1_finetune("cifar10", "hendrycks2019-cifar10-finetune-nocifar"),
    "Fine-tuning on CIFAR-10 after hendrycks2019-cifar10-pretrain-nocifar.",
)


def _exclusion_or_config_error() -> tuple[int, ...]:
    try:
        return cifar10_exclusion()
    except DataError as err:
        raise ConfigError(str(err)) from None


# ------------------------------------------------------------------------------------------------ adversarial part

ADV_EPS = 8 / 255
ADV_STEP = 2 / 255
"""W1's L∞ PGD (``robustness/adversarial/``): ε = 8/255, step 2/255; 10 steps to train, 20 to evaluate."""
_ADV_TRAIN = MethodCfg("adversarial", {"eps": ADV_EPS, "steps": 10, "step_size": ADV_STEP})


def w1_adversarial(
    name: str, dataset: str, method: MethodCfg, *, epochs: int, lr: float, batch: int, benchmark: str
) -> RunCfg:
    """W1's adversarial-robustness recipe (``robustness/adversarial/``, Hendrycks et al. 2019 Section 3 and Table 2):
    WRN-28-10 on ``2x − 1`` (mean = std = 0.5), dropout 0, SGD Nesterov 0.9, weight decay 5e-4, cosine per iteration to
    1e-6, CIFAR crop + flip, every training image; evaluated by clean and PGD-20 accuracy (ε = 8/255, step 2/255, one
    uniform random start) on the whole test set (``eval.farconf_tests=[samples]``)."""
    cfg = _w1(
        name,
        dataset,
        _CIFAR_AUG,
        0,
        "random",
        dropout=0.0,
        lr=lr,
        epochs=epochs,
        batch=batch,
        benchmark=benchmark,
        model="wrn28_10",
    )
    cfg = replace(cfg, method=method)
    return with_eval(
        cfg,
        farconf=True,
        farconf_tests=("samples",),
        adv_eps=ADV_EPS,
        adv_steps=20,
        adv_step_size=ADV_STEP,
        adv_restarts=1,
        adv_n=10_000,
        temperature=False,
    )


def w1_adversarial_scratch(which: str, adversarial: bool) -> RunCfg:
    """W1's Table 2 baselines on ``which``: "Normal Training" (``adversarial=False``) and "Adversarial Training"
    (Madry et al. 2018: cross-entropy on PGD-10 examples). 100 epochs, lr 0.1, batch 128 [unverified: the recipe of
    W1's from-scratch robustness models is not in its repository; these are its uncertainty baselines' numbers]."""
    kind = "advtrain" if adversarial else "normal"
    return w1_adversarial(
        f"hendrycks2019-adv-{which}-{kind}",
        which,
        _ADV_TRAIN if adversarial else MethodCfg("erm"),
        epochs=100,
        lr=0.1,
        batch=128,
        benchmark=f"{which}-hendrycks",
    )


def w1_adversarial_pretrain() -> RunCfg:
    """W1's adversarial pre-training: PGD-10 adversarial training of WRN-28-10 on downsampled ImageNet 32×32 (1,000
    classes), 100 epochs, lr 0.1, batch 256 (``robustness/adversarial/``); shared by the CIFAR-10 and CIFAR-100 studies."""
    return w1_adversarial(
        "hendrycks2019-adv-pretrain",
        "imagenet32",
        _ADV_TRAIN,
        epochs=100,
        lr=0.1,
        batch=256,
        benchmark="cifar10-hendrycks",
    )


def w1_adversarial_finetune(which: str) -> RunCfg:
    """W1's "Adversarial Pre-Training + Tuning": a fresh ``Linear(640, K)`` head (PyTorch's default initialisation), all
    layers adversarially fine-tuned with PGD-10 for 5 epochs at lr 0.001 (``robustness/adversarial/``); needs
    ``train.init_from`` (the study fills it with ``hendrycks2019-adv-pretrain``)."""
    cfg = w1_adversarial(
        f"hendrycks2019-adv-{which}-finetune",
        which,
        _ADV_TRAIN,
        epochs=5,
        lr=0.001,
        batch=128,
        benchmark=f"{which}-hendrycks",
    )
    return with_train(cfg, reset_head=True, head_init="pytorch")


for _which in ("cifar10", "cifar100"):
    register_preset(
        f"hendrycks2019-adv-{_which}-normal",
        lambda w=_which: w1_adversarial_scratch(w, False),
        f"W1 Table 2 'Normal Training': WRN-28-10 on {_which}, clean and PGD-20 accuracy.",
    )
    register_preset(
        f"hendrycks2019-adv-{_which}-advtrain",
        lambda w=_which: w1_adversarial_scratch(w, True),
        f"W1 Table 2 'Adversarial Training' (PGD-10, ε 8/255) of WRN-28-10 on {_which}.",
    )
    register_preset(
        f"hendrycks2019-adv-{_which}-finetune",
        lambda w=_which: w1_adversarial_finetune(w),
        f"W1 Table 2 'Adv. Pre-Training and Tuning': adversarial fine-tuning on {_which}; needs train.init_from.",
    )
register_preset(
    "hendrycks2019-adv-pretrain",
    w1_adversarial_pretrain,
    "W1's adversarial pre-training of WRN-28-10 on downsampled ImageNet 32×32 (PGD-10, ε 8/255).",
)


# ------------------------------------------------------------------------------------------------ studies

CALIBRATION = "calibration:"
"""Prefix of a paper column whose preset fills the calibration table instead of the OOD table (W1 measured
calibration on models trained with a held-out split, OOD detection on models trained on every image)."""


def _w1_study(
    name: str,
    pretrain: str,
    normal: str,
    tuned: str,
    reference: str,
    description: str,
    calibration: tuple[str, str] | None = None,
) -> PaperStudy:
    presets = (pretrain, normal, tuned) + (calibration or ())
    linked = (tuned,) + ((calibration[1],) if calibration else ())
    columns = (("Normal", normal), ("Pre-Train", tuned))
    if calibration:
        columns += ((CALIBRATION + "Normal", calibration[0]), (CALIBRATION + "Pre-Train", calibration[1]))
    return PaperStudy(
        name=name,
        presets=presets,
        preset_overrides=tuple((p, (f"train.init_from={{run:{pretrain}}}",)) for p in linked),
        skip_eval=(pretrain,),
        compare_to=normal,
        description=description,
        paper_table="hendrycks2019",
        paper_columns=columns,
        paper_reference=reference,
    )


def _cal(which: str, parity: bool = False) -> tuple[str, str]:
    sfx = "-parity" if parity else ""
    return (f"hendrycks2019-{which}-calibration{sfx}", f"hendrycks2019-{which}-finetune-calibration{sfx}")


@STUDIES.register("hendrycks2019-cifar10")
def hendrycks2019_cifar10() -> PaperStudy:
    """W1 on CIFAR-10: WRN-40-2 from scratch vs downsampled-ImageNet pre-training → fine-tuning, 3 seeds; OOD models on
    all 50,000 images, calibration models on 45,000."""
    return _w1_study(
        "hendrycks2019-cifar10",
        "hendrycks2019-cifar10-pretrain",
        "hendrycks2019-cifar10",
        "hendrycks2019-cifar10-finetune",
        "cifar10",
        "W1 (Hendrycks et al. 2019) CIFAR-10: Normal vs ImageNet32 pre-training + fine-tuning; MSP OOD and calibration",
        _cal("cifar10"),
    )


@STUDIES.register("hendrycks2019-cifar100")
def hendrycks2019_cifar100() -> PaperStudy:
    """W1 on CIFAR-100 (as ``hendrycks2019-cifar10``)."""
    return _w1_study(
        "hendrycks2019-cifar100",
        "hendrycks2019-cifar100-pretrain",
        "hendrycks2019-cifar100",
        "hendrycks2019-cifar100-finetune",
        "cifar100",
        "W1 (Hendrycks et al. 2019) CIFAR-100: Normal vs ImageNet32 pre-training + fine-tuning; MSP OOD and calibration",
        _cal("cifar100"),
    )


@STUDIES.register("hendrycks2019-cifar10-nocifar")
def hendrycks2019_cifar10_nocifar() -> PaperStudy:
    """W1's leakage control on CIFAR-10: pre-training on ImageNet without the classes of CIFAR-10 (W1's
    ``cifar10_excluded`` snapshot); OOD models only."""
    return _w1_study(
        "hendrycks2019-cifar10-nocifar",
        "hendrycks2019-cifar10-pretrain-nocifar",
        "hendrycks2019-cifar10",
        "hendrycks2019-cifar10-finetune-nocifar",
        "",
        "W1 CIFAR-10 with ImageNet-minus-CIFAR-10 pre-training (leakage control; paper numbers are for full ImageNet)",
    )


@STUDIES.register("hendrycks2019-cifar10-parity")
def hendrycks2019_cifar10_parity() -> PaperStudy:
    """``hendrycks2019-cifar10`` with W1's quirks in training, calibration and metrics (parity presets)."""
    return _w1_study(
        "hendrycks2019-cifar10-parity",
        "hendrycks2019-cifar10-pretrain",
        "hendrycks2019-cifar10-parity",
        "hendrycks2019-cifar10-finetune-parity",
        "cifar10",
        "W1 CIFAR-10, parity mode (T = 1, top calibration bin dropped, W1's closest-recall FPR95)",
        _cal("cifar10", True),
    )


@STUDIES.register("hendrycks2019-cifar100-parity")
def hendrycks2019_cifar100_parity() -> PaperStudy:
    """``hendrycks2019-cifar100`` with W1's quirks in training, calibration and metrics (parity presets)."""
    return _w1_study(
        "hendrycks2019-cifar100-parity",
        "hendrycks2019-cifar100-pretrain",
        "hendrycks2019-cifar100-parity",
        "hendrycks2019-cifar100-finetune-parity",
        "cifar100",
        "W1 CIFAR-100, parity mode (T = 1, top calibration bin dropped, W1's closest-recall FPR95)",
        _cal("cifar100", True),
    )


@STUDIES.register("hendrycks2019-tinyimagenet")
def hendrycks2019_tinyimagenet() -> PaperStudy:
    """W1 on Tiny ImageNet: from scratch vs pre-training on downsampled ImageNet 64×64 without the 200 Tiny ImageNet
    classes → fine-tuning (20 epochs)."""
    return _w1_study(
        "hendrycks2019-tinyimagenet",
        "hendrycks2019-tinyimagenet-pretrain",
        "hendrycks2019-tinyimagenet",
        "hendrycks2019-tinyimagenet-finetune",
        "tinyimagenet",
        "W1 Tiny ImageNet: Normal vs ImageNet 64x64 (minus the Tiny ImageNet classes) pre-training + fine-tuning; MSP OOD and calibration",
        _cal("tinyimagenet"),
    )


def _adv_study(which: str) -> PaperStudy:
    p = (
        "hendrycks2019-adv-pretrain",
        f"hendrycks2019-adv-{which}-normal",
        f"hendrycks2019-adv-{which}-advtrain",
        f"hendrycks2019-adv-{which}-finetune",
    )
    return PaperStudy(
        name=f"hendrycks2019-adv-{which}",
        presets=p,
        preset_overrides=((p[3], (f"train.init_from={{run:{p[0]}}}",)),),
        skip_eval=(p[0],),
        compare_to=p[1],
        description=f"W1 (Hendrycks et al. 2019) Table 2 on {which}: WRN-28-10 normal / adversarial training / adversarial "
        "pre-training on ImageNet32 + adversarial tuning; clean and PGD-20 accuracy",
        paper_table="hendrycks2019-adv",
        paper_columns=(
            ("Normal Training", p[1]),
            ("Adversarial Training", p[2]),
            ("Adv. Pre-Training and Tuning", p[3]),
        ),
        paper_reference=which,
    )


@STUDIES.register("hendrycks2019-adv-cifar10")
def hendrycks2019_adv_cifar10() -> PaperStudy:
    """W1's adversarial table on CIFAR-10 (WRN-28-10, PGD-20 at ε = 8/255)."""
    return _adv_study("cifar10")


@STUDIES.register("hendrycks2019-adv-cifar100")
def hendrycks2019_adv_cifar100() -> PaperStudy:
    """W1's adversarial table on CIFAR-100 (WRN-28-10, PGD-20 at ε = 8/255)."""
    return _adv_study("cifar100")


@STUDIES.register("hendrycks2019-fmnist")
def hendrycks2019_fmnist() -> PaperStudy:
    """W1's question at CPU scale: supervised pre-training on Fashion-MNIST classes 0-4 → fine-tuning on 5-9 vs
    training 5-9 from scratch (the presets of the ``fmnist-pretraining`` study), scored as W1 scores: MSP under
    the ``hendrycks`` protocol (1,000 OOD images per run × 5 runs for the 5,000 test images of classes 5-9) on the
    ``fmnist`` benchmark's offline OOD sets, calibration raw and temperature-scaled."""
    return PaperStudy(
        name="hendrycks2019-fmnist",
        presets=("fmnist-pretrain-0to4", "fmnist-scratch-5to9", "fmnist-finetune-5to9"),
        seeds=(0, 1, 2),
        overrides=(
            "eval.benchmark=fmnist",
            "eval.protocol=hendrycks",
            "eval.detectors=[msp]",
            "eval.shift=",
            "eval.farconf=false",
        ),
        preset_overrides=(("fmnist-finetune-5to9", ("train.init_from={run:fmnist-pretrain-0to4}",)),),
        skip_eval=("fmnist-pretrain-0to4",),
        compare_to="fmnist-scratch-5to9",
        description="W1 at CPU scale: Fashion-MNIST classes 5-9 from scratch vs pre-trained on 0-4 and fine-tuned; MSP, hendrycks protocol",
        paper_table="hendrycks2019",
        paper_columns=(("Normal", "fmnist-scratch-5to9"), ("Pre-Train", "fmnist-finetune-5to9")),
        paper_reference="",
    )
