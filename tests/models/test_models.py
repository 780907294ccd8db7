"""Tests for rulab.models: one contract test over every registered model, plus known answers per architecture.

Parameter counts are derived by hand below (the arithmetic is written out) and compared exactly.
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import CheckpointError, ConfigError, InputError
from rulab.models import (
    BarlowTwinsProjector,
    Classifier,
    count_parameters,
    create_model,
    default_input_shape,
    list_models,
)
from rulab.models.preact_resnet import Conv2dSame, HeinResidualUnit
from rulab.models.spec import resolve_stats
from rulab.models.wrn import WideBasicBlock
from rulab.registry import MODELS


def _input(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *default_input_shape(name), generator=g)


# ----------------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", MODELS.list())
def test_model_contract(name: str) -> None:
    entry = MODELS.get(name)
    params = inspect.signature(entry).parameters.values()
    assert all(p.default is not inspect.Parameter.empty for p in params), (
        "entrypoints take keyword arguments with defaults"
    )
    assert {"num_classes", "mean", "std"} <= {p.name for p in params}

    torch.manual_seed(0)
    model = create_model(name)
    assert isinstance(model, Classifier)
    x = _input(name)
    k = model.num_classes

    # training step: finite logits, finite gradient reaching every parameter, not all zero
    model.train()
    logits = model(x)
    assert logits.shape == (2, k) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0

    # forward = head ∘ features, shapes, determinism in eval mode
    model.eval()
    with torch.no_grad():
        z = model.features(x)
        out = model(x)
        assert z.shape == (2, model.feature_dim)
        torch.testing.assert_close(model.head(z), out)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)

    # the Normalize first layer is saved with the weights and has one value per input channel
    state = model.state_dict()
    assert "normalize.mean" in state and "normalize.std" in state
    assert len(model.mean) == len(model.std) == default_input_shape(name)[0]

    # reset_head: new K, same features
    model.reset_head(7)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        torch.testing.assert_close(model.features(x), z, rtol=0, atol=0)
    assert model.num_classes == 7


@pytest.mark.parametrize("name", MODELS.list())
def test_feature_layers_contract(name: str) -> None:
    """Every model names its blocks (``feature_layers``); one forward pass returns their outputs with the very logits of
    ``model(x)``; an identity edit changes nothing, a real edit of any layer changes the logits; the inference copy
    (BatchNorm folded, pooling moved) has the same layer outputs up to float rounding."""
    from rulab.models.fuse import inference_copy

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = _input(name)
    names = tuple(model.feature_layers)
    assert names, f"{name} names no feature layers"
    with torch.no_grad():
        out = model(x)
        logits, outs = model.layer_outputs(x)
        assert list(outs) == list(names)
        torch.testing.assert_close(logits, out, rtol=0, atol=0)
        for n, t in outs.items():
            assert t.shape[0] == 2 and t.ndim in (2, 4) and bool(torch.isfinite(t).all()), (n, t.shape)
        torch.testing.assert_close(model.forward_with(x, {n: (lambda t: t) for n in names}), out, rtol=0, atol=0)
        for n in names:
            edited = model.forward_with(x, {n: lambda t: t + 1.0})
            assert not torch.allclose(edited, out), f"editing layer {n} of {name} does not reach the logits"
        _, only_last = model.layer_outputs(x, [names[-1]])
        torch.testing.assert_close(only_last[names[-1]], outs[names[-1]], rtol=0, atol=0)
        copy = inference_copy(model)
        copy_logits, copy_outs = copy.layer_outputs(x)
        torch.testing.assert_close(copy_logits, out, rtol=1e-4, atol=1e-4)
        for n in names:
            torch.testing.assert_close(copy_outs[n], outs[n], rtol=1e-4, atol=1e-4 * float(outs[n].abs().max()))


def test_feature_layers_known_answers_on_fastcnn() -> None:
    """fastcnn's features are its last stage flattened, so editing that stage is editing the features."""
    torch.manual_seed(0)
    model = create_model("fastcnn", width=4).eval()
    x = _input("fastcnn", batch=3)
    with torch.no_grad():
        _, outs = model.layer_outputs(x)
        assert [tuple(t.shape) for t in outs.values()] == [(3, 4, 14, 14), (3, 12, 7, 7), (3, 24, 3, 3)]
        torch.testing.assert_close(outs["stages.0"], model.stages[0](model.normalize(x)), rtol=0, atol=0)
        torch.testing.assert_close(outs["stages.2"].flatten(1), model.features(x), rtol=0, atol=0)
        doubled = model.forward_with(x, {"stages.2": lambda t: 2.0 * t})
        torch.testing.assert_close(doubled, model.head(2.0 * model.features(x)))


def test_feature_layers_errors() -> None:
    model = create_model("fastcnn", width=4).eval()
    x = _input("fastcnn")
    with pytest.raises(
        ConfigError, match="has no layer 'stages.7'; its feature layers are stages.0, stages.1, stages.2"
    ):
        model.layer_outputs(x, ["stages.7"])
    with pytest.raises(InputError, match="changed its output shape"):
        model.forward_with(x, {"stages.2": lambda t: t.flatten(1)})

    class Bare(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.normalize = nn.Identity()
            self.relu = nn.ReLU()
            self.fc = nn.Linear(4, 2)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.relu(x))  # one module run twice

    bare = Bare()
    with pytest.raises(ConfigError, match="names no feature layers"):
        bare.layer_outputs(torch.rand(2, 4))
    bare.feature_layers = ("relu",)
    with pytest.raises(ConfigError, match="layer 'relu' of Bare ran 2 times in one forward pass"):
        bare.layer_outputs(torch.rand(2, 4))


def test_list_and_create() -> None:
    names = list_models()
    assert {
        "fastcnn",
        "lenet",
        "wrn",
        "wrn40_2",
        "wrn28_10",
        "preact_resnet_hein",
        "resnet18",
        "resnet50",
        "densenet_bc100",
        "mlp",
    } <= set(names)
    assert list_models("wrn") == ["wrn", "wrn28_10", "wrn40_2"]
    assert create_model("fastcnn", num_classes=3).fc.out_features == 3


# ----------------------------------------------------------------------------------------------- normalisation


def test_resolve_stats_defaults_and_errors() -> None:
    m, s = resolve_stats(None, None, 1, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "x")
    assert m == pytest.approx([0.449]) and s == pytest.approx([0.226])
    assert resolve_stats((0.5,), None, 3, (0.0,), (1.0,), "x") == ([0.5] * 3, [1.0] * 3)
    with pytest.raises(ConfigError, match="2 values for 3"):
        resolve_stats((0.1, 0.2), None, 3, (0.0,), (1.0,), "x")
    with pytest.raises(ConfigError, match="std"):
        resolve_stats(None, (0.0,), 1, (0.0,), (1.0,), "x")


def test_default_normalisation_per_model() -> None:
    assert create_model("fastcnn").mean == pytest.approx([0.2860]) and create_model("fastcnn").std == pytest.approx(
        [0.3530]
    )
    assert create_model("wrn", depth=10, widen=1).mean == pytest.approx([0.5] * 3)
    assert create_model("preact_resnet_hein").std == pytest.approx([1.0] * 3)
    assert create_model("densenet_bc100").mean == pytest.approx([125.3 / 255, 123.0 / 255, 113.9 / 255])
    model = create_model("lenet", mean=(0.1,), std=(0.2,))
    x = _input("lenet")
    torch.testing.assert_close(model.normalize(x), (x - 0.1) / 0.2)


# ----------------------------------------------------------------------------------------------- fastcnn


def test_fastcnn_known_shapes_and_count() -> None:
    model = create_model("fastcnn")
    # conv 1·9·16 + BN 2·16 + conv 16·9·48 + BN 2·48 + conv 48·9·96 + BN 2·96 + fc 864·10 + 10
    assert count_parameters(model) == 144 + 32 + 6912 + 96 + 41472 + 192 + 8640 + 10 == 57498
    assert model.feature_dim == 96 * 3 * 3
    colour = create_model("fastcnn", in_channels=3, input_size=32, width=8)
    assert colour.feature_dim == 48 * 4 * 4
    assert colour(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(InputError, match="input_size=32"):
        model(torch.rand(2, 1, 32, 32))


def test_fastcnn_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    model = create_model("fastcnn").eval()
    x = _input("fastcnn", batch=4)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-5)


def test_fastcnn_pools_before_batchnorm_and_relu() -> None:
    """Each stage is conv → maxpool → BN → ReLU: in training mode BN's batch statistics are those of the pooled
    conv output (a hand-computed stage), and rulab 0.1's layout (``pool_first=False``) computes another function."""
    torch.manual_seed(0)
    model = create_model("fastcnn", width=4).train()
    assert [type(m) for m in model.stages[0]] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    x = torch.randn(8, 1, 28, 28)
    conv, bn = model.stages[0][0], model.stages[0][2]
    pooled = F.max_pool2d(conv(x), 2)
    by_hand = F.relu(
        (pooled - pooled.mean((0, 2, 3), keepdim=True))
        / torch.sqrt(pooled.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps)
    )
    torch.testing.assert_close(model.stages[0](x), by_hand, rtol=1e-5, atol=1e-5)
    legacy = create_model("fastcnn", width=4, pool_first=False).train()
    assert [type(m) for m in legacy.stages[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    legacy.load_state_dict({re.sub(r"^(stages\.\d)\.2\.", r"\1.1.", k): v for k, v in model.state_dict().items()})
    assert not torch.allclose(legacy.stages[0](x), model.stages[0](x))


def test_checkpoints_of_the_rulab_0_1_fastcnn_layout_still_load(tmp_path) -> None:
    """A checkpoint saved from a conv–BN–ReLU–pool fastcnn (rulab 0.1, no ``pool_first`` stored) is rebuilt in that
    layout and predicts what it predicted when saved; a current checkpoint is rebuilt pool-first."""
    from rulab.checkpoint import load_model, save_model

    torch.manual_seed(0)
    for pool_first in (False, True):
        model = create_model("fastcnn", width=4, pool_first=pool_first)
        model.train()(torch.rand(32, 1, 28, 28))  # non-trivial running statistics
        model.eval()
        path = save_model(
            tmp_path / f"{pool_first}" / "model.safetensors", model, {"model": "fastcnn", "model_kwargs": {"width": 4}}
        )
        loaded, _ = load_model(path)
        assert loaded.stages[0][1].__class__ is (nn.MaxPool2d if pool_first else nn.BatchNorm2d)
        x = torch.rand(4, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


# ----------------------------------------------------------------------------------------------- LeNet (W3)


def test_lenet_shapes_and_count() -> None:
    model = create_model("lenet")
    x = _input("lenet")
    assert model.conv[:3](x).shape == (2, 32, 14, 14)
    assert model.conv(x).shape == (2, 64, 7, 7)
    # conv1 25·32 + 32, conv2 32·25·64 + 64, fc1 (64·7·7)·1024 + 1024, fc 1024·10 + 10
    assert count_parameters(model) == 832 + 51264 + 3136 * 1024 + 1024 + 10250 == 3274634
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.mean == [0.0] and model.std == [1.0]  # W3 feeds raw pixels
    assert create_model("lenet", in_channels=3, input_size=32).fc1.in_features == 64 * 8 * 8


# ----------------------------------------------------------------------------------------------- WRN (W1, ODIN)


def test_wrn40_2_parameter_count_by_hand() -> None:
    # A block c_in→c_out: BN1 2·c_in + conv1 9·c_in·c_out + BN2 2·c_out + conv2 9·c_out² (+ 1×1 shortcut c_in·c_out).
    stem = 9 * 3 * 16  # 432
    stage1 = (32 + 9 * 16 * 32 + 64 + 9 * 32 * 32 + 16 * 32) + 5 * (
        64 + 9 * 32 * 32 + 64 + 9 * 32 * 32
    )  # 14,432 + 5·18,560
    stage2 = (64 + 9 * 32 * 64 + 128 + 9 * 64 * 64 + 32 * 64) + 5 * (
        128 + 9 * 64 * 64 + 128 + 9 * 64 * 64
    )  # 57,536 + 5·73,984
    stage3 = (128 + 9 * 64 * 128 + 256 + 9 * 128 * 128 + 64 * 128) + 5 * (256 + 9 * 128 * 128 + 256 + 9 * 128 * 128)
    head = 2 * 128 + 128 * 10 + 10
    expected = stem + stage1 + stage2 + stage3 + head
    assert (stage1, stage2, stage3) == (107_232, 427_456, 1_706_880)
    assert expected == 2_243_546  # "~2.2M" (W1's WRN-40-2, docs/protocols/hendrycks2019.md)
    model = create_model("wrn40_2")
    assert count_parameters(model) == expected
    assert model.feature_dim == 128
    assert sum(isinstance(m, WideBasicBlock) for m in model.modules()) == 18


def test_wrn28_10_parameter_count_by_hand() -> None:
    def block(c_in: int, c_out: int) -> int:
        return 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + (c_in * c_out if c_in != c_out else 0)

    n, ch = 4, [16, 160, 320, 640]
    expected = (
        9 * 3 * 16
        + sum(block(ch[i], ch[i + 1]) + (n - 1) * block(ch[i + 1], ch[i + 1]) for i in range(3))
        + 2 * 640
        + 6410
    )
    assert expected == 36_479_194  # the published "36.5M"
    model = create_model("wrn28_10")
    assert count_parameters(model) == expected and model.feature_dim == 640


def test_wrn_block_shortcut_uses_activated_input_when_projecting() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    proj = WideBasicBlock(4, 8, stride=2, dropout=0.0, dropout_placement="before_conv2").eval()
    proj.bn1.running_mean.uniform_(-1, 1)
    proj.bn1.weight.data.uniform_(0.5, 2)
    nn.init.zeros_(proj.conv2.weight)  # residual path contributes 0: output = shortcut
    with torch.no_grad():
        torch.testing.assert_close(proj(x), proj.convShortcut(F.relu(proj.bn1(x))))
        assert not torch.allclose(proj(x), proj.convShortcut(x))
    same = WideBasicBlock(8, 8, stride=1, dropout=0.0, dropout_placement="before_conv2").eval()
    nn.init.zeros_(same.conv2.weight)
    y = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(same(y), y)  # raw x as shortcut


@pytest.mark.parametrize(("placement", "zeros_expected"), [("after_conv1", True), ("before_conv2", False)])
def test_wrn_dropout_placement(placement: str, zeros_expected: bool) -> None:
    torch.manual_seed(0)
    block = WideBasicBlock(8, 8, stride=1, dropout=0.5, dropout_placement=placement).train()
    seen: list[torch.Tensor] = []
    block.bn2.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    block(torch.randn(4, 8, 6, 6))
    zero_frac = float((seen[0] == 0).float().mean())
    # ODIN drops conv1's output (exact zeros enter BN2); W1 drops after BN2-ReLU (none enter BN2)
    assert (0.4 < zero_frac < 0.6) if zeros_expected else zero_frac == 0.0


def test_wrn_init_and_errors() -> None:
    torch.manual_seed(0)
    model = create_model("wrn", depth=16, widen=4)
    w = model.block3.layer[1].conv1.weight.detach()  # 3×3, 256 → 256: std sqrt(2 / (9·256))
    assert float(w.std()) == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.02)
    assert float(model.fc.bias.detach().abs().sum()) == 0.0
    with pytest.raises(ConfigError, match="6n"):
        create_model("wrn", depth=27)
    with pytest.raises(ConfigError, match="dropout_placement"):
        create_model("wrn40_2", dropout_placement="middle")


# ----------------------------------------------------------------------------------------------- Hein ResNet (W3)


def test_preact_resnet_hein_parameter_count_by_hand() -> None:
    # unit c_in→c_out: BN 2·c_in + conv 9·c_in·c_out + BN 2·c_out + conv 9·c_out² (option-A shortcut: no parameters)
    stem = 9 * 3 * 16
    stage1 = 3 * (32 + 2304 + 32 + 2304)  # 14,016
    stage2 = (32 + 9 * 16 * 32 + 64 + 9 * 32 * 32) + 2 * (64 + 9216 + 64 + 9216)  # 13,920 + 2·18,560
    stage3 = (64 + 9 * 32 * 64 + 128 + 9 * 64 * 64) + 2 * (128 + 36864 + 128 + 36864)  # 55,488 + 2·73,984
    head = 2 * 64 + 64 * 10 + 10
    assert stem + stage1 + stage2 + stage3 + head == 269_722
    model = create_model("preact_resnet_hein")
    assert count_parameters(model) == 269_722
    bn = model.stage2[0].bn1
    assert bn.momentum == 0.01 and bn.eps == 1e-5
    assert [u.activate_before_residual for u in model.stage2] == [True, False, False]


def test_hein_unit_option_a_shortcut() -> None:
    torch.manual_seed(0)
    unit = HeinResidualUnit(4, 8, stride=2, activate_before_residual=True).eval()
    unit.bn1.running_mean.uniform_(-1, 1)
    nn.init.zeros_(unit.conv2.weight)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        out = unit(x)
        pooled = F.avg_pool2d(F.relu(unit.bn1(x)), 2)
    assert out.shape == (2, 8, 3, 3)
    torch.testing.assert_close(out[:, 2:6], pooled)  # activated input, average-pooled, in the middle channels
    assert float(out[:, :2].abs().sum()) == 0.0 and float(out[:, 6:].abs().sum()) == 0.0
    plain = HeinResidualUnit(8, 8, stride=1, activate_before_residual=False).eval()
    nn.init.zeros_(plain.conv2.weight)
    y = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(plain(y), y)


def test_conv2d_same_pads_like_tensorflow() -> None:
    conv = Conv2dSame(1, 1, kernel_size=3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    with torch.no_grad():
        out = conv(torch.ones(1, 1, 4, 4))
    # TF SAME, stride 2 on an even side: pad 0 before, 1 after → windows rows/cols {0,1,2} and {2,3,pad}
    torch.testing.assert_close(out[0, 0], torch.tensor([[9.0, 6.0], [6.0, 4.0]]))
    with torch.no_grad():
        assert conv(torch.ones(1, 1, 7, 7)).shape[-1] == 4  # ⌈7/2⌉


# ----------------------------------------------------------------------------------------------- DenseNet-BC (ODIN)


def test_densenet_bc100_parameter_count_by_hand() -> None:
    # bottleneck layer with c_in inputs: BN 2·c_in + conv1×1 48·c_in + BN 96 + conv3×3 9·48·12 → 50·c_in + 5280
    def block(c0: int) -> int:
        return sum(50 * (c0 + 12 * i) + 5280 for i in range(16))

    stem = 9 * 3 * 24
    total = (
        stem + block(24) + (2 * 216 + 216 * 108) + block(108) + (2 * 300 + 300 * 150) + block(150) + 2 * 342 + 3420 + 10
    )
    assert (block(24), block(108), block(150)) == (175_680, 242_880, 276_480)
    assert total == 769_162  # the paper's "0.8M"
    model = create_model("densenet_bc100")
    assert count_parameters(model) == total and model.feature_dim == 342


# ----------------------------------------------------------------------------------------------- torchvision ResNets (W2)


def test_resnet18_matches_torchvision(tmp_path) -> None:
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10).eval()
    ref.bn1.running_mean.uniform_(-0.5, 0.5)  # make the BN statistics non-trivial
    path = tmp_path / "r18.safetensors"
    save_file(ref.state_dict(), str(path))

    model = create_model("resnet18", pretrained=str(path)).eval()
    assert count_parameters(model) == count_parameters(ref)
    x = _input("resnet18")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref((x - mean) / std))

    # grey input: the RGB stem kernels are summed, exact for grey images replicated to three channels
    grey = create_model("resnet18", in_channels=1, mean=(0.5,), std=(0.25,), pretrained=str(path)).eval()
    xg = x[:, :1]
    with torch.no_grad():
        torch.testing.assert_close(grey(xg), ref((xg.repeat(1, 3, 1, 1) - 0.5) / 0.25), rtol=1e-4, atol=1e-5)

    # another head size: backbone loaded, head fresh
    other = create_model("resnet18", num_classes=3, pretrained=str(path))
    torch.testing.assert_close(other.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert other.fc.out_features == 3


def test_resnet_pretrained_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet18", pretrained=str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        create_model("resnet18", pretrained=str(tmp_path / "junk.safetensors"))
    save_file(create_model("fastcnn").state_dict(), str(tmp_path / "cnn.safetensors"))
    with pytest.raises(CheckpointError, match="ResNet weights"):
        create_model("resnet18", pretrained=str(tmp_path / "cnn.safetensors"))


def test_resnet_cifar_stem_and_zero_init(tmp_path) -> None:
    from safetensors.torch import save_file

    model = create_model("resnet18", stem="cifar", in_channels=1, zero_init_residual=True)
    assert model.conv1.weight.shape == (64, 1, 3, 3) and isinstance(model.maxpool, nn.Identity)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0.0 for layer in (model.layer1, model.layer4) for b in layer)
    assert model.layer4(model.layer3(model.layer2(model.layer1(torch.rand(1, 64, 32, 32))))).shape[-1] == 4
    save_file(create_model("resnet18").state_dict(), str(tmp_path / "r18.safetensors"))
    with pytest.warns(UserWarning, match="stem"):
        loaded = create_model("resnet18", stem="cifar", pretrained=str(tmp_path / "r18.safetensors"))
    assert loaded.conv1.weight.shape == (64, 3, 3, 3)
    with pytest.raises(ConfigError, match="stem"):
        create_model("resnet18", stem="tiny")


# ----------------------------------------------------------------------------------------------- MLP and heads


def test_mlp_toy() -> None:
    torch.manual_seed(0)
    model = create_model("mlp")
    assert count_parameters(model) == (2 * 100 + 100) + (100 * 100 + 100) + (100 * 2 + 2) == 10602
    w = model.body[2].weight.detach()  # 100 → 100
    assert float(w.std()) == pytest.approx((2 / 100) ** 0.5, rel=0.05)
    assert float(model.body[0].bias.detach().abs().sum()) == 0.0
    shifted = create_model("mlp", mean=(0.5, 0.25), std=(2.0, 4.0))
    x = torch.tensor([[0.5, 0.25], [2.5, 4.25]])
    torch.testing.assert_close(shifted.normalize(x), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(InputError, match=r"\[B, 2\]"):
        model(torch.rand(2, 3))


def test_barlow_twins_projector() -> None:
    torch.manual_seed(0)
    proj = BarlowTwinsProjector(16, hidden=(32, 32), out=8)
    kinds = [type(m).__name__ for m in proj.layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert all(m.bias is None for m in proj.layers if isinstance(m, nn.Linear))
    assert count_parameters(proj) == 16 * 32 + 2 * 32 + 32 * 32 + 2 * 32 + 32 * 8 == 1920
    assert proj(torch.randn(4, 16)).shape == (4, 8)
    sig = inspect.signature(BarlowTwinsProjector).parameters  # paper dimensions (Zbontar et al. 2021) are the defaults
    assert sig["hidden"].default == (8192, 8192) and sig["out"].default == 8192
