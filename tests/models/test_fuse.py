"""Tests for rulab.models.fuse.inference_copy: the same function as the eval-mode model (logits and input gradients),
the model contract kept, the original untouched, frozen parameters, and the rewrite rules on hand-built layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rulab.models import create_model, default_input_shape
from rulab.models.fuse import fold_batchnorm, inference_copy

# name, small keyword arguments, rewrites expected (BN folds + ReLU/MaxPool swaps), counted by hand:
# fastcnn: 3 stages of conv-pool-BN-ReLU with positive BN scales → 3 folds through the pooling; fastcnn in rulab 0.1's
# layout (pool_first=False): 3 stages of conv-BN-ReLU-pool → 3 folds + 3 swaps; lenet: conv-ReLU-pool twice, no BN → 2 swaps;
# wrn / preact_resnet_hein: pre-activation (BN before conv), nothing to fold; resnet18: conv1-bn1 are attributes, not a
# Sequential, but each of the 3 strided ``downsample`` shortcuts is Sequential(conv1×1, BN) → 3 folds.
MODELS = [
    ("fastcnn", {}, 3),
    ("fastcnn", {"pool_first": False}, 6),
    ("lenet", {"hidden": 64}, 2),
    ("wrn", {"depth": 10, "widen": 1}, 0),
    ("preact_resnet_hein", {"width": 4, "units_per_stage": 1}, 0),
    ("resnet18", {}, 3),
]


def _nontrivial_bn_(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm running statistics and affine parameters far from the (0, 1, 1, 0) defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)


def _model(name: str, kwargs: dict) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    _nontrivial_bn_(model)
    return model.eval()


def _input(name: str, batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, *default_input_shape(name), generator=torch.Generator().manual_seed(1))


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal within ``rel`` of the largest magnitude of ``expected`` (float32 rounding of a deep network)."""
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * float(expected.abs().max()))


@pytest.mark.parametrize(
    ("name", "kwargs", "rewrites"),
    MODELS,
    ids=[m[0] + ("-v01" if m[1].get("pool_first") is False else "") for m in MODELS],
)
def test_inference_copy_computes_the_same_logits_and_features(name, kwargs, rewrites):
    model = _model(name, kwargs)
    x = _input(name)
    with torch.no_grad():
        ref_logits, ref_z = model(x), model.features(x)
    fast = inference_copy(model)
    assert fast.folded == rewrites
    assert type(fast) is type(model) and not fast.training
    if name == "fastcnn":  # every BatchNorm folded away
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
        assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    with torch.no_grad():
        logits = fast(x)
        z = fast.features(x)
        _close(logits, ref_logits)
        _close(z, ref_z)
        _close(fast.head(z), ref_logits)  # the contract: forward = head ∘ features
    assert ref_logits.abs().max() > 0.1  # the comparison is not between near-zero outputs


@pytest.mark.parametrize(
    ("name", "kwargs", "rewrites"),
    MODELS,
    ids=[m[0] + ("-v01" if m[1].get("pool_first") is False else "") for m in MODELS],
)
def test_inference_copy_gives_the_same_input_gradients_and_freezes_parameters(name, kwargs, rewrites):
    model = _model(name, kwargs)
    x = _input(name)
    w = torch.randn(x.shape[0], model.num_classes, generator=torch.Generator().manual_seed(2))

    def input_grad(net: nn.Module) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        (net(xg) * w).sum().backward()
        return xg.grad

    ref = input_grad(model)
    model.zero_grad(set_to_none=True)
    fast = inference_copy(model)
    assert all(not p.requires_grad for p in fast.parameters())
    got = input_grad(fast)
    assert all(p.grad is None for p in fast.parameters())
    assert all(p.grad is None for p in model.parameters())  # the copy shares no parameter with the original
    assert float(ref.abs().max()) > 0
    _close(got, ref, rel=1e-4)  # backward through a folded network: one more rounding per layer


@pytest.mark.parametrize(
    ("name", "kwargs", "rewrites"),
    MODELS,
    ids=[m[0] + ("-v01" if m[1].get("pool_first") is False else "") for m in MODELS],
)
def test_the_original_model_is_untouched(name, kwargs, rewrites):
    model = _model(name, kwargs).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layout = [(n, type(m)) for n, m in model.named_modules()]
    formats = {n: p.is_contiguous() for n, p in model.named_parameters()}
    fast = inference_copy(model)
    with torch.no_grad():
        fast(_input(name))
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert [(n, type(m)) for n, m in model.named_modules()] == layout
    assert {n: p.is_contiguous() for n, p in model.named_parameters()} == formats
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not any(p is q for p in model.parameters() for q in fast.parameters())


def test_channels_last_weights_only_where_asked():
    model = _model("fastcnn", {})
    # the second stage's conv (16 → 48 channels): with one input channel both layouts would have the same strides
    assert not inference_copy(model).stages[1][0].weight.is_contiguous()  # default for a conv net: channels-last
    assert inference_copy(model).stages[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert inference_copy(model, channels_last=False).stages[1][0].weight.is_contiguous()


def test_folding_uses_the_running_statistics_and_eps():
    """Conv → BN(eps=0.1) → ReLU → MaxPool(3, stride 2, padding 1, ceil_mode) in float64, against the formula."""
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=True),
        nn.BatchNorm2d(3, eps=0.1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    ).double()
    _nontrivial_bn_(seq)
    seq.eval()
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    conv, bn = seq[0], seq[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    by_hand = torch.nn.functional.conv2d(
        x, conv.weight * scale.view(-1, 1, 1, 1), (conv.bias - bn.running_mean) * scale + bn.bias, padding=1
    )
    want = seq(x)
    fused = copy.deepcopy(seq)
    with torch.no_grad():
        assert fold_batchnorm(fused) == 2  # one fold, one swap
    assert [type(m) for m in fused] == [nn.Conv2d, nn.Identity, nn.MaxPool2d, nn.ReLU]
    with torch.no_grad():
        torch.testing.assert_close(fused[0](x), by_hand, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fused(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("negative_channel", [False, True])
def test_batchnorm_after_max_pooling_folds_only_when_every_scale_is_positive(negative_channel):
    """Conv → MaxPool(3, stride 2, padding 1) → BN: folded through the pooling when every γ/√(σ²+ε) > 0 (max commutes
    with an increasing map), left alone when one channel's γ is negative (there max would become min)."""
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.MaxPool2d(3, 2, 1), nn.BatchNorm2d(3, eps=0.1), nn.ReLU()
    ).double()
    _nontrivial_bn_(seq)
    if negative_channel:
        with torch.no_grad():
            seq[2].weight[1] = -0.7
    seq.eval()
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    want = seq(x)
    fused = copy.deepcopy(seq)
    with torch.no_grad():
        assert fold_batchnorm(fused) == (0 if negative_channel else 1)
        assert isinstance(fused[2], nn.BatchNorm2d if negative_channel else nn.Identity)
        torch.testing.assert_close(fused(x), want, rtol=1e-12, atol=1e-12)
    if negative_channel:  # folding anyway would be wrong: the test above would catch it
        wrong = copy.deepcopy(seq)
        with torch.no_grad():
            wrong[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(wrong[0], wrong[2])
            wrong[2] = nn.Identity()
            assert not torch.allclose(wrong(x), want)


def test_linear_batchnorm1d_is_folded_and_training_mode_is_not():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU()).double()
    _nontrivial_bn_(seq)
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    train_copy = copy.deepcopy(seq).train()
    assert fold_batchnorm(train_copy) == 0  # batch statistics: nothing can be folded
    seq.eval()
    want = seq(x)
    with torch.no_grad():
        assert fold_batchnorm(seq) == 1
        assert isinstance(seq[1], nn.Identity)
        torch.testing.assert_close(seq(x), want, rtol=1e-12, atol=1e-12)
