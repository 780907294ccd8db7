"""Training objectives: a one-step contract test over the METHODS registry and hand-computed losses per method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rulab.methods.mixup as mixup_mod
from rulab.attacks import log_max_confidence, pgd_ce
from rulab.data.synthetic import hein_noise
from rulab.errors import ConfigError
from rulab.methods.barlow_twins import BarlowTwins, barlow_twins_loss, ssl_augment
from rulab.methods.ceda_acet import ACET, CEDA, ceda_loss
from rulab.methods.mixup import MixUp, mixup_loss, sample_beta
from rulab.methods.outlier_exposure import OutlierExposure, uniform_ce
from rulab.registry import METHODS, MODELS

SHAPE = (1, 16, 16)
# small settings so that every method runs in milliseconds; methods not listed run with their defaults
TINY = {
    "acet": {"steps": 2, "eps": 0.1},
    "adversarial": {"steps": 2},
    "barlow_twins": {"hidden": (16,), "out": 8},
    "oe": {"outliers": "uniform", "outlier_pool": 64},
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(method, n: int = 8, seed: int = 0) -> dict:
    g = _gen(seed)
    batch = {
        "x": torch.rand(n, *SHAPE, generator=g),
        "y": torch.randint(0, 3, (n,), generator=g),
        "generator": _gen(seed + 1),
        "step": 0,
    }
    if method.batch_spec == "id+outliers":
        batch["x_out"] = torch.rand(int(n * method.outlier_batch_ratio), *SHAPE, generator=g)
    if method.batch_spec == "two_views":
        batch["x2"] = torch.rand(n, *SHAPE, generator=g)
    return batch


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return MODELS.create("fastcnn", num_classes=3, in_channels=1, input_size=16, width=2)


@pytest.mark.parametrize("name", METHODS.list())
def test_one_step_every_method(name: str) -> None:
    model = _tiny_model().train()
    method = METHODS.create(name, **TINY.get(name, {}))
    method.setup(model, 3, SHAPE)
    extra = nn.ModuleDict(method.modules())
    out = method(model, _batch(method))
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.training, "the method must leave the model in train mode"
    head = {id(p) for p in model.fc.parameters()}
    params = [(n, p) for n, p in model.named_parameters() if method.supervised or id(p) not in head]
    params += [(f"method.{n}", p) for n, p in extra.named_parameters()]
    for pname, p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"
    if method.supervised and "logits" in out:
        assert out["logits"].shape == (8, 3)


def test_methods_validate_their_parameters() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        MixUp(alpha=-1)
    with pytest.raises(ConfigError, match="unknown OOD set 'nope'"):
        OutlierExposure(outliers="nope")
    with pytest.raises(ConfigError, match="frac_perm"):
        CEDA(frac_perm=1.5)
    with pytest.raises(ConfigError, match="eps >= 0"):
        ACET(eps=-0.1)
    with pytest.raises(ConfigError, match="crop_scale"):
        BarlowTwins(crop_scale=0.0)


# ----------------------------------------------------------------------------------------------- MixUp


def test_beta_sampler_matches_the_beta_distribution() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = _gen(3)
    for a, b in ((0.3, 0.3), (2.0, 5.0)):
        s = np.array([sample_beta(a, b, g) for _ in range(4000)])
        assert stats.kstest(s, stats.beta(a, b).cdf).pvalue > 1e-3
        assert abs(s.mean() - a / (a + b)) < 0.03
    assert sample_beta(0.3, 0.3, _gen(7)) == sample_beta(0.3, 0.3, _gen(7))  # reproducible from the generator


def test_mixup_loss_hand_computed() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y, y_perm, lam = torch.tensor([0, 1]), torch.tensor([1, 0]), 0.3
    ce = lambda row, k: math.log(sum(math.exp(v) for v in row)) - row[k]  # noqa: E731
    rows = logits.tolist()
    want = lam * (ce(rows[0], 0) + ce(rows[1], 1)) / 2 + (1 - lam) * (ce(rows[0], 1) + ce(rows[1], 0)) / 2
    assert mixup_loss(logits, y, y_perm, lam).item() == pytest.approx(want, rel=1e-6)


def test_mixup_mixes_inputs_with_the_injected_lambda(monkeypatch) -> None:
    monkeypatch.setattr(mixup_mod, "sample_beta", lambda a, b, g: 0.25)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    method = MixUp(alpha=0.3)
    batch = _batch(method)
    out = method(model, batch)
    perm = torch.randperm(8, generator=_gen(1))
    x, y = batch["x"], batch["y"]
    logits = model(0.25 * x + 0.75 * x[perm])
    want = 0.25 * F.cross_entropy(logits, y) + 0.75 * F.cross_entropy(logits, y[perm])
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    # no clean pass outside parity mode: the logits are the mixed batch's, scored against the dominant label (λ < ½)
    assert torch.allclose(out["logits"], logits.detach(), atol=1e-6) and torch.equal(out["acc_target"], y[perm])


def test_mixup_parity_updates_bn_statistics_twice() -> None:
    def run(parity: bool) -> int:
        model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(256, 3)).train()
        MixUp(parity=parity)(model, _batch(MixUp()))
        return int(model[0].num_batches_tracked)

    assert run(False) == 1 and run(True) == 2


# ----------------------------------------------------------------------------------------------- OE


def test_uniform_ce_hand_computed() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]])
    want = [-0.5 * (math.log(0.25) + math.log(0.75)), math.log(2.0)]
    assert uniform_ce(logits).tolist() == pytest.approx(want, rel=1e-6)


def test_oe_loss_single_forward_over_id_and_outliers() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(256, 3)).train()
    method = OutlierExposure(outliers="uniform", lam=0.5, outlier_batch_ratio=2.0)
    batch = _batch(method)
    out = method(model, batch)
    assert int(model[0].num_batches_tracked) == 1  # one pass over [ID; outliers]
    both = torch.cat([batch["x"], batch["x_out"]])
    assert torch.allclose(model[0].running_mean, 0.1 * both.mean().reshape(1), atol=1e-6)
    bn_free = nn.Sequential(*list(model)[1:])
    xn = (both - both.mean()) / torch.sqrt(both.var(unbiased=False) + 1e-5)
    logits = bn_free(xn)
    lse = torch.logsumexp(logits[8:], 1)
    want = F.cross_entropy(logits[:8], batch["y"]) + 0.5 * (lse - logits[8:].mean(1)).mean()
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------- CEDA / ACET


def test_ceda_loss_normalised_by_n_plus_m() -> None:
    clean = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # CE: ln 2 (y=0), ln 4 (y=1)
    noise = torch.tensor([[math.log(3.0), 0.0]])  # max-softmax 3/4
    want = (math.log(2.0) + math.log(4.0) + math.log(0.75)) / 3
    assert ceda_loss(clean, torch.tensor([0, 1]), noise).item() == pytest.approx(want, rel=1e-6)


def test_ceda_uses_floor_at_frac_noise_and_bn_over_the_concatenated_batch() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(256, 3)).train()
    method = CEDA(at_frac=0.7)  # M = ⌊0.7·8⌋ = 5
    batch = _batch(method)
    out = method(model, batch)
    z = hein_noise(batch["x"], _gen(1), 0.5, m=5)
    both = torch.cat([z, batch["x"]])
    assert torch.allclose(model[0].running_mean, 0.1 * both.mean().reshape(1), atol=1e-6)
    xn = (both - both.mean()) / torch.sqrt(both.var(unbiased=False) + 1e-5)
    logits = nn.Sequential(*list(model)[1:])(xn)
    want = (F.cross_entropy(logits[5:], batch["y"], reduction="sum") + log_max_confidence(logits[:5]).sum()) / 13
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.allclose(out["logits"], logits[5:], atol=1e-5)  # the clean part, for the training accuracy


def test_acet_noise_stays_within_eps_of_ceda_noise() -> None:
    model = _tiny_model().train()
    x = torch.rand(8, *SHAPE, generator=_gen(0))
    z = CEDA().noise(model, x, _gen(5))
    u = ACET(eps=0.1, steps=5).noise(model, x, _gen(5))
    assert model.training  # PGD ran in eval mode and restored train mode
    assert u.shape == z.shape and u.min() >= 0 and u.max() <= 1
    assert (u - z).abs().max() <= 0.1 + 1e-6
    assert not torch.equal(u, z)
    model.eval()
    with torch.no_grad():
        assert (log_max_confidence(model(u)) >= log_max_confidence(model(z)) - 1e-6).all()  # keep-best never loses


# ----------------------------------------------------------------------------------------------- adversarial


def test_adversarial_trains_on_pgd_examples_in_train_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(256, 3)).train()
    method = METHODS.create("adversarial", eps=0.05, steps=3, step_size=0.02)
    batch = _batch(method)
    x_adv, _ = pgd_ce(model, batch["x"], batch["y"], 0.05, 3, 0.02, generator=_gen(1))
    assert int(model[0].num_batches_tracked) == 0  # the attack ran in eval mode
    out = method(model, batch)
    assert int(model[0].num_batches_tracked) == 1
    assert torch.allclose(model[0].running_mean, 0.1 * x_adv.mean().reshape(1), atol=1e-6)
    assert (x_adv - batch["x"]).abs().max() <= 0.05 + 1e-6 and not torch.equal(x_adv, batch["x"])
    assert torch.isfinite(out["loss"])


# ----------------------------------------------------------------------------------------------- Barlow Twins


def _bn_np(z: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (z - z.mean(0)) / np.sqrt(z.var(0) + eps)


def test_barlow_twins_loss_against_a_direct_computation() -> None:
    g = _gen(0)
    z1, z2 = torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randn(32, 6, generator=g, dtype=torch.float64)
    bn = nn.BatchNorm1d(6, affine=False).double()
    c = _bn_np(z1.numpy()).T @ _bn_np(z2.numpy()) / 32
    lam = 0.0051
    want = ((1 - np.diag(c)) ** 2).sum() + lam * (c**2 - np.diag(np.diag(c) ** 2)).sum()
    assert barlow_twins_loss(z1, z2, lam, bn).item() == pytest.approx(want, rel=1e-5)


def test_barlow_twins_identical_views_leave_only_the_off_diagonal_term() -> None:
    z = torch.randn(64, 5, generator=_gen(1))
    bn = nn.BatchNorm1d(5, affine=False)
    zn = _bn_np(z.double().numpy())
    c = zn.T @ zn / 64  # C_ii = var/(var + eps) = 1 up to BN's eps
    assert np.abs(np.diag(c) - 1).max() < 1e-4
    off = (c**2).sum() - (np.diag(c) ** 2).sum()
    assert barlow_twins_loss(z, z, 0.0051, bn).item() == pytest.approx(0.0051 * off, rel=1e-4)
    assert barlow_twins_loss(z, z, 0.0, bn).item() < 1e-6


def test_ssl_augment_is_seeded_and_stays_in_range() -> None:
    x = torch.rand(16, 1, 28, 28, generator=_gen(0))
    a = ssl_augment(x, _gen(1))
    assert torch.equal(a, ssl_augment(x, _gen(1))) and not torch.equal(a, ssl_augment(x, _gen(2)))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    crop_only = ssl_augment(x, _gen(1), crop_scale=0.5, jitter=0.0, noise_std=0.0)  # bilinear resampling only
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert (crop_only.amin(dim=(1, 2, 3)) >= lo - 1e-6).all() and (crop_only.amax(dim=(1, 2, 3)) <= hi + 1e-6).all()
