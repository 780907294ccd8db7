"""Deep ensembles as classifiers (rulab.models.ensemble): known answers for the averaged predictive and its logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rulab.errors import ConfigError
from rulab.models import create_model
from rulab.models.base import Classifier, Normalize
from rulab.models.ensemble import Ensemble, average_logits
from rulab.models.fuse import inference_copy

pytestmark = pytest.mark.usefixtures("one_thread")


class Lin(Classifier):
    """A linear classifier on 2×2 grey images: features = flattened normalised pixels (or a ReLU layer of them)."""

    feature_layers = ("body",)

    def __init__(self, k: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.normalize = Normalize([0.5], [0.25])
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, hidden), nn.ReLU())
        self.feature_dim, self.num_classes = hidden, k
        self.fc = nn.Linear(hidden, k)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _members(n: int = 3) -> list[Lin]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(Lin().eval())
    return out


def test_average_logits_gives_the_mean_predictive_and_the_mean_log_partition():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, 7, generator=g, dtype=torch.float64) * 3
    out = average_logits(z).numpy()
    zn = z.numpy()
    p = np.exp(zn - zn.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    mean_p = p.mean(axis=1)  # [B, K] by hand
    q = np.exp(out - out.max(axis=1, keepdims=True))
    np.testing.assert_allclose(q / q.sum(axis=1, keepdims=True), mean_p, rtol=1e-12)
    lse = lambda a, ax: np.log(np.exp(a - a.max(axis=ax, keepdims=True)).sum(axis=ax)) + a.max(axis=ax)  # noqa: E731
    np.testing.assert_allclose(lse(out, 1), lse(zn, 2).mean(axis=1), rtol=1e-12)  # energy of the ensemble = mean energy


def test_an_ensemble_of_identical_members_is_the_single_model():
    net = _members(1)[0]
    ens = Ensemble([net, net, net]).eval()
    x = torch.rand(6, 1, 2, 2)
    torch.testing.assert_close(ens(x), net(x), rtol=1e-5, atol=1e-5)  # logits, not only probabilities
    assert ens.features(x).shape == (6, 12) and ens.feature_dim == 12
    torch.testing.assert_close(ens.features(x), net.features(x).repeat(1, 3))


def test_forward_features_head_and_members_agree():
    members = _members()
    ens = Ensemble(members).eval()
    x = torch.rand(5, 1, 2, 2)
    z, m = ens.member_forward(x, features=True)
    assert m.shape == (5, 3, 3)
    for i, net in enumerate(members):
        torch.testing.assert_close(m[:, i], net(x))
    torch.testing.assert_close(ens(x), average_logits(m))
    torch.testing.assert_close(ens.head(ens.features(x)), ens(x))
    torch.testing.assert_close(
        ens.head(z.clone()), ens(x), rtol=1e-5, atol=1e-6
    )  # not the stashed pass: member heads on slices
    torch.testing.assert_close(ens.member_head(z), m, rtol=1e-5, atol=1e-6)
    # softmax of the logits is the mean of the members' softmax
    torch.testing.assert_close(
        ens(x).softmax(1), torch.stack([n(x).softmax(1) for n in members]).mean(0), rtol=1e-5, atol=1e-6
    )


def test_layer_contract_names_every_members_layers():
    members = _members(2)
    ens = Ensemble(members).eval()
    assert ens.feature_layers == ("members.0.body", "members.1.body")
    x = torch.rand(3, 1, 2, 2)
    logits, outs = ens.layer_outputs(x)
    torch.testing.assert_close(logits, ens(x))
    torch.testing.assert_close(outs["members.1.body"], members[1].features(x))
    assert ens.mean == [0.5] and ens.std == [0.25]


def test_inference_copy_of_an_ensemble_computes_the_same_function():
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        net = create_model("fastcnn", width=4)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding matters
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        members.append(net.eval())
    ens = Ensemble(members).eval()
    fast = inference_copy(ens)
    assert fast.folded > 0 and isinstance(fast, Ensemble)
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(fast(x), ens(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.member_forward(x)[1], ens.member_forward(x)[1], rtol=1e-4, atol=1e-4)


def test_ensemble_refuses_bad_members_with_a_sentence():
    with pytest.raises(ConfigError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ConfigError, match="same classes, got numbers of classes \\[3, 5\\]"):
        Ensemble([Lin(3), Lin(5)])
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        Ensemble(_members(2)).reset_head(4)
    assert Ensemble(_members(2)).fc is None
