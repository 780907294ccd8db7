"""Pre-train → fine-tune through the training loop: init_from, reset_head, own schedule, backbone_lr_mult, a BatchNorm
freeze that lasts the whole run, class selection, and clear refusals of incompatible parents. Tiny runs on real
Fashion-MNIST (a few optimizer steps each)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rulab.checkpoint import load_train_state, read_meta
from rulab.errors import CheckpointError, ConfigError
from rulab.presets import load_config
from rulab.train.loop import fit

torch.set_num_threads(2)


def _run(tmp: Path, name: str, *overrides: str, preset: str = "fmnist-plain") -> Path:
    cfg = load_config(
        preset,
        overrides=[
            f"name={name}",
            f"out_dir={tmp}",
            "data.train_subset=256",
            "data.val_size=100",
            "train.batch_size=64",
            "train.max_steps=3",
            "train.epochs=1",
            "train.channels_last=false",
            "eval.detectors=[]",
            *overrides,
        ],
    )
    return fit(cfg, progress=False)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A 5-class fastcnn trained on classes 0-4."""
    return _run(tmp_path_factory.mktemp("pre"), "pre", "data.classes=[0,1,2,3,4]")


def test_finetune_new_head_own_schedule_and_frozen_backbone(parent: Path, tmp_path: Path) -> None:
    child = _run(
        tmp_path,
        "ft",
        "data.classes=[5,6,7,8,9]",
        f"train.init_from={parent}",
        "train.reset_head=true",
        "optim.backbone_lr_mult=0",
        "train.freeze_bn=true",
        "optim.schedule=constant",
        "optim.lr=0.01",
        "optim.warmup_frac=0",
    )
    meta = read_meta(child)
    assert meta["parent_checkpoint"] == str(parent)
    assert meta["classes"] == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert [h["lr"] for h in meta["history"]] == [0.01]  # the child's own schedule
    before, after = _weights(parent), _weights(child)
    for k, v in after.items():
        if k.startswith("fc."):
            assert not torch.equal(v, before[k]), k  # a new head that trained
        else:
            assert torch.equal(v, before[k]), k  # backbone lr 0 and frozen BN: nothing else moves


def test_frozen_bn_stays_frozen_when_the_method_toggles_modes(parent: Path, tmp_path: Path) -> None:
    acet = ("method.name=acet", "method.kwargs={steps: 1, at_frac: 0.5}")
    frozen = _run(
        tmp_path, "frozen", "data.classes=[0,1,2,3,4]", f"train.init_from={parent}", "train.freeze_bn=true", *acet
    )
    free = _run(tmp_path, "free", "data.classes=[0,1,2,3,4]", f"train.init_from={parent}", "train.max_steps=1")
    before = _weights(parent)
    bn = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    affine = [k.replace("running_mean", s) for k in bn if k.endswith("running_mean") for s in ("weight", "bias")]
    assert bn and affine
    for k in bn + affine:
        assert torch.equal(_weights(frozen)[k], before[k]), k
    assert not torch.equal(_weights(frozen)["stages.0.0.weight"], before["stages.0.0.weight"])  # convs still train
    assert not torch.equal(_weights(free)["stages.0.2.running_mean"], before["stages.0.2.running_mean"])


def test_finetune_refuses_another_class_count_or_architecture(parent: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="it has 5 classes and this run has 10; set train.reset_head=true") as err:
        _run(tmp_path, "k10", f"train.init_from={parent}")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="holds a 'fastcnn' model but this run builds 'lenet'") as err:
        _run(tmp_path, "lenet", f"train.init_from={parent}", "model.name=lenet", "train.reset_head=true")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="reset_head' needs train.init_from"):
        load_config("fmnist-finetune-5to9", overrides=["eval.detectors=[]"])


def test_class_exclusion_shrinks_the_head(tmp_path: Path) -> None:
    meta = read_meta(_run(tmp_path, "ex", "data.exclude_classes=[0,9]"))
    assert meta["model_kwargs"]["num_classes"] == 8 and len(meta["classes"]) == 8
    assert "T-shirt/top" not in meta["classes"] and "Ankle boot" not in meta["classes"]


def test_barlow_twins_pretraining_then_finetuning(tmp_path: Path) -> None:
    ssl = _run(
        tmp_path, "bt", "train.checkpoint_every=1", "method.kwargs={hidden: [32], out: 16}", preset="fmnist-barlow"
    )
    step, state = load_train_state(ssl, _model_like(ssl))
    assert step == 3 and any(k.startswith("projector.") for k in state["extra"])  # the projector is saved and resumable
    assert read_meta(ssl)["method"] == "barlow_twins" and "val_acc" not in read_meta(ssl)["history"][-1]
    ft = _run(
        tmp_path,
        "bt-ft",
        f"train.init_from={ssl}",
        "optim.backbone_lr_mult=0",
        "train.freeze_bn=true",
        preset="fmnist-barlow-ft",
    )
    before, after = _weights(ssl), _weights(ft)
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("fc."))
    assert "val_acc" in read_meta(ft)["history"][-1]


def _model_like(run_dir: Path) -> torch.nn.Module:
    from rulab.registry import MODELS

    meta = read_meta(run_dir)
    return MODELS.create(meta["model"], **meta["model_kwargs"])
