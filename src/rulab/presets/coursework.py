"""W2 presets: the ECE228 course project "Evaluating the Robustness of Deep Learning Models"
(Wirojwatanakul, Wang & Yu; code ``jeffwiroj/ece228``; docs/protocols/coursework.md).

pathMNIST (report §6.1 and Tables 1-4, the three runs of the report, code-verified):

=====================================  ==========================================================================
``coursework-pathmnist``               "Basic" (basic_0): ResNet-18 with the ImageNet stem on 28×28 inputs, random
                                       init, pathMNIST statistics, no augmentation, 80 epochs
``coursework-pathmnist-mixup``         "MixUp + Aug" (basic_2): MixUp α = 0.3 and the ``w2_basic`` augmentation
                                       (flips p = 0.4, rotation ≤ 20° with p = 0.4), 60 epochs
``coursework-pathmnist-pretrained``    "MixUp + Aug + PT" (pt_5): ImageNet weights (``model.kwargs.pretrained``),
                                       ImageNet statistics, backbone lr 5e-5 and head lr 5e-4
                                       (``optim.lr=5e-4``, ``backbone_lr_mult=0.1``), frozen BatchNorm, 60 epochs
=====================================  ==========================================================================

All: AdamW, weight decay 1e-6, batch 256, no schedule (constant), evaluation on the clean test set and the
``w2-pathmnist`` brightness / blur grids with W2's metric ``rms_uniform10`` (10 equal-width bins, report §4.4.2).
The learning rate is the EFFECTIVE 1e-3 of the from-scratch runs: W2's code built AdamW without the config's lr, so
basic_2's configured 5e-4 was silently ignored; that slip, the clean forward pass before the MixUp step
(``method.kwargs.parity=true``) and the BatchNorm unfreezing after epoch 1 are parity-only quirks (the register of convention 5 in
docs/conventions.md) that these
presets do not reproduce.

Oxford-IIIT Pets (report §6.2, report only; the code is not public): ResNet-50 from scratch (120 epochs), from supervised
ImageNet weights and from Barlow Twins weights (facebookresearch/barlowtwins, the weights W2 used) (25 epochs each),
"AdamW, MixUp + flips + rotations". Everything else is unverified (the report does not state it) and taken from the pathMNIST recipe:
lr 1e-3 (scratch) / 5e-4 with backbone × 0.1 and frozen BatchNorm (pre-trained), MixUp α = 0.3, batch 256, weight
decay 1e-6; the validation split is 10% of trainval (368 images, seeded; the dataset has no official one); inputs are
224×224 (:data:`PETS_SIZE`, ``data.kwargs.size``; W2's resolution is unknown). The scratch model is normalised by its
training images' statistics (``model.stats=train``), the pre-trained ones by ImageNet's, as the report says.
``coursework-pets-barlow`` → ``-barlow-ft`` is rulab's own Barlow Twins pre-training on the Pets images (not W2's
setting: W2 used weights pre-trained on ImageNet).

As W2: the model of the epoch with the best validation accuracy is evaluated (``train.keep_best=val_acc``; the
kept epoch is in the checkpoint's metadata and the results' ``checkpoint_epoch`` row), pathMNIST trains on its
official 89,996 training images and validates on the official 10,004 (``data.val_split=official``), and rotations
resample with nearest neighbour (torchvision's ``RandomRotation`` default). What still differs from the paper is
listed in docs/paper-presets.md.

Pre-trained weights are files (rulab never downloads): ``weights/resnet18_imagenet.safetensors``,
``weights/resnet50_imagenet.safetensors`` and ``weights/resnet50_barlowtwins.safetensors`` relative to the working
directory; make them with the commands in :mod:`rulab.models.resnet_tv` or pass ``--model.kwargs.pretrained=PATH``.
"""

from __future__ import annotations

from dataclasses import replace

from rulab.config import AugmentCfg, DataCfg, EvalCfg, MethodCfg, ModelCfg, OptimCfg, RunCfg, TrainCfg
from rulab.presets.fmnist import fmnist_base
from rulab.presets.paper import PaperStudy, with_optim, with_train
from rulab.registry import PRESETS, STUDIES

__all__ = [
    "PATHMNIST_MEAN",
    "PATHMNIST_STD",
    "W2_BASIC",
    "MIXUP_ALPHA",
    "RESNET18_IMAGENET",
    "RESNET50_IMAGENET",
    "RESNET50_BARLOWTWINS",
    "PETS_SIZE",
]

PATHMNIST_MEAN = (0.740545, 0.53298219, 0.70582885)
PATHMNIST_STD = (0.1237, 0.1768, 0.1244)
"""pathMNIST statistics of W2's from-scratch runs (its code); pre-trained runs use the ImageNet statistics."""
W2_BASIC = AugmentCfg(hflip=0.4, vflip=0.4, rotate_deg=20.0, rotate_p=0.4, rotate_interp="nearest")
"""W2's "basic" augmentation (report §6.1; ``AUGMENTATIONS`` ``w2_basic``): ``RandomRotation(20)`` resamples with
torchvision's default, nearest neighbour."""
NO_AUG = AugmentCfg(hflip=0.0)
MIXUP_ALPHA = 0.3
"""MixUp α of every W2 MixUp run (the code's configurations)."""
RESNET18_IMAGENET = "weights/resnet18_imagenet.safetensors"
RESNET50_IMAGENET = "weights/resnet50_imagenet.safetensors"
RESNET50_BARLOWTWINS = "weights/resnet50_barlowtwins.safetensors"
"""Default paths of the pre-trained weights (override with ``--model.kwargs.pretrained=PATH``)."""


def _w2(
    name: str,
    dataset: str,
    model: ModelCfg,
    method: MethodCfg,
    augment: AugmentCfg,
    epochs: int,
    val_size: int,
    benchmark: str,
    shift: str,
    lr: float = 1e-3,
    backbone_lr_mult: float = 1.0,
    freeze_bn: bool = False,
    val_split: str = "random",
    data_kwargs: dict[str, object] | None = None,
    keep_best: str = "val_acc",
) -> RunCfg:
    """W2's recipe (report §6, ``jeffwiroj/ece228`` configurations): AdamW, weight decay 1e-6, batch 256, constant
    learning rate; the checkpoint of the epoch with the best validation accuracy is the one evaluated (``keep_best``)."""
    return RunCfg(
        name=name,
        data=DataCfg(
            dataset=dataset, val_size=val_size, val_split=val_split, augment=augment, kwargs=dict(data_kwargs or {})
        ),
        model=model,
        optim=OptimCfg(
            name="adamw",
            lr=lr,
            weight_decay=1e-6,
            betas=(0.9, 0.999),
            schedule="constant",
            lr_floor=0.0,
            backbone_lr_mult=backbone_lr_mult,
            nesterov=False,
        ),
        method=method,
        train=TrainCfg(epochs=epochs, batch_size=256, freeze_bn=freeze_bn, keep_best=keep_best),
        eval=EvalCfg(benchmark=benchmark, detectors=("msp",), shift=shift, farconf=False, temperature=True),
    )


_MIXUP = MethodCfg("mixup", {"alpha": MIXUP_ALPHA})
PETS_SIZE = 224
"""Side of the Oxford-IIIT Pets inputs: the ImageNet resolution of the torchvision ResNet-50 weights W2 fine-tuned
and of the Barlow Twins weights (RandomResizedCrop(224)); W2's report does not state its resolution [unverified]."""
_PATH = {
    "dataset": "pathmnist",
    "val_size": 0,
    "val_split": "official",
    "benchmark": "pathmnist-w2",
    "shift": "w2-pathmnist",
}
_PETS = {
    "dataset": "oxford_pets",
    "val_size": 368,
    "benchmark": "pets-w2",
    "shift": "w2-pets",
    "data_kwargs": {"size": PETS_SIZE},
}


def _resnet(name: str, **kwargs: object) -> ModelCfg:
    return ModelCfg(name, {"stem": "imagenet", **kwargs})


@PRESETS.register("coursework-pathmnist")
def coursework_pathmnist() -> RunCfg:
    """W2 "Basic" (basic_0, report Table 1): ResNet-18 from scratch, pathMNIST statistics, no augmentation, AdamW lr 1e-3, 80 epochs."""
    model = _resnet("resnet18", mean=list(PATHMNIST_MEAN), std=list(PATHMNIST_STD))
    return _w2("coursework-pathmnist", model=model, method=MethodCfg("erm"), augment=NO_AUG, epochs=80, **_PATH)


@PRESETS.register("coursework-pathmnist-mixup")
def coursework_pathmnist_mixup() -> RunCfg:
    """W2 "MixUp + Aug" (basic_2, report Table 1): MixUp α 0.3 + ``w2_basic``, effective lr 1e-3 (config said 5e-4), 60 epochs."""
    model = _resnet("resnet18", mean=list(PATHMNIST_MEAN), std=list(PATHMNIST_STD))
    return _w2("coursework-pathmnist-mixup", model=model, method=_MIXUP, augment=W2_BASIC, epochs=60, **_PATH)


@PRESETS.register("coursework-pathmnist-pretrained")
def coursework_pathmnist_pretrained() -> RunCfg:
    """W2 "MixUp + Aug + PT" (pt_5, report Table 1): ImageNet weights, backbone lr 5e-5 / head 5e-4, frozen BatchNorm, 60 epochs."""
    model = _resnet("resnet18", pretrained=RESNET18_IMAGENET)
    return _w2(
        "coursework-pathmnist-pretrained",
        model=model,
        method=_MIXUP,
        augment=W2_BASIC,
        epochs=60,
        lr=5e-4,
        backbone_lr_mult=0.1,
        freeze_bn=True,
        **_PATH,
    )


@PRESETS.register("coursework-pets-scratch")
def coursework_pets_scratch() -> RunCfg:
    """W2 Pets from scratch (report §6.2): ResNet-50, MixUp + flips + rotations, 120 epochs (lr, α, batch: pathMNIST's),
    normalised by the statistics of its training images (report §5: "when training from scratch, we normalize the
    input by the mean and standard deviation of the images of the training set"; ``model.stats=train``)."""
    cfg = _w2(
        "coursework-pets-scratch", model=_resnet("resnet50"), method=_MIXUP, augment=W2_BASIC, epochs=120, **_PETS
    )
    return replace(cfg, model=replace(cfg.model, stats="train"))


def _pets_pretrained(name: str, weights: str) -> RunCfg:
    return _w2(
        name,
        model=_resnet("resnet50", pretrained=weights),
        method=_MIXUP,
        augment=W2_BASIC,
        epochs=25,
        lr=5e-4,
        backbone_lr_mult=0.1,
        freeze_bn=True,
        **_PETS,
    )


@PRESETS.register("coursework-pets-supervised")
def coursework_pets_supervised() -> RunCfg:
    """W2 Pets from supervised ImageNet weights (report §6.2): 25 epochs, pathMNIST's pre-trained recipe (pt_5)."""
    return _pets_pretrained("coursework-pets-supervised", RESNET50_IMAGENET)


@PRESETS.register("coursework-pets-bt")
def coursework_pets_bt() -> RunCfg:
    """W2 Pets from the Barlow Twins ImageNet weights of facebookresearch/barlowtwins (report §6.2): 25 epochs."""
    return _pets_pretrained("coursework-pets-bt", RESNET50_BARLOWTWINS)


@PRESETS.register("coursework-pets-barlow")
def coursework_pets_barlow() -> RunCfg:
    """rulab's own Barlow Twins pre-training of ResNet-50 on the Pets images (not W2's setting, see the module docstring).

    From the Barlow Twins reference (Zbontar et al. 2021, ``facebookresearch/barlowtwins`` ``main.py``): projector 8192-8192-8192, λ = 0.0051, zero-initialised residuals, weight
    decay 1e-6, base lr 0.2 at batch 256, 1% linear warm-up (10 of 1,000 epochs) then cosine to 0.001× the base,
    1,000 epochs. Deviation: rulab has no LARS, so this is SGD with momentum 0.9 at the LARS base rate (watch the
    loss; lower ``optim.lr`` if it diverges).
    """
    method = MethodCfg("barlow_twins", {"hidden": [8192, 8192], "out": 8192, "lambd": 0.0051})
    cfg = _w2(
        "coursework-pets-barlow",
        model=_resnet("resnet50", zero_init_residual=True),
        method=method,
        augment=AugmentCfg(hflip=0.5),
        epochs=1000,
        keep_best="",
        **_PETS,
    )
    return with_optim(
        cfg, name="sgd", lr=0.2, momentum=0.9, nesterov=False, schedule="cosine", warmup_frac=0.01, lr_floor=0.2 * 0.001
    )


@PRESETS.register("coursework-pets-barlow-ft")
def coursework_pets_barlow_ft() -> RunCfg:
    """Fine-tune a ``coursework-pets-barlow`` backbone as W2 fine-tuned its Barlow Twins weights (25 epochs, new head);
    needs ``train.init_from`` (the ``coursework-pets-barlow`` study fills it)."""
    cfg = _w2(
        "coursework-pets-barlow-ft",
        model=_resnet("resnet50"),
        method=_MIXUP,
        augment=W2_BASIC,
        epochs=25,
        lr=5e-4,
        backbone_lr_mult=0.1,
        freeze_bn=True,
        **_PETS,
    )
    return with_train(cfg, reset_head=True)


# ------------------------------------------------------------------------------------------------ CPU counterparts


def _fmnist_w2(name: str, method: MethodCfg, augment: AugmentCfg) -> RunCfg:
    """fastcnn on Fashion-MNIST with W2's optimiser (AdamW 1e-3, weight decay 1e-6, constant), 3 epochs, W2's grids."""
    base = fmnist_base(name, 3, method)
    return RunCfg(
        name=name,
        data=DataCfg(dataset="fashion_mnist", val_size=5000, augment=augment),
        model=base.model,
        optim=OptimCfg(name="adamw", lr=1e-3, weight_decay=1e-6, schedule="constant", lr_floor=0.0, nesterov=False),
        method=method,
        train=TrainCfg(epochs=3, batch_size=256, channels_last=True, keep_best="val_acc"),
        eval=EvalCfg(benchmark="fmnist-w2", detectors=("msp",), shift="w2-pathmnist", farconf=False, temperature=True),
    )


@PRESETS.register("coursework-fmnist-basic")
def coursework_fmnist_basic() -> RunCfg:
    """W2 "Basic" at CPU scale: fastcnn from scratch on Fashion-MNIST, no augmentation, W2's AdamW, 3 epochs."""
    return _fmnist_w2("coursework-fmnist-basic", MethodCfg("erm"), NO_AUG)


@PRESETS.register("coursework-fmnist-mixup")
def coursework_fmnist_mixup() -> RunCfg:
    """W2 "MixUp + Aug" at CPU scale: MixUp α 0.3 with W2's ``w2_basic`` flips and rotations (kept as W2 had them)."""
    return _fmnist_w2("coursework-fmnist-mixup", _MIXUP, W2_BASIC)


@PRESETS.register("coursework-fmnist-barlow-ft")
def coursework_fmnist_barlow_ft() -> RunCfg:
    """W2 "MixUp + Aug + PT" at CPU scale with a Barlow Twins backbone (``fmnist-barlow``): new head, backbone lr ×0.1
    (5e-5 / 5e-4), frozen BatchNorm, MixUp + ``w2_basic``; needs ``train.init_from`` (the ``coursework-fmnist`` study)."""
    cfg = with_optim(_fmnist_w2("coursework-fmnist-barlow-ft", _MIXUP, W2_BASIC), lr=5e-4, backbone_lr_mult=0.1)
    return with_train(cfg, reset_head=True, freeze_bn=True)


# ------------------------------------------------------------------------------------------------ studies


@STUDIES.register("coursework-pathmnist")
def coursework_pathmnist_study() -> PaperStudy:
    """W2's pathMNIST tables (report Tables 1-4): Basic, MixUp + Aug, MixUp + Aug + PT under brightness and blur, 3 seeds."""
    p = ("coursework-pathmnist", "coursework-pathmnist-mixup", "coursework-pathmnist-pretrained")
    return PaperStudy(
        name="coursework-pathmnist",
        presets=p,
        compare_to=p[0],
        description="W2 pathMNIST: ResNet-18 basic / MixUp+aug / MixUp+aug+ImageNet weights; accuracy and 10-bin RMS under brightness and blur",
        paper_table="coursework",
        paper_columns=(("Basic", p[0]), ("MixUp + Aug", p[1]), ("MixUp + Aug + PT", p[2])),
        paper_reference="pathmnist",
    )


@STUDIES.register("coursework-pets")
def coursework_pets_study() -> PaperStudy:
    """W2's Pets tables (report Tables 5-8): ResNet-50 from scratch, from supervised ImageNet weights, from Barlow Twins weights."""
    p = ("coursework-pets-scratch", "coursework-pets-supervised", "coursework-pets-bt")
    return PaperStudy(
        name="coursework-pets",
        presets=p,
        compare_to=p[0],
        description="W2 Oxford Pets: ResNet-50 scratch / supervised ImageNet / Barlow Twins weights; accuracy and 10-bin RMS under brightness and blur",
        paper_table="coursework",
        paper_columns=(("Scratch", p[0]), ("Supervised", p[1]), ("Barlow Twins", p[2])),
        paper_reference="pets",
    )


@STUDIES.register("coursework-pets-barlow")
def coursework_pets_barlow_study() -> PaperStudy:
    """rulab's Barlow Twins pre-training on Pets → fine-tuning, against training from scratch (not a W2 setting)."""
    return PaperStudy(
        name="coursework-pets-barlow",
        presets=("coursework-pets-barlow", "coursework-pets-scratch", "coursework-pets-barlow-ft"),
        preset_overrides=(("coursework-pets-barlow-ft", ("train.init_from={run:coursework-pets-barlow}",)),),
        skip_eval=("coursework-pets-barlow",),
        compare_to="coursework-pets-scratch",
        description="Oxford Pets: ResNet-50 from scratch vs Barlow Twins pre-trained on the Pets images, then fine-tuned",
        paper_table="coursework",
        paper_columns=(("Scratch", "coursework-pets-scratch"), ("Barlow Twins (Pets)", "coursework-pets-barlow-ft")),
    )


@STUDIES.register("coursework-fmnist")
def coursework_fmnist_study() -> PaperStudy:
    """W2 at CPU scale: fastcnn on Fashion-MNIST, scratch vs MixUp + aug vs Barlow Twins → fine-tuning with MixUp +
    aug, under W2's pathMNIST brightness factors and blur σ grid; 3 seeds, W2's table layout."""
    p = ("coursework-fmnist-basic", "coursework-fmnist-mixup", "fmnist-barlow", "coursework-fmnist-barlow-ft")
    return PaperStudy(
        name="coursework-fmnist",
        presets=p,
        seeds=(0, 1, 2),
        preset_overrides=(
            ("fmnist-barlow", ("train.epochs=3",)),
            ("coursework-fmnist-barlow-ft", ("train.init_from={run:fmnist-barlow}",)),
        ),
        skip_eval=("fmnist-barlow",),
        compare_to=p[0],
        description="W2 at CPU scale: Fashion-MNIST fastcnn basic / MixUp+aug / Barlow Twins+MixUp+aug; accuracy and 10-bin RMS under brightness and blur",
        paper_table="coursework",
        paper_columns=(("Basic", p[0]), ("MixUp + Aug", p[1]), ("MixUp + Aug + BT", p[3])),
    )
