"""WrappedClassifier (any network as a rulab model) and the ``torchvision`` model entry."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.wrapped import WrappedClassifier, find_head, replace_first_conv, wrap_model
from rulab.registry import MODELS

MEAN, STD = (0.3, 0.5, 0.4), (0.2, 0.25, 0.3)


def _net(k: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 12),
        nn.ReLU(),
        nn.Linear(12, k),
    )


def _x(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_head_input_features_and_normalisation() -> None:
    net = _net().eval()
    m = WrappedClassifier(net, MEAN, STD).eval()
    x = _x()
    with torch.no_grad():
        z = m.features(x)
        torch.testing.assert_close(z, net[:-1](_normalised(x)))  # the input of the last Linear
        torch.testing.assert_close(m(x), net(_normalised(x)))
        torch.testing.assert_close(m.head(z), m(x), rtol=0, atol=0)
    assert m.fc is net[-1] and m.head_name == "6"
    assert (m.feature_dim, m.num_classes) == (12, 4)
    assert m.mean == pytest.approx(list(MEAN)) and m.std == pytest.approx(list(STD))


def test_no_normalisation_is_the_identity() -> None:
    net = _net().eval()
    m = wrap_model(net).eval()
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(m(x), net(x), rtol=0, atol=0)


def test_named_node_features_via_torchvision_extractor() -> None:
    net = _net().eval()
    m = WrappedClassifier(net, MEAN, STD, feature_layer="1").eval()  # the ReLU after the conv: [B, 6, 8, 8]
    x = _x()
    with torch.no_grad():
        z = m.features(x)
        torch.testing.assert_close(z, net[:2](_normalised(x)).mean(dim=(2, 3)))  # global average pooled
        torch.testing.assert_close(m.head(z), net(_normalised(x)))  # the logits of the same pass
        with pytest.raises(InputError, match="logits cannot be computed"):
            m.head(torch.zeros(5, 6))
    assert m.fc is None  # ReAct/ViM must not use a head whose input is not these features
    with pytest.raises(ConfigError, match="no graph node 'nope'"):
        WrappedClassifier(net, feature_layer="nope").features(x)


def test_feature_function() -> None:
    net = _net().eval()
    calls = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        return net[:4](x)

    m = WrappedClassifier(net, MEAN, STD, feature_layer=fn).eval()
    x = _x()
    with torch.no_grad():
        z = m.features(x)
        torch.testing.assert_close(calls[0], _normalised(x))  # the function sees the network's (normalised) input
        torch.testing.assert_close(z, net[:4](_normalised(x)))
        torch.testing.assert_close(m.head(z), m(x))


class _Scaled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_output_not_the_last_linear_is_refused() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), _Scaled())
    with pytest.raises(ConfigError, match="not the output of its last linear layer"):
        WrappedClassifier(net).features(_x())
    with pytest.raises(ConfigError, match="no nn.Linear layer"):
        WrappedClassifier(nn.Sequential(nn.Conv2d(3, 4, 8), nn.Flatten())).features(_x())
    with pytest.raises(ConfigError, match="not an nn.Linear"):
        find_head(_net(), "0")
    with pytest.raises(ConfigError, match="both mean and std"):
        WrappedClassifier(_net(), mean=0.5)


def test_reset_head_deepcopy_and_safe_save(tmp_path) -> None:
    from rulab.checkpoint import save_model

    m = WrappedClassifier(_net(), MEAN, STD)
    m.reset_head(7)
    x = _x()
    assert m(x).shape == (5, 7) and m.num_classes == 7
    c = copy.deepcopy(m).eval()
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(c.features(x), m.features(x))
    # no tensor is shared under two names (safetensors refuses those)
    save_model(tmp_path / "model.safetensors", m, {"model": "x", "model_kwargs": {}})


def test_replace_first_conv() -> None:
    net = _net()
    replace_first_conv(net, 1)
    assert net[0].in_channels == 1 and net[0].out_channels == 6 and net[0].padding == (1, 1)
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_torchvision_entry_matches_torchvision_and_rulab_resnet18() -> None:
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=10)
    tv.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    tv.eval()
    m = MODELS.create("torchvision", arch="resnet18", num_classes=10, in_channels=1, mean=[0.286], std=[0.353])
    assert set(m.state_dict()) == {f"net.{k}" for k in tv.state_dict()} | {"normalize.mean", "normalize.std"}
    m.load_state_dict(
        {
            **{f"net.{k}": v for k, v in tv.state_dict().items()},
            "normalize.mean": m.normalize.mean,
            "normalize.std": m.normalize.std,
        }
    )
    r = MODELS.create("resnet18", num_classes=10, in_channels=1, mean=[0.286], std=[0.353])
    r.load_state_dict({**tv.state_dict(), "normalize.mean": r.normalize.mean, "normalize.std": r.normalize.std})
    m.eval(), r.eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = tv((x - 0.286) / 0.353)
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)
        torch.testing.assert_close(m.features(x), r.features(x), rtol=0, atol=0)  # the penultimate [B, 512] vector
        torch.testing.assert_close(r(x), ref)
    assert m.feature_dim == 512 and m.fc is m.net.fc


def test_torchvision_entry_errors_and_kwargs() -> None:
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        MODELS.create("torchvision", arch="resnet81")
    m = MODELS.create("torchvision", arch="mobilenet_v3_small", num_classes=5, in_channels=1, kwargs={"dropout": 0.0})
    assert m.head_name == "classifier.3" and m(torch.rand(2, 1, 32, 32)).shape == (2, 5)
    with pytest.raises(ConfigError, match="does not accept"):
        MODELS.create("torchvision", arch="resnet18", kwargs={"bogus": 1})


def test_default_feature_layers_of_wrapped_networks() -> None:
    """A wrapped ResNet's blocks are layer1..layer4 (named inside the wrapper under ``net.``); a MobileNet's are the
    children of ``features``; a plain Sequential's are its parametrised layers but the head; ``layers=`` overrides."""
    import torchvision

    from rulab.models.wrapped import default_feature_layers

    resnet = torchvision.models.resnet18(num_classes=3)
    assert default_feature_layers(resnet, "fc") == ("layer1", "layer2", "layer3", "layer4")
    mobile = torchvision.models.mobilenet_v3_small(num_classes=3)
    names = default_feature_layers(mobile, "classifier.3")
    assert names[0] == "features.0" and names[-1] == f"features.{len(mobile.features) - 1}"
    seq = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    assert default_feature_layers(seq, "3") == ("1",)
    wrapped = wrap_model(resnet, mean=0.5, std=0.25)
    assert wrapped.feature_layers == ("net.layer1", "net.layer2", "net.layer3", "net.layer4")
    x = torch.rand(2, 3, 32, 32)
    wrapped.eval()
    with torch.no_grad():
        logits, outs = wrapped.layer_outputs(x, ["net.layer4"])
        torch.testing.assert_close(logits, resnet((x - 0.5) / 0.25))
        assert outs["net.layer4"].shape == (2, 512, 1, 1)
    assert wrap_model(resnet, mean=0.5, std=0.25, layers=["layer3"]).feature_layers == ("net.layer3",)
    with pytest.raises(ConfigError, match="no layer 'layer9'"):
        wrap_model(resnet, mean=0.5, std=0.25, layers=["layer9"])
