"""Far-away overconfidence: PGD invariants, α-scaling (known answers), resistance (W3's index bug), the evaluation rows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rulab.attacks import log_max_confidence, pgd_confidence
from rulab.config import EvalCfg
from rulab.data.tensors import TensorDataset
from rulab.errors import InputError
from rulab.eval.farconf import (
    ALPHA_MAX,
    alpha_scaling,
    attack_noise,
    evaluate_farconf,
    msp,
    resisted,
)
from rulab.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Recorder(nn.Module):
    """Wraps a model and keeps every input it sees and the mode it ran in."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        self.modes.append(self.training)
        return self.inner(x)


class LinearLogits(nn.Module):
    """logits = [a·x, 0] on flattened inputs (float64): MSP(α·u) = sigmoid(α |a·u|), known in closed form."""

    def __init__(self, d: int, a: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 2, bias=False).double()
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0].fill_(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _fastcnn(seed: int = 0, width: int = 4) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS.create("fastcnn", width=width)


# --------------------------------------------------------------------------------------------- PGD


def test_pgd_confidence_keeps_best_and_stays_in_the_ball():
    model = Recorder(_fastcnn())
    model.train()  # PGD must switch BN to eval and restore the mode afterwards
    bn_before = {k: v.clone() for k, v in model.state_dict().items()}
    z = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    eps = 0.1
    u, val = pgd_confidence(model, z, eps=eps, steps=8, step_size=0.04, generator=torch.Generator().manual_seed(2))
    assert model.training and not any(model.modes)
    assert all(torch.equal(v, bn_before[k]) for k, v in model.state_dict().items())  # BN statistics untouched
    start = model.inputs[1]  # call 0 is z itself, call 1 the random start, then one call per step
    assert len(model.inputs) == 8 + 2
    assert torch.equal(model.inputs[0], z)
    with torch.no_grad():
        model.eval()
        obj_z, obj_start, obj_u = (log_max_confidence(model.inner(t)) for t in (z, start, u))
    assert torch.all(val >= obj_z) and torch.all(val >= obj_start)
    assert torch.allclose(obj_u, val, atol=1e-6)
    for x in model.inputs[1:] + [u]:
        assert (x - z).abs().max() <= eps + 1e-6
        assert x.min() >= 0 and x.max() <= 1
    assert bool((val > obj_z).any())  # the attack does something on an untrained network


def test_attack_noise_curve_is_the_keep_best_trajectory():
    model = _fastcnn(1)
    z = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    att = attack_noise(model, z, eps=0.2, steps=6, generator=torch.Generator().manual_seed(4), batch_size=4)
    assert att.curve.shape == (6 + 2,)
    assert torch.all(att.curve[1:] >= att.curve[:-1] - 1e-12)
    with torch.no_grad():
        model.eval()
        assert torch.allclose(att.conf_start, msp(model(z)).double(), atol=1e-6)
        assert torch.allclose(att.conf_adv, msp(model(att.x_adv)).double(), atol=1e-6)
    assert att.curve[0] == pytest.approx(float(att.conf_start.mean()), abs=1e-12)
    assert att.curve[-1] == pytest.approx(float(att.conf_adv.mean()), abs=1e-12)
    assert torch.all(att.conf_adv >= att.conf_start)
    assert (att.x_adv - z).abs().max() <= 0.2 + 1e-6


# --------------------------------------------------------------------------------------------- α-scaling


@pytest.mark.parametrize("a", [1e-12, 0.05, 3.0])
def test_alpha_scaling_finds_the_closed_form_alpha(a):
    shape, n, seed = (1, 4, 4), 25, 7
    model = LinearLogits(16, a)
    res = alpha_scaling(model, shape, n_trials=n, seed=seed, rtol=1e-6, curve_points=5)
    u = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)).double()  # the documented draw
    s = a * u.flatten(1).sum(dim=1)
    want = (math.log(0.999 / 0.001) / s).clamp(min=1.0)  # sigmoid(α s) >= 0.999
    assert bool(res.reached.all())
    assert torch.all(res.alphas >= want * (1 - 1e-9))
    assert torch.all(res.alphas <= want * (1 + 2e-6))
    assert res.median == pytest.approx(float(want.median()), rel=2e-6)  # n odd: the middle value
    # overconfidence after clipping α·u back to [0, 1]: sigmoid(a·Σ clip(α u)) > 0.95, in closed form
    clipped = (res.alphas.view(-1, 1, 1, 1) * u).clamp(0, 1)
    conf = torch.sigmoid(a * clipped.flatten(1).sum(dim=1))
    assert res.overconf_frac == pytest.approx(float((conf > 0.95).double().mean()))
    assert res.curve_alphas[0] == 1.0 and res.curve_alphas[-1] == pytest.approx(ALPHA_MAX)


def test_alpha_scaling_never_reached_is_capped_and_reported():
    res = alpha_scaling(LinearLogits(16, 0.0), (1, 4, 4), n_trials=6, seed=0, curve_points=3)
    assert not bool(res.reached.any()) and res.reached_frac == 0.0
    assert res.median == ALPHA_MAX and torch.all(res.alphas == ALPHA_MAX)
    assert res.overconf_frac == 0.0
    assert torch.allclose(res.curve_conf, torch.full((3,), 0.5, dtype=torch.float64))


def test_alpha_scaling_relu_network_becomes_certain_far_away():
    model = _fastcnn(2)
    model.train()
    res = alpha_scaling(model, (1, 28, 28), n_trials=16, seed=1, batch_size=8)
    assert model.training
    assert bool(res.reached.all()) and 1.0 <= res.median < ALPHA_MAX
    tail = res.curve_conf[res.curve_alphas >= 1e8]
    assert torch.all(tail[1:] >= tail[:-1] - 1e-9)
    assert float(res.curve_conf[-1]) >= 0.999


# --------------------------------------------------------------------------------------------- resistance


def test_resistance_rejection_column_at_k_and_w3s_index_10():
    k = 100

    def one_hot_like(c: int, p: float = 0.9) -> torch.Tensor:
        v = torch.full((k,), (1 - p) / (k - 1), dtype=torch.float64)
        v[c] = p
        return v

    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)  # max 0.01 < 1.01/K: the rejection column wins
    probs = torch.stack([one_hot_like(5), one_hot_like(50), one_hot_like(49), uniform, uniform])
    labels = torch.tensor([5, 50, 50, 10, 3])
    # fixed (column appended at K): correct predictions resist, a wrong one or a rejection does not
    assert resisted(probs, labels).tolist() == [True, True, False, False, False]
    # W3's code (column at index 10): class 50 now sits at 51, class 49 at 50, the rejection at 10
    assert resisted(probs, labels, rejection_index=10).tolist() == [True, False, True, True, False]
    # for K = 10, index 10 is the end: both agree
    p10 = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1)
    y10 = torch.randint(0, 10, (20,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(resisted(p10, y10), resisted(p10, y10, rejection_index=10))
    assert bool((p10.max(dim=1).values > 1.01 / 10).all())  # no rejection wins here, so resisted = correct
    assert torch.equal(resisted(p10, y10), p10.argmax(dim=1) == y10)
    with pytest.raises(InputError, match="rejection_index"):
        resisted(p10, y10, rejection_index=11)


# --------------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def small_test() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 28, 28), generator=g, dtype=torch.uint8)
    return TensorDataset(
        x, torch.randint(0, 10, (40,), generator=g), [str(i) for i in range(10)], "toyset", "generated"
    )


CFG = EvalCfg(detectors=(), alpha_trials=6, adv_eps=0.2, adv_steps=3, adv_n=20, batch_size=16)


@pytest.fixture(scope="module")
def farconf_table(small_test):
    return evaluate_farconf(_fastcnn(3), small_test, {}, CFG, seed=0)


def test_evaluate_farconf_rows_and_arrays(farconf_table):
    t = farconf_table
    want = {
        "alpha_scaling": {"alpha_median", "overconf_frac"},
        "noise": {"mmc", "auroc", "fpr95_id"},
        "adv_noise": {"mmc", "auroc", "fpr95_id"},
        "noise_uniform": {"mmc", "auroc", "fpr95_id"},
        "adv_noise_uniform": {"mmc", "auroc", "fpr95_id"},
        "adv_samples": {"mmc", "auroc", "fpr95_id", "resistance", "clean_acc", "adv_acc"},
    }
    got: dict[str, set[str]] = {}
    for r in t:
        assert r.kind == "farconf" and r.detector == ""
        got.setdefault(r.dataset, set()).add(r.metric)
    assert got == want
    assert t.arrays["farconf/alpha/alphas"].shape == t.arrays["farconf/alpha/conf"].shape
    assert t.arrays["farconf/alpha/trials"].shape == (6,)
    assert t.arrays["farconf/adv_noise/pgd_conf"].shape == (3 + 2,)
    assert t.arrays["farconf/id/scores"].shape == (40,)
    s_id = t.arrays["farconf/id/scores"].double()
    for name in ("noise", "noise_uniform"):
        # attacking only raises each example's confidence, so the detector can only get worse
        assert t.value(dataset="adv_" + name, metric="mmc") >= t.value(dataset=name, metric="mmc")
        assert t.value(dataset="adv_" + name, metric="auroc") <= t.value(dataset=name, metric="auroc")
        assert t.value(dataset="adv_" + name, metric="fpr95_id") >= t.value(dataset=name, metric="fpr95_id")
        assert torch.all(t.arrays[f"farconf/adv_{name}/scores"] >= t.arrays[f"farconf/{name}/scores"])
    # adversarial samples: metrics over the non-resisted ones only
    res = t.arrays["farconf/adv_samples/resisted"]
    scores = t.arrays["farconf/adv_samples/scores"].double()
    assert t.value(dataset="adv_samples", metric="resistance") == pytest.approx(float(res.double().mean()))
    rows = t.filter(dataset="adv_samples", metric="mmc")
    assert next(iter(rows)).n == int((~res).sum())
    if bool((~res).any()):
        from rulab.metrics.ood import auroc

        assert t.value(dataset="adv_samples", metric="mmc") == pytest.approx(float(scores[~res].mean()), abs=1e-6)
        assert t.value(dataset="adv_samples", metric="auroc") == pytest.approx(auroc(s_id, scores[~res]))


def test_evaluate_farconf_is_seeded_and_uses_given_noise_sets(small_test, farconf_table):
    again = evaluate_farconf(_fastcnn(3), small_test, {}, CFG, seed=0)
    assert {r.key: r.value for r in again} == pytest.approx({r.key: r.value for r in farconf_table})
    g = torch.Generator().manual_seed(9)
    uni = TensorDataset(
        torch.randint(0, 256, (30, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.full((30,), -1),
        [],
        "uniform",
        "generated",
    )
    model = _fastcnn(3)
    t = evaluate_farconf(
        model, small_test, {"uniform": uni}, CFG, seed=0, noise_sources=(("noise_uniform", "uniform"),)
    )
    with torch.no_grad():
        want = msp(model.eval()(uni.x[:20].float() / 255))
    assert torch.allclose(t.arrays["farconf/noise_uniform/scores"], want, atol=1e-6)
    assert next(iter(t.filter(dataset="noise_uniform", metric="mmc"))).extra["source"] == "ood set"
    assert "noise" not in {r.dataset for r in t}


def test_evaluate_farconf_parity_index_and_id_logits(small_test, farconf_table):
    model = _fastcnn(3)
    with torch.no_grad():
        z = model.eval()(small_test.x.float() / 255)
    t = evaluate_farconf(model, small_test, {}, CFG, seed=0, rejection_index=10, id_logits=z, noise_sources=())
    # K = 10: W3's index 10 is the appended column, so resistance is unchanged
    assert t.value(dataset="adv_samples", metric="resistance") == farconf_table.value(
        dataset="adv_samples", metric="resistance"
    )
    assert t.value(dataset="adv_samples", metric="auroc") == pytest.approx(
        farconf_table.value(dataset="adv_samples", metric="auroc"), abs=1e-6
    )
    with pytest.raises(InputError, match="adv_eps"):
        evaluate_farconf(model, small_test, {}, EvalCfg(detectors=(), adv_eps=8.0), seed=0)


def test_farconf_arrays_round_trip_through_safetensors(farconf_table, tmp_path):
    farconf_table.save_arrays(tmp_path / "arrays.safetensors")
    back = farconf_table.load_arrays(tmp_path / "arrays.safetensors")
    assert set(back) == set(farconf_table.arrays)
    for k, v in farconf_table.arrays.items():
        assert torch.equal(back[k], torch.as_tensor(v))


def test_more_adv_noise_steps_add_rows_and_keep_the_default_ones(small_test, farconf_table):
    """W3 attacks its noise with 80 and with 200 steps: ``eval.adv_noise_steps`` adds ``adv_<noise>_<k>`` rows from the
    same start images while the default rows keep their keys and values."""
    from dataclasses import replace

    cfg = replace(CFG, adv_noise_steps=(7,))
    t = evaluate_farconf(_fastcnn(3), small_test, {}, cfg, seed=0)
    for name in ("noise", "noise_uniform"):
        for m in ("mmc", "auroc", "fpr95_id"):  # the default rows are unchanged
            assert t.value(dataset="adv_" + name, metric=m) == pytest.approx(
                farconf_table.value(dataset="adv_" + name, metric=m)
            )
        row = next(iter(t.filter(dataset=f"adv_{name}_7", metric="mmc")))
        assert row.extra["steps"] == 7 and row.extra["step_size"] == pytest.approx(2.5 * 0.2 / 7)
        assert t.arrays[f"farconf/adv_{name}_7/pgd_conf"].shape == (7 + 2,)
        # keep-best PGD from the same start: never below the noise itself
        assert torch.all(t.arrays[f"farconf/adv_{name}_7/scores"] >= t.arrays[f"farconf/{name}/scores"])
        assert row.value == pytest.approx(float(t.arrays[f"farconf/adv_{name}_7/scores"].double().mean()), abs=1e-6)


def test_top_images_are_the_most_confident_ones(small_test, farconf_table):
    from rulab.eval.farconf import TOP_K, top_images

    x = torch.rand(12, 1, 4, 4)
    conf = torch.tensor([0.3, 0.9, 0.1, 0.9, 0.5, 0.2, 0.8, 0.4, 0.6, 0.7, 0.05, 0.95])
    imgs, c = top_images(x, conf, k=4)
    assert c.tolist() == pytest.approx([0.95, 0.9, 0.9, 0.8])
    assert torch.equal(imgs, (x[[11, 1, 3, 6]] * 255).round().to(torch.uint8))  # ties in input order
    assert top_images(x[:2], conf[:2], k=4)[0].shape == (2, 1, 4, 4)
    t = farconf_table
    for name in ("noise", "adv_noise", "noise_uniform", "adv_noise_uniform"):
        imgs, c = t.arrays[f"farconf_top/{name}/images"], t.arrays[f"farconf_top/{name}/conf"]
        assert imgs.dtype == torch.uint8 and imgs.shape == (TOP_K, 1, 28, 28)
        scores = t.arrays[f"farconf/{name}/scores"]
        assert torch.allclose(c, scores.sort(descending=True).values[:TOP_K])
    with pytest.raises(InputError, match="one confidence per image"):
        top_images(x, conf[:3])


def test_ood_logits_give_the_most_confident_ood_images(small_test):
    g = torch.Generator().manual_seed(3)
    ood = TensorDataset(
        torch.randint(0, 256, (15, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.full((15,), -1),
        [],
        "digits",
        "generated",
    )
    z = torch.randn(15, 10, generator=g) * 3
    t = evaluate_farconf(
        _fastcnn(3), small_test, {"digits": ood}, CFG, seed=0, noise_sources=(), ood_logits={"digits": z}
    )
    order = msp(z).sort(descending=True).indices[:8]
    assert torch.equal(t.arrays["farconf_top/digits/images"], ood.x[order])
    assert torch.allclose(t.arrays["farconf_top/digits/conf"], msp(z)[order])
