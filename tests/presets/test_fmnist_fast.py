"""The ``fmnist-fast`` preset (issue 10, time to accuracy) and the benchmark that times it: the preset holds the recipe
its docstring states, and ``benchmarks/time_to_accuracy.py`` trains exactly what ``rulab.train.loop.fit`` trains."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import torch

from rulab.eval.validate import validate_run
from rulab.presets import load_config

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("_time_to_accuracy", ROOT / "benchmarks" / "time_to_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_preset_is_the_documented_recipe():
    cfg = load_config("fmnist-fast")
    validate_run(cfg)
    assert (cfg.model.name, dict(cfg.model.kwargs)) == ("fastcnn", {})
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.channels_last) == (4, 256, True)
    o = cfg.optim
    assert (o.name, o.lr, o.nesterov, o.schedule, o.warmup_frac, o.lr_floor) == ("sgd", 0.4, True, "onecycle", 0.2, 0.0)
    assert (cfg.method.name, dict(cfg.method.kwargs)) == ("erm", {"label_smoothing": 0.1})
    assert cfg.data.val_size == 0 and cfg.data.augment.hflip == 0.5 and cfg.eval.flip_tta


def test_the_benchmark_loop_trains_what_fit_trains(tmp_path):
    """Same seeds, same batches, same steps: the reproduced loop's test accuracy equals fit()'s to the last digit."""
    from rulab.checkpoint import load_model
    from rulab.train.loop import fit

    torch.set_num_threads(1)
    bench = _benchmark()
    base = load_config("fmnist-fast")
    cfg = replace(
        base,
        seed=3,
        out_dir=str(tmp_path),
        name="fast",
        data=replace(base.data, train_subset=1200),
        train=replace(base.train, epochs=2, batch_size=64, max_steps=25),
        optim=replace(base.optim, lr=0.05),
    )
    ours = bench.train(cfg, "rulab", max_steps=25)
    assert ours["steps"] == 25 and len(ours["epochs"]) == 2  # 18 steps in epoch 1, 7 in epoch 2
    model, _ = load_model(fit(cfg, progress=False))
    from rulab.data.splits import load_splits

    test = load_splits(cfg.data, cfg.seed).test
    acc = bench.test_accuracy(model, test.x, test.y, flip_tta=True)
    assert acc == ours["acc"]
    assert 0.3 < acc < 0.95  # a partly trained model: a different batch order or initialisation would show
