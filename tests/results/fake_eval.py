"""A small stand-in for ``rulab.api.evaluate_checkpoint`` used by the study and report tests.

It runs the real checkpoint (one forward pass) on 200 Fashion-MNIST test images, two synthetic OOD sets and three shift cells, and
computes every number with rulab.metrics, so the rows and arrays have the shape and meaning the real evaluation
produces (ID calibration raw and temperature-scaled, OOD metrics for two detectors, shift accuracy/ECE, far-away
MMC and alpha-scaling arrays). Loaded by path from the tests (it is not a test module).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rulab.checkpoint import load_model
from rulab.config import RunCfg
from rulab.data.corruptions import apply_shift
from rulab.detectors.temperature import fit_temperature
from rulab.eval.predict import predict
from rulab.metrics.calibration import calibration_metrics
from rulab.metrics.ood import ood_metrics
from rulab.registry import DATASETS
from rulab.results.table import ResultTable

N_ID = 200
SHIFTS = (("brightness_factor", 0.8), ("gaussian_noise", 1), ("gaussian_noise", 5))
OOD = ("uniform", "gaussian")
DETECTORS = ("msp", "energy")
ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
N_FAR = 50


def _scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"msp": logits.softmax(1).max(1).values, "energy": torch.logsumexp(logits, 1)}


def fake_evaluate(run_dir: Path, cfg: RunCfg) -> ResultTable:
    """Evaluate ``run_dir`` on a few hundred images (one forward pass); returns rows plus the arrays the report reads."""
    model, _ = load_model(run_dir)
    test = DATASETS.create(cfg.data.dataset, split="test")
    g = torch.Generator().manual_seed(1234 + cfg.seed)
    x, y = test.x[:N_ID].float() / 255, test.y[:N_ID]
    xv, yv = test.x[N_ID : 2 * N_ID].float() / 255, test.y[N_ID : 2 * N_ID]
    noise = {
        "uniform": torch.rand(x.shape, generator=g),
        "gaussian": (0.5 + 0.25 * torch.randn(x.shape, generator=g)).clamp(0, 1),
    }
    u = noise["uniform"][:N_FAR]
    adv = noise["uniform"][torch.randperm(N_ID, generator=g)[:N_FAR]].flip(-1)  # stands in for adversarial noise
    parts = {
        "id": x,
        "val": xv,
        **noise,
        **{f"shift{i}": apply_shift(x, s, lv, g) for i, (s, lv) in enumerate(SHIFTS)},
        **{f"alpha{i}": a * u for i, a in enumerate(ALPHAS)},
        "adv": adv,
    }
    logits = predict(model, torch.cat(list(parts.values())))["logits"]
    out = dict(zip(parts, logits.split([len(v) for v in parts.values()])))
    z, zv = out["id"], out["val"]
    t = fit_temperature(zv, yv)
    table = ResultTable()
    table.add_metrics("id", calibration_metrics(z, y), dataset=cfg.data.dataset, n=N_ID)
    table.add_metrics("id", calibration_metrics(z / t, y), dataset=cfg.data.dataset, detector="ts", n=N_ID)
    table.add("id", "temperature", t, dataset=cfg.data.dataset, detector="ts")
    table.arrays.update(
        {"id/logits": z, "id/labels": y, "val/logits": zv, "val/labels": yv, "ts/temperature": torch.tensor([t])}
    )
    s_id = _scores(z)
    for det in DETECTORS:
        table.arrays[f"scores/{det}/id"] = s_id[det]
    for name in OOD:
        s_ood = _scores(out[name])
        for det in DETECTORS:
            table.add_metrics("ood", ood_metrics(s_id[det], s_ood[det]), dataset=name, detector=det, n=N_ID)
            table.arrays[f"scores/{det}/{name}"] = s_ood[det]
        table.add("ood", "mmc", float(s_ood["msp"].mean()), dataset=name, detector="msp")
    for i, (shift, level) in enumerate(SHIFTS):
        m = calibration_metrics(out[f"shift{i}"], y)
        table.add("shift", "acc", m["acc"], dataset=cfg.data.dataset, shift=shift, severity=level, n=N_ID)
        table.add("shift", "ece", m["ece"], dataset=cfg.data.dataset, shift=shift, severity=level, n=N_ID)
    conf = torch.stack([_scores(out[f"alpha{i}"])["msp"].mean() for i in range(len(ALPHAS))])
    adv_conf = _scores(out["adv"])["msp"]
    table.arrays.update(
        {"farconf/alpha/alphas": torch.tensor(ALPHAS), "farconf/alpha/mmc": conf, "farconf/adv_noise/conf": adv_conf}
    )
    table.add("farconf", "mmc", float(_scores(out["alpha0"])["msp"].mean()), dataset="uniform", n=N_FAR)
    table.add("farconf", "mmc", float(adv_conf.mean()), dataset="adv_noise", n=N_FAR)
    table.add("farconf", "alpha_median", ALPHAS[len(ALPHAS) // 2], dataset="uniform")
    return table
