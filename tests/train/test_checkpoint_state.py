import pickle

import pytest
import torch
from torch import nn

from rulab.checkpoint import (
    _flatten,
    _unflatten,
    load_train_state,
    load_weights_into,
    read_meta,
    save_model,
    save_train_state,
)
from rulab.errors import CheckpointError


def test_flatten_roundtrip_of_optimizer_state():
    net = nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors = {}
    skel = _flatten({"optimizer": opt.state_dict(), "t": (1, 2.5, "x", None)}, "", tensors)
    back = _unflatten(skel, tensors)
    sd = opt.state_dict()
    assert back["t"] == (1, 2.5, "x", None)
    assert back["optimizer"]["param_groups"] == sd["param_groups"]
    for k, st in sd["state"].items():
        for name, v in st.items():
            assert torch.equal(back["optimizer"]["state"][k][name], v)


def test_train_state_roundtrip_and_pointer(tmp_path):
    net = nn.Linear(3, 2)
    save_train_state(tmp_path, 5, net, {"a": torch.arange(3)})
    save_train_state(tmp_path, 9, net, {"a": torch.arange(4)})
    save_train_state(tmp_path, 12, net, {"a": torch.arange(5)})
    dirs = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert dirs == ["step-00000009", "step-00000012"]  # keep=2
    other = nn.Linear(3, 2)
    step, state = load_train_state(tmp_path, other)
    assert step == 12 and torch.equal(state["a"], torch.arange(5))
    assert torch.equal(other.weight, net.weight)


def test_model_checkpoint_metadata_and_refusals(tmp_path):
    net = nn.Linear(3, 2)
    p = save_model(tmp_path / "model.safetensors", net, {"model": "x", "model_kwargs": {"k": 2}})
    assert read_meta(tmp_path)["model_kwargs"] == {"k": 2}
    assert (tmp_path / "meta.json").exists()
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps({"weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_meta(bad)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_weights_into(nn.Linear(3, 2), trunc)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_weights_into(nn.Linear(3, 4), p)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_meta(tmp_path / "missing")
