"""GradNorm: the closed form against autograd, and parity with pytorch-ood 0.4.0's ``GradNorm`` (per-image
gradients with ``torch.func``) on a trained fastcnn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_ood.detector import GradNorm

from rulab.detectors.gradnorm import gradnorm_score
from rulab.errors import InputError
from rulab.registry import DETECTORS


@pytest.mark.parametrize("t", [1.0, 3.0])
def test_closed_form_equals_the_authors_backward_pass(t):
    """The authors' loss (sum over classes of −log softmax(z/T), one image per backward pass) differentiated by
    autograd w.r.t. the head's weight, L1 norm: equal to the closed form."""
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(7, 4).double()
    h = torch.randn(5, 7, generator=g, dtype=torch.float64).relu()
    expected = []
    for i in range(5):
        head.zero_grad()
        out = head(h[i : i + 1]) / t
        loss = torch.sum(-torch.ones(1, 4, dtype=torch.float64) * F.log_softmax(out, dim=-1), dim=-1).mean()
        loss.backward()
        expected.append(head.weight.grad.abs().sum())
    with torch.no_grad():
        torch.testing.assert_close(gradnorm_score(h, head(h), t), torch.stack(expected))
    with pytest.raises(InputError, match="positive"):
        gradnorm_score(h, h, 0.0)


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's GradNorm with the gradient of the head's weight only (the paper's choice), per image: its loss
    is the mean over classes where the authors sum, so its norm is ours divided by K; the ranking is the same."""
    fc = fmnist.model.fc
    ref = GradNorm(model=fc, param_filter=lambda name: name == "weight", micro_batch_size=250)
    det = DETECTORS.create("gradnorm")
    k = fc.out_features
    ours, theirs = {}, {}
    for s in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, s))
        ours[s] = det.score(ex)
        theirs[s] = -ref.predict(ex.features)
        torch.testing.assert_close(ours[s], k * theirs[s], rtol=1e-4, atol=1e-5)
    assert max(parity(ours, theirs).values()) < 1e-3
