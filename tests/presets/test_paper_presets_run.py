"""Every paper preset trains one optimizer step on CPU through the real data path: tiny files in the datasets' real
formats (tests/presets/conftest.py) → DATASETS → splits → the preset's model, method, optimizer and augmentation.

Overrides shrink only what must shrink: one step, batch 2, a 2-image validation split, a 4-image labelled subset and,
where the model has a width argument, a narrower model. Fine-tuning presets start from a one-step parent run of the
preset that precedes them in their study. Pre-trained-weight presets read a torchvision ResNet state_dict written
to a temporary safetensors file. The WRN-28-10 and ResNet-50 presets are marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rulab.checkpoint import read_meta
from rulab.presets import load_config
from rulab.registry import PRESETS
from rulab.train.loop import fit

torch.set_num_threads(1)

NARROW = {
    "densenet_bc100": ("model.kwargs.growth=2",),
    "preact_resnet_hein": ("model.kwargs.width=4",),
    "lenet": ("model.kwargs.hidden=16",),
}
"""Width overrides by model (the model's own keyword), to keep one CPU step cheap."""
PARENT = {
    "hendrycks2019-cifar10-finetune": "hendrycks2019-cifar10-pretrain",
    "hendrycks2019-cifar100-finetune": "hendrycks2019-cifar100-pretrain",
    "hendrycks2019-cifar10-finetune-parity": "hendrycks2019-cifar10-pretrain",
    "hendrycks2019-cifar100-finetune-parity": "hendrycks2019-cifar100-pretrain",
    "hendrycks2019-cifar10-finetune-calibration": "hendrycks2019-cifar10-pretrain",
    "hendrycks2019-cifar100-finetune-calibration": "hendrycks2019-cifar100-pretrain",
    "hendrycks2019-cifar10-finetune-calibration-parity": "hendrycks2019-cifar10-pretrain",
    "hendrycks2019-cifar100-finetune-calibration-parity": "hendrycks2019-cifar100-pretrain",
    "hendrycks2019-cifar10-finetune-nocifar": "hendrycks2019-cifar10-pretrain-nocifar",
    "hendrycks2019-tinyimagenet-finetune": "hendrycks2019-tinyimagenet-pretrain",
    "hendrycks2019-tinyimagenet-finetune-parity": "hendrycks2019-tinyimagenet-pretrain",
    "hendrycks2019-tinyimagenet-finetune-calibration": "hendrycks2019-tinyimagenet-pretrain",
    "hendrycks2019-tinyimagenet-finetune-calibration-parity": "hendrycks2019-tinyimagenet-pretrain",
    "hendrycks2019-adv-cifar10-finetune": "hendrycks2019-adv-pretrain",
    "hendrycks2019-adv-cifar100-finetune": "hendrycks2019-adv-pretrain",
    "coursework-pets-barlow-ft": "coursework-pets-barlow",
}
SLOW = ("odin-wrn-", "coursework-pets-", "hendrycks2019-adv-")
PAPER = [
    p
    for p in PRESETS.list()
    if p.startswith(("hendrycks2019-", "coursework-pathmnist", "coursework-pets", "hein2019-", "odin-"))
]


def _overrides(name: str, out: Path, weights) -> list[str]:
    cfg = load_config(name, check=False)
    items = [f"out_dir={out}", f"name={name}", "train.max_steps=1", "train.batch_size=2", "data.train_subset=4"]
    if cfg.data.val_size:
        items.append("data.val_size=2")
    items += NARROW.get(cfg.model.name, ())
    if cfg.method.name == "barlow_twins":
        items += ["method.kwargs.hidden=[16,16]", "method.kwargs.out=16"]
    if "pretrained" in cfg.model.kwargs:
        items.append(f"model.kwargs.pretrained={weights(cfg.model.name)}")
    return items


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """``weights(model) -> path``: a torchvision ResNet state_dict (random init) saved as safetensors, made on demand."""
    import torchvision
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("weights")

    def path_for(model: str) -> Path:
        path = root / f"{model}.safetensors"
        if not path.exists():
            torch.manual_seed(0)
            state = getattr(torchvision.models, model)(weights=None).state_dict()
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path

    return path_for


@pytest.fixture(scope="module")
def runs(paper_data, tmp_path_factory, make_map_clsloc, weights):
    """Train a preset for one step (once per module), return its run directory."""
    out = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}
    text, _ = make_map_clsloc(np.random.default_rng(0))
    (paper_data / "imagenet32" / "map_clsloc.txt").write_text(text)
    # imagenet64's class map names the tiny Tiny ImageNet's three WordNet ids (n01, n02, n03) among its 1,000 classes
    lines = text.splitlines()
    lines[:3] = [f"n0{i + 1} {line.split()[1]} tiny_{i}" for i, line in enumerate(lines[:3])]
    (paper_data / "imagenet64" / "map_clsloc.txt").write_text("\n".join(lines) + "\n")

    def run(name: str) -> Path:
        if name in done:
            return done[name]
        items = _overrides(name, out, weights)
        if name in PARENT:
            items += [f"train.init_from={run(PARENT[name])}"]
        done[name] = fit(load_config(name, overrides=items), progress=False)
        return done[name]

    return run


@pytest.mark.parametrize("name", [pytest.param(p, marks=pytest.mark.slow) if p.startswith(SLOW) else p for p in PAPER])
def test_one_training_step(name, runs):
    run_dir = runs(name)
    meta = read_meta(run_dir)
    assert meta["steps"] == 1 and meta["config"]["preset"] == name
    hist = meta["history"]
    assert len(hist) == 1 and math.isfinite(hist[0]["train_loss"])
    cfg = load_config(name, check=False)
    assert meta["model"] == cfg.model.name and meta["dataset"] == cfg.data.dataset
    if cfg.train.reset_head:
        assert meta["parent_checkpoint"]
    if cfg.data.dataset == "imagenet32":
        n_classes = 1000 - len(cfg.data.exclude_classes)
        assert meta["model_kwargs"]["num_classes"] == n_classes and (n_classes == 1000) == ("nocifar" not in name)
    if cfg.data.dataset == "imagenet64":  # the three Tiny ImageNet classes are dropped by WordNet id
        assert meta["model_kwargs"]["num_classes"] == 997 and meta["input_shape"] == [3, 64, 64]
    if cfg.train.keep_best:
        assert meta["kept"]["epoch"] == 1 and meta["kept"]["metric"] == cfg.train.keep_best
