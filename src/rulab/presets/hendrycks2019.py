"""W1 presets: Hendrycks, Lee & Mazeika (ICML 2019), "Using Pre-Training Can Improve Model Robustness and Uncertainty".

Every number below is from the hendrycks/pre-training code (file by file in docs/protocols/hendrycks2019.md); the
tests read them back from the resolved configs (``tests/presets/test_paper_hparams.py``).

=======================================  ====================================================================
``hendrycks2019-cifar10`` (-cifar100)    "Normal": WRN-40-2, dropout 0.3, 100 epochs, SGD Nesterov 0.9, lr 0.1,
                                         weight decay 5e-4, batch 128, cosine per iteration to 1e-6,
                                         mean = std = 0.5, crop 4 + flip (``uncertainty/CIFAR/baseline.py``)
``hendrycks2019-tinyimagenet``           the same at 64×64 with crop 8 + flip, 200 classes
``hendrycks2019-cifar10-pretrain``       downsampled ImageNet 32×32, 1,000 classes, 100 epochs, lr 0.1, batch
(``-cifar100-pretrain``)                 256, dropout 0 (``downsampled_train/baseline.py``); identical
                                         configs under two names
``hendrycks2019-cifar10-pretrain-        the leakage control: ImageNet without the classes of CIFAR-10
nocifar``                                (:data:`CIFAR10_IMAGENET_CLASSES`, resolved with ``map_clsloc.txt``)
``hendrycks2019-*-finetune``             "Pre-Train": a new head, all layers trained, lr 0.001, 10 epochs (Tiny
                                         ImageNet 20 [unverified lr]), dropout 0, same cosine rule (``tune.py``)
``hendrycks2019-*-parity``               the same with ``parity=True``: scheduler stepped before the optimizer,
                                         calibration with the top adaptive bin dropped and T = 1 only
                                         (``utils/calibration_tools.py``, ``test_calibration.py``)
=======================================  ====================================================================

Calibration uses W1's 10% contiguous tail validation split (``data.val_split=tail``, 45,000 / 5,000 for CIFAR,
W1's ``validation_split``; Tiny ImageNet: a seeded random 10%, W1's ``validation_split_folder``). W1 trained its OOD models on all 50,000
images and only its "calibration" models on 45,000; one model per preset serves both here. Evaluation: MSP on the
``*-hendrycks`` benchmarks (8 OOD sets, 2,000 per run × 5 runs, W1's ``test.py``).

Not reproducible here: Tiny ImageNet pre-training (W1 pre-trained on ImageNet 64×64 without the 200 Tiny ImageNet
classes; that loader is not in W1's repository and there is no ``imagenet64`` dataset in rulab), so
``hendrycks2019-tinyimagenet-finetune`` needs ``--train.init_from`` pointing at a WRN-40-2 you pre-trained yourself.
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
_DATASETS = {"cifar10": ("cifar10", _CIFAR_AUG, 5000, "tail"), "cifar100": ("cifar100", _CIFAR_AUG, 5000, "tail"),
             "tinyimagenet": ("tiny_imagenet", _TIN_AUG, 10_000, "random")}
"""Per ID dataset (data, not dispatch): DATASETS name, training augmentation, validation size and split (W1's ``utils/validation_dataset.py``)."""


def _w1(name: str, dataset: str, augment: AugmentCfg, val_size: int, val_split: str, *, dropout: float, lr: float,
        epochs: int, batch: int, benchmark: str) -> RunCfg:
    """The W1 recipe (``models/wrn.py``, ``baseline.py``): WRN-40-2, SGD Nesterov 0.9, weight decay 5e-4, cosine per iteration to 1e-6."""
    return RunCfg(
        name=name,
        data=DataCfg(dataset=dataset, val_size=val_size, val_split=val_split, augment=augment),
        model=ModelCfg("wrn40_2", {"dropout": dropout, "mean": list(W1_MEAN), "std": list(W1_STD)}),
        optim=OptimCfg(name="sgd", lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine", lr_floor=1e-6, warmup_frac=0.0),
        method=MethodCfg("erm"),
        train=TrainCfg(epochs=epochs, batch_size=batch),
        eval=EvalCfg(benchmark=benchmark, detectors=("msp",), shift="", farconf=False, temperature=True),
    )


def w1_baseline(which: str) -> RunCfg:
    """W1 "Normal" (``uncertainty/CIFAR/baseline.py``): 100 epochs, lr 0.1, batch 128, dropout 0.3, on ``which`` ∈ {cifar10, cifar100, tinyimagenet}."""
    dataset, aug, val_size, split = _DATASETS[which]
    return _w1(f"hendrycks2019-{which}", dataset, aug, val_size, split, dropout=0.3, lr=0.1, epochs=100, batch=128,
               benchmark=f"{which}-hendrycks")


def w1_pretrain(name: str, exclude: tuple[int, ...] = ()) -> RunCfg:
    """W1 pre-training on downsampled ImageNet 32×32 (``downsampled_train/baseline.py``): 100 epochs, lr 0.1, batch 256,
    dropout 0, crop 4 + flip, no validation split (W1 keeps none), all 1,000 classes unless ``exclude`` names some."""
    cfg = _w1(name, "imagenet32", _CIFAR_AUG, 0, "random", dropout=0.0, lr=0.1, epochs=100, batch=256, benchmark="cifar10-hendrycks")
    return with_data(cfg, exclude_classes=tuple(exclude)) if exclude else cfg


def w1_finetune(which: str, name: str = "") -> RunCfg:
    """W1 "Pre-Train" (``uncertainty/CIFAR/tune.py``): a fresh head, all layers trained, lr 0.001, dropout 0, cosine to 1e-6 over
    10 epochs (Tiny ImageNet: 20, per its snapshot csv; lr 0.001 unverified there, no tune script exists).

    ``train.init_from`` stays empty: a study fills it with ``{run:<pre-training preset>}``, or pass
    ``--train.init_from=<run dir>``.
    """
    dataset, aug, val_size, split = _DATASETS[which]
    cfg = _w1(name or f"hendrycks2019-{which}-finetune", dataset, aug, val_size, split, dropout=0.0, lr=0.001,
              epochs=20 if which == "tinyimagenet" else 10, batch=128, benchmark=f"{which}-hendrycks")
    return with_train(cfg, reset_head=True)


def _parity(cfg: RunCfg) -> RunCfg:
    """W1 parity (the register of convention 5 in docs/conventions.md): scheduler before optimizer, top adaptive bin dropped, T = 1 only."""
    cfg = with_eval(cfg, temperature=False)
    return replace(cfg, parity=True, name=cfg.name + "-parity")


for _which in ("cifar10", "cifar100", "tinyimagenet"):
    register_preset(f"hendrycks2019-{_which}", lambda w=_which: w1_baseline(w), f"W1 'Normal' WRN-40-2 on {_which} (Hendrycks et al. 2019).")
    register_preset(f"hendrycks2019-{_which}-parity", lambda w=_which: _parity(w1_baseline(w)), f"hendrycks2019-{_which} with W1's quirks (parity=True, T = 1).")
    register_preset(f"hendrycks2019-{_which}-finetune", lambda w=_which: w1_finetune(w), f"W1 'Pre-Train' fine-tuning on {_which}; needs train.init_from.")
    register_preset(f"hendrycks2019-{_which}-finetune-parity", lambda w=_which: _parity(w1_finetune(w)),
                    f"hendrycks2019-{_which}-finetune with W1's quirks (parity=True, T = 1).")
for _which in ("cifar10", "cifar100"):
    register_preset(f"hendrycks2019-{_which}-pretrain", lambda w=_which: w1_pretrain(f"hendrycks2019-{w}-pretrain"),
                    "W1 pre-training of WRN-40-2 on downsampled ImageNet 32×32, all 1,000 classes.")
register_preset("hendrycks2019-cifar10-pretrain-nocifar",
                lambda: w1_pretrain("hendrycks2019-cifar10-pretrain-nocifar", _exclusion_or_config_error()),
                "W1's leakage control: ImageNet 32×32 pre-training without the CIFAR-10 classes (CIFAR10_IMAGENET_CLASSES).")
register_preset("hendrycks2019-cifar10-finetune-nocifar", lambda: w1_finetune("cifar10", "hendrycks2019-cifar10-finetune-nocifar"),
                "Fine-tuning on CIFAR-10 after hendrycks2019-cifar10-pretrain-nocifar.")


def _exclusion_or_config_error() -> tuple[int, ...]:
    try:
        return cifar10_exclusion()
    except DataError as err:
        raise ConfigError(str(err)) from None


# ------------------------------------------------------------------------------------------------ studies


def _w1_study(name: str, pretrain: str, normal: str, tuned: str, reference: str, description: str) -> PaperStudy:
    return PaperStudy(
        name=name,
        presets=(pretrain, normal, tuned),
        preset_overrides=((tuned, (f"train.init_from={{run:{pretrain}}}",)),),
        skip_eval=(pretrain,),
        compare_to=normal,
        description=description,
        paper_table="hendrycks2019",
        paper_columns=(("Normal", normal), ("Pre-Train", tuned)),
        paper_reference=reference,
    )


@STUDIES.register("hendrycks2019-cifar10")
def hendrycks2019_cifar10() -> PaperStudy:
    """W1 on CIFAR-10: WRN-40-2 from scratch vs downsampled-ImageNet pre-training → fine-tuning, 3 seeds."""
    return _w1_study("hendrycks2019-cifar10", "hendrycks2019-cifar10-pretrain", "hendrycks2019-cifar10", "hendrycks2019-cifar10-finetune",
                     "cifar10", "W1 (Hendrycks et al. 2019) CIFAR-10: Normal vs ImageNet32 pre-training + fine-tuning; MSP OOD and calibration")


@STUDIES.register("hendrycks2019-cifar100")
def hendrycks2019_cifar100() -> PaperStudy:
    """W1 on CIFAR-100."""
    return _w1_study("hendrycks2019-cifar100", "hendrycks2019-cifar100-pretrain", "hendrycks2019-cifar100", "hendrycks2019-cifar100-finetune",
                     "cifar100", "W1 (Hendrycks et al. 2019) CIFAR-100: Normal vs ImageNet32 pre-training + fine-tuning; MSP OOD and calibration")


@STUDIES.register("hendrycks2019-cifar10-nocifar")
def hendrycks2019_cifar10_nocifar() -> PaperStudy:
    """W1's leakage control on CIFAR-10: pre-training on ImageNet without the CIFAR-10 classes (W1's
    ``cifar10_excluded`` snapshot)."""
    return _w1_study("hendrycks2019-cifar10-nocifar", "hendrycks2019-cifar10-pretrain-nocifar", "hendrycks2019-cifar10",
                     "hendrycks2019-cifar10-finetune-nocifar", "",
                     "W1 CIFAR-10 with ImageNet-minus-CIFAR-10 pre-training (leakage control; paper numbers are for full ImageNet)")


@STUDIES.register("hendrycks2019-cifar10-parity")
def hendrycks2019_cifar10_parity() -> PaperStudy:
    """``hendrycks2019-cifar10`` with W1's quirks in training and calibration (parity presets)."""
    return _w1_study("hendrycks2019-cifar10-parity", "hendrycks2019-cifar10-pretrain", "hendrycks2019-cifar10-parity",
                     "hendrycks2019-cifar10-finetune-parity", "cifar10", "W1 CIFAR-10, parity mode (T = 1, top calibration bin dropped)")


@STUDIES.register("hendrycks2019-cifar100-parity")
def hendrycks2019_cifar100_parity() -> PaperStudy:
    """``hendrycks2019-cifar100`` with W1's quirks in training and calibration (parity presets)."""
    return _w1_study("hendrycks2019-cifar100-parity", "hendrycks2019-cifar100-pretrain", "hendrycks2019-cifar100-parity",
                     "hendrycks2019-cifar100-finetune-parity", "cifar100", "W1 CIFAR-100, parity mode (T = 1, top calibration bin dropped)")


@STUDIES.register("hendrycks2019-tinyimagenet")
def hendrycks2019_tinyimagenet() -> PaperStudy:
    """W1 on Tiny ImageNet, "Normal" only: the 64×64 ImageNet pre-training cannot be reproduced (module docstring)."""
    return PaperStudy(
        name="hendrycks2019-tinyimagenet",
        presets=("hendrycks2019-tinyimagenet",),
        description="W1 Tiny ImageNet, Normal model only (no ImageNet 64x64 pre-training loader); MSP OOD and calibration",
        paper_table="hendrycks2019",
        paper_columns=(("Normal", "hendrycks2019-tinyimagenet"),),
        paper_reference="tinyimagenet",
    )


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
        overrides=("eval.benchmark=fmnist", "eval.protocol=hendrycks", "eval.detectors=[msp]", "eval.shift=", "eval.farconf=false"),
        preset_overrides=(("fmnist-finetune-5to9", ("train.init_from={run:fmnist-pretrain-0to4}",)),),
        skip_eval=("fmnist-pretrain-0to4",),
        compare_to="fmnist-scratch-5to9",
        description="W1 at CPU scale: Fashion-MNIST classes 5-9 from scratch vs pre-trained on 0-4 and fine-tuned; MSP, hendrycks protocol",
        paper_table="hendrycks2019",
        paper_columns=(("Normal", "fmnist-scratch-5to9"), ("Pre-Train", "fmnist-finetune-5to9")),
        paper_reference="",
    )
