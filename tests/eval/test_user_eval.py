"""``rulab.evaluate``: any nn.Module on the user's own data, checked against hand computations and against itself
through different data forms (rulab.eval.user)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rulab
from rulab.errors import ConfigError, InputError
from rulab.eval.ood_eval import load_ood_set
from rulab.metrics import auroc, fpr95_id
from rulab.models.base import Normalize
from rulab.registry import DATASETS

MEAN, STD = 0.2860, 0.3530


@pytest.fixture(scope="module")
def data():
    """Small Fashion-MNIST splits (uint8) and a small convnet trained on them for 40 steps in plain PyTorch."""
    train = DATASETS.create("fashion_mnist", split="train")
    test = DATASETS.create("fashion_mnist", split="test")
    tr, va, te = (
        train.subset(slice(0, 600), "fmnist_train"),
        train.subset(slice(600, 900)),
        test.subset(slice(0, 400), "fashion_mnist"),
    )
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(40):
        idx = torch.arange(step * 15, step * 15 + 64) % len(tr)
        loss = nn.functional.cross_entropy(net(_norm(tr.x[idx])), tr.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), tr, va, te


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - MEAN) / STD


def _rows(table) -> dict:
    return {r.key: r.value for r in table}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], k


def test_numbers_equal_a_hand_computation(data) -> None:
    net, tr, va, te = data
    ood = load_ood_set("digits", te.shape, 300, 0)
    table = rulab.evaluate(
        net,
        id_test=(_norm(te.x).numpy(), te.y.numpy()),
        ood={"digits": _norm(ood.x)},
        pixels=False,
        mean=MEAN,
        std=STD,
        detectors=["msp", "energy", "knn"],
        id_train=(tr.x, tr.y),
        id_val=(va.x, va.y),
        id_name="fashion_mnist",
    )
    with torch.no_grad():
        z_id, z_ood = net(_norm(te.x)), net(_norm(ood.x))
    assert table.value(kind="id", metric="acc", detector="") == pytest.approx(
        float((z_id.argmax(1) == te.y).double().mean()), abs=1e-12
    )
    msp_id, msp_ood = z_id.softmax(1).amax(1), z_ood.softmax(1).amax(1)
    assert table.value(kind="ood", dataset="digits", detector="msp", metric="auroc") == pytest.approx(
        auroc(msp_id, msp_ood), abs=1e-6
    )
    e_id, e_ood = torch.logsumexp(z_id, 1), torch.logsumexp(z_ood, 1)
    assert table.value(kind="ood", dataset="digits", detector="energy", metric="fpr95_id") == pytest.approx(
        fpr95_id(e_id, e_ood), abs=1e-6
    )
    # KNN: features are the input of the last Linear (the 16-d ReLU output), the bank is the training set
    with torch.no_grad():
        feats = lambda x: nn.functional.normalize(net[:-1](_norm(x)), dim=1)  # noqa: E731
        bank, q_id, q_ood = feats(tr.x), feats(te.x), feats(ood.x)
    k = table.meta["detectors"]["knn"]["k"]
    s = lambda q: -(2 - 2 * (q @ bank.T).topk(k, dim=1).values[:, -1]).clamp_min(0).sqrt()  # noqa: E731
    # evaluation runs the convolutions channels-last: float rounding may swap a few near-tied pairs (1/120000 each)
    assert table.value(kind="ood", dataset="digits", detector="knn", metric="auroc") == pytest.approx(
        auroc(s(q_id), s(q_ood)), abs=1e-4
    )
    assert table.meta["sizes"]["fit"] == len(tr) and table.meta["temperature"] > 0


def test_normalised_data_equals_pixels_through_a_normalisation_layer(data) -> None:
    net, tr, va, te = data
    kw = {
        "ood": ["gaussian", "textures"],
        "detectors": ["msp", "mahalanobis", "vim"],
        "n_ood": 200,
        "id_name": "fashion_mnist",
    }
    a = rulab.evaluate(
        net,
        id_test=(_norm(te.x), te.y),
        id_train=(_norm(tr.x), tr.y),
        id_val=(_norm(va.x), va.y),
        pixels=False,
        mean=MEAN,
        std=STD,
        **kw,
    )
    b = rulab.evaluate(
        nn.Sequential(Normalize([MEAN], [STD]), net),
        id_test=(te.x, te.y),
        id_train=(tr.x, tr.y),
        id_val=(va.x, va.y),
        **kw,
    )
    _same(_rows(a), _rows(b))
    assert len(a.filter(kind="ood", metric="auroc")) == 6


def test_registered_sets_by_name_renamed_or_as_data_agree(data) -> None:
    net, _tr, va, te = data
    kw = {
        "id_test": (te.x, te.y),
        "id_val": (va.x, va.y),
        "mean": MEAN,
        "std": STD,
        "detectors": "msp,maxlogit",
        "n_ood": 250,
    }
    named = rulab.evaluate(net, ood={"gaussian": "gaussian"}, **kw)
    renamed = rulab.evaluate(net, ood={"noise": "gaussian"}, **kw)
    given = rulab.evaluate(net, ood={"gaussian": load_ood_set("gaussian", te.shape, 250, 0).x}, **kw)
    _same(_rows(named), _rows(given))
    _same(
        {k: v for k, v in _rows(named).items()},
        {(k[0], "gaussian" if k[1] == "noise" else k[1], *k[2:]): v for k, v in _rows(renamed).items()},
    )


def test_fitting_detectors_need_data_and_defaults_adapt(data) -> None:
    net, _tr, va, te = data
    with pytest.raises(ConfigError, match="pass id_train"):
        rulab.evaluate(net, id_test=(te.x, te.y), ood=["gaussian"], detectors=["msp", "mahalanobis"], n_ood=50)
    t = rulab.evaluate(net, id_test=(te.x, te.y), ood=["gaussian"], n_ood=50, detectors=None, temperature=False)
    assert {r.detector for r in t.filter(kind="ood", metric="auroc")} == {
        "msp",
        "maxlogit",
        "energy",
        "entropy",
        "odin",
        "gen",
    }
    t = rulab.evaluate(
        net,
        id_test=(te.x, te.y),
        id_val=(va.x, va.y),
        ood=["gaussian"],
        detectors=["knn"],
        n_ood=50,
        mean=MEAN,
        std=STD,
    )
    assert "id_val" in t.meta["skipped"]["fit"] and t.meta["sizes"]["fit"] == len(va)


def test_user_mistakes_are_one_sentence(data) -> None:
    net, _tr, va, te = data
    kw = {"id_test": (te.x, te.y), "detectors": ["msp"]}
    with pytest.raises(ConfigError, match="validation-OOD sets must differ"):
        rulab.evaluate(net, ood=["gaussian"], ood_val=["gaussian"], id_val=(va.x, va.y), **kw)
    with pytest.raises(InputError, match="resize it to the same shape"):
        rulab.evaluate(net, ood={"small": torch.zeros(5, 1, 14, 14, dtype=torch.uint8)}, **kw)
    with pytest.raises(ConfigError, match="not a registered OOD set"):
        rulab.evaluate(net, ood=["svhm"], **kw)
    with pytest.raises(ConfigError, match="unknown detector"):
        rulab.evaluate(net, id_test=(te.x, te.y), detectors=["mps"])
    with pytest.raises(InputError, match="torch.nn.Module"):
        rulab.evaluate(lambda x: x, **kw)


def test_shift_cells_reach_the_shift_evaluation(data, monkeypatch) -> None:
    """The API hands a custom suite (cells) and the fitted temperature to rulab.eval.shift."""
    import rulab.eval.shift as shift_mod
    from rulab.results.table import ResultTable

    net, _tr, va, te = data
    seen = {}

    def fake_shift(model, test, suite, seed, batch_size, temperature, **kwargs):
        seen.update(suite=suite, n=len(test), temperature=temperature)
        t = ResultTable()
        t.add("shift", "acc", 0.5, dataset=test.name, shift=suite[0][0], severity=suite[0][1], n=len(test))
        return t

    monkeypatch.setattr(shift_mod, "evaluate_shift", fake_shift)
    t = rulab.evaluate(
        net,
        id_test=(te.x, te.y),
        id_val=(va.x, va.y),
        detectors=["msp"],
        shifts=[("gaussian_blur_sigma", 0.5)],
        mean=MEAN,
        std=STD,
    )
    assert seen == {"suite": [("gaussian_blur_sigma", 0.5)], "n": len(te), "temperature": t.meta["temperature"]}
    assert t.value(kind="shift", shift="gaussian_blur_sigma", severity="0.5", metric="acc") == 0.5


def test_real_shift_cell(data) -> None:
    """One real cell: the clean reference equals the ID accuracy and the blurred accuracy is a different number."""
    net, _tr, _va, te = data
    t = rulab.evaluate(
        net,
        id_test=(te.x, te.y),
        detectors=["msp"],
        shifts=[("gaussian_blur_sigma", 0.9)],
        mean=MEAN,
        std=STD,
        temperature=False,
    )
    clean = t.value(kind="shift", shift="clean", metric="acc", detector="")
    assert clean == t.value(kind="id", metric="acc", detector="")
    blurred = t.value(kind="shift", shift="gaussian_blur_sigma", severity="0.9", metric="acc", detector="")
    assert 0 <= blurred <= 1 and blurred != clean


def test_views_of_the_result(data, tmp_path) -> None:
    net, tr, va, te = data
    t = rulab.evaluate(
        net,
        id_test=(te.x, te.y),
        ood={"digits": "digits", "gaussian": "gaussian"},
        id_train=(tr.x, tr.y),
        id_val=(va.x, va.y),
        ood_val=["photos"],
        mean=MEAN,
        std=STD,
        detectors=["msp", "knn"],
        n_ood=200,
        n_val_ood=100,
    )
    assert "knn" in t.meta["detectors"] and t.meta["detectors"]["knn"]["tuned_on"] == ["photos"]
    df = t.to_pandas()
    assert len(df) == len(t) and set(df["kind"]) == {"id", "ood"}
    assert t.to_csv(tmp_path / "r.csv").count("\n") == len(t) + 1
    assert "OOD detection" in t.summary()
    html = rulab.reports.evaluation_report(t, tmp_path / "r.html").read_text()
    assert (
        html.count("<img") >= 3
        and "AUROC" in html
        and "<script" not in html
        and "http://" not in html
        and "https://" not in html
    )
    assert np.isfinite(t.arrays["scores/knn/digits"].numpy()).all()


@pytest.mark.parametrize("form", ["float", "uint8", "numpy"])
def test_user_data_is_scored_as_given(data, form) -> None:
    """The issue's case: float pixels that are not multiples of 1/255 (uniform noise) are scored unchanged, so
    ``rulab.evaluate`` equals the same model scored by hand (and so do uint8 and NumPy inputs)."""
    net, _, _, te = data
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(300, *te.shape, generator=g)  # float32 [0, 1], off the 8-bit grid
    x_test = (te.x.float() / 255 + 0.3 / 255 * torch.rand(te.x.shape, generator=g)).clamp(
        0, 1
    )  # ID images off the grid too
    if form == "uint8":
        x_test, noise = te.x, (noise * 255).round().to(torch.uint8)
    given = {"float": (x_test, noise), "uint8": (x_test, noise), "numpy": (x_test.numpy(), noise.numpy())}[form]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is rounded, so nothing warns
        table = rulab.evaluate(
            net,
            id_test=(given[0], te.y),
            ood={"my_uniform": given[1]},
            detectors=["msp"],
            mean=MEAN,
            std=STD,
            temperature=False,
            id_name="fashion_mnist",
        )
    pix = (lambda x: x.float() / 255) if form == "uint8" else (lambda x: x)
    with torch.no_grad():
        msp_id = net((pix(x_test) - MEAN) / STD).softmax(1).amax(1)
        msp_ood = net((pix(noise) - MEAN) / STD).softmax(1).amax(1)
    torch.testing.assert_close(table.arrays["scores/msp/id"].double(), msp_id.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(table.arrays["scores/msp/my_uniform"].double(), msp_ood.double(), rtol=0, atol=1e-6)
    assert table.value(kind="ood", dataset="my_uniform", detector="msp", metric="auroc") == pytest.approx(
        auroc(msp_id, msp_ood), abs=1e-6
    )


def test_float_user_data_stay_float_in_the_extraction_cache(data, tmp_path) -> None:
    net, _, _, te = data
    noise = torch.rand(50, *te.shape, generator=torch.Generator().manual_seed(4))
    kw = {
        "id_test": (te.x[:100], te.y[:100]),
        "ood": {"u": noise},
        "detectors": ["msp"],
        "temperature": False,
        "cache_dir": tmp_path,
    }
    first = rulab.evaluate(net, **kw)
    again = rulab.evaluate(net, **kw)  # from the cache
    assert torch.equal(first.arrays["scores/msp/u"], again.arrays["scores/msp/u"])
    shifted = rulab.evaluate(
        net, **{**kw, "ood": {"u": noise + 1e-7}}
    )  # a different float set is not served from the cache
    assert not torch.equal(first.arrays["scores/msp/u"], shifted.arrays["scores/msp/u"])
