"""Experiment tracking: what TensorBoard and MLflow store is read back (EventAccumulator, MlflowClient) and compared
with the run's own files (rulab.tracking)."""

from __future__ import annotations

import json

import pytest
import torch

from rulab.config import DataCfg, EvalCfg, ModelCfg, RunCfg, TrainCfg
from rulab.errors import ConfigError
from rulab.results.table import ResultTable
from rulab.tracking import make_trackers, row_tag, train_tracked


def _cfg(out) -> RunCfg:
    """fastcnn, 300 training images, 2 epochs of 4 steps, validation after each epoch."""
    return RunCfg(
        name="tiny",
        out_dir=str(out),
        model=ModelCfg(name="fastcnn"),
        data=DataCfg(train_subset=400, val_size=100),
        train=TrainCfg(epochs=2, batch_size=64, eval_every=1),
        eval=EvalCfg(detectors=(), shift="", farconf=False),
    )


def _history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _table() -> ResultTable:
    t = ResultTable(meta={"model": "toy"})
    t.add("id", "acc", 0.75, dataset="fashion_mnist", n=4)
    t.add("id", "ece", 0.125, dataset="fashion_mnist", detector="ts", n=4)
    t.add("ood", "auroc", 0.875, dataset="digits", detector="msp", n=4)
    g = torch.Generator().manual_seed(0)
    t.arrays.update(
        {
            "id/logits": torch.randn(50, 3, generator=g),
            "id/labels": torch.arange(50) % 3,
            "scores/msp/id": torch.rand(50, generator=g) + 0.5,
            "scores/msp/digits": torch.rand(30, generator=g),
        }
    )
    return t


def test_tensorboard_curves_table_and_figures(tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'rulab[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train_tracked(_cfg(tmp_path), "tensorboard", progress=False)
    hist = _history(run_dir)
    make_trackers("tensorboard", run_dir)[0].log_table(_table())  # a second writer into the same directory
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {
        "train/loss",
        "train/acc",
        "val/acc",
        "val/nll",
        "lr",
        "eval/id/fashion_mnist/acc",
        "eval/ood/digits/msp/auroc",
    } <= set(tags["scalars"])
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [h["step"] for h in hist]
    assert [e.value for e in loss] == pytest.approx([h["train_loss"] for h in hist], rel=1e-6)  # stored as float32
    assert acc.Scalars("val/acc")[-1].value == pytest.approx(hist[-1]["val_acc"], rel=1e-6)
    assert acc.Scalars("eval/id/fashion_mnist/ts/ece")[0].value == pytest.approx(0.125)
    assert {"eval/reliability", "eval/roc_msp"} <= set(tags["images"])
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    optim.lr: 0.1" in config_text.splitlines() and "    data.train_subset: 400" in config_text.splitlines()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy deprecations inside MLflow's store
def test_mlflow_params_curves_artifacts_and_a_later_evaluation(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'rulab[tracking]')")
    from mlflow.tracking import MlflowClient

    from rulab.tracking import log_results

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run_dir = train_tracked(_cfg(tmp_path / "runs"), "mlflow", progress=False)
    state = json.loads((run_dir / "tracking.json").read_text())
    assert state["tracking_uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # the local default store
    client = MlflowClient(state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["train.batch_size"] == "64" and run.data.params["model.name"] == "fastcnn"
    hist = _history(run_dir)
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in losses] == [(h["step"], pytest.approx(h["train_loss"])) for h in hist]
    assert {"model.safetensors", "meta.json", "config.yaml", "metrics.jsonl"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }

    # evaluating later logs into the same MLflow run (tracking.json), with the report as an artifact
    log_results(_table(), "mlflow", run_dir)
    run = client.get_run(state["run_id"])
    assert run.data.metrics["eval/ood/digits/msp/auroc"] == pytest.approx(0.875)
    assert {"eval/results.csv", "eval/summary.txt", "eval/report.html"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "eval")
    }
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_unknown_tracker_and_tags() -> None:
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'.*did you mean 'tensorboard'"):
        make_trackers("tensorbord", ".")
    assert make_trackers("", ".") == [] and make_trackers(None, ".") == []
    rows = list(_table())
    assert [row_tag(r) for r in rows] == ["id/fashion_mnist/acc", "id/fashion_mnist/ts/ece", "ood/digits/msp/auroc"]


def test_cli_track_flag(tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'rulab[tracking]')")
    from rulab.cli import main

    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "fmnist-plain",
                "--track",
                "tensorboard",
                "--out",
                "runs",
                "--name",
                "t",
                "--train.max_steps=2",
                "--train.epochs=1",
                "--data.train_subset=300",
                "--data.val_size=50",
                "--eval.detectors=[]",
                "--train.eval_every=0",
            ]
        )
        == 0
    )
    assert list((tmp_path / "runs/t/tensorboard").glob("events.out.tfevents.*"))
    assert (
        main(["train", "fmnist-plain", "--track", "wandb", "--out", "runs", "--name", "u", "--eval.detectors=[]"]) == 2
    )
