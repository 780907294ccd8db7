"""The CPU-scale counterparts of the paper studies: their own presets train one step on the real Fashion-MNIST, and
(slow) a whole study runs end to end with tiny settings, its report holding the paper tables."""

from __future__ import annotations

import math

import pytest
import torch

from rulab.checkpoint import read_meta
from rulab.presets import load_config
from rulab.train.loop import fit

torch.set_num_threads(2)
TINY = (
    "data.train_subset=256",
    "data.val_size=100",
    "train.batch_size=64",
    "train.max_steps=2",
    "train.channels_last=false",
)


def _fit(name: str, tmp, *extra: str):
    cfg = load_config(name, overrides=[f"out_dir={tmp}", f"name={name}", *TINY, *extra])
    return fit(cfg, progress=False)


def test_coursework_fmnist_presets_train_one_step(tmp_path):
    for name in ("coursework-fmnist-basic", "coursework-fmnist-mixup"):
        meta = read_meta(_fit(name, tmp_path))
        assert meta["steps"] == 2 and math.isfinite(meta["history"][-1]["train_loss"])
    parent = _fit("fmnist-barlow", tmp_path)
    child = read_meta(_fit("coursework-fmnist-barlow-ft", tmp_path, f"train.init_from={parent}"))
    assert child["parent_checkpoint"] == str(parent) and child["method"] == "mixup"
    assert [h["lr"] for h in child["history"]] == [5e-4]  # the head's rate; the backbone trains at 5e-5


@pytest.mark.slow
def test_coursework_fmnist_study_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    from rulab.study import run_study

    res = run_study(
        "coursework-fmnist",
        out_dir=str(tmp_path),
        seeds=[0],
        progress=False,
        overrides=list(TINY) + ["eval.batch_size=500"],
    )
    assert len(res.ran) == 4 and res.report is not None
    page = res.report.read_text(encoding="utf-8")
    assert "<h3>Paper tables</h3>" in page and "Accuracy (%) under W2" in page and "Brightness mean" in page
