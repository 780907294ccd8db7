"""W4 presets: Liang, Li & Srikant (ICLR 2018), ODIN (code ``facebookresearch/odin``; docs/protocols/odin.md).

=============================  ================================================================================
``odin-densenet-cifar10``      DenseNet-BC-100 (k = 12, bottleneck, compression 0.5, dropout 0; README) with ODIN's
(``-cifar100``)                CIFAR statistics μ = (125.3, 123.0, 113.9)/255, σ = (63.0, 62.1, 66.7)/255 (``calData.py``)
``odin-wrn-cifar10``           WRN-28-10 with ODIN's dropout placement (after conv1, before BN2; ``wideresnet.py``) and the same
(``-cifar100``)                statistics
=============================  ================================================================================

Evaluation: MSP (ODIN's "Baseline") and ODIN on the ``cifar10-odin`` / ``cifar100-odin`` benchmarks (TinyImageNet
crop/resize, LSUN crop/resize, iSUN, uniform, Gaussian) under the ``odin-paper`` protocol, which is the paper's
(Liang et al. 2018, Section 4): for every OOD set, ODIN's (T, ε) is chosen on the first 1,000 images of that set and of
the ID test set (grid T ∈ {1, …, 1000} × 21 ε in [0, 0.004], lowest FPR at 95% TPR), and the rest are scored, 9,000
vs 9,000 (iSUN 7,925), ``calData.py``. The chosen T and ε are stored per set as rows ``odin_t`` / ``odin_eps`` and
the tuning grid's FPR95 and AUROC as arrays, so the report draws the paper's table with its T and ε columns and its
plots of detection against T and ε. ODIN's own per-set ε (its README table) are kept as
:data:`ODIN_EPSILON_TABLE`; :func:`evaluate_odin_table` adds rows with detector ``odin_paper`` scored with them at
T = 1000, to compare the released choice with the one tuned here.

Training recipe — [unverified]: ODIN's repository ships checkpoints, not the training code; the recipe used here,
"SGD, lr 0.1 with step decays; batch 64, 300 epochs (DenseNet) / 200 (WRN)", is recalled from the paper and not
checked against it. The step decays (÷10 at 50% and 75%), momentum 0.9 with Nesterov, weight decay (1e-4 DenseNet, 5e-4 WRN), WRN dropout 0 and the CIFAR augmentation (crop 4 + flip)
are the usual recipes of the DenseNet and WRN papers, not facts from ODIN. A 10% random validation split is held out
for temperature scaling. To evaluate ODIN's released checkpoints instead, convert them to safetensors and evaluate
them with ``rulab eval``.

``odin-fmnist`` is the CPU counterpart: ``fmnist-plain`` evaluated with MSP and ODIN under the same ``odin-paper``
protocol on the ``fmnist`` benchmark ((T, ε) tuned per OOD set on its first 1,000 images; scikit-learn's digits,
1,797 images, leave 797 vs 797 to score), on the ``coarse`` grid (4 T × 5 ε over the paper's ranges, 20 points,
as the ``fmnist-default`` study): the paper's grid has 210 points and is searched once per OOD set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from rulab.config import AugmentCfg, DataCfg, EvalCfg, MethodCfg, ModelCfg, OptimCfg, RunCfg, TrainCfg, config_hash
from rulab.detectors.odin import odin_score
from rulab.errors import ConfigError
from rulab.eval.checkpoint import load_run
from rulab.eval.ood_eval import load_ood_set, ood_set_size, protocol_metrics
from rulab.models.spec import ODIN_CIFAR_MEAN, ODIN_CIFAR_STD
from rulab.presets.paper import PaperStudy, register_preset
from rulab.registry import PROTOCOLS, STUDIES
from rulab.results.store import ResultStore, run_id_for
from rulab.results.table import ResultTable

__all__ = ["ODIN_TEMPERATURE", "ODIN_EPSILON_TABLE", "odin_config", "odin_table_rows", "evaluate_odin_table"]

ODIN_TEMPERATURE = 1000.0
"""T of every ODIN model and OOD set (ODIN's README)."""

ODIN_EPSILON_TABLE: dict[str, dict[str, float]] = {
    "densenet-cifar10": {
        "tin_crop": 0.0014,
        "tin_resize": 0.0014,
        "lsun_crop": 0.0,
        "lsun_resize": 0.0014,
        "isun": 0.0014,
        "uniform": 0.0014,
        "gaussian_odin": 0.0014,
    },
    "densenet-cifar100": {
        "tin_crop": 0.0014,
        "tin_resize": 0.0028,
        "lsun_crop": 0.0028,
        "lsun_resize": 0.0028,
        "isun": 0.0028,
        "uniform": 0.0028,
        "gaussian_odin": 0.0028,
    },
    "wrn-cifar10": {
        "tin_crop": 0.0005,
        "tin_resize": 0.0011,
        "lsun_crop": 0.0,
        "lsun_resize": 0.0006,
        "isun": 0.0008,
        "uniform": 0.0014,
        "gaussian_odin": 0.0014,
    },
    "wrn-cifar100": {
        "tin_crop": 0.0028,
        "tin_resize": 0.0028,
        "lsun_crop": 0.0048,
        "lsun_resize": 0.002,
        "isun": 0.0028,
        "uniform": 0.0028,
        "gaussian_odin": 0.0028,
    },
}
"""ODIN's ε in [0, 1]-pixel units per model and OOD set (ODIN's README table), keyed by
``"<densenet|wrn>-<cifar10|cifar100>"`` and OOD_SETS name."""

_ARCH: dict[str, tuple[ModelCfg, int, float]] = {
    "densenet": (
        ModelCfg(
            "densenet_bc100", {"growth": 12, "dropout": 0.0, "mean": list(ODIN_CIFAR_MEAN), "std": list(ODIN_CIFAR_STD)}
        ),
        300,
        1e-4,
    ),
    "wrn": (
        ModelCfg(
            "wrn28_10",
            {
                "dropout": 0.0,
                "dropout_placement": "after_conv1",
                "mean": list(ODIN_CIFAR_MEAN),
                "std": list(ODIN_CIFAR_STD),
            },
        ),
        200,
        5e-4,
    ),
}
"""Per architecture (data): the model, epochs [unverified] and weight decay [unverified]."""


def odin_config(arch: str, dataset: str) -> RunCfg:
    """The W4 run ``odin-<arch>-<dataset>`` (module docstring)."""
    model, epochs, wd = _ARCH[arch]
    return RunCfg(
        name=f"odin-{arch}-{dataset}",
        data=DataCfg(dataset=dataset, val_size=5000, val_split="random", augment=AugmentCfg(hflip=0.5, crop_padding=4)),
        model=model,
        optim=OptimCfg(
            name="sgd",
            lr=0.1,
            momentum=0.9,
            nesterov=True,
            weight_decay=wd,
            schedule="step",
            milestones=(0.5, 0.75),
            gamma=0.1,
            lr_floor=0.0,
        ),
        method=MethodCfg("erm"),
        train=TrainCfg(epochs=epochs, batch_size=64),
        eval=EvalCfg(
            benchmark=f"{dataset}-odin",
            protocol="odin-paper",
            detectors=("msp", "odin"),
            shift="",
            farconf=False,
            temperature=True,
        ),
    )


for _arch in _ARCH:
    for _dataset in ("cifar10", "cifar100"):
        register_preset(
            f"odin-{_arch}-{_dataset}",
            partial(odin_config, _arch, _dataset),
            f"ODIN's {_arch} on {_dataset} (Liang et al. 2018; training recipe unverified), MSP and ODIN on {_dataset}-odin.",
        )


# ------------------------------------------------------------------------------------------------ per-set ε


def odin_table_rows(
    model: Any,
    test: Any,
    ood_sets: Mapping[str, Any],
    epsilons: Mapping[str, float],
    protocol: Any,
    seed: int = 0,
    temperature: float = ODIN_TEMPERATURE,
    batch_size: int = 500,
    detector: str = "odin_paper",
) -> Any:
    """ODIN scored with one ε per OOD set (ODIN's README table): a :class:`~rulab.results.table.ResultTable` of the
    detection metrics, kind ``ood``, detector ``detector``.

    The ID scores depend on ε, so the ID test set is scored once per distinct ε.

    Args:
        model: a classifier taking [0, 1] pixels.
        test: the ID test set (uint8 ``[N, C, H, W]``).
        ood_sets: OOD set name → dataset.
        epsilons: OOD set name → ε in pixel units (every set of ``ood_sets`` must have one).
        protocol: a :class:`~rulab.eval.protocols.Protocol` (ODIN: ``odin``).
        seed: protocol seed.
        temperature: T.
        batch_size: images per gradient pass.
    """
    missing = [n for n in ood_sets if n not in epsilons]
    if missing:
        raise ConfigError(f"no ODIN ε for OOD set(s) {missing}; the table has {sorted(epsilons)}")
    table = ResultTable(meta={"detector": detector, "temperature": temperature})
    id_scores: dict[float, Any] = {}
    for name, ds in ood_sets.items():
        eps = float(epsilons[name])
        if eps not in id_scores:
            id_scores[eps] = odin_score(model, test.x, temperature, eps, batch_size)
        s_ood = odin_score(model, ds.x, temperature, eps, batch_size)
        values, extra = protocol_metrics(id_scores[eps], s_ood, protocol, seed)
        extra["hparams"] = {"t": temperature, "eps": eps, "source": "ODIN README epsilon table"}
        for metric, value in values.items():
            table.add("ood", metric, value, dataset=name, detector=detector, n=extra["n_ood"], extra=extra)
    return table


def evaluate_odin_table(
    path: str | os.PathLike[str],
    table_key: str | None = None,
    db: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> Any:
    """Score a trained ``odin-*`` run with ODIN's per-set ε (:data:`ODIN_EPSILON_TABLE`) on its benchmark's OOD sets.

    Args:
        path: the run directory (or its ``model.safetensors``).
        table_key: the :data:`ODIN_EPSILON_TABLE` key (default: from the run's preset, ``odin-densenet-cifar10`` →
            ``densenet-cifar10``).
        db: a results database holding the run (a study's ``results.db``); the rows are added to it, so the study's
            report shows them in the ODIN table.
        device: ``auto``/``cpu``/``cuda`` (default: the run's).

    Returns:
        The :class:`~rulab.results.table.ResultTable` of the ``odin_paper`` rows.
    """
    run = load_run(path, device=device)
    cfg, bench, test = run.cfg, run.benchmark, run.splits.test
    key = table_key or (cfg.preset or cfg.name).removeprefix("odin-")
    if key not in ODIN_EPSILON_TABLE:
        raise ConfigError(f"no ODIN ε table for '{key}'; pass table_key= one of {', '.join(ODIN_EPSILON_TABLE)}")
    protocol = PROTOCOLS.create(cfg.eval.protocol or bench.protocol)
    sets = {
        n: load_ood_set(n, test.shape, ood_set_size(n, bench, protocol, len(test), cfg.eval.n_ood), cfg.seed, base=test)
        for n in bench.ood
    }
    table = odin_table_rows(
        run.model, test, sets, ODIN_EPSILON_TABLE[key], protocol, cfg.seed, batch_size=min(500, cfg.eval.batch_size)
    )
    if db is not None:
        with ResultStore(Path(db)) as store:
            store.write_results(run_id_for(cfg.name, config_hash(cfg)), table)
    return table


# ------------------------------------------------------------------------------------------------ studies


def _study(arch: str, dataset: str) -> PaperStudy:
    preset = f"odin-{arch}-{dataset}"
    label = (
        {"densenet": "DenseNet-BC", "wrn": "WRN-28-10"}[arch]
        + " "
        + {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset]
    )
    return PaperStudy(
        name=preset,
        presets=(preset,),
        description=f"W4 (ODIN, Liang et al. 2018): {label}; Baseline (MSP) vs ODIN with (T, ε) tuned per OOD set on its first 1,000 images; FPR@95TPR, detection error, AUROC, AUPR",
        paper_table="odin",
        paper_columns=((label, preset),),
        paper_reference=f"{arch}-{dataset}",
    )


@STUDIES.register("odin-densenet-cifar10")
def odin_densenet_cifar10() -> PaperStudy:
    """ODIN's DenseNet-BC-100 on CIFAR-10, 3 seeds (Liang et al. 2018)."""
    return _study("densenet", "cifar10")


@STUDIES.register("odin-densenet-cifar100")
def odin_densenet_cifar100() -> PaperStudy:
    """ODIN's DenseNet-BC-100 on CIFAR-100, 3 seeds (Liang et al. 2018)."""
    return _study("densenet", "cifar100")


@STUDIES.register("odin-wrn-cifar10")
def odin_wrn_cifar10() -> PaperStudy:
    """ODIN's WRN-28-10 on CIFAR-10, 3 seeds (Liang et al. 2018)."""
    return _study("wrn", "cifar10")


@STUDIES.register("odin-wrn-cifar100")
def odin_wrn_cifar100() -> PaperStudy:
    """ODIN's WRN-28-10 on CIFAR-100, 3 seeds (Liang et al. 2018)."""
    return _study("wrn", "cifar100")


@STUDIES.register("odin-fmnist")
def odin_fmnist() -> PaperStudy:
    """W4 at CPU scale: ``fmnist-plain`` scored by MSP and by ODIN under the paper's protocol (``odin-paper``: (T, ε)
    tuned per OOD set on its first 1,000 images, the rest scored) on the ``fmnist`` benchmark, 3 seeds, ODIN's table
    layout with the chosen T and ε."""
    return PaperStudy(
        name="odin-fmnist",
        presets=("fmnist-plain",),
        seeds=(0, 1, 2),
        overrides=(
            "eval.benchmark=fmnist",
            "eval.protocol=odin-paper",
            "eval.detectors=[msp,odin]",
            "eval.shift=",
            "eval.farconf=false",
            "eval.detector_kwargs.odin.search=coarse",
        ),
        description="W4 at CPU scale: Fashion-MNIST fastcnn, Baseline (MSP) vs ODIN ((T, ε) tuned per OOD set on its first 1,000 images), odin-paper protocol",
        paper_table="odin",
        paper_columns=(("fastcnn Fashion-MNIST", "fmnist-plain"),),
    )
