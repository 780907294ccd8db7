"""PGD (rulab.attacks) does only the gradient work it needs: no gradient is ever computed for the model's
weights (only the input gradient), BatchNorm runs in eval mode so a batch is attacked exactly as its examples would be
one by one, and the model's mode and ``requires_grad`` flags are left as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rulab.attacks import log_max_confidence, pgd, pgd_ce, pgd_confidence
from rulab.models import create_model


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("fastcnn", width=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # running statistics far from a batch's: train-mode BN would differ
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.2)
    return model


@pytest.mark.parametrize("attack", ["confidence", "ce"])
def test_pgd_never_computes_weight_gradients(attack):
    model = _model().train()
    fired: list[str] = []
    for name, p in model.named_parameters():
        p.register_hook(lambda grad, _n=name: fired.append(_n))
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    if attack == "confidence":
        u, _ = pgd_confidence(model, x, eps=0.1, steps=3, generator=g)
    else:
        u, _ = pgd_ce(model, x, torch.arange(6) % 10, eps=0.1, steps=3, step_size=0.03, generator=g)
    assert fired == []  # autograd never reached a weight: only d(objective)/d(input) was computed
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training
    assert not u.requires_grad and u.grad_fn is None  # no graph kept with the result
    # a weight gradient WOULD fire the hooks (the check above can fail)
    model(x).sum().backward()
    assert fired


def test_a_batch_is_attacked_as_its_examples_one_by_one():
    """BN in eval mode: images do not interact, so attacking 5 images at once equals 5 single-image attacks."""
    model = _model().train()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    batch, val = pgd(model, x, log_max_confidence, eps=0.2, steps=4, step_size=0.05, random_start="none")
    singles = [
        pgd(model, x[i : i + 1], log_max_confidence, eps=0.2, steps=4, step_size=0.05, random_start="none")
        for i in range(5)
    ]
    torch.testing.assert_close(batch, torch.cat([s[0] for s in singles]), rtol=0, atol=1e-6)
    torch.testing.assert_close(val, torch.cat([s[1] for s in singles]), rtol=1e-5, atol=1e-6)
    assert float((batch - x).abs().max()) > 0.1  # the attack moved the images
    assert model.training
