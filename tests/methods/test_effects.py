"""CPU-scale effect tests on Fashion-MNIST (slow: three full preset trainings, a few minutes on 2 cores).

What CEDA and ACET are for (Hein et al. 2019, W3's README tables): low confidence on noise far from the data at (almost)
no cost in accuracy, and for ACET also on adversarially optimised noise within ε = 0.3 of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rulab.attacks import pgd_confidence
from rulab.checkpoint import load_model
from rulab.data.splits import load_splits
from rulab.eval.predict import predict
from rulab.presets import load_config
from rulab.registry import OOD_SETS
from rulab.train.loop import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, dict[str, float]]:
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("effects")
    results = {}
    for preset, extra in (("fmnist-plain", ["train.epochs=3"]), ("fmnist-ceda", []), ("fmnist-acet", [])):
        cfg = load_config(preset, overrides=[f"out_dir={out}", "eval.detectors=[]", *extra])
        results[preset] = _measure(fit(cfg, progress=False), cfg)
    return results


def _measure(run_dir: Path, cfg) -> dict[str, float]:
    model, _ = load_model(run_dir)
    test = load_splits(cfg.data, cfg.seed).test
    shape = tuple(test.x.shape[1:])
    logits = predict(model, test.x)["logits"]
    uniform = OOD_SETS.create("uniform", shape=shape, n=2000, seed=11)
    z = (
        torch.cat([OOD_SETS.create(n, shape=shape, n=128, seed=12).x for n in ("uniform", "lowpass_noise")]).float()
        / 255
    )
    _, log_conf = pgd_confidence(
        model, z, eps=0.3, steps=40, step_size=0.03, generator=torch.Generator().manual_seed(13)
    )
    return {
        "acc": (logits.argmax(1) == test.y).double().mean().item(),
        "mmc_uniform": predict(model, uniform.x)["logits"].softmax(1).max(1).values.mean().item(),
        "mmc_adv_noise": log_conf.exp().mean().item(),
    }


@pytest.mark.parametrize("preset", ["fmnist-ceda", "fmnist-acet"])
def test_noise_training_lowers_confidence_on_uniform_noise_at_little_accuracy_cost(measured, preset: str) -> None:
    plain, m = measured["fmnist-plain"], measured[preset]
    assert plain["mmc_uniform"] - m["mmc_uniform"] >= 0.3, (plain, m)
    assert plain["acc"] - m["acc"] <= 0.015, (plain, m)


def test_acet_lowers_confidence_on_adversarial_noise(measured) -> None:
    plain, acet = measured["fmnist-plain"], measured["fmnist-acet"]
    assert acet["mmc_adv_noise"] < plain["mmc_adv_noise"], (plain, acet)
