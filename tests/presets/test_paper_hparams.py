"""The paper presets carry the numbers of the four works (docs/protocols/, one page per work, with each number's
source): each test reads the resolved RunCfg back and compares it with the values written here with their sources. Also:
every preset and study resolves, and every benchmark's OOD sets, protocol and shift suite exist."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rulab.config import RunCfg
from rulab.data.corruptions import shift_suite
from rulab.eval.validate import validate_run
from rulab.presets import load_config
from rulab.registry import BENCHMARKS, DATASETS, OOD_SETS, PRESETS, PROTOCOLS, STUDIES
from rulab.study import plan_cells

W1 = ("hendrycks2019-cifar10", "hendrycks2019-cifar100", "hendrycks2019-tinyimagenet")
PAPER_PREFIXES = ("hendrycks2019-", "coursework-", "hein2019-", "odin-")


def cfg_of(name: str) -> RunCfg:
    """The preset's config, validated as a study validates a fine-tuning cell (init_from filled in later)."""
    cfg = load_config(name, check=False)
    validate_run(replace(cfg, train=replace(cfg.train, init_from="", reset_head=False)))
    return cfg


def paper_presets() -> list[str]:
    return [p for p in PRESETS.list() if p.startswith(PAPER_PREFIXES) and p != "hendrycks2019-cifar10-pretrain-nocifar"]


@pytest.mark.parametrize("name", paper_presets())
def test_every_paper_preset_validates(name):
    cfg = cfg_of(name)
    assert cfg.preset == name and cfg.name == name
    bench = BENCHMARKS.create(cfg.eval.benchmark)
    if cfg.data.dataset not in ("imagenet32", "imagenet64"):  # pre-training runs are not evaluated
        assert bench.id_dataset == cfg.data.dataset


@pytest.mark.parametrize("name", [s for s in STUDIES.list() if s.startswith(PAPER_PREFIXES)])
def test_every_paper_study_plans_its_cells(name, tmp_path, monkeypatch):
    if name == "hendrycks2019-cifar10-nocifar":  # needs map_clsloc.txt (see test_imagenet_exclusion.py)
        monkeypatch.setenv("RULAB_DATA", str(tmp_path))
        with pytest.raises(Exception, match="map_clsloc.txt"):
            plan_cells(STUDIES.create(name), out_dir=str(tmp_path))
        return
    study = STUDIES.create(name)
    cells = plan_cells(study, seeds=(0,), out_dir=str(tmp_path))
    assert [c.preset for c in cells] == list(study.presets)
    assert {p for _, p in study.paper_columns} <= set(study.presets)


@pytest.mark.parametrize("name", BENCHMARKS.list())
def test_benchmarks_resolve(name):
    b = BENCHMARKS.create(name)
    assert b.id_dataset in DATASETS
    assert all(s in OOD_SETS for s in b.ood + b.val_ood), [s for s in b.ood + b.val_ood if s not in OOD_SETS]
    assert b.protocol in PROTOCOLS
    if b.shift:
        assert shift_suite(b.shift)


def test_w1_ood_sets_and_protocol():
    """W1 ``test.py``: 8 OOD sets (3 noise, Textures, SVHN, Places365, LSUN, other CIFAR), 2,000 per run × 5 runs."""
    b = BENCHMARKS.create("cifar10-hendrycks")
    assert b.ood == ("gaussian", "rademacher", "blobs", "dtd", "svhn", "places365", "lsun_resize", "cifar100")
    assert BENCHMARKS.create("cifar100-hendrycks").ood[-1] == "cifar10"
    p = PROTOCOLS.create(b.protocol)
    assert (p.num_runs, p.per_run(10_000), p.synthetic_size(10_000)) == (5, 2000, 10_000)
    assert "uniform" in b.val_ood and "uniform" not in b.ood  # W1's validation-only set is never a test set


@pytest.mark.parametrize("name", W1)
def test_w1_baseline_hyperparameters(name):
    """W1 "Normal" (``baseline.py``): 100 epochs, lr 0.1, batch 128, dropout 0.3; SGD Nesterov 0.9, wd 5e-4, cosine/iter to 1e-6;
    WRN-40-2, mean = std = 0.5, crop 4 (CIFAR) / 8 (Tiny ImageNet) + flip; the OOD model on every training image with
    ``drop_last=False`` loaders, the calibration model with the ``validation_split`` calibration split."""
    ood = cfg_of(name)
    assert (ood.data.val_size, ood.train.drop_last, ood.eval.temperature) == (
        0,
        False,
        False,
    )  # all 50,000, last batch kept
    c = cfg_of(name + "-calibration")
    assert not c.train.drop_last and c.eval.temperature
    assert (
        replace(c, data=ood.data, name=ood.name, preset=ood.preset, eval=ood.eval) == ood
    )  # the split is the only difference
    assert c.model.name == "wrn40_2" and c.model.kwargs["dropout"] == 0.3
    assert c.model.kwargs["mean"] == [0.5] * 3 and c.model.kwargs["std"] == [0.5] * 3
    o = c.optim
    assert (o.name, o.lr, o.momentum, o.nesterov, o.weight_decay) == ("sgd", 0.1, 0.9, True, 5e-4)
    assert (o.schedule, o.lr_floor, o.warmup_frac) == ("cosine", 1e-6, 0.0)
    assert (c.train.epochs, c.train.batch_size, c.method.name) == (100, 128, "erm")
    assert c.data.augment.hflip == 0.5 and c.data.augment.crop_padding == (8 if "tiny" in name else 4)
    if "tiny" in name:
        assert (c.data.dataset, c.data.val_size) == ("tiny_imagenet", 10_000)
    else:
        assert (c.data.val_split, c.data.val_size) == ("tail", 5000)  # 45,000 / 5,000 contiguous tail
    assert c.eval.detectors == ("msp",) and c.eval.benchmark.endswith("-hendrycks") and not c.parity


@pytest.mark.parametrize("name", ("hendrycks2019-cifar10-pretrain", "hendrycks2019-cifar100-pretrain"))
def test_w1_pretraining_hyperparameters(name):
    """W1 pre-training (``downsampled_train/baseline.py``): ImageNet 32×32, 1000 classes, 100 epochs, lr 0.1, batch 256,
    dropout 0, crop 4 + flip."""
    c = cfg_of(name)
    assert (c.data.dataset, c.data.exclude_classes, c.data.classes) == ("imagenet32", (), ())
    assert (c.train.epochs, c.optim.lr, c.train.batch_size, c.model.kwargs["dropout"]) == (100, 0.1, 256, 0.0)
    assert (c.optim.nesterov, c.optim.momentum, c.optim.weight_decay, c.optim.schedule, c.optim.lr_floor) == (
        True,
        0.9,
        5e-4,
        "cosine",
        1e-6,
    )
    assert c.data.augment.crop_padding == 4 and c.data.augment.hflip == 0.5


@pytest.mark.parametrize("which,epochs", (("cifar10", 10), ("cifar100", 10), ("tinyimagenet", 20)))
def test_w1_finetune_hyperparameters(which, epochs):
    """W1 fine-tuning (``tune.py``): new head, all layers, lr 0.001, 10 epochs (Tiny ImageNet 20), dropout 0, cosine to 1e-6."""
    c = cfg_of(f"hendrycks2019-{which}-finetune")
    assert c.train.reset_head and c.optim.backbone_lr_mult == 1.0 and not c.train.freeze_bn
    assert c.train.head_init == "pytorch"  # tune.py: a fresh nn.Linear(128, K), PyTorch's default initialisation
    assert (c.data.val_size, c.train.drop_last) == (0, False)
    assert (c.optim.lr, c.train.epochs, c.model.kwargs["dropout"], c.train.batch_size) == (0.001, epochs, 0.0, 128)
    assert (c.optim.schedule, c.optim.lr_floor, c.optim.nesterov) == ("cosine", 1e-6, True)


def test_w1_parity_variants():
    """W1 parity (the register of convention 5 in docs/conventions.md): parity=True (scheduler shift, top bin dropped) and T = 1 only."""
    for name in (
        "hendrycks2019-cifar10-parity",
        "hendrycks2019-cifar100-finetune-parity",
        "hendrycks2019-cifar10-calibration-parity",
    ):
        c = cfg_of(name)
        base = cfg_of(name.removesuffix("-parity"))
        assert c.parity and not c.eval.temperature
        assert replace(
            c, parity=False, name="x", preset="x", eval=replace(c.eval, temperature=base.eval.temperature)
        ) == replace(base, name="x", preset="x")
    assert cfg_of("hendrycks2019-cifar10-calibration").eval.temperature  # the parity variant drops a tuned T


def test_w1_studies_link_pretraining_to_finetuning(tmp_path):
    study = STUDIES.create("hendrycks2019-cifar10")
    assert study.presets == (
        "hendrycks2019-cifar10-pretrain",
        "hendrycks2019-cifar10",
        "hendrycks2019-cifar10-finetune",
        "hendrycks2019-cifar10-calibration",
        "hendrycks2019-cifar10-finetune-calibration",
    )
    cells = {c.preset: c for c in plan_cells(study, seeds=(0,), out_dir=str(tmp_path))}
    for tuned in ("hendrycks2019-cifar10-finetune", "hendrycks2019-cifar10-finetune-calibration"):
        assert cells[tuned].cfg.train.init_from == str(tmp_path / "hendrycks2019-cifar10-pretrain-s0")
    assert not cells["hendrycks2019-cifar10-pretrain"].evaluate and study.paper_columns[1] == (
        "Pre-Train",
        "hendrycks2019-cifar10-finetune",
    )
    assert study.paper_columns[3] == ("calibration:Pre-Train", "hendrycks2019-cifar10-finetune-calibration")


def test_w1_tinyimagenet_pretraining_excludes_the_tiny_classes(tmp_path):
    """W1 Section 4: Tiny ImageNet models are pre-trained on ImageNet 64×64 without the 200 Tiny ImageNet classes; the
    study links that run to the 20-epoch fine-tuning."""
    c = cfg_of("hendrycks2019-tinyimagenet-pretrain")
    assert (c.data.dataset, dict(c.data.kwargs)) == ("imagenet64", {"exclude_classes_of": "tiny_imagenet"})
    assert (c.train.epochs, c.optim.lr, c.train.batch_size, c.model.kwargs["dropout"], c.data.augment.crop_padding) == (
        100,
        0.1,
        256,
        0.0,
        8,
    )
    study = STUDIES.create("hendrycks2019-tinyimagenet")
    cells = {c.preset: c for c in plan_cells(study, seeds=(0,), out_dir=str(tmp_path))}
    assert cells["hendrycks2019-tinyimagenet-finetune"].cfg.train.init_from == str(
        tmp_path / "hendrycks2019-tinyimagenet-pretrain-s0"
    )
    assert cells["hendrycks2019-tinyimagenet-finetune"].cfg.train.epochs == 20


def test_w1_adversarial_presets():
    """W1's adversarial part (``robustness/adversarial/``, Table 2): WRN-28-10 on 2x − 1; PGD ε 8/255, step 2/255, 10 steps
    to train, 20 to evaluate, one random start; adversarial ImageNet 32×32 pre-training (100 epochs, lr 0.1, batch 256)
    then 5 epochs of adversarial tuning at lr 0.001 with a fresh head; evaluated by clean and adversarial accuracy."""
    for which in ("cifar10", "cifar100"):
        normal, adv, tuned = (cfg_of(f"hendrycks2019-adv-{which}-{k}") for k in ("normal", "advtrain", "finetune"))
        for c in (normal, adv, tuned):
            assert (
                c.model.name == "wrn28_10" and c.model.kwargs["mean"] == [0.5] * 3 and c.model.kwargs["dropout"] == 0.0
            )
            e = c.eval
            assert (e.farconf, e.farconf_tests, e.adv_steps, e.adv_restarts, e.adv_n) == (
                True,
                ("samples",),
                20,
                1,
                10_000,
            )
            assert (e.adv_eps, e.adv_step_size) == (pytest.approx(8 / 255), pytest.approx(2 / 255))
        assert normal.method.name == "erm"
        for c in (adv, tuned):
            k = c.method.kwargs
            assert c.method.name == "adversarial" and (k["eps"], k["step_size"], k["steps"]) == (
                pytest.approx(8 / 255),
                pytest.approx(2 / 255),
                10,
            )
        assert (tuned.train.epochs, tuned.optim.lr, tuned.train.reset_head, tuned.train.head_init) == (
            5,
            0.001,
            True,
            "pytorch",
        )
    pre = cfg_of("hendrycks2019-adv-pretrain")
    assert (pre.data.dataset, pre.train.epochs, pre.optim.lr, pre.train.batch_size, pre.method.name) == (
        "imagenet32",
        100,
        0.1,
        256,
        "adversarial",
    )
    study = STUDIES.create("hendrycks2019-adv-cifar10")
    assert study.paper_table == "hendrycks2019-adv" and study.skip_eval == ("hendrycks2019-adv-pretrain",)


def test_w2_pathmnist_hyperparameters():
    """W2 pathMNIST (report §6.1, the code's configurations): ResNet-18 (ImageNet stem) at 28×28, AdamW wd 1e-6, batch 256, constant lr; basic_0 80 epochs no aug,
    pathMNIST stats; basic_2 MixUp α 0.3 + basic aug, 60 epochs, effective lr 1e-3; pt_5 backbone 5e-5 / fc 5e-4,
    freeze_bn, ImageNet stats; the report §7.1 grids and the 10-bin metric (§4.4.2)."""
    basic, mixup, pt = (
        cfg_of(n) for n in ("coursework-pathmnist", "coursework-pathmnist-mixup", "coursework-pathmnist-pretrained")
    )
    for c in (basic, mixup, pt):
        assert (c.model.name, c.model.kwargs["stem"], c.data.dataset) == ("resnet18", "imagenet", "pathmnist")
        assert (c.optim.name, c.optim.weight_decay, c.train.batch_size, c.optim.schedule) == (
            "adamw",
            1e-6,
            256,
            "constant",
        )
        assert c.eval.shift == "w2-pathmnist"
    assert basic.model.kwargs["mean"] == [0.740545, 0.53298219, 0.70582885] and basic.model.kwargs["std"] == [
        0.1237,
        0.1768,
        0.1244,
    ]
    assert (
        basic.train.epochs,
        basic.optim.lr,
        basic.method.name,
        basic.data.augment.hflip,
        basic.data.augment.rotate_p,
    ) == (80, 1e-3, "erm", 0.0, 0.0)
    assert (mixup.train.epochs, mixup.optim.lr, mixup.method.name, mixup.method.kwargs["alpha"]) == (
        60,
        1e-3,
        "mixup",
        0.3,
    )
    a = mixup.data.augment
    assert (a.hflip, a.vflip, a.rotate_deg, a.rotate_p) == (0.4, 0.4, 20.0, 0.4)
    assert "mean" not in pt.model.kwargs and pt.model.kwargs["pretrained"]  # ImageNet statistics (model default)
    assert pt.optim.lr == 5e-4 and pt.optim.lr * pt.optim.backbone_lr_mult == pytest.approx(5e-5)
    assert pt.train.freeze_bn and pt.train.epochs == 60 and pt.method.kwargs["alpha"] == 0.3
    for c in (basic, mixup, pt):  # the official 89,996 / 10,004 split; the best validation-accuracy epoch is evaluated
        assert (c.data.val_split, c.train.keep_best) == ("official", "val_acc")
    assert a.rotate_interp == "nearest"  # torchvision RandomRotation's default
    assert shift_suite("w2-pathmnist") == [("brightness_factor", f) for f in (0.8, 0.9, 1.1, 1.2)] + [
        ("gaussian_blur_sigma", s) for s in (0.3, 0.5, 0.7, 0.9)
    ]


def test_w2_pets_hyperparameters():
    """W2 Pets (report §6.2): ResNet-50; scratch 120 epochs, pretrained (supervised / Barlow Twins weights) 25 epochs; MixUp + flips
    + rotations; report §7.2 Pets brightness {0.6, 0.8, 1.2, 1.4}, blur σ ∈ {0.3, 0.5, 0.7, 0.9}; BT λ = 0.0051."""
    scratch, sup, bt = (
        cfg_of(n) for n in ("coursework-pets-scratch", "coursework-pets-supervised", "coursework-pets-bt")
    )
    assert (scratch.model.name, scratch.train.epochs, sup.train.epochs, bt.train.epochs) == ("resnet50", 120, 25, 25)
    assert sup.model.kwargs["pretrained"] != bt.model.kwargs["pretrained"]
    assert all(
        c.method.name == "mixup" and c.data.augment.rotate_deg == 20.0 and c.eval.shift == "w2-pets"
        for c in (scratch, sup, bt)
    )
    assert shift_suite("w2-pets") == [("brightness_factor", f) for f in (0.6, 0.8, 1.2, 1.4)] + [
        ("gaussian_blur_sigma", s) for s in (0.3, 0.5, 0.7, 0.9)
    ]
    assert all(c.train.keep_best == "val_acc" and c.data.kwargs["size"] == 224 for c in (scratch, sup, bt))
    assert (scratch.model.stats, sup.model.stats, bt.model.stats) == (
        "train",
        "",
        "",
    )  # report §5: training-set statistics from scratch
    barlow = cfg_of("coursework-pets-barlow")
    assert (
        barlow.method.kwargs == {"hidden": [8192, 8192], "out": 8192, "lambd": 0.0051}
        and barlow.model.kwargs["zero_init_residual"]
    )
    assert barlow.optim.weight_decay == 1e-6 and barlow.optim.lr_floor == pytest.approx(0.2 * 0.001)


@pytest.mark.parametrize("data", ("mnist", "svhn", "cifar10", "cifar100"))
def test_w3_hyperparameters(data):
    """W3 (``models.py``, README command): lenet (MNIST) / resnet_small; SGD momentum 0.9 non-Nesterov, lr 0.1, batch 128, 100 epochs, lr/10 at
    50/75/90%, wd 5e-4·Σw² ≡ 1e-3 on weights only; MNIST Adam lr 1e-3; aug CIFAR crop 4 + flip, SVHN/MNIST crop 4;
    CEDA/ACET at_frac 1, frac_perm 0.5, σ ∈ [1, 2.5], ACET ε 0.3, 40 steps of ε/40; the hein protocol (``evaluation.py``)."""
    plain, ceda, acet = (cfg_of(f"hein2019-{data}-{m}") for m in ("plain", "ceda", "acet"))
    for c in (plain, ceda, acet):
        assert c.model.name == ("lenet" if data == "mnist" else "preact_resnet_hein")
        assert (c.train.batch_size, c.train.epochs) == (128, 100)
        o = c.optim
        assert (o.schedule, o.milestones, o.gamma, o.weight_decay, o.no_decay_norm) == (
            "step",
            (0.5, 0.75, 0.9),
            0.1,
            1e-3,
            True,
        )
        if data == "mnist":
            assert (o.name, o.lr) == ("adamw", 1e-3)
        else:
            assert (o.name, o.lr, o.momentum, o.nesterov) == ("sgd", 0.1, 0.9, False)
        assert c.data.augment.crop_padding == 4 and c.data.augment.hflip == (0.5 if data.startswith("cifar") else 0.0)
        assert (c.eval.benchmark, c.eval.farconf, c.eval.adv_eps, c.eval.adv_steps, c.eval.alpha_trials) == (
            f"{data}-hein",
            True,
            0.3,
            80,
            10_000,
        )
        assert c.eval.adv_noise_steps == (200,)  # W3 attacks its noise with 80 and with 200 steps
    assert plain.method.name == "erm"
    assert ceda.method.name == "ceda" and ceda.method.kwargs == {
        "at_frac": 1.0,
        "frac_perm": 0.5,
        "sigma_range": [1.0, 2.5],
    }
    k = acet.method.kwargs
    assert acet.method.name == "acet" and (k["eps"], k["steps"], k["at_frac"], k["frac_perm"]) == (0.3, 40, 1.0, 0.5)
    assert k["step_size"] == pytest.approx(0.0075)
    assert (
        BENCHMARKS.create(f"{data}-hein").protocol == "hein" and PROTOCOLS.create("hein").synthetic_size(10_000) == 9984
    )


def test_w3_benchmark_sets():
    """W3 ``evaluation.py``: CIFAR-10 OOD SVHN, CIFAR-100, LSUN CR, ImageNet−; SVHN OOD CIFAR-10, CIFAR-100, LSUN CR,
    ImageNet−; CIFAR-100 OOD CIFAR-10, SVHN, LSUN CR, ImageNet−; MNIST FashionMNIST, EMNIST letters, grey CIFAR-10; plus
    W3's noise everywhere."""
    assert BENCHMARKS.create("cifar10-hein").ood == ("svhn", "cifar100", "lsun_classroom", "imagenet_minus", "hein")
    assert BENCHMARKS.create("svhn-hein").ood == ("cifar10", "cifar100", "lsun_classroom", "imagenet_minus", "hein")
    assert BENCHMARKS.create("cifar100-hein").ood == ("cifar10", "svhn", "lsun_classroom", "imagenet_minus", "hein")
    assert BENCHMARKS.create("mnist-hein").ood == ("fashion_mnist", "emnist", "cifar10", "hein")


@pytest.mark.parametrize("arch,model,epochs", (("densenet", "densenet_bc100", 300), ("wrn", "wrn28_10", 200)))
@pytest.mark.parametrize("data", ("cifar10", "cifar100"))
def test_w4_hyperparameters(arch, model, epochs, data):
    """ODIN's README: DenseNet-BC-100 (k = 12, dropout 0) / WRN-28-10 with dropout after conv1; ``calData.py`` CIFAR stats
    (125.3, 123.0, 113.9)/255, (63.0, 62.1, 66.7)/255; T = 1000; [unverified] SGD lr 0.1, batch 64, 300 / 200 epochs."""
    c = cfg_of(f"odin-{arch}-{data}")
    assert c.model.name == model
    assert c.model.kwargs["mean"] == pytest.approx([125.3 / 255, 123.0 / 255, 113.9 / 255])
    assert c.model.kwargs["std"] == pytest.approx([63.0 / 255, 62.1 / 255, 66.7 / 255])
    assert c.model.kwargs["dropout"] == 0.0
    if arch == "densenet":
        assert c.model.kwargs["growth"] == 12
    else:
        assert c.model.kwargs["dropout_placement"] == "after_conv1"
    assert (c.optim.lr, c.train.batch_size, c.train.epochs) == (0.1, 64, epochs)
    assert c.eval.detectors == ("msp", "odin") and c.eval.benchmark == f"{data}-odin"
    assert c.eval.protocol == "odin-paper"  # (T, ε) tuned per OOD set on its first 1,000 images, as the paper
    b = BENCHMARKS.create(c.eval.benchmark)
    assert (
        b.ood == ("tin_crop", "tin_resize", "lsun_crop", "lsun_resize", "isun", "uniform", "gaussian_odin")
        and b.protocol == "odin"
    )
    from rulab.detectors.odin import ODIN

    assert ODIN().t == 1000.0


def test_w4_epsilon_table_is_the_readme_table():
    """ODIN's README ε table, column by column (TIN crop, TIN resize, LSUN crop, LSUN resize, iSUN, Uniform, Gaussian)."""
    from rulab.presets.odin import ODIN_EPSILON_TABLE, ODIN_TEMPERATURE

    order = ("tin_crop", "tin_resize", "lsun_crop", "lsun_resize", "isun", "uniform", "gaussian_odin")
    expected = {
        "densenet-cifar10": (0.0014, 0.0014, 0, 0.0014, 0.0014, 0.0014, 0.0014),
        "densenet-cifar100": (0.0014, 0.0028, 0.0028, 0.0028, 0.0028, 0.0028, 0.0028),
        "wrn-cifar10": (0.0005, 0.0011, 0, 0.0006, 0.0008, 0.0014, 0.0014),
        "wrn-cifar100": (0.0028, 0.0028, 0.0048, 0.002, 0.0028, 0.0028, 0.0028),
    }
    assert ODIN_TEMPERATURE == 1000.0
    assert {k: tuple(v[s] for s in order) for k, v in ODIN_EPSILON_TABLE.items()} == expected


def test_cpu_counterpart_studies_reuse_the_fmnist_presets():
    assert STUDIES.create("hendrycks2019-fmnist").presets == (
        "fmnist-pretrain-0to4",
        "fmnist-scratch-5to9",
        "fmnist-finetune-5to9",
    )
    assert STUDIES.create("hein2019-fmnist").presets == ("fmnist-plain", "fmnist-ceda", "fmnist-acet")
    assert STUDIES.create("odin-fmnist").overrides_for("fmnist-plain")[:3] == (
        "eval.benchmark=fmnist",
        "eval.protocol=odin-paper",
        "eval.detectors=[msp,odin]",
    )
    c = cfg_of("coursework-fmnist-basic")
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.eval.shift) == ("adamw", 1e-3, 1e-6, "w2-pathmnist")
