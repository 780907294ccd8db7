"""``rulab convert``: a state_dict trained outside rulab → a rulab checkpoint that rebuilds the same network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rulab.api import convert
from rulab.checkpoint import load_model, read_meta
from rulab.cli import main
from rulab.errors import CheckpointError, ConfigError
from rulab.train.convert import load_state_dict_file, parse_model_name

MEAN, STD = 0.2860, 0.3530
SMALL = ["data.train_subset=200", "data.val_size=50"]


def _tv_resnet18(k: int = 10) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=k)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for m in net.modules():  # non-trivial BatchNorm statistics, so that a wrong key mapping shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_load_state_dict_file_forms(tmp_path) -> None:
    sd = {"a.weight": torch.ones(2, 2), "b": torch.zeros(3)}
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "wrapped.pth")
    torch.save({"model": {"state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}}}, tmp_path / "nested.pt")
    for name in ("plain.pt", "wrapped.pth", "nested.pt"):
        got = load_state_dict_file(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "w.safetensors"))
    assert load_state_dict_file(tmp_path / "w.safetensors").keys() == sd.keys()


def test_load_state_dict_file_refuses_pickled_objects(tmp_path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module: weights_only=True refuses it
    with pytest.raises(CheckpointError, match=r"state_dict\(\)"):
        load_state_dict_file(tmp_path / "module.pt")
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_state_dict_file(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no weights file"):
        load_state_dict_file(tmp_path / "missing.pt")


def test_parse_model_name() -> None:
    assert parse_model_name("torchvision:resnet18") == ("torchvision", {"arch": "resnet18"})
    assert parse_model_name("resnet18", {"stem": "cifar"}) == ("resnet18", {"stem": "cifar"})
    with pytest.raises(ConfigError, match="torchvision:<arch>"):
        parse_model_name("timm:vit")


@pytest.mark.parametrize("model", ["torchvision:resnet18", "resnet18"])
def test_convert_rebuilds_the_same_network(tmp_path, model) -> None:
    net = _tv_resnet18()
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    run_dir = convert(tmp_path / "mine.pt", model, mean=MEAN, std=STD, overrides=SMALL, out_dir=tmp_path / "runs")
    assert run_dir == tmp_path / "runs" / "mine"
    rebuilt, meta = load_model(run_dir)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net((x - MEAN) / STD), rtol=0, atol=1e-6 if model == "resnet18" else 0)
    assert (
        meta["method"] == "external"
        and meta["mean"] == pytest.approx([MEAN])
        and meta["model_kwargs"]["in_channels"] == 1
    )
    assert len(meta["converted_from"]["sha256"]) == 64 and meta["config"]["data"]["val_size"] == 50
    assert (run_dir / "config.yaml").is_file() and read_meta(run_dir)["classes"][0] == "T-shirt/top"
    with pytest.raises(CheckpointError, match="already exists"):
        convert(tmp_path / "mine.pt", model, mean=MEAN, std=STD, overrides=SMALL, out_dir=tmp_path / "runs")


def test_convert_errors_name_the_problem(tmp_path) -> None:
    import torchvision

    torch.save(_tv_resnet18().state_dict(), tmp_path / "r18.pt")
    kw = {"overrides": SMALL, "out_dir": tmp_path / "runs"}
    with pytest.raises(ConfigError, match="--mean 0 --std 1"):
        convert(tmp_path / "r18.pt", "torchvision:resnet18", **kw)
    torch.save(torchvision.models.resnet34(num_classes=10).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(CheckpointError, match="layer1.2"):
        convert(tmp_path / "r34.pt", "torchvision:resnet18", mean=MEAN, std=STD, **kw)
    torch.save(_tv_resnet18(k=7).state_dict(), tmp_path / "k7.pt")
    with pytest.raises(CheckpointError, match=r"fc.weight.*10 classes"):
        convert(tmp_path / "k7.pt", "torchvision:resnet18", mean=MEAN, std=STD, **kw)


def test_cli_convert(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save(_tv_resnet18().state_dict(), tmp_path / "r18.pt")
    assert (
        main(
            [
                "convert",
                "r18.pt",
                "--model",
                "torchvision:resnet18",
                "--mean",
                "0.286",
                "--std",
                "0.353",
                "--name",
                "tv",
                "--out",
                "runs",
                "--data.train_subset=200",
                "--data.val_size=50",
            ]
        )
        == 0
    )
    assert "rulab eval runs/tv" in capsys.readouterr().out
    assert main(["convert", "r18.pt", "--model", "torchvision:resnet18", "--name", "tv2", "--out", "runs"]) == 2
    assert "--mean" in capsys.readouterr().err
