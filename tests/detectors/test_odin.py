"""ODIN: the batched pixel-space step against a per-image normalised-space reference (ODIN's ``code/calData.py``), the sign
rule, no clipping, eval mode, and the batched grid against recomputation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rulab.detectors.base import Extracted, tuning_objective
from rulab.detectors.odin import ODIN_EPSILONS, ODIN_TEMPERATURES, odin_grid_scores, odin_perturb, odin_score, odin_sign
from rulab.errors import RulabError
from rulab.models.base import Classifier, Normalize
from rulab.registry import DETECTORS


def reference_odin(model: Classifier, x: torch.Tensor, t: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ODIN's calData.py, one image at a time: the input is the NORMALISED image, the gradient is taken with respect to
    it, its sign (≥ 0 → +1) is divided by the channel std, and the step is taken in normalised space.

    Returns:
        ``(scores [N], perturbed images [N, C, H, W] mapped back to pixel space)``.
    """
    mean, std = model.normalize.mean, model.normalize.std  # [1, C, 1, 1]
    scores, images = [], []
    for i in range(len(x)):
        inputs = ((x[i : i + 1] - mean) / std).clone().requires_grad_(True)
        outputs = model.head(model.forward_features(inputs))  # the network without its Normalize layer
        labels = outputs.detach().argmax(1)
        loss = F.cross_entropy(outputs / t, labels)
        loss.backward()
        gradient = (torch.ge(inputs.grad.data, 0).float() - 0.5) * 2
        gradient = gradient / std  # calData.py: gradient[0][c] = gradient[0][c] / (std_c)
        temp = inputs.data - eps * gradient
        out = model.head(model.forward_features(temp)) / t
        out = out - out.max(dim=1, keepdim=True).values
        scores.append(torch.exp(out).div(torch.exp(out).sum()).max())
        images.append(temp * std + mean)
    return torch.stack(scores).detach(), torch.cat(images).detach()


@pytest.mark.parametrize(("t", "eps"), [(1000.0, 0.0014), (1.0, 0.004), (10.0, 0.0002)])
def test_batched_pixel_step_equals_per_image_normalised_step_divided_by_std(toy, t, eps):
    x = toy.test.float()[:40]
    ref_scores, ref_images = reference_odin(toy.model, x, t, eps)
    g, _ = odin_sign(toy.model, x, t)
    torch.testing.assert_close(odin_perturb(x, g, eps), ref_images, rtol=0, atol=1e-6)
    torch.testing.assert_close(odin_score(toy.model, x, t, eps, batch_size=16), ref_scores, rtol=1e-5, atol=1e-6)
    det = DETECTORS.create("odin", t=t, eps=eps, batch_size=7)
    ex = Extracted(toy.model(x).detach(), torch.zeros(40, dtype=torch.long), x=toy.test.x[:40])
    torch.testing.assert_close(det.score(ex, model=toy.model), ref_scores, rtol=1e-5, atol=1e-6)


class HalfBlind(Classifier):
    """Reads only the left half of the image: the right half gets an exactly zero input gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize([0.5], [0.5])
        self.lin = nn.Linear(8, 3)
        self.feature_dim, self.num_classes = 3, 3
        self.fc = nn.Linear(3, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x[:, :, :, :2].flatten(1))


def test_zero_gradient_gives_plus_one_and_the_step_is_not_clipped():
    torch.manual_seed(0)
    model = HalfBlind().eval()
    x = torch.ones(5, 1, 4, 4)  # all pixels at the top of the range
    g, _ = odin_sign(model, x, 1000.0)
    assert torch.equal(g[:, :, :, 2:], torch.ones_like(g[:, :, :, 2:]))  # zero gradient → +1 (torch.sign gives 0)
    assert set(g.unique().tolist()) <= {-1.0, 1.0}
    stepped = odin_perturb(x, g, 0.004)
    assert torch.allclose(stepped[:, :, :, 2:], torch.full_like(stepped[:, :, :, 2:], 0.996))
    assert bool((g[:, :, :, :2] < 0).any()) and float(stepped.max()) == pytest.approx(1.004)  # NOT clipped to [0, 1]


def test_the_model_runs_in_eval_mode_and_keeps_its_mode(toy, tinynet):
    torch.manual_seed(0)
    model = tinynet(dropout=0.5).train()
    x = torch.rand(12, *toy.test.shape, generator=torch.Generator().manual_seed(1))
    a = odin_score(model, x, 100.0, 0.002)
    b = odin_score(model, x, 100.0, 0.002)
    assert model.training  # restored
    torch.testing.assert_close(a, b)  # dropout off: deterministic
    torch.testing.assert_close(a, reference_odin(model.eval(), x, 100.0, 0.002)[0], rtol=1e-5, atol=1e-6)


def test_grid_with_eps_reuse_equals_recomputation(toy):
    x = torch.cat([toy.test.x[:25], toy.ood.x[:25]])
    temps = (1.0, 1000.0, 1000.0, 5.0)  # the repeated T exercises the reuse of identical sign maps
    epss = (0.0, 0.001, 0.0004, 0.004)
    grid = odin_grid_scores(toy.model, x, temps, epss, batch_size=9)
    assert grid.shape == (4, 4, 50)
    for i, t in enumerate(temps):
        for j, e in enumerate(epss):
            torch.testing.assert_close(grid[i, j], odin_score(toy.model, x, t, e, batch_size=50), rtol=1e-5, atol=1e-6)


def test_gradient_is_computed_once_per_temperature_and_batch(toy, monkeypatch):
    import rulab.detectors.odin as odin

    calls = []
    grads = []
    real_signs, real_grad = odin.odin_signs, torch.autograd.grad
    monkeypatch.setattr(odin, "odin_signs", lambda m, x, ts: calls.append((len(x), tuple(ts))) or real_signs(m, x, ts))
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real_grad(*a, **k))
    odin_grid_scores(toy.model, toy.test.x[:50], (1.0, 2.0, 5.0), ODIN_EPSILONS, batch_size=30)
    assert calls == [(30, (1.0, 2.0, 5.0)), (20, (1.0, 2.0, 5.0))]  # one forward pass per batch for all T
    assert len(grads) == 6  # one backward pass per (batch, T), reused by all 21 values of ε


def test_the_grid_never_computes_weight_gradients(toy):
    """Only the input gradient is taken (torch.autograd.grad with respect to x): no hook on a weight ever fires."""
    fired = []
    toy.model.zero_grad(set_to_none=True)  # the shared model keeps the gradients of its training
    handles = [p.register_hook(lambda g, _n=n: fired.append(_n)) for n, p in toy.model.named_parameters()]
    try:
        odin_grid_scores(toy.model, toy.test.x[:20], (1.0, 1000.0), (0.0, 0.002), batch_size=8)
        assert fired == [] and all(p.grad is None for p in toy.model.parameters())
        toy.model(toy.test.float()[:2]).sum().backward()  # a weight gradient would fire them
        assert fired
    finally:
        for h in handles:
            h.remove()
        toy.model.zero_grad(set_to_none=True)


def test_tune_picks_the_grid_minimum_of_validation_fpr95(toy):
    det = DETECTORS.create("odin")
    det.grid = {"t": (1.0, 10.0, 1000.0), "eps": (0.0, 0.002, 0.004)}
    val = Extracted(toy.model(toy.val.float()).detach(), toy.val.y, x=toy.val.x)
    val_ood = Extracted(toy.model(toy.val_ood.float()).detach(), toy.val_ood.y, x=toy.val_ood.x)
    chosen = det.tune(toy.model, val, {"v": val_ood})
    brute = {
        (t, e): tuning_objective(
            odin_score(toy.model, toy.val.x, t, e), {"v": odin_score(toy.model, toy.val_ood.x, t, e)}
        )
        for t in det.grid["t"]
        for e in det.grid["eps"]
    }
    best = min(brute.values())
    assert chosen["objective"] == pytest.approx(best)
    assert brute[(chosen["t"], chosen["eps"])] == pytest.approx(best)
    assert (det.t, det.eps) == (chosen["t"], chosen["eps"])


def test_grid_constants_and_errors(toy):
    assert ODIN_TEMPERATURES == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert len(ODIN_EPSILONS) == 21 and ODIN_EPSILONS[0] == 0 and ODIN_EPSILONS[-1] == pytest.approx(0.004)
    assert all(b - a == pytest.approx(0.0002) for a, b in zip(ODIN_EPSILONS, ODIN_EPSILONS[1:]))
    ex = Extracted(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), x=toy.test.x[:3])
    with pytest.raises(RulabError, match="needs the model"):
        DETECTORS.create("odin", eps=0.001).score(ex)
    # ε = 0 is temperature-scaled MSP on the cached logits: no model needed
    z = torch.tensor([[0.0, 1.0, 2.0]])
    s = DETECTORS.create("odin", t=2.0, eps=0.0).score(Extracted(z, torch.zeros(1, dtype=torch.long)))
    torch.testing.assert_close(s, (z / 2.0).softmax(1).amax(1))


def test_coarse_search_is_a_subgrid_of_the_paper_grid_and_tune_uses_it(toy, monkeypatch):
    from rulab.detectors import odin as odin_mod
    from rulab.errors import ConfigError

    paper, coarse = odin_mod.ODIN_GRIDS["paper"], odin_mod.ODIN_GRIDS["coarse"]
    assert paper == {"t": ODIN_TEMPERATURES, "eps": ODIN_EPSILONS}
    assert set(coarse["t"]) <= set(paper["t"]) and all(
        any(e == pytest.approx(p) for p in paper["eps"]) for e in coarse["eps"]
    )
    assert (min(coarse["eps"]), max(coarse["eps"])) == (0.0, pytest.approx(max(paper["eps"])))
    seen = {}
    real = odin_mod.odin_grid_scores

    def spy(model, x, temps, epss, batch_size):
        seen["grid"] = (tuple(temps), tuple(epss))
        return real(model, x, temps, epss, batch_size)

    monkeypatch.setattr(odin_mod, "odin_grid_scores", spy)
    det = DETECTORS.create("odin", search="coarse")
    val = Extracted(toy.model(toy.val.float()).detach(), toy.val.y, x=toy.val.x)
    val_ood = Extracted(toy.model(toy.val_ood.float()).detach(), toy.val_ood.y, x=toy.val_ood.x)
    chosen = det.tune(toy.model, val, {"v": val_ood})
    assert (
        seen["grid"] == (coarse["t"], coarse["eps"]) and chosen["t"] in coarse["t"] and chosen["eps"] in coarse["eps"]
    )
    assert DETECTORS.create("odin").grid is paper  # the class default is untouched by an instance's choice
    with pytest.raises(ConfigError, match="paper, coarse"):
        DETECTORS.create("odin", search="fine")


def test_detector_kwargs_reach_the_detector_and_bad_ones_fail_before_running():
    from rulab.errors import ConfigError
    from rulab.eval.evaluate import _detectors
    from rulab.presets import load_config

    cfg = load_config(
        "fmnist-plain", overrides=["eval.detector_kwargs.odin.search=coarse", "eval.detector_kwargs.knn.k=7"]
    )
    dets = _detectors(cfg.eval.detectors, cfg.eval.detector_kwargs)
    assert dets["odin"].grid["t"] == (1.0, 10.0, 100.0, 1000.0) and dets["knn"].k == 7
    assert _detectors(("odin",))["odin"].grid["t"] == ODIN_TEMPERATURES
    for override, message in [
        (
            "eval.detector_kwargs.odin.serch=coarse",
            r"'eval\.detector_kwargs\.odin\.serch' is not a parameter of detector 'odin'",
        ),
        ("eval.detector_kwargs.odin.search=fine", r"'eval\.detector_kwargs\.odin': .*paper, coarse"),
        (
            "eval.detector_kwargs.odni.search=coarse",
            r"'eval\.detector_kwargs\.odni' names a detector that eval\.detectors does not run",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config("fmnist-plain", overrides=[override])
