"""Configurable PGD for the adversarial evaluation (W1's PGD-20 at step 2/255, Hendrycks et al. 2019 Table 2):
``eval.adv_step_size``, ``eval.adv_restarts`` and ``eval.farconf_tests``, and the clean and adversarial accuracy
rows of the attacked images; PGD restarts in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rulab.attacks import pgd_ce
from rulab.config import EvalCfg
from rulab.data.tensors import TensorDataset
from rulab.eval.farconf import attack_samples, evaluate_farconf
from rulab.methods.adversarial import AdversarialTraining
from rulab.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _fastcnn(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS.create("fastcnn", width=4).eval()


@pytest.fixture(scope="module")
def test_set() -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    return TensorDataset(
        torch.randint(0, 256, (24, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (24,), generator=g),
        [str(i) for i in range(10)],
        "toy",
        "generated",
    )


def test_step_size_restarts_and_tests_are_taken_from_the_config(test_set):
    cfg = EvalCfg(
        adv_eps=8 / 255, adv_steps=3, adv_step_size=2 / 255, adv_restarts=2, adv_n=10, farconf_tests=("samples",)
    )
    t = evaluate_farconf(_fastcnn(), test_set, {}, cfg, seed=0)
    assert {r.dataset for r in t} == {"adv_samples"}  # no α-scaling, no adversarial noise
    acc = next(iter(t.filter(metric="adv_acc")))
    assert acc.extra == {"eps": 8 / 255, "steps": 3, "step_size": 2 / 255, "restarts": 2} and acc.n == 10
    assert t.meta["adv_step_size"] == 2 / 255 and t.meta["adv_restarts"] == 2
    default = evaluate_farconf(
        _fastcnn(),
        test_set,
        {},
        EvalCfg(adv_eps=0.3, adv_steps=3, adv_n=10, farconf_tests=("alpha",), alpha_trials=4),
        seed=0,
    )
    assert {r.dataset for r in default} == {"alpha_scaling"}
    assert default.meta["adv_step_size"] == pytest.approx(2.5 * 0.3 / 3)  # Madry et al.'s 2.5·ε/steps when 0


def test_clean_accuracy_is_the_models_accuracy_on_the_attacked_images(test_set):
    model = _fastcnn()
    cfg = EvalCfg(adv_eps=0.0, adv_steps=2, adv_n=24, farconf_tests=("samples",))
    t = evaluate_farconf(model, test_set, {}, cfg, seed=0)
    with torch.no_grad():
        want = float((model(test_set.x.float() / 255).argmax(1) == test_set.y).double().mean())
    assert t.value(dataset="adv_samples", metric="clean_acc") == pytest.approx(want)
    # ε = 0: the attack cannot move an image, so adversarial equals clean accuracy
    assert t.value(dataset="adv_samples", metric="adv_acc") == pytest.approx(want)
    attacked = evaluate_farconf(
        model, test_set, {}, EvalCfg(adv_eps=0.3, adv_steps=5, adv_n=24, farconf_tests=("samples",)), seed=0
    )
    assert attacked.value(dataset="adv_samples", metric="clean_acc") == pytest.approx(want)
    assert attacked.value(dataset="adv_samples", metric="adv_acc") < want  # a large ε breaks this untrained model


def test_more_restarts_break_at_least_the_same_images(test_set):
    """The first restart of a 3-restart attack draws the 1-restart attack's start (one batch, one generator), and an
    image counts as broken when any restart breaks it, so the broken set can only grow."""
    model = _fastcnn(1)
    x, y = test_set.x.float() / 255, test_set.y
    eps = 0.05

    def broken(restarts: int) -> torch.Tensor:
        _, logits = attack_samples(
            model, x, y, eps, 2, eps / 2, torch.Generator().manual_seed(0), batch_size=64, restarts=restarts
        )
        return logits.argmax(1) != y

    one, three = broken(1), broken(3)
    assert bool((three | ~one).all())  # one ⊆ three
    x_adv, _ = attack_samples(model, x, y, eps, 2, eps / 2, torch.Generator().manual_seed(0), batch_size=64, restarts=3)
    assert float((x_adv - x).abs().max()) <= eps + 1e-6 and float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_pgd_ce_restarts_keep_the_highest_loss():
    model = _fastcnn(2)
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(6, 1, 28, 28, generator=g), torch.randint(0, 10, (6,), generator=g)
    one, ce1 = pgd_ce(model, x, y, eps=0.1, steps=2, step_size=0.05, generator=torch.Generator().manual_seed(1))
    three, ce3 = pgd_ce(
        model, x, y, eps=0.1, steps=2, step_size=0.05, generator=torch.Generator().manual_seed(1), restarts=3
    )
    assert torch.all(ce3 >= ce1)
    with torch.no_grad():
        assert torch.allclose(F.cross_entropy(model(three), y, reduction="none"), ce3, atol=1e-5)
    with pytest.raises(ValueError, match="restarts"):
        pgd_ce(model, x, y, restarts=0)


def test_adversarial_training_takes_restarts_and_counts_its_passes():
    method = AdversarialTraining(eps=8 / 255, steps=10, step_size=2 / 255, restarts=2)
    assert method.passes_per_image() == 3 + 2 * (3 * 10 + 1)
    model = _fastcnn().train()
    g = torch.Generator().manual_seed(0)
    out = method(model, {"x": torch.rand(4, 1, 28, 28, generator=g), "y": torch.tensor([0, 1, 2, 3]), "generator": g})
    assert torch.isfinite(out["loss"]) and out["logits"].shape == (4, 10)
    from rulab.errors import ConfigError

    with pytest.raises(ConfigError, match="restarts"):
        AdversarialTraining(restarts=0)
