"""Tests for rulab.models.tta.FlipTTA: the mean of the two passes computed by hand, the features/head contract (also for
a wrapped network whose head is not linear), the inference copy of it, and the separation of its cache entries in
rulab.eval.evaluate (a TTA evaluation must never read or feed the plain model's cached logits)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rulab.config import DataCfg, EvalCfg
from rulab.data.splits import load_splits
from rulab.eval.benchmarks import Benchmark
from rulab.eval.evaluate import run_evaluation
from rulab.models import create_model
from rulab.models.fuse import inference_copy
from rulab.models.tta import FlipTTA
from rulab.models.wrapped import WrappedClassifier
from rulab.registry import BENCHMARKS


def _fastcnn() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("fastcnn", width=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(2))


def test_flip_tta_is_the_mean_of_the_two_passes():
    model, x = _fastcnn(), _images()
    tta = FlipTTA(model).eval()
    with torch.no_grad():
        by_hand = (model(x) + model(torch.flip(x, dims=[3]))) / 2
        z_by_hand = (model.features(x) + model.features(torch.flip(x, dims=[3]))) / 2
        assert not torch.allclose(by_hand, model(x), atol=1e-4)  # the mirror changes the outputs: a real average
        torch.testing.assert_close(tta(x), by_hand, rtol=1e-5, atol=1e-6)
        z = tta.features(x)
        torch.testing.assert_close(z, z_by_hand, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            tta.head(z), by_hand, rtol=1e-5, atol=1e-6
        )  # linear head: head(mean z) = mean logits
        # a mirrored image has the same TTA output (both views are the same pair)
        torch.testing.assert_close(tta(x.flip(-1)), by_hand, rtol=1e-5, atol=1e-6)
    assert tta.fc is model.fc and tta.num_classes == 10 and tta.feature_dim == model.feature_dim


def test_flip_tta_of_a_wrapped_network_with_features_from_a_function():
    """Features taken by a function: the head is not linear in them, so the logits must come from the same pass."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    wrapped = WrappedClassifier(net, feature_layer=lambda x: net[2](net[1](net[0](x))) ** 2)  # not what fc reads
    x = _images(5)
    tta = FlipTTA(wrapped)
    with torch.no_grad():
        by_hand = (net(x) + net(x.flip(-1))) / 2
        torch.testing.assert_close(tta(x), by_hand, rtol=1e-5, atol=1e-6)
        z = tta.features(x)
        torch.testing.assert_close(tta.head(z), by_hand, rtol=1e-5, atol=1e-6)
        with pytest.raises(Exception, match="logits cannot be computed"):
            tta.head(z.clone())  # features not produced by the last pass: no head to apply


def test_inference_copy_of_flip_tta_is_the_same_predictor():
    model, x = _fastcnn(), _images()
    fast = inference_copy(FlipTTA(model))
    assert fast.folded == 3  # the three BatchNorms folded through the pooling (pool-first stages)
    with torch.no_grad():
        want = (model(x) + model(x.flip(-1))) / 2
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


TTA_BENCH = Benchmark(
    name="fmnist-tta-test", id_dataset="fashion_mnist", ood=("uniform",), val_ood=(), protocol="full", n_ood=40
)
BENCHMARKS.register(TTA_BENCH.name, overwrite=True)(lambda: TTA_BENCH)


def test_evaluate_keys_flip_tta_apart_in_the_cache(tmp_path):
    """TTA first, then plain, on one cache directory: with a shared key the plain run would read the TTA logits."""
    torch.set_num_threads(1)
    splits = load_splits(DataCfg(train_subset=200, val_size=100), 0)
    test = splits.test.subset(slice(0, 64))
    model = _fastcnn()
    x = test.x.float() / 255
    with torch.no_grad():
        plain_logits = model(x)
        tta_logits = (model(x) + model(x.flip(-1))) / 2
    runs = {}
    for tta in (True, False, True, False):  # the second pair reads the cache the first pair wrote
        cfg = EvalCfg(
            benchmark=TTA_BENCH.name, detectors=("msp",), shift="", farconf=False, flip_tta=tta, batch_size=64
        )
        table = run_evaluation(
            model,
            benchmark=TTA_BENCH.name,
            eval_cfg=cfg,
            train=splits.train,
            val=splits.val,
            test=test,
            cache_dir=tmp_path,
            model_key="ckpt",
        )
        runs.setdefault(tta, []).append(table)
    for tta, want in ((True, tta_logits), (False, plain_logits)):
        for table in runs[tta]:
            assert table.meta["flip_tta"] is tta
            assert table.meta["model_key"] == ("ckpt+flip_tta" if tta else "ckpt")
            torch.testing.assert_close(table.arrays["id/logits"], want, rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "ckpt+flip_tta"]
    acc = {tta: runs[tta][0].value(kind="id", metric="acc", detector="") for tta in runs}
    for tta, want in ((True, tta_logits), (False, plain_logits)):
        assert acc[tta] == pytest.approx((want.argmax(1) == test.y).double().mean().item())


def test_flip_tta_layer_outputs_average_the_aligned_views():
    """FlipTTA's layer outputs are the mean of the two views' outputs with the mirrored view flipped back; its
    edited logits are the mean of each view's edited logits."""
    torch.manual_seed(0)
    inner = create_model("fastcnn", width=4).eval()
    tta = FlipTTA(inner)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits, outs = tta.layer_outputs(x)
        _, a = inner.layer_outputs(x)
        _, b = inner.layer_outputs(x.flip(-1))
        torch.testing.assert_close(logits, tta(x))
        torch.testing.assert_close(outs["stages.0"], (a["stages.0"] + b["stages.0"].flip(-1)) / 2)
        edit = {"stages.1": lambda t: t * 0.5}
        torch.testing.assert_close(
            tta.forward_with(x, edit), (inner.forward_with(x, edit) + inner.forward_with(x.flip(-1), edit)) / 2
        )
    assert tta.feature_layers == inner.feature_layers
