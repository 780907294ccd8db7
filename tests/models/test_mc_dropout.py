"""MC dropout (rulab.models.mc_dropout): only the dropout layers are stochastic, the masks are seeded, p = 0 is the
deterministic model, and the per-pass outputs are what a hand computation gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rulab.errors import ConfigError
from rulab.models import create_model
from rulab.models.base import Classifier, Normalize
from rulab.models.ensemble import average_logits
from rulab.models.mc_dropout import MCDropout, SeededDropout, dropout_layers

pytestmark = pytest.mark.usefixtures("one_thread")


class Deep(Classifier):
    """BatchNorm and dropout inside the features: Linear → BN → ReLU → Dropout(p) → Linear → ReLU; head Linear."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.normalize = Normalize([0.5], [0.25])
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(p), nn.Linear(32, 8), nn.ReLU()
        )
        self.feature_dim, self.num_classes = 8, 3
        self.fc = nn.Linear(8, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _deep(p: float) -> Deep:
    torch.manual_seed(0)
    net = Deep(p)
    with torch.no_grad():
        bn = net.body[2]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return net.eval()


def test_p_zero_is_the_deterministic_model():
    """With p = 0 every pass is the network in eval mode: the MC logits equal its logits (not only the probabilities)
    and BatchNorm uses its running statistics (in training mode it would normalise by the batch)."""
    net = _deep(0.0)
    mc = MCDropout(net, passes=5, seed=3)
    x = torch.rand(7, 1, 4, 4)
    torch.testing.assert_close(mc(x), net(x), rtol=1e-5, atol=1e-5)
    _, members = mc.member_forward(x)
    torch.testing.assert_close(members, net(x).unsqueeze(1).expand(-1, 5, -1))
    bn = mc.inner.body[2]
    before = bn.running_mean.clone()
    mc.train()  # the wrapper's flag only: the network stays in eval mode
    mc(x)
    assert not mc.inner.training and not bn.training and torch.equal(bn.running_mean, before)


def test_passes_by_hand_for_dropout_before_the_head():
    """fastcnn(dropout=p): the features are computed once, and pass t is fc(z · m_t / (1 - p)) with m_t the seeded
    keep-mask; the MC logits average those passes."""
    torch.manual_seed(0)
    net = create_model("fastcnn", width=4, dropout=0.5).eval()
    mc = MCDropout(net, passes=3, seed=11)
    x = torch.rand(4, 1, 28, 28)
    z, members = mc.member_forward(x, features=True)
    assert mc.deterministic_features is True
    torch.testing.assert_close(z, net.features(x))
    layer = mc.inner.drop
    assert isinstance(layer, SeededDropout) and mc.layers == ("drop",)
    by_hand = []
    for t in range(3):
        layer.pass_index = t
        mask = layer.mask((net.feature_dim,), torch.device("cpu"), torch.float32)
        assert set(mask.unique().tolist()) <= {0.0, 2.0}
        by_hand.append(net.fc(z * mask))
    torch.testing.assert_close(members, torch.stack(by_hand, dim=1))
    torch.testing.assert_close(mc(x), average_logits(torch.stack(by_hand, dim=1)))


def test_masks_are_seeded_shared_by_the_batch_and_keep_1_minus_p():
    net = _deep(0.3)
    x = torch.rand(64, 1, 4, 4)
    a, b, c = MCDropout(net, 4, seed=0), MCDropout(net, 4, seed=0), MCDropout(net, 4, seed=1)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))
    torch.testing.assert_close(a(x[10:13]), a(x)[10:13])  # the same function of the image, whatever the batch
    assert a.deterministic_features is False  # Deep's dropout sits inside the features
    layer = SeededDropout(0.3, False, seed=5, index=0)
    kept = []
    for t in range(20):
        layer.pass_index = t
        kept.append(layer.mask((1000,), torch.device("cpu"), torch.float64) > 0)
    assert abs(torch.stack(kept).double().mean().item() - 0.7) < 0.01  # 20,000 Bernoulli(0.7) draws: sd 0.003
    assert not torch.equal(kept[0], kept[1])  # each pass has its own mask
    channel = SeededDropout(0.5, True, seed=5, index=0).mask((6, 3, 3), torch.device("cpu"), torch.float32)
    assert channel.shape == (6, 1, 1)


def test_features_are_averaged_when_dropout_sits_inside_them():
    net = _deep(0.5)
    mc = MCDropout(net, passes=4, seed=2)
    x = torch.rand(5, 1, 4, 4)
    z, members = mc.member_forward(x, features=True)
    assert mc.deterministic_features is False
    passes = []
    for t in range(4):
        for m in mc.inner.modules():
            if isinstance(m, SeededDropout):
                m.pass_index = t
        passes.append(mc.inner.features(x))
    torch.testing.assert_close(z, torch.stack(passes).mean(0))
    torch.testing.assert_close(members, torch.stack([mc.inner.fc(p) for p in passes], dim=1))


def test_the_wrapped_model_is_not_modified():
    net = _deep(0.5)
    MCDropout(net, passes=2)
    assert isinstance(net.body[4], nn.Dropout)
    net.train()
    x = torch.rand(200, 1, 4, 4)
    assert not torch.equal(net.features(x), net.features(x))  # its own dropout is still random in training mode


def test_refuses_a_model_without_dropout_and_bad_passes_with_a_sentence():
    with pytest.raises(
        ConfigError,
        match=r"FastCNN has no dropout layer \(nn.Dropout\), so MC dropout has nothing to sample; .*fmnist-dropout",
    ):
        MCDropout(create_model("fastcnn", width=4), passes=10)
    with pytest.raises(ConfigError, match="passes >= 1"):
        MCDropout(_deep(0.1), passes=0)
    alpha = nn.Sequential(nn.AlphaDropout(0.1))
    with pytest.raises(ConfigError, match="AlphaDropout, which MC dropout does not support"):
        dropout_layers(alpha)


def test_registered_models_with_a_dropout_argument_expose_dropout_modules():
    """fastcnn, the wide ResNets and DenseNet-BC build dropout modules when p > 0 (none at p = 0), without new
    state_dict keys, so checkpoints load either way and MC dropout finds them."""
    for name, kw in (("fastcnn", {"width": 4}), ("wrn", {"depth": 10, "widen": 1}), ("densenet_bc100", {})):
        plain, drop = create_model(name, dropout=0.0, **kw), create_model(name, dropout=0.2, **kw)
        assert dropout_layers(plain) == [] and len(dropout_layers(drop)) >= 1
        assert plain.state_dict().keys() == drop.state_dict().keys()
    wrn = create_model("wrn", depth=10, widen=1, dropout=0.3).eval()
    x = torch.rand(2, 3, 32, 32)
    assert MCDropout(wrn, passes=2)(x).shape == (2, 10)
