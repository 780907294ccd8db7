import json
import subprocess
import sys

import pytest
import torch

import rulab
from rulab.checkpoint import load_model, read_meta
from rulab.cli import main

TINY = [
    "--train.max_steps=6",
    "--train.epochs=1",
    "--data.train_subset=512",
    "--data.val_size=256",
    "--train.batch_size=64",
]


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_and_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and rulab.__version__ in capsys.readouterr().out
    code, out, _ = run(capsys, "list", "models")
    assert code == 0 and "fastcnn" in out and "wrn40_2" in out
    code, _, err = run(capsys, "list", "gadgets")
    assert code == 2 and err.startswith("error: cannot list 'gadgets'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--optim.lrr=1"], "error: unknown config key 'optim.lrr'"),
        (["train", "--optim.lr=-1"], "error: config key 'optim.lr' must be > 0"),
        (["train", "nonexistent-preset"], "error: unknown preset 'nonexistent-preset'"),
        (["train", "--bogus"], "error: unrecognised argument '--bogus'"),
        (["train", "--config", "/nonexistent.yaml"], "error: config file /nonexistent.yaml does not exist"),
        (["eval", "/nonexistent/run"], "error: no checkpoint at /nonexistent/run"),
    ],
)
def test_user_mistakes_are_one_line_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv, "--eval.detectors=[]")
    assert code == 2, (out, err)
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_train_then_resume_is_a_no_op_and_refuses_overwrite(capsys, tmp_path):
    args = ["train", "fmnist-plain", "--out", str(tmp_path), "--name", "t", "--eval.detectors=[]", *TINY]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "trained t in" in out
    run_dir = tmp_path / "t"
    meta = read_meta(run_dir)
    assert meta["model"] == "fastcnn" and meta["steps"] == 6 and meta["classes"][0] == "T-shirt/top"
    assert meta["config"]["train"]["max_steps"] == 6 and meta["rulab_version"] == rulab.__version__
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == 6 and "val_acc" in json.loads(lines[0])
    model, _ = load_model(run_dir)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    mtime = (run_dir / "model.safetensors").stat().st_mtime_ns
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0 and (run_dir / "model.safetensors").stat().st_mtime_ns == mtime
    code, _, err = run(capsys, *args)
    assert code == 2 and "already holds a finished run" in err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "rulab", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"rulab {rulab.__version__}"


def test_data_fetch_says_where_each_dataset_came_from(capsys):
    assert main(["data", "fetch", "digits", "gaussian"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["digits: ok (bundled:scikit-learn)", "gaussian: ok (generated)"]


def test_help_of_rulab_and_of_every_command_prints(capsys):
    """argparse formats help strings with %: a bare '95%' in one command's help made `rulab --help` crash."""
    import argparse

    from rulab.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for argv in [["--help"], *([name, "--help"] for name in sub.choices)]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0, argv
        out = capsys.readouterr().out
        assert out.startswith("usage: rulab"), argv
    assert "95% intervals" in parser.format_help()
