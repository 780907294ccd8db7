"""The training-protocol keys the paper presets need (issue: the four papers' protocols): ``train.drop_last`` (W1's
loaders keep the last small batch), ``train.head_init`` (W1's fresh ``nn.Linear`` head), ``train.keep_best`` (W2 keeps
the best validation epoch), ``model.stats=train`` (W2 normalises scratch models by the training images),
``data.val_split=official`` (pathMNIST's own 10,004 validation images), ``data.kwargs`` (Pets resolution),
nearest-neighbour rotation (torchvision's ``RandomRotation`` default) and MixUp's training accuracy."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch

from rulab.checkpoint import load_model, read_meta
from rulab.config import AugmentCfg, DataCfg
from rulab.data.augment import augment_batch, random_rotate
from rulab.data.fetch import SOURCES
from rulab.data.splits import load_splits
from rulab.errors import ConfigError
from rulab.presets import load_config
from rulab.train.loop import channel_stats, fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SMALL = ["model.kwargs.width=4", "data.train_subset=96", "train.batch_size=32", "eval.shift=", "eval.farconf=false"]


def _fit(tmp_path, name: str, *overrides: str, preset: str = "fmnist-plain"):
    cfg = load_config(preset, overrides=[*SMALL, f"out_dir={tmp_path}", f"name={name}", *overrides])
    return fit(cfg, progress=False)


def test_drop_last_false_keeps_the_last_small_batch(tmp_path):
    # 80 images in batches of 32: the last batch of every epoch has 16
    dropped = read_meta(_fit(tmp_path, "drop", "data.train_subset=80", "data.val_size=0", "train.epochs=1"))
    kept = read_meta(
        _fit(tmp_path, "keep", "data.train_subset=80", "data.val_size=0", "train.epochs=1", "train.drop_last=false")
    )
    assert dropped["steps"] == 80 // 32 == 2 and kept["steps"] == math.ceil(80 / 32) == 3


def test_head_init_pytorch_draws_a_default_linear_head(tmp_path):
    parent = _fit(tmp_path, "parent", "train.max_steps=1", "data.val_size=0")
    common = [
        "train.max_steps=1",
        "data.val_size=0",
        f"train.init_from={parent}",
        "train.reset_head=true",
        "data.classes=[0,1,2]",
        "optim.lr=1.0e-9",
        "optim.lr_floor=0",
    ]
    own = load_model(_fit(tmp_path, "own", *common) / "model.safetensors", "cpu")[0]
    fresh = load_model(_fit(tmp_path, "fresh", *common, "train.head_init=pytorch") / "model.safetensors", "cpu")[0]
    assert own.fc.weight.shape == fresh.fc.weight.shape == (3, own.feature_dim)
    bound = 1 / math.sqrt(own.feature_dim)
    bias, weight = fresh.fc.bias.detach(), fresh.fc.weight.detach()
    assert 0 < float(bias.abs().max()) <= bound  # nn.Linear's U(±1/sqrt(fan_in))
    assert float(weight.abs().max()) <= bound
    assert not torch.equal(own.fc.weight, fresh.fc.weight)  # reset_parameters drew a new head
    with pytest.raises(ConfigError, match="train.head_init"):
        load_config("fmnist-plain", overrides=["train.head_init=zeros"])


def test_keep_best_evaluates_the_best_validation_epoch(tmp_path):
    run = _fit(tmp_path, "best", "train.epochs=4", "data.val_size=64", "optim.lr=0.3", "train.keep_best=val_acc")
    meta = read_meta(run)
    accs = [h["val_acc"] for h in meta["history"]]
    best = int(np.argmax(accs)) + 1  # the first of equal values
    assert meta["kept"] == {"metric": "val_acc", "epoch": best, "value": accs[best - 1], "epochs": 4}
    model, _ = load_model(run / "model.safetensors", "cpu")
    splits = load_splits(load_config("fmnist-plain", overrides=[*SMALL, "data.val_size=64"]).data, 0)
    with torch.no_grad():
        acc = float((model(splits.val.x.float() / 255).argmax(1) == splits.val.y).double().mean())
    assert acc == pytest.approx(accs[best - 1])  # the saved weights are that epoch's
    from rulab.eval.checkpoint import evaluate_checkpoint

    table = evaluate_checkpoint(run, detectors="msp", overrides=["eval.n_ood=50"], progress=False)
    row = next(iter(table.filter(metric="checkpoint_epoch")))
    assert row.value == best and row.extra["selected_by"] == "val_acc" and row.n == 4
    with pytest.raises(ConfigError, match="keep_best"):
        load_config("fmnist-plain", overrides=["train.keep_best=val_auroc"])
    with pytest.raises(ConfigError, match="validation split"):
        load_config("fmnist-plain", overrides=["train.keep_best=val_acc", "data.val_size=0"])


def test_keep_best_survives_a_resume(tmp_path, monkeypatch):
    whole = read_meta(
        _fit(tmp_path, "whole", "train.epochs=3", "data.val_size=64", "optim.lr=0.3", "train.keep_best=val_nll")
    )
    cfg = load_config(
        "fmnist-plain",
        overrides=[
            *SMALL,
            f"out_dir={tmp_path}",
            "name=cut",
            "train.epochs=3",
            "data.val_size=64",
            "optim.lr=0.3",
            "train.keep_best=val_nll",
        ],
    )
    import rulab.train.loop as loop

    save = loop.save_train_state

    def save_then_stop(run_dir, step, *args, **kwargs):  # interrupted right after the checkpoint of epoch 2
        out = save(run_dir, step, *args, **kwargs)
        if step == 6:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(loop, "save_train_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False)
    monkeypatch.setattr(loop, "save_train_state", save)
    resumed = read_meta(fit(cfg, resume=True, progress=False))
    assert resumed["kept"] == whole["kept"]
    nlls = [h["val_nll"] for h in whole["history"]]
    assert whole["kept"]["epoch"] == int(np.argmin(nlls)) + 1  # lower is better for the NLL


def test_model_stats_train_normalises_by_the_training_split(tmp_path):
    run = _fit(tmp_path, "stats", "train.max_steps=1", "data.val_size=16", "model.stats=train")
    meta = read_meta(run)
    splits = load_splits(load_config("fmnist-plain", overrides=[*SMALL, "data.val_size=16"]).data, 0)
    x = splits.train.x.double() / 255
    assert meta["model_kwargs"]["mean"] == pytest.approx([float(x.mean())], rel=1e-9)
    assert meta["model_kwargs"]["std"] == pytest.approx([float(x.std(unbiased=False))], rel=1e-9)
    model, _ = load_model(run / "model.safetensors", "cpu")
    assert model.mean == pytest.approx(meta["model_kwargs"]["mean"])
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (50, 3, 5, 7), generator=g, dtype=torch.uint8)
    mean, std = channel_stats(rgb, chunk=7)
    ref = rgb.double().div(255).permute(1, 0, 2, 3).reshape(3, -1)
    assert mean == pytest.approx(ref.mean(1).tolist(), abs=1e-12) and std == pytest.approx(
        ref.std(1, unbiased=False).tolist(), abs=1e-12
    )
    with pytest.raises(ConfigError, match="model.stats"):
        load_config("fmnist-plain", overrides=["model.stats=imagenet"])


def test_mixup_logs_training_accuracy_against_the_dominant_label(tmp_path):
    meta = read_meta(_fit(tmp_path, "mix", "train.epochs=2", "data.val_size=32", preset="fmnist-mixup"))
    assert all(0.0 <= h["train_acc"] <= 1.0 and "val_acc" in h for h in meta["history"])


# --------------------------------------------------------------------------------------------- data


def _publish_pathmnist(root, monkeypatch) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 5)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1))
    path = root / "pathmnist" / "pathmnist.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, **arrays)
    src = SOURCES.get("pathmnist")
    rf = dataclasses.replace(src.files[0], md5=(hashlib.md5(path.read_bytes()).hexdigest(),))
    monkeypatch.setitem(SOURCES._entries, "pathmnist", dataclasses.replace(src, files=(rf,)))
    return arrays


def test_official_validation_split(tmp_path, monkeypatch):
    monkeypatch.setenv("RULAB_DATA", str(tmp_path))
    monkeypatch.setenv("RULAB_SYSTEM_DATA", "")
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    arrays = _publish_pathmnist(tmp_path, monkeypatch)
    s = load_splits(DataCfg(dataset="pathmnist", val_split="official", val_size=3), seed=0)
    assert len(s.train) == 20 and len(s.val) == 6 and len(s.test) == 5  # every training image; val_size is ignored
    assert torch.equal(s.val.x, torch.from_numpy(arrays["val_images"]).permute(0, 3, 1, 2))
    assert s.val.name == "pathmnist:val"
    held = load_splits(DataCfg(dataset="pathmnist", val_split="random", val_size=3), seed=0)
    assert len(held.train) == 17 and len(held.val) == 3  # the old way: cut from the training split
    with pytest.raises(ConfigError, match="no official validation split"):
        load_splits(DataCfg(dataset="fashion_mnist", val_split="official"), seed=0)


def test_data_kwargs_reach_the_dataset_factory():
    cfg = load_config("coursework-pets-scratch", check=False)
    assert cfg.data.kwargs == {"size": 224}
    with pytest.raises(ConfigError, match="data.kwargs.sise"):
        load_config("coursework-pets-scratch", overrides=["data.kwargs.sise=128"])
    with pytest.raises(ConfigError, match="data.kwargs.split"):
        load_config("fmnist-plain", overrides=["data.kwargs.split=test"])


def test_nearest_rotation_only_moves_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 20, 20), generator=g).float() / 255
    near = random_rotate(x, 20.0, 1.0, torch.Generator().manual_seed(1), "nearest")
    bil = random_rotate(x, 20.0, 1.0, torch.Generator().manual_seed(1), "bilinear")
    values = set((x * 255).round().flatten().tolist()) | {0.0}
    assert (
        set((near * 255).round(decimals=4).flatten().tolist()) <= values
    )  # each output pixel copies an input pixel or is fill
    assert not set((bil * 255).round(decimals=4).flatten().tolist()) <= values  # bilinear blends neighbours
    # the same draws: the two differ only in the resampling, so they agree where the image is flat
    flat = torch.full((2, 1, 20, 20), 0.5)
    a = random_rotate(flat, 20.0, 1.0, torch.Generator().manual_seed(2), "nearest")
    b = random_rotate(flat, 20.0, 1.0, torch.Generator().manual_seed(2), "bilinear")
    assert torch.allclose(a[..., 8:12, 8:12], b[..., 8:12, 8:12])
    out = augment_batch(
        x,
        AugmentCfg(hflip=0.0, rotate_deg=20.0, rotate_p=1.0, rotate_interp="nearest"),
        torch.Generator().manual_seed(1),
    )
    assert torch.equal(out, near)
    with pytest.raises(ConfigError, match="rotate_interp"):
        load_config("fmnist-plain", overrides=["data.augment.rotate_interp=bicubic"])
