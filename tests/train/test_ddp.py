"""Distributed data parallel: two gloo processes under torchrun equal one process with the same global batch.

One ``torchrun --nproc_per_node=2 --standalone`` launch runs ``rulab train`` (the command-line entry, as
``torchrun -m rulab train`` does), interrupted on every rank before step 3 and resumed with ``--resume``, and
then distributed evaluation (``predict_distributed``). The model is
BatchNorm- and dropout-free LeNet: with BatchNorm each rank would normalise over its half-batch (SyncBatchNorm
only runs on GPUs), so only a BN-free model makes the two runs exactly comparable.

The comparison is exact by construction, not within a tolerance: a tolerance cannot bound what float reduction
order does to a few SGD steps (a ReLU or max-pool decision that flips on a 1e-8 difference moves a weight by a whole
per-image gradient; 1.8e-5 was seen against an atol of 1e-5). So the one-process reference does the same float
operations as the two ranks: ``train.accum_steps=2`` cuts each global batch of 64 into the same two halves of 32
that the ranks keep, runs one backward pass per half with the loss divided by 2 (exact: a power of two), and adds
the two gradients (exact: a sum of two numbers does not depend on the order); DDP divides each rank's gradient by 2
and all-reduces the two. Both sides run on one thread (torchrun's default; the thread count changes how oneDNN
splits a convolution's reductions), so the final weights are bit-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rulab
from rulab.checkpoint import load_model
from rulab.data.tensors import TensorDataset
from rulab.distributed import DistInfo, shard_batches
from rulab.errors import ConfigError, RulabError
from rulab.eval.predict import predict, predict_distributed
from rulab.metrics import auroc, calibration_metrics
from rulab.presets import load_config
from rulab.registry import DATASETS
from rulab.train.loop import fit

SRC = str(Path(rulab.__file__).resolve().parents[1])
TRAIN_ARGS = [
    "fmnist-plain",
    "--device=cpu",
    "--model.name=lenet",
    "--model.kwargs={hidden: 32}",
    "--train.max_steps=4",
    "--train.batch_size=64",
    "--data.train_subset=256",
    "--data.val_size=200",
    "--optim.lr=0.05",
    "--train.checkpoint_every=1",
    "--eval.detectors=[]",
]
EVAL_CASES = ((1000, 300), (250, 300))  # (n, batch size): uneven shards, and a rank with no batch at all

WORKER = """
import sys
import torch
from safetensors.torch import save_file
from rulab.cli import main
from rulab.eval.predict import predict_distributed
from rulab.registry import DATASETS
from rulab.checkpoint import load_model
from rulab.distributed import all_reduce_sum, dist_info, gather_rows

import rulab.train.loop as loop

out, run_dir, *args = sys.argv[1:]
# interrupt every rank before step 3 (Ctrl-C: the CLI exits 130), then resume from the step-3 checkpoint
lr_at, fired = loop.lr_at, []
def interrupt_once(step, *a, **k):
    if step == 3 and not fired:
        fired.append(step)
        raise KeyboardInterrupt
    return lr_at(step, *a, **k)
loop.lr_at = interrupt_once
assert main(["train", *args]) == 130
assert open(run_dir + "/checkpoints/LATEST").read().strip() == "step-00000003"
# the run directory's owner lock: rank 0 held it and released it on Ctrl-C; a live lock of another process stops
# every rank with exit status 2 (rank 0 tells the others), none hangs in a collective
import json, os, time
from rulab.distributed import barrier
lock = run_dir + "/run.lock"
barrier()  # rank 0 has released it
assert not os.path.exists(lock)
barrier()  # every rank has looked before rank 0 writes another process's lock below
if dist_info().main:
    with open(lock, "w") as fh:
        json.dump({"pid": 4242, "host": "another-host", "token": "t", "started": time.time()}, fh)
barrier()
assert main(["train", *args, "--resume"]) == 2
barrier()
if dist_info().main:
    os.remove(lock)
barrier()
assert main(["train", *args, "--resume"]) == 0
info = dist_info()
assert info.world_size == 2
model, _ = load_model(run_dir)
x = DATASETS.create("fashion_mnist", split="test").x
res = {}
for n, bs in EVAL_CASES:
    o = predict_distributed(model, x[:n], batch_size=bs, features=True)
    res[f"logits_{n}"], res[f"features_{n}"] = o["logits"], o["features"]
res["rows"] = gather_rows(torch.arange(10 * info.rank, 10 * info.rank + 3 * info.rank, dtype=torch.float64)[:, None])
res["sum"] = all_reduce_sum(torch.tensor([info.rank + 1.0]))
if info.main:
    save_file({k: v.contiguous() for k, v in res.items()}, out)
""".replace("EVAL_CASES", repr(EVAL_CASES))


def _torchrun(tmp_path: Path, out: Path, run_dir: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # torchrun's default, made explicit: the reference runs on one thread too
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        f"--log-dir={tmp_path / 'logs'}",
        "--redirects=3",
        str(script),
        str(out),
        str(run_dir),
        *TRAIN_ARGS,
        f"--out={tmp_path / 'runs'}",
        "--name=ddp",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_two_gloo_processes_equal_one_process(tmp_path):
    out = tmp_path / "eval.safetensors"
    ddp_dir = tmp_path / "runs" / "ddp"
    proc = _torchrun(tmp_path, out, ddp_dir)
    logs = {p.parent.name + "/" + p.name: p.read_text() for p in (tmp_path / "logs").rglob("*.log")}
    assert proc.returncode == 0, proc.stderr[-3000:] + "".join(logs.values())[-3000:]

    # only rank 0 reports progress (off a terminal: one line per epoch instead of a bar)
    assert "ddp: epoch 1/1" in logs["0/stderr.log"] and "epoch 1/1" not in logs["1/stderr.log"]

    # the same global batch in one process, in the same two halves (module docstring), on one thread
    cfg = load_config(
        TRAIN_ARGS[0],
        overrides=[a[2:] for a in TRAIN_ARGS[1:]] + [f"out_dir={tmp_path / 'ref'}", "name=ref", "train.accum_steps=2"],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref_dir = fit(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(str(ddp_dir / "model.safetensors")), load_file(str(ref_dir / "model.safetensors"))
    before = load_file(str(ref_dir / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert a.keys() == b.keys() == before.keys() and not any(k.startswith(("module.", "_orig_mod.")) for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), (k, (a[k] - b[k]).abs().max().item())
    assert max((b[k] - before[k]).abs().max().item() for k in b) > 1e-3  # the last step changed the weights

    # the per-epoch record (one line): loss summed over ranks across the resume, validation gathered over ranks
    assert len((ddp_dir / "metrics.jsonl").read_text().splitlines()) == 1
    rec_ddp = json.loads((ddp_dir / "metrics.jsonl").read_text())
    rec_ref = json.loads((ref_dir / "metrics.jsonl").read_text())
    assert rec_ddp["val_acc"] == rec_ref["val_acc"]
    for key in ("train_loss", "train_acc", "val_nll", "val_ece"):
        assert rec_ddp[key] == pytest.approx(rec_ref[key], abs=1e-5), key

    # distributed evaluation: the gathered logits and their metrics are those of one process
    res = load_file(str(out))
    model, _ = load_model(ddp_dir)
    test = DATASETS.create("fashion_mnist", split="test")
    for n, bs in EVAL_CASES:
        torch.set_num_threads(1)  # each rank predicts whole batches of the same images on one thread: the same floats
        try:
            single = predict(model, test.x[:n], batch_size=bs, features=True)
        finally:
            torch.set_num_threads(threads)
        assert res[f"logits_{n}"].shape == single["logits"].shape == (n, 10)
        assert torch.equal(res[f"logits_{n}"], single["logits"]) and torch.equal(
            res[f"features_{n}"], single["features"]
        )
        assert calibration_metrics(res[f"logits_{n}"], test.y[:n]) == calibration_metrics(single["logits"], test.y[:n])
    # an OOD metric on gathered scores: MSP of the first 500 test images against their negatives (hand-computed
    # from the same logits, so it checks the gathered order, not float noise)
    msp = res["logits_1000"].softmax(1).max(1).values
    assert auroc(msp[:500], msp[500:]) == pytest.approx(
        float(
            (msp[:500, None] > msp[None, 500:]).double().mean()
            + 0.5 * (msp[:500, None] == msp[None, 500:]).double().mean()
        ),
        abs=1e-12,
    )
    assert torch.equal(res["rows"], torch.tensor([[10.0], [11.0], [12.0]], dtype=torch.float64))  # rank 0 sent 0 rows
    assert res["sum"].item() == 3.0


def test_shards_cover_everything_in_order():
    for n, bs, world in ((1000, 300, 2), (250, 300, 2), (10, 3, 4), (0, 5, 3), (7, 1, 3)):
        parts = [shard_batches(n, bs, DistInfo(rank=r, world_size=world)) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))
        for r in range(world):  # shard boundaries fall on batch boundaries
            lo, hi = shard_batches(n, bs, DistInfo(rank=r, world_size=world))
            assert lo % bs == 0 and (hi % bs == 0 or hi == n)


def test_without_a_process_group_predict_distributed_is_predict():
    model, _ = _tiny_model()
    x = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = predict_distributed(model, x, batch_size=10, features=True), predict(model, x, batch_size=10, features=True)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["features"], b["features"])


def test_sync_bn_on_cpu_is_a_config_error(tmp_path, monkeypatch):
    """SyncBatchNorm runs only on GPUs: under torchrun on CPUs, train.sync_bn=true is refused with one line."""
    import rulab.train.loop as loop

    monkeypatch.setattr(loop, "init_distributed", lambda device_type=None: DistInfo(rank=0, world_size=2))
    monkeypatch.setattr(loop, "_check_same_run_dir", lambda run_dir, device: None)
    cfg = load_config(
        "fmnist-plain",
        overrides=[
            "device=cpu",
            "train.sync_bn=true",
            "train.max_steps=1",
            "data.train_subset=64",
            "data.val_size=10",
            "eval.detectors=[]",
            f"out_dir={tmp_path}",
        ],
    )
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        fit(cfg, progress=False, splits=_tiny_splits())


def test_world_size_without_rank_is_explained(monkeypatch):
    from rulab.distributed import init_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RulabError, match="torchrun"):
        init_distributed("cpu")


def _tiny_model():
    from rulab.registry import MODELS

    torch.manual_seed(0)
    return MODELS.create("fastcnn", width=2).eval(), None


def _tiny_splits():
    from rulab.data.splits import Splits

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(
        torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g),
        torch.arange(64) % 10,
        [str(i) for i in range(10)],
        "tiny",
    )
    return Splits(train=ds, val=None, test=ds, classes=ds.classes)
