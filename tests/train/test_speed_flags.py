"""Speed options of the training loop: bf16 autocast, channels_last, torch.compile — each runs, takes effect, and
ends close to the plain fp32 / contiguous / eager run; checkpoints of wrapped models have clean keys."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from rulab.checkpoint import _state_for_save, load_weights_into, save_model
from rulab.errors import ConfigError
from rulab.methods.erm import ERM
from rulab.presets import load_config
from rulab.train.loop import fit

BASE = [
    "device=cpu",
    "train.max_steps=8",
    "train.batch_size=64",
    "train.channels_last=false",
    "data.train_subset=512",
    "data.val_size=300",
    "optim.lr=0.02",
    "optim.schedule=constant",
    "optim.warmup_frac=0",
    "model.kwargs={width: 8}",
    "eval.detectors=[]",
]


_SPLITS: dict = {}


def _train(out, name, extra=(), monkeypatch=None):
    """Train BASE + extra; return (weights, epoch record, what the method saw on its first call)."""
    seen: dict = {}
    if monkeypatch is not None:
        original = ERM.__call__

        def spy(self, model, batch):
            out = original(self, model, batch)
            seen.setdefault("model", type(model).__name__)
            seen.setdefault("logits_dtype", out["logits"].dtype)
            seen.setdefault("x_channels_last", batch["x"].is_contiguous(memory_format=torch.channels_last))
            w = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1][0]  # a conv with > 1 input channel
            seen.setdefault(
                "w_channels_last", w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
            )
            return out

        monkeypatch.setattr(ERM, "__call__", spy)
    cfg = load_config("fmnist-plain", overrides=[*BASE, *extra, f"out_dir={out}", f"name={name}"])
    if "data" not in _SPLITS:  # every run trains on the same data: load it once
        from rulab.data.splits import load_splits

        _SPLITS["data"] = load_splits(cfg.data, cfg.seed)
    run = fit(cfg, progress=False, splits=_SPLITS["data"])
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return load_file(str(run / "model.safetensors")), rec, seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("ref"), "ref")


def _close_to_reference(reference, weights, rec, loss_tol, nll_tol):
    w_ref, rec_ref, _ = reference
    assert weights.keys() == w_ref.keys()
    assert all(not k.startswith(("module.", "_orig_mod.")) for k in weights)
    assert all(w.dtype == w_ref[k].dtype for k, w in weights.items())  # autocast keeps fp32 master weights
    assert rec["train_loss"] == pytest.approx(rec_ref["train_loss"], abs=loss_tol)
    assert rec["val_nll"] == pytest.approx(rec_ref["val_nll"], abs=nll_tol)
    assert rec["val_acc"] == pytest.approx(rec_ref["val_acc"], abs=0.05)


def test_reference_run_is_plain(reference):
    _, rec, _ = reference
    assert rec["train_loss"] < 2.2  # it learns (chance: ln 10 = 2.30)


def test_bf16_autocast_runs_and_stays_close(reference, tmp_path, monkeypatch):
    weights, rec, seen = _train(tmp_path, "bf16", ["train.amp=bf16"], monkeypatch)
    assert seen["logits_dtype"] == torch.bfloat16 and not seen["w_channels_last"]
    _close_to_reference(reference, weights, rec, loss_tol=0.03, nll_tol=0.05)


def test_channels_last_runs_and_stays_close(reference, tmp_path, monkeypatch):
    weights, rec, seen = _train(tmp_path, "cl", ["train.channels_last=true"], monkeypatch)
    assert seen["x_channels_last"] and seen["w_channels_last"] and seen["logits_dtype"] == torch.float32
    _close_to_reference(reference, weights, rec, loss_tol=0.01, nll_tol=0.03)


def test_compile_runs_and_stays_close(reference, tmp_path, monkeypatch):
    """Dynamo capture through ``aot_eager`` (no C++ build): the wrapper, the loop and clean checkpoint keys."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    weights, rec, seen = _train(tmp_path, "compiled", ["train.compile=true"], monkeypatch)
    assert seen["model"] == "OptimizedModule"
    _close_to_reference(reference, weights, rec, loss_tol=0.01, nll_tol=0.03)


@pytest.mark.slow
def test_compile_with_inductor_runs_and_stays_close(reference, tmp_path, monkeypatch):
    """The default backend (inductor, C++ code generation on the CPU: about a minute on a cold cache)."""
    weights, rec, seen = _train(tmp_path, "inductor", ["train.compile=true"], monkeypatch)
    assert seen["model"] == "OptimizedModule"
    _close_to_reference(reference, weights, rec, loss_tol=0.01, nll_tol=0.03)


def test_fp16_on_cpu_is_refused(tmp_path):
    cfg = load_config("fmnist-plain", overrides=[*BASE, "train.amp=fp16", f"out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        fit(cfg, progress=False)
    assert not (tmp_path / cfg.name).exists()


def test_wrapped_models_save_clean_keys(tmp_path):
    """DDP adds ``module.``, torch.compile ``_orig_mod.``; checkpoints never keep either, in any nesting."""
    import torch.distributed as dist

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    plain = {k: v.clone() for k, v in net.state_dict().items()}
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(net)
        wrapped = {
            "ddp": ddp,
            "compile": torch.compile(net),
            "compile(ddp)": torch.compile(ddp),
            "ddp(compile)": nn.parallel.DistributedDataParallel(torch.compile(net)),
        }
        for what, w in wrapped.items():
            assert any(k.startswith(("module.", "_orig_mod.")) for k in w.state_dict()), what  # the wrappers do prefix
            state = _state_for_save(w)
            assert state.keys() == plain.keys(), what
            assert all(torch.equal(state[k], plain[k]) for k in plain), what
        p = save_model(tmp_path / "model.safetensors", wrapped["compile(ddp)"], {"model": "x", "model_kwargs": {}})
        assert set(load_file(str(p))) == set(plain)
        other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        load_weights_into(nn.parallel.DistributedDataParallel(other), p)  # loading into a wrapped model works too
        assert all(torch.equal(other.state_dict()[k], plain[k]) for k in plain)
    finally:
        dist.destroy_process_group()
