"""Two-moons toy (W3's ``toy2d.ipynb``): data, the parity no-op PGD, CEDA/ACET lowering far-away confidence."""

from __future__ import annotations

import json

import pytest
import torch

from rulab.registry import MODELS
from rulab.toy2d import (
    REGIONS,
    TOY_EPS,
    TOY_MODELS,
    confidence_map,
    run_toy2d,
    toy_attack,
    train_toy,
    two_moons,
)

pytest.importorskip("sklearn")

RECIPES = {r.name: r for r in TOY_MODELS}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_two_moons_data_is_the_rescaled_sklearn_set():
    from sklearn.datasets import make_moons

    x, y = two_moons(seed=3)
    assert x.shape == (2000, 2) and x.dtype == torch.float32 and y.tolist().count(0) == 1000
    assert float(x.min()) > 0.0 and float(x.max()) < 1.0  # ≈[0, 1]²
    raw, ry = make_moons(n_samples=2000, noise=0.02, random_state=3)
    assert y.tolist() == ry.tolist()
    # the transform is affine per coordinate: x0 = raw0/4 + 0.4 − 0.035, x1 = (raw1/4 + 0.4 − 0.17)·1.75
    assert torch.allclose(x[:, 0].double(), torch.as_tensor(raw[:, 0]) / 4 + 0.365, atol=1e-6)
    assert torch.allclose(x[:, 1].double(), (torch.as_tensor(raw[:, 1]) / 4 + 0.23) * 1.75, atol=1e-6)


def test_parity_attack_returns_the_random_start_and_the_fix_moves():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MODELS.create("mlp")
    z = torch.rand(500, 2, generator=torch.Generator().manual_seed(1))
    start = (z + (torch.rand(500, 2, generator=torch.Generator().manual_seed(2)) * 2 - 1) * TOY_EPS).clamp(0, 1)
    u_parity = toy_attack(model, z, torch.Generator().manual_seed(2), parity=True)
    assert torch.equal(u_parity, start)  # every step undone: the notebook's "ACET" noise is the jittered start
    u = toy_attack(model, z, torch.Generator().manual_seed(2))
    moved = (u - start).abs().amax(dim=1) > 1e-6
    assert float(moved.float().mean()) > 0.9
    assert (u - z).abs().max() <= TOY_EPS + 1e-6 and u.min() >= 0 and u.max() <= 1


def test_ceda_and_acet_lower_far_away_confidence():
    x, y = two_moons(seed=0)
    far, near = REGIONS[-1], REGIONS[0]
    conf = {}
    # shortened: plain 200 of its 400 iterations, CEDA/ACET 150 of their 3,000 (the slow test runs the full toy)
    for name, scale in (("plain", 0.5), ("ceda", 0.05), ("acet", 0.05)):
        model = train_toy(RECIPES[name], x, y, seed=0, iterations_scale=scale)
        assert float((model(x).argmax(dim=1) == y).float().mean()) > 0.8
        conf[name] = {r: float(confidence_map(model, r, resolution=60)[1].mean()) for r in (near, far)}
    assert conf["plain"][far] > 0.98
    for name in ("ceda", "acet"):
        assert conf[name][far] < conf["plain"][far] - 0.015
        assert conf[name][near] < conf["plain"][near] - 0.1


def test_run_toy2d_writes_figures_and_numbers(tmp_path):
    out = run_toy2d(tmp_path, seed=0, iterations_scale=0.005, resolution=16)
    assert set(out["figures"]) == {"plain", "ceda", "acet"}
    for path in out["figures"].values():
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert out["iterations"] == {"plain": 2, "ceda": 15, "acet": 15}
    assert set(out["mean_conf"]["acet"]) == {"[0,1]", "[-2,3]", "[-5,6]", "[-10,10]"}
    assert out["far_conf"]["acet"] == out["mean_conf"]["acet"]["[-10,10]"]
    saved = json.loads((tmp_path / "toy2d.json").read_text())
    assert saved["far_conf"] == pytest.approx(out["far_conf"])


@pytest.mark.slow
def test_full_toy_matches_the_paper_picture(tmp_path):
    out = run_toy2d(tmp_path, seed=0)
    assert all(acc > 0.99 for acc in out["train_acc"].values())
    assert out["far_conf"]["plain"] > 0.99
    assert out["far_conf"]["ceda"] < 0.9 and out["far_conf"]["acet"] < 0.9
    parity = run_toy2d(tmp_path / "parity", seed=0, parity=True, figures=False)
    assert parity["far_conf"]["plain"] == out["far_conf"]["plain"]


def test_cli_toy2d_writes_the_maps_and_a_page(tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    import rulab.toy2d
    from rulab.cli import main

    monkeypatch.setattr(rulab.toy2d, "_plot", lambda *a, **k: None)  # the PNGs are checked above; keep this one quick

    out = tmp_path / "toy"
    assert main(["toy2d", "--out", str(out), "--iterations-scale", "0.005", "--resolution", "12", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "plain" in printed and "ceda" in printed and "acet" in printed and "toy2d.html" in printed
    maps = load_file(str(out / "toy2d.safetensors"))
    info = json.loads((out / "toy2d.json").read_text())
    for model in ("plain", "ceda", "acet"):
        for lo, hi in REGIONS:
            label = f"[{lo:g},{hi:g}]"
            axis, conf = maps[f"toy2d/{model}/{label}/axis"], maps[f"toy2d/{model}/{label}/conf"]
            assert axis.shape == (12,) and conf.shape == (12, 12)
            assert float(axis[0]) == lo and float(axis[-1]) == hi
            assert float(conf.mean()) == pytest.approx(info["mean_conf"][model][label], abs=1e-6)
            assert float(conf.min()) >= 0.5 - 1e-6 and float(conf.max()) <= 1.0  # max of a 2-class softmax
    assert maps["toy2d/points/x"].shape == (2000, 2)
    page = (out / "toy2d.html").read_text()
    assert "Two-moons toy" in page and page.count("<img") == 1 and "data:image/png;base64," in page
    assert main(["toy2d", "--out", str(out), "--resolution", "1"]) == 2
    assert "resolution" in capsys.readouterr().err
