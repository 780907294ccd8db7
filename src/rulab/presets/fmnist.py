"""CPU-scale presets on Fashion-MNIST (docs/conventions.md "Scales": the embedded default, 2 CPU cores,
no GPU).

Method presets share :func:`fmnist_base` (fastcnn, batch 256, SGD Nesterov, one-cycle schedule, flips) and train for
:data:`METHOD_EPOCHS` epochs, so that a study of plain / MixUp / OE / CEDA / ACET × 3 seeds with every evaluation fits
in minutes on 2 cores. Where the paper recipe costs too much on a CPU, the preset says what it changed and why; the
full recipes are the paper presets' job.
"""

from __future__ import annotations

from dataclasses import replace

from rulab.config import AugmentCfg, DataCfg, EvalCfg, MethodCfg, ModelCfg, OptimCfg, RunCfg, TrainCfg
from rulab.presets.study_spec import Study
from rulab.registry import PRESETS, STUDIES

__all__ = ["fmnist_base", "fmnist_fast", "METHOD_EPOCHS", "NOISE_SIGMA"]

METHOD_EPOCHS = 3
"""Epochs of the CPU-scale method presets (fmnist-plain keeps its 5; studies comparing methods set train.epochs)."""


NOISE_SIGMA = (0.3, 2.5)
"""Low-pass σ range (pixels) of the CPU-scale CEDA/ACET noise. W3 draws σ from [1, 2.5]; at this scale a CEDA model
trained on that noise stays confident on unfiltered noise (measured, seed 0: MMC 0.49 on uniform noise and 0.10 on
W3's noise, against 0.68 and 0.78 for plain training; σ ≤ 0.5 leaves uniform noise almost unfiltered), so the range
reaches down to 0.3 to cover it."""


def fmnist_base(name: str, epochs: int = 5, method: MethodCfg | None = None) -> RunCfg:
    """The shared recipe: fastcnn, batch 256, SGD Nesterov with a one-cycle schedule (peak 0.4), flips."""
    return RunCfg(
        name=name,
        data=DataCfg(dataset="fashion_mnist", val_size=5000, augment=AugmentCfg(hflip=0.5)),
        model=ModelCfg(name="fastcnn"),
        optim=OptimCfg(
            name="sgd",
            lr=0.4,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="onecycle",
            warmup_frac=0.2,
            lr_floor=0.0,
        ),
        method=method or MethodCfg(name="erm"),
        train=TrainCfg(epochs=epochs, batch_size=256, channels_last=True),
    )


@PRESETS.register("fmnist-plain")
def fmnist_plain() -> RunCfg:
    """The default model: plain cross-entropy (ERM), 5 epochs (92.4% test accuracy, trained in 43 s on 2 CPU cores, seed 0)."""
    return fmnist_base("fmnist-plain")


@PRESETS.register("fmnist-dropout")
def fmnist_dropout() -> RunCfg:
    """``fmnist-plain`` with dropout (p = 0.5) on the 864-d features before the head, for MC dropout (Gal & Ghahramani
    2016; ``rulab eval RUN --mc-dropout T``).

    p = 0.5 is the rate Gal & Ghahramani use before fully connected layers. The dropout sits in the head only
    (``fastcnn(dropout=0.5)``: ``fc(dropout(features))``), so an MC-dropout evaluation computes the features once
    and the head T times: about the cost of one forward pass, where dropout inside the convolutional stages would
    cost T passes.
    """
    cfg = fmnist_base("fmnist-dropout")
    return replace(cfg, model=ModelCfg(name="fastcnn", kwargs={"dropout": 0.5}))


@PRESETS.register("fmnist-fast")
def fmnist_fast() -> RunCfg:
    """The time-to-accuracy recipe: ≥ 92% Fashion-MNIST test accuracy in under a minute on 2 CPU cores.

    ``fastcnn`` (width 16) on all 60,000 training images (no validation split: nothing is tuned), 4 epochs of batch
    256 in channels-last memory format, SGD Nesterov with a one-cycle schedule (linear warm-up to 0.4 over 20% of the
    steps, then linear decay to 0), label smoothing 0.1, random horizontal flips; evaluated with flip test-time
    augmentation (``eval.flip_tta``). Measured with ``benchmarks/time_to_accuracy.py`` (docs/benchmarks.md).

    Without a validation split, ``rulab eval`` skips what needs one (temperature scaling, detector tuning); for the
    full evaluation protocol use ``fmnist-plain`` or set ``data.val_size=5000``.
    """
    cfg = fmnist_base("fmnist-fast", 4, MethodCfg("erm", {"label_smoothing": 0.1}))
    return replace(
        cfg, data=replace(cfg.data, val_size=0), train=replace(cfg.train, eval_every=0), eval=EvalCfg(flip_tta=True)
    )


# ------------------------------------------------------------------------------------------------ methods


@PRESETS.register("fmnist-mixup")
def fmnist_mixup() -> RunCfg:
    """MixUp with α = 0.3 (W2's configurations) on the shared recipe.

    Deviation from W2: the augmentation stays the shared horizontal flip; W2's "basic" vertical flips and rotations
    (``AUGMENTATIONS`` ``w2_basic``) would turn shoes and bags upside down in Fashion-MNIST.
    """
    return fmnist_base("fmnist-mixup", METHOD_EPOCHS, MethodCfg("mixup", {"alpha": 0.3}))


@PRESETS.register("fmnist-oe")
def fmnist_oe() -> RunCfg:
    """Outlier Exposure (λ = 0.5) with natural-image crops (``photos``) as the outlier pool.

    The pool is disjoint from the benchmark's test OOD sets (digits, textures and noise). Deviation from OE: outlier
    batches are half the ID batch (OE: twice) to keep the step cost at 1.5× plain training on a CPU.
    """
    return fmnist_base(
        "fmnist-oe",
        METHOD_EPOCHS,
        MethodCfg("oe", {"outliers": "photos", "lam": 0.5, "outlier_pool": 20000, "outlier_batch_ratio": 0.5}),
    )


@PRESETS.register("fmnist-ceda")
def fmnist_ceda() -> RunCfg:
    """CEDA (Hein et al. 2019) with W3's noise and loss normalised by N + M.

    Deviations from W3: ``at_frac = 0.5`` (M = N/2 noise images per batch; W3: M = N) to keep the step cost at 1.5×,
    and the low-pass σ is drawn from [0.3, 2.5] instead of [1, 2.5] (:data:`NOISE_SIGMA`).
    """
    return fmnist_base(
        "fmnist-ceda", METHOD_EPOCHS, MethodCfg("ceda", {"at_frac": 0.5, "sigma_range": list(NOISE_SIGMA)})
    )


@PRESETS.register("fmnist-acet")
def fmnist_acet() -> RunCfg:
    """ACET (Hein et al. 2019) at CPU scale: ε = 0.3 as in W3, but a short attack.

    Deviations from W3 (ε = 0.3, 40 steps of ε/40, M = N): ``at_frac = 0.5`` and 2 PGD steps of ε/2 = 0.15 from the
    random start (keep-best as in W3). Forty steps would make every training step about 20× as costly as plain
    training; two large signed steps still reach the ε-ball's corners, where the worst-case confidence lies. The noise
    is CEDA's (low-pass σ from [0.3, 2.5], :data:`NOISE_SIGMA`), so the two presets differ only by the attack.
    """
    kwargs = {"at_frac": 0.5, "sigma_range": list(NOISE_SIGMA), "eps": 0.3, "steps": 2, "step_size": 0.15}
    return fmnist_base("fmnist-acet", METHOD_EPOCHS, MethodCfg("acet", kwargs))


@PRESETS.register("fmnist-adv")
def fmnist_adv() -> RunCfg:
    """PGD adversarial training (Madry et al. 2018; W1's ``robustness/adversarial/``): ε = 8/255, step 2/255, CE on adversarial examples only.

    Deviation from W1: 3 PGD steps instead of 10 (each step is one more forward/backward pass on a CPU).
    """
    return fmnist_base(
        "fmnist-adv", METHOD_EPOCHS, MethodCfg("adversarial", {"eps": 8 / 255, "steps": 3, "step_size": 2 / 255})
    )


# ------------------------------------------------------------------------------------------------ pre-training


@PRESETS.register("fmnist-barlow")
def fmnist_barlow() -> RunCfg:
    """Barlow Twins self-supervised pre-training of fastcnn (Zbontar et al. 2021, as W2 used it) with a 512-512-512 projector, λ = 0.0051.

    Deviations from the reference (ResNet-50, 8192-wide projector, LARS, batch 2048, 1000 epochs): CPU-scale widths,
    SGD with the shared one-cycle schedule at a lower peak (0.1), 5 epochs; views get the method's tensor
    augmentation (crop, brightness/contrast, noise) on top of the flips. Followed by ``fmnist-barlow-ft``.
    """
    cfg = fmnist_base(
        "fmnist-barlow", 5, MethodCfg("barlow_twins", {"hidden": [512, 512], "out": 512, "lambd": 0.0051})
    )
    return replace(cfg, optim=replace(cfg.optim, lr=0.1), data=replace(cfg.data, val_size=5000))


def _finetune(cfg: RunCfg, epochs: int, lr: float) -> RunCfg:
    """``cfg`` as the second stage of a pre-train → fine-tune pipeline: a new head, its own schedule.

    ``train.init_from`` stays empty here; a study fills it with ``{run:PARENT}`` (presets/study_spec.py) or the user passes
    ``--train.init_from=<run dir>``.
    """
    return replace(cfg, optim=replace(cfg.optim, lr=lr), train=replace(cfg.train, epochs=epochs, reset_head=True))


@PRESETS.register("fmnist-barlow-ft")
def fmnist_barlow_ft() -> RunCfg:
    """Fine-tune a ``fmnist-barlow`` backbone with a new head on all 10 classes (lr peak 0.1, 3 epochs).

    Needs ``train.init_from`` (the ``fmnist-pretraining`` study or ``--train.init_from=runs/fmnist-barlow``).
    """
    return _finetune(fmnist_base("fmnist-barlow-ft"), METHOD_EPOCHS, 0.1)


_FIRST, _SECOND = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
SMALL_SUBSET = 500
"""Labelled examples of the small-data variants (50 per class over the five classes)."""


def _classes(cfg: RunCfg, classes: tuple[int, ...], subset: int = 0) -> RunCfg:
    return replace(cfg, data=replace(cfg.data, classes=classes, train_subset=subset))


@PRESETS.register("fmnist-pretrain-0to4")
def fmnist_pretrain_0to4() -> RunCfg:
    """Supervised pre-training on classes 0-4 (T-shirt, trouser, pullover, dress, coat), plain CE, 3 epochs.

    The Fashion-MNIST analogue of W1's ImageNet pre-training with the target classes excluded (docs/protocols/hendrycks2019.md).
    """
    return _classes(fmnist_base("fmnist-pretrain-0to4", METHOD_EPOCHS), _FIRST)


@PRESETS.register("fmnist-finetune-5to9")
def fmnist_finetune_5to9() -> RunCfg:
    """Fine-tune a classes-0-4 backbone on classes 5-9 (sandal, shirt, sneaker, bag, boot): new head, lr peak 0.1,
    2 epochs (W1's ``tune.py``: new head, lower lr, fewer epochs). Needs ``train.init_from`` (the ``fmnist-pretraining`` study)."""
    return _finetune(_classes(fmnist_base("fmnist-finetune-5to9"), _SECOND), 2, 0.1)


@PRESETS.register("fmnist-scratch-5to9")
def fmnist_scratch_5to9() -> RunCfg:
    """The from-scratch baseline of ``fmnist-finetune-5to9``: classes 5-9, random initialisation, 3 epochs."""
    return _classes(fmnist_base("fmnist-scratch-5to9", METHOD_EPOCHS), _SECOND)


@PRESETS.register("fmnist-finetune-5to9-small")
def fmnist_finetune_5to9_small() -> RunCfg:
    """``fmnist-finetune-5to9`` with only 500 labelled examples (stratified): batch 50, 20 epochs of 10 steps."""
    cfg = _finetune(_classes(fmnist_base("fmnist-finetune-5to9-small"), _SECOND, SMALL_SUBSET), 20, 0.05)
    return replace(cfg, train=replace(cfg.train, batch_size=50))


@PRESETS.register("fmnist-scratch-5to9-small")
def fmnist_scratch_5to9_small() -> RunCfg:
    """``fmnist-scratch-5to9`` with only 500 labelled examples (stratified): batch 50, 20 epochs of 10 steps."""
    cfg = _classes(fmnist_base("fmnist-scratch-5to9-small", 20), _SECOND, SMALL_SUBSET)
    return replace(cfg, optim=replace(cfg.optim, lr=0.1), train=replace(cfg.train, batch_size=50))


# ------------------------------------------------------------------------------------------------ studies


@STUDIES.register("fmnist-pretraining")
def fmnist_pretraining() -> Study:
    """Does supervised pre-training on classes 0-4 help classes 5-9? Scratch vs fine-tuned, full and 500 labels
    (W1's question at CPU scale), plus Barlow Twins self-supervised pre-training → fine-tuning on all classes."""
    return Study(
        name="fmnist-pretraining",
        presets=(
            "fmnist-pretrain-0to4",
            "fmnist-scratch-5to9",
            "fmnist-finetune-5to9",
            "fmnist-scratch-5to9-small",
            "fmnist-finetune-5to9-small",
            "fmnist-barlow",
            "fmnist-barlow-ft",
        ),
        preset_overrides=(
            ("fmnist-finetune-5to9", ("train.init_from={run:fmnist-pretrain-0to4}",)),
            ("fmnist-finetune-5to9-small", ("train.init_from={run:fmnist-pretrain-0to4}",)),
            ("fmnist-barlow-ft", ("train.init_from={run:fmnist-barlow}",)),
        ),
        skip_eval=("fmnist-pretrain-0to4", "fmnist-barlow"),
        compare_to="fmnist-scratch-5to9",
        description="pre-training on Fashion-MNIST classes 0-4 (supervised) or all images (Barlow Twins) → fine-tuning",
    )
