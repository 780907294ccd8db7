"""``rulab show PRESET|STUDY`` and ``--dry-run``: every registered preset and study is shown on a machine without
data (saying what is missing), the cost arithmetic is the documented one, and a dry run resolves, validates and
prints the plan without writing anything."""

from __future__ import annotations

import math

import pytest
import torch

from rulab.cli import main
from rulab.presets import load_config
from rulab.registry import PRESETS, STUDIES
from rulab.study.show import estimate_cost, forward_flops, plan_preset, plan_study, render_run, render_study, show

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """A machine with no data at all: an empty cache, no system directories, downloads off."""
    monkeypatch.setenv("RULAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RULAB_SYSTEM_DATA", "")
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    return tmp_path


def test_every_preset_and_study_is_shown_without_data(no_data):
    """The acceptance check: nothing raises, the data a name needs is listed as missing with a way to get it, and a
    preset that cannot be resolved here (it reads a file at resolution) says which file."""
    for name in PRESETS.list():
        plan = plan_preset(name)
        text = render_run(plan)
        assert text.startswith("preset ") and name in text
        if plan.error:
            assert "cannot be resolved on this machine" in text and plan.error in text
            continue
        assert plan.cfg is not None and plan.cost is not None, name
        train = next(d for d in plan.data if d.role == "training set")
        assert train.name == plan.cfg.data.dataset and not train.present and "MISSING" in text
        assert train.todo and "to get it:" in text
        assert plan.cost.train_flops > 0 and plan.cost.steps > 0, name
    for name in STUDIES.list():
        plan = plan_study(name, out_dir=str(no_data / "runs"))
        study = STUDIES.create(name)
        assert len(plan.cells) == len(study.presets) * len(study.seeds)
        text = render_study(plan)
        assert f"runs: {len(plan.cells)}" in text and "missing here:" in text
    assert (
        show("coursework-pathmnist").count("preset coursework-pathmnist:") == 2
    )  # a study and a preset of one name: both
    assert not (no_data / "runs").exists() and not (no_data / "data").exists()  # nothing was written


def test_a_preset_that_reads_a_file_to_resolve_says_which(no_data):
    plan = plan_preset("hendrycks2019-cifar10-pretrain-nocifar")
    assert plan.cfg is None and "map_clsloc.txt" in plan.error
    study = plan_study("hendrycks2019-cifar10-nocifar", out_dir=str(no_data / "runs"))
    assert "map_clsloc.txt" in study.error and len(study.cells) == 9  # the cells are still listed


def test_present_data_and_its_size(monkeypatch, tmp_path):
    monkeypatch.setenv("RULAB_DATA", str(tmp_path))  # Fashion-MNIST comes from the Debian package's directory
    plan = plan_preset("fmnist-plain")
    fm = next(d for d in plan.data if d.role == "training set")
    assert fm.present and fm.origin == "system" and fm.size_bytes > 30_000_000
    assert "55,000 train per epoch" in fm.detail  # 60,000 minus the 5,000 held out
    assert all(d.present for d in plan.data)  # the CPU default needs no download
    assert "everything it reads is on this machine" in show("fmnist-plain")


def test_cost_is_forward_flops_times_passes_times_images():
    cfg = load_config("fmnist-plain", overrides=["train.epochs=2", "train.batch_size=100", "data.val_size=0"])
    c = estimate_cost(cfg)
    assert (c.train_images, c.steps, c.passes) == (60_000, 2 * 600, 3.0)
    assert c.train_flops == pytest.approx(c.forward_flops * 3.0 * 1200 * 100)
    drop = estimate_cost(
        load_config("fmnist-plain", overrides=["train.batch_size=128", "data.val_size=0", "train.epochs=1"])
    )
    keep = estimate_cost(
        load_config(
            "fmnist-plain",
            overrides=["train.batch_size=128", "data.val_size=0", "train.epochs=1", "train.drop_last=false"],
        )
    )
    assert (drop.steps, keep.steps) == (60_000 // 128, math.ceil(60_000 / 128))
    adv = estimate_cost(load_config("hendrycks2019-adv-cifar10-advtrain", check=False), evaluated=False)
    assert (
        adv.passes == 3 + 3 * 10 + 1 and adv.eval_passes == 0
    )  # PGD-10 training: 10 gradient passes and a last forward
    tiny = estimate_cost(load_config("hendrycks2019-tinyimagenet-pretrain", check=False))
    assert tiny.approx and tiny.train_images == round(1_281_167 * 800 / 1000)  # 800 of the 1,000 classes remain
    # the meta-device count is the count of the real model
    from torch.utils.flop_counter import FlopCounterMode

    from rulab.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.create("wrn40_2", num_classes=10).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    assert forward_flops(load_config("hendrycks2019-cifar10", check=False), (3, 32, 32), 10) == fc.get_total_flops()


def test_measure_times_a_training_step_here():
    c = estimate_cost(load_config("fmnist-fast", overrides=["device=cpu"]), measure=True)
    assert c.seconds_per_step > 0 and c.measured_batch >= 2 and c.device.startswith("cpu")
    assert c.train_seconds == pytest.approx(c.seconds_per_step / c.measured_batch * c.steps * c.batch_size)
    assert "measured here" in show("fmnist-fast", ["device=cpu"], measure=True)


def test_dry_runs_write_nothing(capsys, tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "fmnist-plain", "--dry-run", f"--out={out}", "--train.epochs=1"]) == 0
    text = capsys.readouterr().out
    assert "preset fmnist-plain" in text and "epochs: 1" in text and "nothing was trained or written" in text
    assert main(["study", "hein2019-fmnist", "--dry-run", f"--out={out}", "--seeds=0"]) == 0
    text = capsys.readouterr().out
    assert "runs: 3 (3 presets × 1 seeds 0); 3 evaluated" in text and "every cell resolved and validated" in text
    assert f"fmnist-acet seed 0: {out / 'fmnist-acet-s0'}" in text and "launcher: local" in text
    assert not out.exists()
    # launcher settings are checked too (the planned cells do not depend on them)
    argv = ["study", "hein2019-fmnist", "--dry-run", f"--out={out}", "--seeds=0", "--launcher", "slurm"]
    assert main([*argv, "--launcher.slurm.partition=gpu"]) == 0 and "launcher: slurm" in capsys.readouterr().out
    assert main([*argv, "--launcher.slurm.partitoin=gpu"]) == 2 and "partitoin" in capsys.readouterr().err
    assert not out.exists()
    # the derived evaluations are named: the default study's ensembles, unless --no-ensemble; MC dropout's passes
    assert main(["study", "fmnist-default", "--dry-run", f"--out={out}", "--seeds=0,1"]) == 0
    text = capsys.readouterr().out
    assert f"then 5 deep ensembles, each preset's seeds 0, 1 as one run (e.g. {out / 'fmnist-plain-ens-s0-s1'})" in text
    assert "every cell: train.epochs=2, eval.benchmark=fmnist" in text
    assert main(["study", "fmnist-default", "--dry-run", f"--out={out}", "--no-ensemble", "--mc-dropout=5"]) == 0
    text = capsys.readouterr().out
    assert "no deep ensembles" in text and "then MC dropout (5 passes)" in text and "then 5 deep" not in text
    assert main(["study", "fmnist-default", "--dry-run", "--ensemble", "--no-ensemble"]) == 2
    assert "not both" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", "fmnist-plain", "--dry-run", "--optim.lr=-1"]) == 2  # validated: a bad value is refused
    assert "optim.lr" in capsys.readouterr().err
    assert main(["show", "fmnist-plainn"]) == 2
    assert "did you mean 'fmnist-plain'" in capsys.readouterr().err
    assert main(["show", "fmnist-plain", "--optim.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out
