"""The bad-input corpus: one table of user mistakes and broken files, and what rulab must do with each.

Every row of :data:`CASES` states

* ``input``: what is wrong (a truncated file, a NaN score, an unknown name, a locked database, ...);
* the action: a Python call (``action`` describes ``run``), a CLI invocation through :func:`rulab.cli.main`
  (``argv``), or the same through a real ``python -m rulab`` process (``process=True``);
* ``error``: the :class:`rulab.errors.RulabError` subclass expected (``None``: rulab must recover, e.g. rebuild a
  corrupt cache, and ``message`` is then the warning it gives, or ``""`` for none);
* ``message``: a regular expression the ONE-LINE message must contain; it says what to do;
* ``kept``: what was stored before and must survive (database rows, a parent checkpoint, a dataset file, a config
  file). Files registered with ``ws.remember`` are also compared byte for byte after every case.

For CLI cases the harness also checks the exit status (2), that stderr is exactly one line starting with
``error: `` and holds no traceback, and (through a spy on the CLI's ``print``) the type of the exception behind it.

Covered elsewhere and not repeated here (:data:`ELSEWHERE`, checked to still exist): a run killed with SIGKILL at
random points and resumed (bit-identical weights), a full disk during a training checkpoint, a read-only metrics file,
four concurrent writer processes on the results database, archive members escaping the target directory.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import gzip
import io
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import rulab
import rulab.api
import rulab.cli as cli_module
from rulab.checkpoint import load_model, load_train_state, read_meta, save_model, save_train_state
from rulab.config import EvalCfg, OptimCfg, RunCfg, to_dict
from rulab.data.loader import TensorLoader
from rulab.data.splits import filter_classes
from rulab.data.tensors import TensorDataset
from rulab.detectors.base import Extracted
from rulab.errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    DataError,
    InputError,
    RulabError,
    StoreError,
)
from rulab.eval.evaluate import run_evaluation
from rulab.eval.extract import extract
from rulab.eval.ood_eval import load_ood_set
from rulab.eval.predict import predict
from rulab.eval.shift import evaluate_shift
from rulab.eval.validate import validate_run
from rulab.metrics.calibration import calibration_error, calibration_metrics
from rulab.metrics.ood import ood_metrics
from rulab.presets import load_config
from rulab.registry import DATASETS, DETECTORS, MODELS, OOD_SETS
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable, Row

FMNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (the CPU default's source)
T10K_IMAGES, T10K_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------ workspace
class Ws:
    """One case's scratch space: files under ``tmp``, environment changes, and the files that must not change."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.mp, self.capsys = tmp, monkeypatch, capsys
        self.saved: dict[Path, bytes] = {}
        self.state: dict[str, Any] = {}
        self.cleanup: list[Callable[[], None]] = []

    def private_data(self) -> Path:
        """Point the data cache at ``tmp/data`` with no system directory (downloads are off for every case)."""
        data, system = self.tmp / "data", self.tmp / "system"
        data.mkdir(exist_ok=True)
        system.mkdir(exist_ok=True)
        self.mp.setenv("RULAB_DATA", str(data))
        self.mp.setenv("RULAB_SYSTEM_DATA", str(system))
        return data

    def remember(self, *paths: Path) -> None:
        """These files must be byte-for-byte the same after the case."""
        for p in paths:
            self.saved[p] = p.read_bytes()

    def check_unchanged(self) -> None:
        for p, data in self.saved.items():
            assert p.exists(), f"{p} was deleted"
            assert p.read_bytes() == data, f"{p} was modified"

    def path(self, text: str) -> str:
        return text.format(tmp=self.tmp)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Ws]:
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    w = Ws(tmp_path, monkeypatch, capsys)
    yield w
    for fn in reversed(w.cleanup):
        fn()


# ------------------------------------------------------------------------------------------------ helpers
def _nothing(ws: Ws) -> None:
    return None


def _need_fmnist() -> None:
    if not (FMNIST / T10K_IMAGES).is_file():
        pytest.skip(f"needs the Fashion-MNIST files in {FMNIST} (apt-get install dataset-fashion-mnist)")


def _fmnist_test_files(ws: Ws, images: Callable[[bytes], bytes] | None = None) -> Path:
    """Copy the Fashion-MNIST test files into a private data cache, ``images`` rewriting the image file's bytes."""
    _need_fmnist()
    d = ws.private_data() / "fashion_mnist"
    d.mkdir()
    (d / T10K_LABELS).write_bytes((FMNIST / T10K_LABELS).read_bytes())
    raw = (FMNIST / T10K_IMAGES).read_bytes()
    (d / T10K_IMAGES).write_bytes(images(raw) if images else raw)
    ws.remember(d / T10K_IMAGES, d / T10K_LABELS)
    return d


def _flip_one_pixel(gz: bytes) -> bytes:
    data = bytearray(gzip.decompress(gz))
    data[5000] ^= 0xFF
    return gzip.compress(bytes(data), compresslevel=1, mtime=0)


def _cfg_dict() -> dict[str, Any]:
    return to_dict(load_config("fmnist-plain", overrides=["eval.detectors=[]", "device=cpu"]))


def _save_run(run: Path, model: torch.nn.Module | None = None, **meta: Any) -> Path:
    """A run directory with ``model.safetensors`` (a fastcnn for Fashion-MNIST unless given) and its stored config."""
    torch.manual_seed(0)
    model = model or MODELS.create("fastcnn", num_classes=10)
    full = {"model": "fastcnn", "model_kwargs": {"num_classes": 10}, "config": _cfg_dict(), **meta}
    return save_model(run / "model.safetensors", model, full)


def _run_with(ws: Ws, data: Callable[[bytes], bytes]) -> None:
    """``tmp/run/model.safetensors`` replaced by ``data(good checkpoint bytes)``; remembered."""
    p = _save_run(ws.tmp / "run")
    p.write_bytes(data(p.read_bytes()))
    ws.remember(p)


def _table(*metrics: str, value: float = 0.5) -> ResultTable:
    return ResultTable([Row("id", m, value, "fashion_mnist") for m in metrics])


def _db_with_rows(ws: Ws, name: str = "r.db") -> Path:
    """A results database with one run and two rows (``acc``, ``ece``); ``ws.state['run_id']`` is the run."""
    from rulab.config import RunCfg

    path = ws.tmp / name
    with ResultStore(path) as store:
        ws.state["run_id"] = store.start_run(RunCfg(name="before"), study="s")
        store.write_results(ws.state["run_id"], _table("acc", "ece", value=0.9))
    return path


def _rows(path: Path) -> dict[str, float]:
    with ResultStore(path) as store:
        return {r["metric"]: r["value"] for r in store.results()}


def _rows_kept(extra: dict[str, float] | None = None) -> Callable[[Ws], None]:
    """The two rows of :func:`_db_with_rows` are still there, and exactly ``extra`` besides them."""

    def check(ws: Ws) -> None:
        assert _rows(ws.tmp / "r.db") == {"acc": 0.9, "ece": 0.9, **(extra or {})}

    return check


@contextlib.contextmanager
def _sqlite_pragma(pragma: Callable[[sqlite3.Connection], str]) -> Iterator[None]:
    """Every SQLite connection the results store opens runs ``pragma(con)`` first (simulates a full or read-only disk)."""
    import rulab.results.store as store_module

    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = real(*args, **kwargs)
        con.execute(pragma(con))
        return con

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.sqlite3, "connect", connect)
        yield


def _write_big_table(ws: Ws) -> None:
    with ResultStore(ws.tmp / "r.db") as store:
        store.write_results(
            ws.state["run_id"], ResultTable([Row("ood", "auroc", 0.5, f"set{i}" + "x" * 400) for i in range(300)])
        )


def _toy(n: int = 8, c: int = 1, side: int = 28, name: str = "toy") -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, side, side), generator=g, dtype=torch.uint8)
    return TensorDataset(x, torch.arange(n) % 2, ["a", "b"], name)


def _extracted(logits: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None) -> Any:
    return Extracted(logits, labels, features, name="val")


def _evaluate_toy(benchmark: str = "fmnist", **eval_kwargs: Any) -> Any:
    """``evaluate`` of an untrained fastcnn on tiny Fashion-MNIST-shaped splits (fails before any forward pass)."""
    cfg = EvalCfg(**{"detectors": ("msp",), "shift": "", "farconf": False, **eval_kwargs})
    model = MODELS.create("fastcnn", num_classes=2)
    return run_evaluation(model, benchmark=benchmark, eval_cfg=cfg, train=_toy(), val=_toy(), test=_toy())


def _absent(rel: str, what: str) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        assert not (ws.tmp / rel).exists(), f"{what}: {rel} exists"

    return check


def _nothing_cached(ws: Ws) -> None:
    assert not any((ws.tmp / "cache").rglob("*.safetensors")), "a failed extraction was cached"


def _with_inf(t: torch.Tensor) -> torch.Tensor:
    t[2, 1] = float("inf")
    return t


def _fail_with(code: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


def _no_leftovers(where: str) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        left = [p for p in (ws.tmp / where).rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
        assert left == [], left

    return check


def _all(*checks: Callable[[Ws], None]) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        for c in checks:
            c(ws)

    return check


# ------------------------------------------------------------------------------------------------ setups
def _file(name: str, data: bytes) -> Callable[[Ws], None]:
    """Write ``tmp/<name>``; it must stay unchanged."""

    def setup(ws: Ws) -> None:
        (ws.tmp / name).write_bytes(data)
        ws.remember(ws.tmp / name)

    return setup


def _yaml(text: str, name: str = "c.yaml") -> Callable[[Ws], None]:
    """Write the config file ``tmp/<name>`` (``{tmp}`` in ``text`` is the case's directory); it must stay unchanged."""

    def setup(ws: Ws) -> None:
        _file(name, ws.path(text).encode())(ws)

    return setup


def _patch(obj: Any, name: str, value: Any) -> Callable[[Ws], None]:
    """Replace ``obj.name`` for the rest of the case (after the other setup steps ran)."""

    def setup(ws: Ws) -> None:
        ws.mp.setattr(obj, name, value)

    return setup


def _setup_results_out(ws: Ws) -> None:
    """A database with results and an earlier export ``out/table.csv`` that must survive a failed write."""
    _db_with_rows(ws)
    out = ws.tmp / "out"
    out.mkdir()
    (out / "table.csv").write_text("the earlier export\n")
    ws.remember(out / "table.csv")


def _setup_ood_folder(ws: Ws, files: dict[str, bytes]) -> None:
    d = ws.private_data() / "dtd" / "dtd" / "images" / "banded"
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    ws.remember(*(d / n for n in files))


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _setup_train_state(ws: Ws) -> None:
    model = MODELS.create("fastcnn", num_classes=10)
    d = save_train_state(ws.tmp / "run", 4, model, {"step": torch.tensor(4)})
    (d / "state.json").write_text('{"step": 4, "state": {"__dict__": [[')  # cut short by a crash of the disk
    ws.remember(d / "model.safetensors", ws.tmp / "run" / "checkpoints" / "LATEST")


def _load_train_state(ws: Ws) -> Any:
    return load_train_state(ws.tmp / "run", MODELS.create("fastcnn", num_classes=10))


def _corrupt_tensor_cache(ws: Ws) -> None:
    _fmnist_test_files(ws)
    DATASETS.create("fashion_mnist", split="test")  # builds data/fashion_mnist/test.safetensors
    cache = ws.tmp / "data" / "fashion_mnist" / "test.safetensors"
    data = bytearray(cache.read_bytes())
    data[len(data) // 2 :] = b"\0" * (len(data) - len(data) // 2)  # the second half of the pixels zeroed
    cache.write_bytes(bytes(data))


def _cache_rebuilt(ws: Ws) -> None:
    ds = DATASETS.create("fashion_mnist", split="test")
    assert len(ds) == 10_000 and ds.x[-1].float().mean() > 0  # the real last image, not the zeroed copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a third load reads the rebuilt cache without complaint
        assert torch.equal(DATASETS.create("fashion_mnist", split="test").x, ds.x)


def _cache_write_fails(ws: Ws) -> Any:
    import safetensors.torch

    _fmnist_test_files(ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(safetensors.torch, "save_file", _fail_with(errno.ENOSPC))
        ds = DATASETS.create("fashion_mnist", split="test")
    assert len(ds) == 10_000 and ds.y.max() == 9  # the data itself is fine
    return ds


def _lock_for(seconds: float) -> Callable[[Ws], None]:
    """Another connection takes the database's write lock (and writes a row of its own) for ``seconds``."""

    def setup(ws: Ws) -> None:
        path = _db_with_rows(ws)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO results (run_id, kind, metric, value) VALUES (?, 'id', 'other_writer', 0.25)",
            (ws.state["run_id"],),
        )

        def release() -> None:
            with contextlib.suppress(sqlite3.Error):
                other.execute("COMMIT")
            other.close()

        if seconds > 0:
            timer = threading.Timer(seconds, release)
            timer.start()
            ws.cleanup.append(timer.join)
        else:
            ws.cleanup.append(release)

    return setup


def _write_nll(timeout: float) -> Callable[[Ws], Any]:
    def run(ws: Ws) -> Any:
        with ResultStore(ws.tmp / "r.db", timeout=timeout) as store:
            return store.write_results(ws.state["run_id"], _table("nll", value=0.3))

    return run


def _release_then(check: Callable[[Ws], None]) -> Callable[[Ws], None]:
    def kept(ws: Ws) -> None:
        while ws.cleanup:
            ws.cleanup.pop()()
        check(ws)

    return kept


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Case:
    id: str
    input: str
    error: type[RulabError] | None
    message: str
    run: Callable[[Ws], Any] | None = None  # a Python call ...
    action: str = ""  # ... described here
    argv: tuple[str, ...] = ()  # or a CLI invocation ("{tmp}" is the case's directory)
    process: bool = False  # run argv through `python -m rulab` in a subprocess
    setup: Callable[[Ws], None] = _nothing
    kept: Callable[[Ws], None] = _nothing
    marks: tuple[Any, ...] = field(default=())


CASES: list[Case] = [
    # ---- bad command-line usage
    Case(
        "cli-eval-without-checkpoint",
        "`rulab eval` without its CHECKPOINT argument",
        ConfigError,
        r"^give either one CHECKPOINT \(a run directory\) or --ensemble RUN RUN \.\.\., not both and not neither$",
        argv=("eval",),
    ),
    Case(
        "cli-unknown-command",
        "a misspelt command",
        ConfigError,
        r"invalid choice: 'trian' \(choose from 'train', .*\); see `rulab --help`$",
        argv=("trian", "fmnist-plain"),
    ),
    Case(
        "cli-bad-choice",
        "`rulab results --kind` with a value outside its choices",
        ConfigError,
        r"argument --kind: invalid choice: 'oodd'.*; see `rulab results --help`$",
        argv=("results", "--kind", "oodd"),
    ),
    Case(
        "cli-fetch-unknown-dataset",
        "`rulab data fetch` of a dataset that does not exist",
        ConfigError,
        r"^there is no dataset or OOD set called 'fashon_mnist' \(did you mean 'fashion_mnist'\?\); `rulab data list` shows them",
        argv=("data", "fetch", "fashon_mnist"),
        setup=lambda ws: ws.private_data(),
        kept=_absent("data/fashon_mnist", "a directory was created for an unknown name"),
    ),
    Case(
        "cli-fetch-nothing",
        "`rulab data fetch` without a name",
        ConfigError,
        r"^say which dataset to fetch, e\.g\. `rulab data fetch fashion_mnist`",
        argv=("data", "fetch"),
    ),
    Case(
        "cli-results-no-db",
        "`rulab results` on a database that does not exist",
        StoreError,
        r"^there is no results database at \S+missing\.db; run `rulab study fmnist-default` first or pass --db$",
        argv=("results", "--db", "{tmp}/missing.db"),
        kept=_absent("missing.db", "rulab results created the database"),
    ),
    Case(
        "cli-report-no-runs",
        "`rulab report` on a database without runs",
        StoreError,
        r"holds no runs; run `rulab study fmnist-default --db \S+empty\.db` \(or `rulab eval CHECKPOINT --db",
        argv=("report", "--db", "{tmp}/empty.db"),
        setup=lambda ws: ResultStore(ws.tmp / "empty.db").close(),
        kept=_absent("report.html", "an empty report was written"),
    ),
    Case(
        "cli-subprocess-eval-without-checkpoint",
        "`python -m rulab eval` without CHECKPOINT, in a real process",
        ConfigError,
        r"^give either one CHECKPOINT \(a run directory\) or --ensemble RUN RUN \.\.\., not both and not neither$",
        argv=("eval",),
        process=True,
    ),
    Case(
        "cli-subprocess-fetch-unknown",
        "`python -m rulab data fetch` of an unknown dataset, in a real process",
        ConfigError,
        r"^there is no dataset or OOD set called 'cifar-10' \(did you mean 'cifar10'\?\)",
        argv=("data", "fetch", "cifar-10"),
        process=True,
    ),
    # ---- configs
    Case(
        "yaml-python-tag",
        "a YAML config whose value is a !!python/object/apply tag (would run a command)",
        ConfigError,
        r"^config file \S+evil\.yaml is not valid YAML at line 2; fix the syntax$",
        argv=("train", "--config", "{tmp}/evil.yaml"),
        setup=_yaml("preset: fmnist-plain\nname: !!python/object/apply:os.mkdir ['{tmp}/pwned']\n", "evil.yaml"),
        kept=_absent("pwned", "the YAML tag ran code"),
    ),
    Case(
        "yaml-wrong-type",
        "a YAML config with a word where an integer belongs",
        ConfigError,
        r"^config key 'train\.epochs' must be an integer, got 'five'$",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("preset: fmnist-plain\ntrain:\n  epochs: five\n"),
    ),
    Case(
        "yaml-scalar-for-section",
        "a YAML config giving a number to a whole section",
        ConfigError,
        r"^config key 'optim' is a section; give it a mapping, got 3$",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("optim: 3\n"),
    ),
    Case(
        "yaml-unknown-preset",
        "a YAML config naming a preset that does not exist",
        ConfigError,
        r"^unknown preset 'fmnist-plian' \(did you mean 'fmnist-plain'\?\); valid choices: ",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("preset: fmnist-plian\n"),
    ),
    Case(
        "yaml-unknown-dataset",
        "a YAML config naming an unknown dataset",
        ConfigError,
        r"^config key 'data\.dataset' has unknown value 'fashion-mnist' \(did you mean 'fashion_mnist'\?\); valid choices: ",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("data:\n  dataset: fashion-mnist\n"),
    ),
    Case(
        "yaml-unknown-model",
        "a YAML config naming an unknown model",
        ConfigError,
        r"^config key 'model\.name' has unknown value 'fastcn' \(did you mean 'fastcnn'\?\); valid choices: ",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("model:\n  name: fastcn\n"),
    ),
    Case(
        "cli-unknown-study",
        "`rulab study` of a study that does not exist",
        ConfigError,
        r"^unknown study 'fmnist-defualt' \(did you mean 'fmnist-default'\?\); valid choices: ",
        argv=("study", "fmnist-defualt", "--out", "{tmp}/runs"),
        kept=_absent("runs", "a failed study created its output directory"),
    ),
    Case(
        "one-class-config",
        "data.classes keeping a single class",
        ConfigError,
        r"^config key 'data\.classes' keeps one class \(3\), but a classifier needs at least two; list two or more",
        argv=("train", "fmnist-plain", "--data.classes=[3]", "--out={tmp}/runs", "--eval.detectors=[]"),
        kept=_absent("runs", "a run directory was created"),
    ),
    Case(
        "one-class-left-by-exclusion",
        "data.exclude_classes dropping all classes but one",
        ConfigError,
        r"leave only class 1 of 'toy', but a classifier needs at least two; keep two or more classes",
        action="filter_classes(<2-class dataset>, exclude=(0,))",
        run=lambda ws: filter_classes(_toy(), exclude=(0,)),
    ),
    Case(
        "init-from-another-architecture",
        "train.init_from pointing at a fastcnn run while training a lenet",
        CheckpointError,
        r"^cannot fine-tune from \S+parent: it holds a 'fastcnn' model but this run builds 'lenet'; use the same model\.name$",
        argv=(
            "train",
            "fmnist-plain",
            "--model.name=lenet",
            "--train.init_from={tmp}/parent",
            "--out={tmp}/runs",
            "--name=ft",
            "--device=cpu",
            "--eval.detectors=[]",
            "--data.train_subset=64",
            "--data.val_size=32",
            "--train.max_steps=1",
            "--train.deterministic=false",
        ),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "parent"), ws.tmp / "parent" / "meta.json"),
        kept=_absent("runs", "a run directory was made before the parent was checked"),
    ),
    # ---- data files
    Case(
        "idx-gz-truncated",
        "the Fashion-MNIST test-image .gz cut in half",
        DataError,
        r"t10k-images-idx3-ubyte\.gz is a truncated gzip file; delete it and run `rulab data fetch fashion_mnist`$",
        action="DATASETS.create('fashion_mnist', split='test')",
        run=lambda ws: DATASETS.create("fashion_mnist", split="test"),
        setup=lambda ws: _fmnist_test_files(ws, lambda b: b[: len(b) // 2]),
        kept=_absent("data/fashion_mnist/test.safetensors", "bad data was cached"),
    ),
    Case(
        "gz-not-gzip",
        "a .gz file that holds plain text",
        ChecksumError,
        r"has MD5 [0-9a-f]{32} but the published value for Fashion-MNIST t10k-images-idx3-ubyte\.gz is .*was not used; "
        r"delete it and run `rulab data fetch fashion_mnist`$",
        action="DATASETS.create('fashion_mnist', split='test')",
        run=lambda ws: DATASETS.create("fashion_mnist", split="test"),
        setup=lambda ws: _fmnist_test_files(ws, lambda b: b"this is not gzip data\n" * 100),
    ),
    Case(
        "gz-garbage-after-magic",
        "a .gz file with the gzip magic bytes followed by garbage",
        DataError,
        r"t10k-images-idx3-ubyte\.gz is not a valid gzip file \(.*\); delete it and run `rulab data fetch fashion_mnist`$",
        action="DATASETS.create('fashion_mnist', split='test')",
        run=lambda ws: DATASETS.create("fashion_mnist", split="test"),
        setup=lambda ws: _fmnist_test_files(ws, lambda b: b[:2] + b"garbage" * 100),
    ),
    Case(
        "wrong-checksum",
        "a valid gzip of the test images with one pixel changed",
        ChecksumError,
        r"has MD5 [0-9a-f]{32} but the published value .* so the file is truncated or corrupt and was not used; "
        r"delete it and run `rulab data fetch fashion_mnist`$",
        argv=("data", "fetch", "fashion_mnist"),
        setup=lambda ws: _fmnist_test_files(ws, _flip_one_pixel),
    ),
    Case(
        "tensor-cache-corrupt",
        "the parsed-tensor cache test.safetensors with half its pixels zeroed",
        None,
        r"the cached tensors \S+test\.safetensors are corrupt .*; rebuilding them from the source",
        action="DATASETS.create('fashion_mnist', split='test')",
        run=lambda ws: DATASETS.create("fashion_mnist", split="test"),
        setup=_corrupt_tensor_cache,
        kept=_cache_rebuilt,
    ),
    Case(
        "tensor-cache-disk-full",
        "a full disk while the parsed tensors are cached",
        None,
        r"could not cache the parsed data at \S+test\.safetensors \(no space left on the device .*\); it will be parsed again next time",
        action="DATASETS.create('fashion_mnist', split='test') with save_file failing (ENOSPC)",
        run=_cache_write_fails,
        kept=_all(_no_leftovers("data"), _absent("data/fashion_mnist/test.safetensors", "a partial cache was left")),
    ),
    Case(
        "ood-folder-corrupt-image",
        "an OOD image folder (DTD) holding a .jpg that is not an image",
        DataError,
        r"b\.jpg is not a readable image \(UnidentifiedImageError: .*\); delete or replace the file$",
        action="OOD_SETS.create('dtd', shape=(1, 28, 28))",
        run=lambda ws: OOD_SETS.create("dtd", shape=(1, 28, 28)),
        setup=lambda ws: _setup_ood_folder(ws, {"a.png": _png(), "b.jpg": b"\xff\xd8\xff not really a jpeg"}),
    ),
    Case(
        "ood-folder-without-images",
        "an OOD image folder (DTD) holding no image, only a text file",
        DataError,
        r"image folder \S+ holds no images \(extensions .*\); put the images in it or in class sub-folders$",
        action="OOD_SETS.create('dtd', shape=(1, 28, 28))",
        run=lambda ws: OOD_SETS.create("dtd", shape=(1, 28, 28)),
        setup=lambda ws: _setup_ood_folder(ws, {"readme.txt": b"the images are elsewhere\n"}),
    ),
    Case(
        "ood-set-empty",
        "an OOD set of n=0 images",
        InputError,
        r"^OOD set 'uniform' has no images \(n=0\); ask for at least one \(eval\.n_ood or the benchmark's n_ood\)$",
        action="load_ood_set('uniform', (1, 28, 28), n=0, seed=0)",
        run=lambda ws: load_ood_set("uniform", (1, 28, 28), 0, 0),
    ),
    # ---- unknown names (the ones a config cannot catch; config names are above and in tests/test_config.py)
    Case(
        "unknown-ood-set",
        "an OOD set name with a typo",
        ConfigError,
        r"^unknown OOD set 'lsun_resized' \(did you mean 'lsun_resize'\?\); valid choices: .* \(`rulab list ood`\)$",
        action="load_ood_set('lsun_resized', (1, 28, 28), n=10, seed=0)",
        run=lambda ws: load_ood_set("lsun_resized", (1, 28, 28), 10, 0),
    ),
    Case(
        "unknown-corruption",
        "a custom shift cell naming an unknown corruption",
        ConfigError,
        r"^unknown corruption 'gausian_noise' \(did you mean 'gaussian_noise'\?\); valid choices: .* \(`rulab list corruptions`\)$",
        action="evaluate_shift(model, test, suite=[('gausian_noise', 3)], seed=0)",
        run=lambda ws: evaluate_shift(
            MODELS.create("fastcnn", num_classes=2), _toy(), suite=[("gausian_noise", 3)], seed=0
        ),
    ),
    Case(
        "unknown-shift-suite",
        "a shift suite name that does not exist",
        ConfigError,
        r"^unknown shift suite 'fmnist-defualt'; valid suites: .*fmnist-default",
        action="evaluate_shift(model, test, suite='fmnist-defualt', seed=0)",
        run=lambda ws: evaluate_shift(MODELS.create("fastcnn", num_classes=2), _toy(), suite="fmnist-defualt", seed=0),
    ),
    Case(
        "unknown-benchmark",
        "evaluate() on a benchmark that does not exist",
        ConfigError,
        r"^unknown benchmark 'fmnst' \(did you mean 'fmnist'\?\); valid choices: (\S+, )*fmnist, ",
        action="evaluate(model, benchmark='fmnst', ...)",
        run=lambda ws: _evaluate_toy(benchmark="fmnst"),
    ),
    Case(
        "unknown-protocol",
        "evaluate() with an unknown OOD protocol",
        ConfigError,
        r"^unknown protocol 'hendryks' \(did you mean 'hendrycks'\?\); valid choices: ",
        action="evaluate(model, eval_cfg=EvalCfg(protocol='hendryks'), ...)",
        run=lambda ws: _evaluate_toy(protocol="hendryks"),
    ),
    Case(
        "unknown-detector",
        "evaluate() with an unknown detector",
        ConfigError,
        r"^unknown detector 'mahalanobiss' \(did you mean 'mahalanobis'\?\); valid choices: ",
        action="evaluate(model, eval_cfg=EvalCfg(detectors=('msp', 'mahalanobiss')), ...)",
        run=lambda ws: _evaluate_toy(detectors=("msp", "mahalanobiss")),
    ),
    Case(
        "cli-eval-unknown-benchmark",
        "`rulab eval --benchmark` of an unknown benchmark",
        ConfigError,
        r"^config key 'eval\.benchmark' has unknown value 'cifar10'( \(did you mean '[\w-]+'\?\))?; valid choices: (\S+, )*fmnist, ",
        argv=("eval", "{tmp}/run", "--benchmark", "cifar10"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "run")),
    ),
    Case(
        "cli-eval-unknown-protocol",
        "`rulab eval --protocol` of an unknown protocol",
        ConfigError,
        r"^config key 'eval\.protocol' has unknown value 'odln' \(did you mean 'odin'\?\); valid choices: ",
        argv=("eval", "{tmp}/run", "--protocol", "odln"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "run")),
    ),
    Case(
        "cli-eval-unknown-shift-suite",
        "`rulab eval --shift` of an unknown shift suite",
        ConfigError,
        r"^config key 'eval\.shift' has unknown value 'commom15' \(did you mean 'common15'\?\); valid choices: ",
        argv=("eval", "{tmp}/run", "--shift", "commom15"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "run")),
    ),
    Case(
        "cli-eval-unknown-detector",
        "`rulab eval --detectors` listing an unknown detector",
        ConfigError,
        r"^config key 'eval\.detectors\[1\]' has unknown value 'enrgy' \(did you mean 'energy'\?\); valid choices: ",
        argv=("eval", "{tmp}/run", "--detectors", "msp,enrgy"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "run")),
    ),
    # ---- scores and arrays
    Case(
        "ood-metrics-nan",
        "a NaN among the ID scores",
        InputError,
        r"^s_id has 1 NaN and 0 inf values out of 3; remove or replace them before computing metrics$",
        action="ood_metrics([0.9, nan, 0.7], [0.1, 0.2])",
        run=lambda ws: ood_metrics(torch.tensor([0.9, float("nan"), 0.7]), torch.tensor([0.1, 0.2])),
    ),
    Case(
        "ood-metrics-inf",
        "+inf and -inf among the OOD scores (NumPy)",
        InputError,
        r"^s_ood has 0 NaN and 2 inf values out of 3; remove or replace them before computing metrics$",
        action="ood_metrics(np.array([0.9, 0.8]), np.array([inf, 0.1, -inf]))",
        run=lambda ws: ood_metrics(np.array([0.9, 0.8]), np.array([np.inf, 0.1, -np.inf])),
    ),
    Case(
        "ood-metrics-empty-side",
        "no OOD scores at all (an empty OOD set)",
        InputError,
        r"^s_ood is empty; every metric needs at least one score on each side$",
        action="ood_metrics([0.9, 0.8], [])",
        run=lambda ws: ood_metrics(torch.tensor([0.9, 0.8]), torch.tensor([])),
    ),
    Case(
        "scores-n-by-1",
        "scores of shape [N, 1] instead of [N]",
        InputError,
        r"^s_id must be 1-D \[N\], got shape \(4, 1\); flatten it or pick one score per example$",
        action="ood_metrics(torch.rand(4, 1), torch.rand(4))",
        run=lambda ws: ood_metrics(torch.rand(4, 1), torch.rand(4)),
    ),
    Case(
        "calibration-nan",
        "a NaN confidence",
        InputError,
        r"^confidence has 1 NaN and 0 inf values out of 4; remove or replace them before computing metrics$",
        action="calibration_error([0.9, nan, 0.6, 0.7], correct)",
        run=lambda ws: calibration_error(torch.tensor([0.9, float("nan"), 0.6, 0.7]), torch.tensor([1, 0, 1, 1])),
    ),
    Case(
        "logits-labels-length",
        "5 rows of logits but 4 labels",
        InputError,
        r"^labels must be 1-D with one label per row \(5\), got shape \(4,\)$",
        action="calibration_metrics(logits [5, 3], labels [4])",
        run=lambda ws: calibration_metrics(torch.randn(5, 3), torch.tensor([0, 1, 2, 0])),
    ),
    Case(
        "detector-nan-logits",
        "NaN logits handed to a detector",
        InputError,
        r"^'val' logits hold 1 NaN/inf values; detectors need finite network outputs, so check the model \(did training diverge\?\)",
        action="DETECTORS.create('msp').score(Extracted(logits with a NaN, ...))",
        run=lambda ws: DETECTORS.create("msp").score(
            _extracted(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), torch.tensor([0, 1]))
        ),
    ),
    Case(
        "detector-inf-features",
        "inf features for Mahalanobis (used to end in a LinAlgError traceback)",
        InputError,
        r"^'val' features hold 1 NaN/inf values; detectors need finite network outputs",
        action="Mahalanobis().fit(Extracted(features with an inf, ...))",
        run=lambda ws: DETECTORS.create("mahalanobis").fit(
            _extracted(torch.randn(6, 2), torch.arange(6) % 2, _with_inf(torch.randn(6, 3)))
        ),
    ),
    Case(
        "detector-one-class",
        "Mahalanobis fitted on a split whose labels hold one class of three",
        InputError,
        r"classes \[1, 2\] have none in the fitting split; fit on a split that holds all 3 classes",
        action="Mahalanobis().fit(Extracted(logits [6, 3], labels all 0, features))",
        run=lambda ws: DETECTORS.create("mahalanobis").fit(
            _extracted(torch.randn(6, 3), torch.zeros(6, dtype=torch.long), torch.randn(6, 4))
        ),
    ),
    Case(
        "loader-2d-images",
        "grey images [N, H, W] without a channel axis",
        InputError,
        r"needs uint8 images \[N, C, H, W\], got torch\.uint8 \(4, 28, 28\); add the channel axis of grey images with x\.unsqueeze\(1\)",
        action="TensorLoader(uint8 [4, 28, 28], labels, 2)",
        run=lambda ws: TensorLoader(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 2),
    ),
    Case(
        "loader-label-count",
        "4 images but 3 labels",
        InputError,
        r"needs one label per image \(4\), got labels of shape \(3,\); pass y: int64 \[N\]$",
        action="TensorLoader(uint8 [4, 1, 28, 28], labels [3], 2)",
        run=lambda ws: TensorLoader(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), 2),
    ),
    Case(
        "ood-channels-differ",
        "an RGB OOD set for a grey model",
        InputError,
        r"^the images have 3 channels but the model takes 1; convert them with rulab\.data\.ood\.to_shape\(x, \(1, 32, 32\)\)",
        action="extract(grey fastcnn, RGB dataset, cache_dir=...)",
        run=lambda ws: extract(MODELS.create("fastcnn", num_classes=2), _toy(c=3, side=32), cache_dir=ws.tmp / "cache"),
        kept=_nothing_cached,
    ),
    Case(
        "grey-into-colour-model",
        "grey images for a colour model (used to broadcast silently through Normalize)",
        InputError,
        r"^the images have 1 channels but the model takes 3; convert them with rulab\.data\.ood\.to_shape\(x, \(3, 28, 28\)\)",
        action="predict(fastcnn(in_channels=3), uint8 [2, 1, 28, 28])",
        run=lambda ws: predict(
            MODELS.create("fastcnn", num_classes=2, in_channels=3), torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
        ),
    ),
    Case(
        "model-outputs-nan",
        "a model whose head holds a NaN weight (a diverged or corrupt checkpoint)",
        InputError,
        r"^the model produced 8 NaN/inf logits values on 'toy', so its weights are broken .*; re-train it or restore the checkpoint",
        action="extract(model with a NaN weight, dataset, cache_dir=...)",
        run=lambda ws: extract(
            _nan_head(MODELS.create("fastcnn", num_classes=2)), _toy(), features=False, cache_dir=ws.tmp / "cache"
        ),
        kept=_nothing_cached,
    ),
    # ---- checkpoints
    Case(
        "pickle-as-checkpoint",
        "a torch.save pickle named model.safetensors",
        CheckpointError,
        r"is not a safetensors file but a pickled PyTorch file \(\.pt/\.pth\), which rulab never unpickles; "
        r"load its state dict with torch\.load\(path, weights_only=True\) and save it with rulab\.checkpoint\.save_model$",
        argv=("eval", "{tmp}/run"),
        setup=lambda ws: _run_with(ws, lambda b: _torch_save_bytes()),
    ),
    Case(
        "safetensors-truncated",
        "a checkpoint cut 1000 bytes short (the tensor data ends early)",
        CheckpointError,
        r"model\.safetensors is corrupt or truncated \(.*\); re-create it or restore it from a copy$",
        action="load_model(run)",
        run=lambda ws: load_model(ws.tmp / "run"),
        setup=lambda ws: _run_with(ws, lambda b: b[:-1000]),
    ),
    Case(
        "safetensors-header-cut",
        "a checkpoint cut inside its JSON header",
        CheckpointError,
        r"model\.safetensors is truncated or corrupt \(its safetensors header is unreadable\); re-create it or restore it from a copy$",
        argv=("eval", "{tmp}/run"),
        setup=lambda ws: _run_with(ws, lambda b: b[:100]),
    ),
    Case(
        "safetensors-header-garbage",
        "a checkpoint whose header bytes were overwritten",
        CheckpointError,
        r"model\.safetensors is truncated or corrupt \(its safetensors header is unreadable\)",
        action="read_meta(run)",
        run=lambda ws: read_meta(ws.tmp / "run"),
        setup=lambda ws: _run_with(ws, lambda b: b[:12] + b"\x00\xff" * 20 + b[52:]),
    ),
    Case(
        "checkpoint-empty-file",
        "a 0-byte model.safetensors (a crash before anything was written)",
        CheckpointError,
        r"model\.safetensors is truncated \(shorter than a safetensors header\); re-create it or restore it from a copy$",
        argv=("eval", "{tmp}/run"),
        setup=lambda ws: _run_with(ws, lambda b: b""),
    ),
    Case(
        "checkpoint-unknown-argument",
        "checkpoint metadata with a model argument this rulab does not know",
        CheckpointError,
        r"stores the argument 'bogus', which model 'fastcnn' does not take \(written by another rulab version\?\); re-create it",
        action="load_model(run)",
        run=lambda ws: load_model(ws.tmp / "run"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "run", model_kwargs={"num_classes": 10, "bogus": 1})),
    ),
    Case(
        "train-state-corrupt",
        "a training state whose state.json was cut short",
        CheckpointError,
        r"state\.json is corrupt; delete \S+LATEST to start the run over$",
        action="load_train_state(run, model)",
        run=_load_train_state,
        setup=_setup_train_state,
    ),
    # ---- the results database
    Case(
        "db-corrupt-file",
        "`rulab results` on a file that is not a SQLite database",
        StoreError,
        r"bad\.db is not a readable rulab results database \(file is not a database\); move it aside \(nothing is deleted\)",
        argv=("results", "--db", "{tmp}/bad.db"),
        setup=_file("bad.db", b"SQLite format 3\x00" + bytes(range(256)) * 16),
    ),
    Case(
        "db-second-writer-waits",
        "a second writer while another process holds the write lock for 0.3 s",
        None,
        "",
        action="ResultStore(db).write_results(...) during another connection's transaction",
        run=_write_nll(timeout=30),
        setup=_lock_for(0.3),
        kept=_release_then(_rows_kept({"nll": 0.3, "other_writer": 0.25})),
    ),
    Case(
        "db-locked-too-long",
        "a database locked by another process for longer than the timeout",
        StoreError,
        r"^the results database \S+r\.db stayed locked by another process for 0\.2 s; wait for it to finish or use another --db$",
        action="ResultStore(db, timeout=0.2).write_results(...) while another connection holds the lock",
        run=_write_nll(timeout=0.2),
        setup=_lock_for(0),
        kept=_release_then(_rows_kept({"other_writer": 0.25})),
    ),
    Case(
        "db-disk-full",
        "a full disk while writing results (SQLite max_page_count reached)",
        StoreError,
        r"^no space left on the device while writing the results database \S+r\.db; free some disk space or pass another --db",
        action="ResultStore(db).write_results(300 rows) with no free page left",
        run=lambda ws: _with_pragma(
            ws, lambda con: f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}"
        ),
        setup=lambda ws: _db_with_rows(ws),
        kept=_rows_kept(),
    ),
    Case(
        "db-read-only",
        "a results database that cannot be written (SQLite query_only)",
        StoreError,
        r"^cannot write the results database \S+r\.db \(read-only or no permission\); make it writable or pass another --db$",
        action="ResultStore(db).write_results(...) on a read-only database",
        run=lambda ws: _with_pragma(ws, lambda con: "PRAGMA query_only = ON"),
        setup=lambda ws: _db_with_rows(ws),
        kept=_rows_kept(),
    ),
    # ---- output directories
    Case(
        "out-dir-read-only",
        "`rulab results --out` into a read-only directory (simulated: mkstemp gets EROFS)",
        RulabError,
        r"^cannot write \S+table\.csv \(read-only or no permission\); choose a writable output directory$",
        argv=("results", "--db", "{tmp}/r.db", "--format", "csv", "--out", "{tmp}/out/table.csv"),
        setup=_all(_setup_results_out, _patch(tempfile, "mkstemp", _fail_with(errno.EROFS))),
        kept=_no_leftovers("out"),
    ),
    Case(
        "out-disk-full",
        "`rulab results --out` on a full disk (simulated: the final rename gets ENOSPC)",
        RulabError,
        r"^no space left on the device while writing \S+table\.csv; free some disk space or choose another output directory$",
        argv=("results", "--db", "{tmp}/r.db", "--format", "csv", "--out", "{tmp}/out/table.csv"),
        setup=_all(_setup_results_out, _patch(os, "replace", _fail_with(errno.ENOSPC))),
        kept=_no_leftovers("out"),
    ),
]


def _nan_head(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    return model


def _torch_save_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(2, 2)}, buf)
    return buf.getvalue()


def _with_pragma(ws: Ws, pragma: Callable[[sqlite3.Connection], str]) -> None:
    with _sqlite_pragma(pragma):
        _write_big_table(ws)


# ------------------------------------------------------------------------------------------------ issue 15 setups
_TINY = (
    "eval.detectors=[]",
    "train.max_steps=1",
    "data.train_subset=64",
    "data.val_size=32",
    "train.deterministic=false",
)
"""Every case below fails before training; should one not, it trains one step on 64 images, not a whole run."""


def _fit_args(*extra: str, name: str = "r") -> tuple[str, ...]:
    """``rulab train fmnist-plain`` into ``{tmp}/runs/<name>``, tiny and on the CPU."""
    return (
        "train",
        "fmnist-plain",
        f"--name={name}",
        "--out={tmp}/runs",
        "--device=cpu",
        *(f"--{o}" for o in _TINY),
        *extra,
    )


def _run_cfg(ws: Ws, name: str = "r", **over: Any) -> Any:
    """The config :func:`_fit_args` gives, with ``over`` (``optim.lr=0.4`` as ``**{"optim.lr": 0.4}``)."""
    overrides = [
        *_TINY,
        "device=cpu",
        f"name={name}",
        f"out_dir={ws.tmp / 'runs'}",
        *(f"{k}={v}" for k, v in over.items()),
    ]
    return load_config("fmnist-plain", overrides=overrides)


def _interrupted_run(name: str = "r", step: int = 4, **over: Any) -> Callable[[Ws], Path]:
    """An interrupted run ``tmp/runs/<name>``: a training state at ``step`` recording its config, and config.yaml."""

    def setup(ws: Ws) -> Path:
        from rulab.config import config_hash, dump_yaml

        cfg = _run_cfg(ws, name, **over)
        run = ws.tmp / "runs" / name
        model = MODELS.create("fastcnn", num_classes=10)
        record = {"config": to_dict(cfg), "config_history": [{"step": 0, "config_hash": config_hash(cfg)}]}
        d = save_train_state(run, step, model, {"optimizer": {}, "extra": {}, "sums": {}, "history": []}, record=record)
        (run / "config.yaml").write_text(dump_yaml(cfg))
        ws.remember(d / "state.json", d / "model.safetensors", run / "checkpoints" / "LATEST", run / "config.yaml")
        return run

    return setup


def _with_state_json(text: bytes) -> Callable[[Ws], None]:
    def setup(ws: Ws) -> None:
        run = _interrupted_run()(ws)
        p = run / "checkpoints" / "step-00000004" / "state.json"
        p.write_bytes(text)
        ws.remember(p)

    return setup


def _with_latest(data: bytes | None) -> Callable[[Ws], None]:
    """An interrupted run whose ``LATEST`` holds ``data`` (``None``: a directory in its place)."""

    def setup(ws: Ws) -> None:
        run = _interrupted_run()(ws)
        latest = run / "checkpoints" / "LATEST"
        ws.saved.pop(latest, None)
        latest.unlink()
        if data is None:
            latest.mkdir()
        else:
            latest.write_bytes(data)
            ws.remember(latest)

    return setup


def _escaping_latest(ws: Ws) -> None:
    """Run ``r`` whose LATEST points into run ``other`` (which must stay untouched)."""
    _interrupted_run("other")(ws)
    _with_latest(b"../../other/checkpoints/step-00000004\n")(ws)


def _meta_checkpoint(meta_text: str) -> Callable[[Ws], None]:
    """``tmp/run/model.safetensors`` holding a fastcnn's weights with the raw rulab metadata ``meta_text``."""

    def setup(ws: Ws) -> None:
        from safetensors.torch import save_file

        run = ws.tmp / "run"
        run.mkdir()
        model = MODELS.create("fastcnn", num_classes=10)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(run / "model.safetensors"),
            metadata={"rulab": meta_text},
        )
        ws.remember(run / "model.safetensors")

    return setup


def _lock_held_by(
    pid: int | None, host: str | None = None, age: float = 0.0, text: str | None = None
) -> Callable[[Ws], None]:
    """``tmp/runs/r/run.lock`` written by ``pid`` on ``host`` (this process / this host when None), ``age`` seconds old."""

    def setup(ws: Ws) -> None:
        import json
        import socket
        import time

        run = ws.tmp / "runs" / "r"
        run.mkdir(parents=True, exist_ok=True)
        lock = run / "run.lock"
        holder = {
            "pid": os.getpid() if pid is None else pid,
            "host": host or socket.gethostname(),
            "token": "0123456789abcdef",
            "started": time.time() - age,
            "command": "rulab train (another process)",
        }
        lock.write_text(text if text is not None else json.dumps(holder))
        if age:
            os.utime(lock, (time.time() - age, time.time() - age))

    return setup


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _take_lock(ws: Ws) -> Any:
    from rulab.lock import RunLock

    lock = RunLock(ws.tmp / "runs" / "r").acquire()
    ws.state["lock_taken_over"] = lock.taken_over
    lock.release()
    return lock


def _lock_released(ws: Ws) -> None:
    assert ws.state.get("lock_taken_over"), "the stale lock was not taken over"
    assert not (ws.tmp / "runs" / "r" / "run.lock").exists(), "the lock was not released"


def _sql(name: str, *statements: str) -> Callable[[Ws], None]:
    """A results database ``tmp/<name>`` (two rows, see :func:`_db_with_rows`) changed by raw SQL, as another tool could."""

    def setup(ws: Ws) -> None:
        path = _db_with_rows(ws, name)
        con = sqlite3.connect(path)
        for st in statements:
            con.execute(st)
        con.commit()
        con.close()

    return setup


def _read_results(ws: Ws) -> Any:
    with ResultStore(ws.tmp / "r.db", read_only=True) as store:
        ws.state["records"] = {r["metric"]: r["value"] for r in store.results()}
        ws.state["runs"] = store.runs()
        ws.state["curves"] = store.curves()
    return ws.state["records"]


def _records_are(expected: dict[str, float]) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        assert ws.state["records"] == expected, ws.state["records"]

    return check


def _connect_fails(message: str, ro_only: bool = False) -> Callable[[Ws], None]:
    """SQLite connections fail with ``message`` (e.g. a read-only directory): all of them, or only ``mode=ro`` ones."""

    def setup(ws: Ws) -> None:
        import rulab.results.store as store_module

        real = sqlite3.connect

        def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if not ro_only or "mode=ro" in str(database):
                raise sqlite3.OperationalError(message)
            return real(database, *args, **kwargs)

        ws.mp.setattr(store_module.sqlite3, "connect", connect)

    return setup


def _toy_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )


class _Outputs(torch.nn.Module):
    """A small network whose forward returns ``how(logits)``: a tuple, a dict, one logit, a 3-D tensor."""

    def __init__(self, how: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.net, self.how = _toy_net(), how

    def forward(self, x: torch.Tensor) -> Any:
        return self.how(self.net(x))


def _api(model: Any = None, **kwargs: Any) -> Callable[[Ws], Any]:
    """``rulab.evaluate`` of a small grey network on 20 8x8 images with one OOD set and MSP, ``kwargs`` replacing those."""

    def run(ws: Ws) -> Any:
        g = torch.Generator().manual_seed(0)
        args: dict[str, Any] = {
            "id_test": (torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 2),
            "ood": {"noise": torch.rand(6, 1, 8, 8, generator=g)},
            "detectors": ["msp"],
            **kwargs,
        }
        return rulab.evaluate(_toy_net() if model is None else model, **args)

    return run


def _copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(dtype)


def _nothing_outside(ws: Ws) -> None:
    """Nothing was written next to the case directory or into it besides what the setup made."""
    assert not (ws.tmp.parent / "escaped").exists() and not (ws.tmp / "escaped").exists()
    assert not (ws.tmp / "runs").exists() or not any((ws.tmp / "runs").iterdir()), list((ws.tmp / "runs").iterdir())


def _no_eval_output(ws: Ws) -> None:
    assert not (ws.tmp / "run" / "eval" / "fmnist" / "results.csv").exists(), (
        "the evaluation ran before its database was checked"
    )


CASES += [
    # ---- run names and paths (issue 15 §1): refused before anything is written
    Case(
        "name-escapes-with-dotdot",
        "`--name ../../escaped` (would write outside --out)",
        ConfigError,
        r"^the run name '\.\./\.\./escaped' contains a path separator, so it would point outside the output directory; use letters",
        argv=_fit_args(name="../../escaped"),
        kept=_nothing_outside,
    ),
    Case(
        "name-absolute",
        "an absolute --name (would write anywhere)",
        ConfigError,
        r"contains a path separator, so it would point outside the output directory",
        argv=_fit_args(name="{tmp}/escaped"),
        kept=_nothing_outside,
    ),
    Case(
        "name-empty",
        "`--name=` (would write the model straight into --out)",
        ConfigError,
        r"^the run name is empty; use letters, digits, '-', '_' and '\.'",
        argv=_fit_args(name=""),
        kept=_nothing_outside,
    ),
    Case(
        "name-dotdot",
        "`--name=..`",
        ConfigError,
        r"^the run name '\.\.' names a directory, not a run; use letters",
        argv=_fit_args(name=".."),
        kept=_nothing_outside,
    ),
    Case(
        "name-dot",
        "`--name=.`",
        ConfigError,
        r"^the run name '\.' names a directory, not a run",
        argv=_fit_args(name="."),
    ),
    Case(
        "name-hidden",
        "a name starting with '.' (the prefix of rulab's temporary files)",
        ConfigError,
        r"^the run name '\.hidden' starts with '\.', which marks rulab's temporary files; use letters",
        argv=_fit_args(name=".hidden"),
    ),
    Case(
        "name-backslash",
        "a name with a backslash",
        ConfigError,
        r"contains a path separator",
        argv=_fit_args(name="a\\b"),
    ),
    Case(
        "name-too-long",
        "a 101-character name",
        ConfigError,
        r"^the run name 'aaaa.*\.\.\. has 101 characters, more than the limit of 100; choose a shorter one$",
        argv=_fit_args(name="a" * 101),
    ),
    Case(
        "name-trailing-space",
        "a run name ending with a space (Python API; the command line's YAML value parsing strips it)",
        ConfigError,
        r"^the run name 'run ' starts or ends with a space; use letters",
        action="rulab.train(RunCfg(name='run '))",
        run=lambda ws: rulab.api.train(RunCfg(name="run ", out_dir=str(ws.tmp / "runs"))),
        kept=_nothing_outside,
    ),
    Case(
        "name-nul-in-yaml",
        "a NUL byte in the name of a YAML config",
        ConfigError,
        r"^config key 'name' holds the control character '\\x00' \('a\\x00b'\); use printable characters only$",
        argv=("train", "--config", "{tmp}/c.yaml", "--out={tmp}/runs"),
        setup=_yaml('preset: fmnist-plain\nname: "a\\0b"\n'),
        kept=_nothing_outside,
    ),
    Case(
        "name-newline-api",
        "a run name with a newline through the Python API",
        ConfigError,
        r"holds the control character '\\n'",
        action="rulab.train(RunCfg(name='a\\nb'))",
        run=lambda ws: rulab.api.train(RunCfg(name="a\nb", out_dir=str(ws.tmp / "runs"))),
        kept=_nothing_outside,
    ),
    Case(
        "out-dir-nul",
        "an output directory holding a NUL byte",
        ConfigError,
        r"^config key 'out_dir' holds the control character",
        action="load_config(overrides=['out_dir=a\\x00b'])",
        run=lambda ws: load_config("fmnist-plain", overrides=["out_dir=a\x00b"]),
    ),
    Case(
        "api-train-name-escapes",
        "rulab.train with a config whose name climbs out of out_dir",
        ConfigError,
        r"contains a path separator",
        action="rulab.train(cfg with name='../x')",
        run=lambda ws: rulab.api.train(RunCfg(name="../x", out_dir=str(ws.tmp / "runs"))),
        kept=_nothing_outside,
    ),
    # ---- resume: never mix two configs in one run (issue 15 §1)
    Case(
        "resume-changed-config",
        "`rulab train --resume --optim.lr=0.5` on a run trained at 0.4",
        ConfigError,
        r"^run directory \S+runs/r was trained with another config \(optim\.lr 0\.4 -> 0\.5\); resume with the same settings, "
        r"or pass --allow-config-change",
        argv=_fit_args("--resume", "--optim.lr=0.5"),
        setup=_interrupted_run(),
    ),
    Case(
        "resume-two-keys-changed",
        "`--resume` with two keys changed",
        ConfigError,
        r"trained with another config \(optim\.lr 0\.4 -> 0\.5, train\.epochs 5 -> 7\)",
        argv=_fit_args("--resume", "--optim.lr=0.5", "--train.epochs=7"),
        setup=_interrupted_run(),
    ),
    Case(
        "resume-finished-changed-config",
        "`--resume` with another config on a finished run (used to print 'trained')",
        ConfigError,
        r"^run directory \S+runs/r holds a finished run trained with another config \(optim\.lr 0\.4 -> 0\.5\); --resume never trains "
        r"a finished run further, so the new config would not be used; choose another --name",
        argv=_fit_args("--resume", "--optim.lr=0.5"),
        setup=lambda ws: ws.remember(_save_run(ws.tmp / "runs" / "r", config=to_dict(_run_cfg(ws)))),
    ),
    Case(
        "allow-config-change-without-resume",
        "--allow-config-change without --resume",
        ConfigError,
        r"^--allow-config-change changes the config of a run being resumed; use it together with --resume$",
        argv=_fit_args("--allow-config-change"),
    ),
    Case(
        "resume-unreadable-recorded-config",
        "`--resume` of a state without a record whose config.yaml is garbage",
        ConfigError,
        r"^cannot tell which config run directory \S+ was trained with: \S+config\.yaml cannot be read \(.*\); pass --allow-config-change",
        argv=_fit_args("--resume"),
        setup=lambda ws: (
            save_train_state(ws.tmp / "runs" / "r", 4, MODELS.create("fastcnn", num_classes=10), {}),
            (ws.tmp / "runs" / "r" / "config.yaml").write_bytes(b"\xff\xfe: [unclosed"),
        ),
    ),
    # ---- one writer per run directory (issue 15 §1; two real processes: tests/train/test_run_integrity.py)
    Case(
        "run-dir-in-use",
        "`rulab train` on a run directory whose lock a live process holds",
        RulabError,
        r"^the run directory \S+runs/r is in use by process \d+ on host \S+ \(started [\d: -]+\); wait for it to finish, or stop it, "
        r"or choose another --name or --out$",
        argv=_fit_args(),
        setup=_lock_held_by(None),
    ),
    Case(
        "run-dir-in-use-other-host",
        "a lock of another host refreshed a moment ago",
        RulabError,
        r"is in use by process 4242 on host another-host",
        action="RunLock(run_dir).acquire()",
        run=_take_lock,
        setup=_lock_held_by(4242, "another-host"),
    ),
    Case(
        "lock-of-dead-process",
        "a lock left by a killed process on this host",
        None,
        r"^took over the stale lock of \S+runs/r: process \d+ on host \S+ \(started .*\) no longer exists; this process owns it now$",
        action="RunLock(run_dir).acquire()",
        run=_take_lock,
        setup=lambda ws: _lock_held_by(_dead_pid())(ws),
        kept=_lock_released,
    ),
    Case(
        "lock-of-silent-host",
        "a lock of another host silent for 1000 s",
        None,
        r"took over the stale lock of \S+: process 4242 on host another-host \(started .*\) has not refreshed it for 1\d\d\d s",
        action="RunLock(run_dir).acquire()",
        run=_take_lock,
        setup=_lock_held_by(4242, "another-host", age=1000),
        kept=_lock_released,
    ),
    Case(
        "lock-file-garbage",
        "a lock file holding garbage for 60 s (a kill while it was created)",
        None,
        r"took over the stale lock of \S+: the lock file is unreadable and \d+ s old",
        action="RunLock(run_dir).acquire()",
        run=_take_lock,
        setup=_lock_held_by(1, age=60, text="\x00garbage"),
        kept=_lock_released,
    ),
    # ---- checkpoints and run state (issue 15 §2)
    Case(
        "meta-not-json",
        "checkpoint metadata that is not JSON",
        CheckpointError,
        r"^the rulab metadata of \S+model\.safetensors is not JSON \(damaged or written by another tool\); re-create the checkpoint",
        argv=("eval", "{tmp}/run"),
        setup=_meta_checkpoint("{not json"),
    ),
    Case(
        "meta-without-model",
        "checkpoint metadata without 'model'",
        CheckpointError,
        r"^the rulab metadata of \S+model\.safetensors does not name its model \(no 'model' entry\); re-create the checkpoint",
        action="load_model(run)",
        run=lambda ws: load_model(ws.tmp / "run"),
        setup=_meta_checkpoint('{"model_kwargs": {"num_classes": 10}}'),
    ),
    Case(
        "meta-negative-classes",
        "checkpoint metadata with num_classes = -3",
        CheckpointError,
        r"has model_kwargs\.num_classes = -3, not a positive integer; re-create the checkpoint",
        argv=("eval", "{tmp}/run"),
        setup=_meta_checkpoint('{"model": "fastcnn", "model_kwargs": {"num_classes": -3}}'),
    ),
    Case(
        "meta-a-list",
        "checkpoint metadata that is a JSON list",
        CheckpointError,
        r"the rulab metadata of \S+ is a JSON list, not an object",
        action="read_meta(run)",
        run=lambda ws: read_meta(ws.tmp / "run"),
        setup=_meta_checkpoint("[1, 2]"),
    ),
    Case(
        "meta-classes-not-names",
        "checkpoint metadata whose classes is a number",
        CheckpointError,
        r"has 'classes' that is not a list of names",
        action="read_meta(run)",
        run=lambda ws: read_meta(ws.tmp / "run"),
        setup=_meta_checkpoint('{"model": "fastcnn", "model_kwargs": {}, "classes": 10}'),
    ),
    Case(
        "latest-not-utf8",
        "a LATEST of bytes that are not UTF-8",
        CheckpointError,
        r"^the resume pointer \S+LATEST is not UTF-8 text \(damaged\); delete it to start the run over$",
        argv=_fit_args("--resume"),
        setup=_with_latest(b"\xff\xfe\x00step"),
    ),
    Case(
        "latest-a-directory",
        "a directory where LATEST belongs",
        CheckpointError,
        r"^the resume pointer \S+LATEST is not a file \(a directory or another kind of entry\); remove it to start the run over$",
        action="load_train_state(run, model)",
        run=lambda ws: load_train_state(ws.tmp / "runs" / "r", MODELS.create("fastcnn", num_classes=10)),
        setup=_with_latest(None),
    ),
    Case(
        "latest-escapes-the-run",
        "a LATEST pointing into another run (../../other/checkpoints/step-N)",
        CheckpointError,
        r"^the resume pointer \S+LATEST names '\.\./\.\./other/checkpoints/step-00000004', which is not an entry of \S+, so the run "
        r"would resume from a state that is not its own; delete \S+LATEST to start the run over$",
        argv=_fit_args("--resume"),
        setup=_escaping_latest,
    ),
    Case(
        "latest-empty",
        "an empty LATEST",
        CheckpointError,
        r"names '', which is not an entry of",
        action="load_train_state(run, model)",
        run=lambda ws: load_train_state(ws.tmp / "runs" / "r", MODELS.create("fastcnn", num_classes=10)),
        setup=_with_latest(b""),
    ),
    Case(
        "state-json-without-step",
        "a state.json without 'step'",
        CheckpointError,
        r"state\.json holds no valid 'step' \(the number of steps taken\); delete \S+LATEST to start the run over$",
        argv=_fit_args("--resume"),
        setup=_with_state_json(b'{"state": {}}'),
    ),
    Case(
        "state-json-negative-step",
        "a state.json with step -1",
        CheckpointError,
        r"holds no valid 'step'",
        action="load_train_state(run, model)",
        run=lambda ws: load_train_state(ws.tmp / "runs" / "r", MODELS.create("fastcnn", num_classes=10)),
        setup=_with_state_json(b'{"step": -1, "state": {}}'),
    ),
    Case(
        "state-json-not-utf8",
        "a state.json of binary garbage",
        CheckpointError,
        r"state\.json is corrupt; delete \S+LATEST",
        action="load_train_state(run, model)",
        run=lambda ws: load_train_state(ws.tmp / "runs" / "r", MODELS.create("fastcnn", num_classes=10)),
        setup=_with_state_json(b"\x89PNG\r\n\x1a\n"),
    ),
    Case(
        "state-json-without-state",
        "a state.json holding only the step",
        CheckpointError,
        r"state\.json holds no training state; delete \S+LATEST",
        action="load_train_state(run, model)",
        run=lambda ws: load_train_state(ws.tmp / "runs" / "r", MODELS.create("fastcnn", num_classes=10)),
        setup=_with_state_json(b'{"step": 4}'),
    ),
    # ---- config values (issue 15 §2)
    Case(
        "yaml-preset-list",
        "a YAML `preset:` given as a list",
        ConfigError,
        r"^'preset' in \S+c\.yaml must be one preset name \(`rulab list presets`\), got \['fmnist-plain', 'fmnist-oe'\]; a config file names at most one preset$",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("preset: [fmnist-plain, fmnist-oe]\n"),
    ),
    Case(
        "yaml-preset-mapping",
        "a YAML `preset:` given as a mapping",
        ConfigError,
        r"must be one preset name",
        argv=("train", "--config", "{tmp}/c.yaml"),
        setup=_yaml("preset:\n  name: fmnist-plain\n"),
    ),
    Case(
        "device-cuda-x",
        "`--device=cuda:x`",
        ConfigError,
        r"^config key 'device' must be auto, cpu, cuda, cuda:N \(a GPU index such as cuda:1\) or mps, got 'cuda:x'$",
        argv=_fit_args("--device=cuda:x"),
    ),
    Case(
        "device-cuda-negative",
        "`--device=cuda:-1`",
        ConfigError,
        r"config key 'device' must be auto, cpu, cuda, cuda:N",
        argv=_fit_args("--device=cuda:-1"),
    ),
    Case(
        "device-cpu-index",
        "`--device=cpu:0:1`",
        ConfigError,
        r"config key 'device' must be auto",
        argv=_fit_args("--device=cpu:0:1"),
    ),
    Case(
        "lr-inf",
        "`--optim.lr=.inf` (YAML infinity)",
        ConfigError,
        r"^config key 'optim\.lr' must be a finite number, got inf$",
        argv=_fit_args("--optim.lr=.inf"),
    ),
    Case(
        "lr-nan",
        "`--optim.lr=.nan`",
        ConfigError,
        r"^config key 'optim\.lr' must be a finite number, got nan$",
        argv=_fit_args("--optim.lr=.nan"),
    ),
    Case(
        "lr-word-inf",
        "`--optim.lr=inf` (a word, not a number)",
        ConfigError,
        r"^config key 'optim\.lr' must be a number, got 'inf'$",
        argv=_fit_args("--optim.lr=inf"),
    ),
    Case(
        "lr-inf-in-dataclass",
        "RunCfg(optim=OptimCfg(lr=inf)) built directly",
        ConfigError,
        r"config key 'optim\.lr' must be a finite number",
        action="validate_run(RunCfg(optim=OptimCfg(lr=math.inf)))",
        run=lambda ws: validate_run(RunCfg(optim=OptimCfg(lr=float("inf")))),
    ),
    Case(
        "seed-beyond-64-bit",
        "`--seed` beyond 64 bits (used to end in OverflowError at the database write)",
        ConfigError,
        r"^config key 'seed' must fit in a signed 64-bit integer \(at most 2\*\*63 - 1\), got 1000000000000000000000$",
        argv=_fit_args("--seed", "1000000000000000000000"),
    ),
    Case(
        "seed-negative",
        "`--seed=-1`",
        ConfigError,
        r"^config key 'seed' must be an integer >= 0, got -1$",
        argv=_fit_args("--seed=-1"),
    ),
    Case(
        "epochs-beyond-64-bit",
        "`--train.epochs` beyond 64 bits",
        ConfigError,
        r"^config key 'train\.epochs' must fit in a signed 64-bit integer",
        argv=_fit_args("--train.epochs=99999999999999999999999"),
    ),
    Case(
        "epochs-a-list",
        "`--train.epochs=[1,2]`",
        ConfigError,
        r"^config key 'train\.epochs' must be an integer, got \[1, 2\]$",
        argv=_fit_args("--train.epochs=[1,2]"),
    ),
    Case(
        "study-seeds-empty",
        "`rulab study --seeds ''` (used to run the study's own seeds silently)",
        ConfigError,
        r"^--seeds is empty; give comma-separated seeds such as 0,1,2, or leave the flag out for the study's own$",
        argv=("study", "fmnist-default", "--seeds", "", "--out", "{tmp}/runs"),
        kept=_absent("runs", "the study started"),
    ),
    Case(
        "study-seeds-beyond-64-bit",
        "`rulab study --seeds 0,2**70`",
        ConfigError,
        r"^--seeds entry must fit in a signed 64-bit integer",
        argv=("study", "fmnist-default", "--seeds", "0,1180591620717411303424", "--out", "{tmp}/runs"),
        kept=_absent("runs", "the study started"),
    ),
    Case(
        "study-seeds-word",
        "`rulab study --seeds 0,one`",
        ConfigError,
        r"^--seeds must be comma-separated integers such as 0,1,2, got '0,one'$",
        argv=("study", "fmnist-default", "--seeds", "0,one", "--out", "{tmp}/runs"),
    ),
    Case(
        "study-seeds-twice",
        "`rulab study --seeds 1,1`",
        ConfigError,
        r"^--seeds lists a seed twice \('1,1'\); give each seed once$",
        argv=("study", "fmnist-default", "--seeds", "1,1", "--out", "{tmp}/runs"),
    ),
    Case(
        "study-api-seeds-empty",
        "rulab.api.study(..., seeds=[])",
        ConfigError,
        r"^no seeds given for study 'fmnist-default'; pass seeds like --seeds 0,1, or none to run the study's own$",
        action="rulab.api.study('fmnist-default', seeds=[])",
        run=lambda ws: rulab.api.study("fmnist-default", seeds=[], out_dir=str(ws.tmp / "runs")),
        kept=_absent("runs", "the study started"),
    ),
    Case(
        "calibration-n-bins-zero",
        "calibration_error(n_bins=0) (used to return a number)",
        InputError,
        r"^n_bins must be a positive integer, got 0$",
        action="calibration_error(conf, correct, n_bins=0)",
        run=lambda ws: calibration_error(torch.rand(10), torch.ones(10), n_bins=0),
    ),
    Case(
        "calibration-bin-size-zero",
        "calibration_error(binning='uniform', bin_size=0)",
        InputError,
        r"^bin_size must be a positive integer, got 0$",
        action="calibration_error(conf, correct, binning='uniform', bin_size=0)",
        run=lambda ws: calibration_error(torch.rand(10), torch.ones(10), binning="uniform", bin_size=0),
    ),
    Case(
        "calibration-n-bins-fraction",
        "calibration_error(n_bins=2.5)",
        InputError,
        r"^n_bins must be a positive integer, got 2\.5$",
        action="calibration_error(conf, correct, 'l1', 'uniform', n_bins=2.5)",
        run=lambda ws: calibration_error(torch.rand(10), torch.ones(10), "l1", "uniform", n_bins=2.5),
    ),
    # ---- the results database (issue 15 §2)
    Case(
        "db-value-not-a-number",
        "a result whose value cell holds text (written by another tool)",
        None,
        r"r\.db: skipped 1 malformed row\(s\) \(first: result row \d+ of the query \(run 'before-\w+', metric 'acc'\): value 'abc' is not a number\); "
        r"rulab never writes such rows, so repair or delete them",
        action="ResultStore(db, read_only=True).results()",
        run=_read_results,
        setup=_sql("r.db", "UPDATE results SET value = 'abc' WHERE metric = 'acc'"),
        kept=_records_are({"ece": 0.9}),
    ),
    Case(
        "db-extra-json-broken",
        "a result whose extra_json is not JSON",
        None,
        r"skipped 1 malformed row\(s\) .*extra_json is not valid JSON",
        action="ResultStore(db, read_only=True).results()",
        run=_read_results,
        setup=_sql("r.db", "UPDATE results SET extra_json = '{broken' WHERE metric = 'ece'"),
        kept=_records_are({"acc": 0.9}),
    ),
    Case(
        "db-n-not-integer",
        "a result whose n cell holds text",
        None,
        r"skipped 1 malformed row\(s\) .*n 'many' is not an integer",
        action="ResultStore(db, read_only=True).results()",
        run=_read_results,
        setup=_sql("r.db", "UPDATE results SET n = 'many' WHERE metric = 'ece'"),
        kept=_records_are({"acc": 0.9}),
    ),
    Case(
        "db-config-json-broken",
        "a run whose config_json is malformed (used to break `rulab report`)",
        None,
        r"r\.db: read 1 run field\(s\) that are not JSON objects as empty \(first: run 'before-\w+': config_json is not valid JSON\)",
        action="ResultStore(db, read_only=True).runs()",
        run=_read_results,
        setup=_sql("r.db", "UPDATE runs SET config_json = '{\"optim\": '"),
        kept=_records_are({"acc": 0.9, "ece": 0.9}),
    ),
    Case(
        "db-config-json-a-list",
        "a run whose config_json is a JSON list",
        None,
        r"config_json is a JSON list, not an object",
        action="ResultStore(db, read_only=True).runs()",
        run=_read_results,
        setup=_sql("r.db", "UPDATE runs SET config_json = '[1]'"),
    ),
    Case(
        "db-curve-value-blob",
        "a curve point whose value is a blob",
        None,
        r"skipped 1 malformed row\(s\) \(first: curve row 1 .*value b'\\x00\\x01' is not a number",
        action="ResultStore(db, read_only=True).curves()",
        run=_read_results,
        setup=_sql(
            "r.db",
            "INSERT INTO curves (run_id, epoch, split, metric, value) SELECT run_id, 1, 'train', 'loss', x'0001' FROM runs",
        ),
    ),
    Case(
        "db-read-only-directory",
        "reading a results database whose directory cannot be written (simulated: mode=ro cannot open the WAL index)",
        None,
        "",
        action="ResultStore(db, read_only=True).results() with mode=ro connections failing",
        run=_read_results,
        setup=_all(lambda ws: _db_with_rows(ws), _connect_fails("unable to open database file", ro_only=True)),
        kept=_records_are({"acc": 0.9, "ece": 0.9}),
    ),
    Case(
        "db-cannot-open-for-writing",
        "a writer on a database it cannot open (read-only file system; simulated)",
        StoreError,
        r"^cannot open the results database \S+r\.db for writing \(its directory is read-only, not writable by you, or missing\); make it "
        r"writable or pass another --db \(nothing in it was changed\)$",
        action="ResultStore(db) with connections failing",
        run=lambda ws: ResultStore(ws.tmp / "r.db"),
        setup=_all(lambda ws: _db_with_rows(ws), _connect_fails("unable to open database file")),
    ),
    Case(
        "db-disk-io-error",
        "a writer meeting a disk I/O error (never called 'not a rulab database')",
        StoreError,
        r"^a disk I/O error \(disk I/O error\) stopped the use of the results database \S+r\.db \(a full disk or a read-only file system\?\); check",
        action="ResultStore(db) with a disk I/O error",
        run=lambda ws: ResultStore(ws.tmp / "r.db"),
        setup=_all(lambda ws: _db_with_rows(ws), _connect_fails("disk I/O error")),
    ),
    Case(
        "db-foreign-sqlite",
        "`rulab results` on a SQLite file of another program",
        StoreError,
        r"^\S+other\.db is a SQLite file without rulab results \(no rulab schema\); pass the --db that `rulab study` or `rulab eval --db` wrote$",
        argv=("results", "--db", "{tmp}/other.db"),
        setup=lambda ws: (
            sqlite3.connect(ws.tmp / "other.db").execute("CREATE TABLE notes (t TEXT)").connection.commit()
        ),
    ),
    Case(
        "db-write-text-value",
        "storing a result whose value is text",
        StoreError,
        r"^cannot store the value of metric 'acc' 'high': it is not a number; .*nothing was written$",
        action="store.write_results(run, [Row('id', 'acc', 'high')])",
        run=lambda ws: ResultStore(ws.tmp / "r.db").write_results(ws.state["run_id"], [Row("id", "acc", "high")]),  # type: ignore[arg-type]
        setup=lambda ws: _db_with_rows(ws),
        kept=_rows_kept(),
    ),
    Case(
        "db-write-huge-count",
        "storing a result with n = 2**70",
        StoreError,
        r"^cannot store the count n 1180591620717411303424: it must be an integer that fits in 64 bits$",
        action="store.write_results(run, [Row(..., n=2**70)])",
        run=lambda ws: ResultStore(ws.tmp / "r.db").write_results(ws.state["run_id"], [Row("id", "nll", 0.1, n=2**70)]),
        setup=lambda ws: _db_with_rows(ws),
        kept=_rows_kept(),
    ),
    Case(
        "db-write-huge-seed",
        "a run row with seed 2**70 (used to end in OverflowError)",
        StoreError,
        r"^cannot store the seed 1180591620717411303424",
        action="store.start_run({'name': 'x', 'seed': 2**70})",
        run=lambda ws: ResultStore(ws.tmp / "r.db").start_run({"name": "x", "seed": 2**70}),
        setup=lambda ws: _db_with_rows(ws),
        kept=_rows_kept(),
    ),
    Case(
        "eval-bad-db-before-work",
        "`rulab eval --db bad.db` (used to fail only after the whole evaluation)",
        StoreError,
        r"bad\.db is not a readable rulab results database \(file is not a database\); move it aside",
        argv=("eval", "{tmp}/run", "--db", "{tmp}/bad.db", "--detectors", "msp", "--shift", "", "--no-farconf"),
        setup=_all(
            lambda ws: ws.remember(_save_run(ws.tmp / "run")),
            _file("bad.db", b"SQLite format 3\x00" + bytes(range(256)) * 16),
        ),
        kept=_no_eval_output,
    ),
    Case(
        "eval-report-unwritable",
        "`rulab eval --report` into a directory that is a file (checked before the work)",
        RulabError,
        r"^cannot write \S+afile: .*; check the path and try again$",
        argv=("eval", "{tmp}/run", "--report", "{tmp}/afile/report.html"),
        setup=_all(lambda ws: ws.remember(_save_run(ws.tmp / "run")), _file("afile", b"a file, not a directory\n")),
        kept=_no_eval_output,
    ),
    # ---- the Python API with ordinary models and data (issue 15 §2)
    Case(
        "api-model-returns-tuple",
        "a model returning (logits, features)",
        InputError,
        r"^the model returns a tuple of 2 items, not a logits tensor \[B, K\]; wrap it so that forward returns only the logits",
        action="rulab.evaluate(tuple-returning model, ...)",
        run=_api(_Outputs(lambda z: (z, z))),
    ),
    Case(
        "api-model-returns-dict",
        "a model returning {'logits': ...}",
        InputError,
        r"^the model returns a dict \(keys \['logits'\]\), not a logits tensor",
        action="rulab.evaluate(dict-returning model, ...)",
        run=_api(_Outputs(lambda z: {"logits": z})),
    ),
    Case(
        "api-model-one-logit",
        "a model with one output (a binary classifier with a sigmoid head)",
        InputError,
        r"^the model returns 1 logit\(s\) per image; a classifier needs at least two classes",
        action="rulab.evaluate(model [B, 1], ...)",
        run=_api(_Outputs(lambda z: z[:, :1])),
    ),
    Case(
        "api-model-3d-output",
        "a model returning [B, 1, K]",
        InputError,
        r"maps one image to an output of shape \(1, 1, 2\), not logits \[1, K\]",
        action="rulab.evaluate(model [B, 1, K], ...)",
        run=_api(_Outputs(lambda z: z[:, None])),
    ),
    Case(
        "api-model-float64",
        "a float64 model",
        InputError,
        r"^the model's parameters are float64, but rulab evaluates in float32; pass a float32 copy \(copy\.deepcopy\(model\)\.float\(\)\)$",
        action="rulab.evaluate(model.double(), ...)",
        run=lambda ws: _api(_copy(_toy_net(), torch.float64))(ws),
    ),
    Case(
        "api-model-bfloat16",
        "a bfloat16 model",
        InputError,
        r"^the model's parameters are bfloat16",
        action="rulab.evaluate(model.bfloat16(), ...)",
        run=lambda ws: _api(_copy(_toy_net(), torch.bfloat16))(ws),
    ),
    Case(
        "api-model-not-a-module",
        "a function instead of a module",
        InputError,
        r"^model must be a torch\.nn\.Module mapping images to logits, got function$",
        action="rulab.evaluate(lambda x: x, ...)",
        run=_api(lambda x: x),
    ),
    Case(
        "api-model-wrong-input-size",
        "an MLP built for 100 inputs given 8x8 images",
        InputError,
        r"^each input has 64 values \(shape \(1, 8, 8\)\) but the model takes 100; give inputs of the shape it was built for$",
        action="rulab.evaluate(Linear(100, 2), 8x8 images)",
        run=_api(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 2))),
    ),
    Case(
        "api-three-means-on-grey",
        "a 3-value mean with grey images",
        InputError,
        r"^mean has 3 values but the images have 1 channel\(s\); give one value per channel \(or one for all\)$",
        action="rulab.evaluate(..., mean=(0.5,)*3, std=(0.2,)*3)",
        run=_api(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)),
    ),
    Case(
        "api-two-stds-on-grey",
        "a 2-value std with grey images",
        InputError,
        r"^std has 2 values but the images have 1 channel",
        action="rulab.evaluate(..., mean=0.5, std=(0.2, 0.3))",
        run=_api(mean=0.5, std=(0.2, 0.3)),
    ),
    Case(
        "api-batch-size-zero",
        "batch_size=0 (used to end in ValueError from range())",
        ConfigError,
        r"^batch_size must be an integer >= 1, got 0$",
        action="rulab.evaluate(..., batch_size=0)",
        run=_api(batch_size=0),
    ),
    Case(
        "api-batch-size-fraction",
        "batch_size=2.5",
        ConfigError,
        r"^batch_size must be an integer, got 2\.5$",
        action="rulab.evaluate(..., batch_size=2.5)",
        run=_api(batch_size=2.5),
    ),
    Case(
        "api-n-ood-negative",
        "n_ood=-1",
        ConfigError,
        r"^n_ood must be an integer >= 0, got -1$",
        action="rulab.evaluate(..., n_ood=-1)",
        run=_api(n_ood=-1),
    ),
    Case(
        "api-seed-negative",
        "seed=-1",
        ConfigError,
        r"^seed must be an integer >= 0, got -1$",
        action="rulab.evaluate(..., seed=-1)",
        run=_api(seed=-1),
    ),
    Case(
        "api-ood-list-of-tensor",
        "ood=[tensor] (used to print a 55-line message)",
        InputError,
        r"^ood given as a list takes names of registered OOD sets \(`rulab list ood`\), got a Tensor of shape \(6, 1, 8, 8\); pass your own data as ood=\{'name': data\}$",
        action="rulab.evaluate(..., ood=[tensor])",
        run=_api(ood=[torch.rand(6, 1, 8, 8)]),
    ),
    Case(
        "api-ood-a-number",
        "ood=5",
        InputError,
        r"^ood must be a list of registered OOD set names or a dict \{'name': data\}, got 5$",
        action="rulab.evaluate(..., ood=5)",
        run=_api(ood=5),
    ),
    Case(
        "api-ood-key-not-text",
        "ood={1: data}",
        InputError,
        r"^the keys of ood name the sets and must be text, got 1$",
        action="rulab.evaluate(..., ood={1: data})",
        run=_api(ood={1: torch.rand(6, 1, 8, 8)}),
    ),
    Case(
        "api-ood-empty",
        "an empty OOD set (used to end in RuntimeError from min())",
        InputError,
        r"^'noise' holds no images; give at least one$",
        action="rulab.evaluate(..., ood={'noise': empty})",
        run=_api(ood={"noise": torch.rand(0, 1, 8, 8)}),
    ),
    Case(
        "api-id-empty",
        "an empty ID test set",
        InputError,
        r"^'id' holds no images; give at least one$",
        action="rulab.evaluate(..., id_test=(empty, empty))",
        run=_api(id_test=(torch.rand(0, 1, 8, 8), torch.zeros(0))),
    ),
    Case(
        "api-id-none",
        "id_test=None",
        InputError,
        r"^'id' holds a NoneType, not images; pass tensors, NumPy arrays or PIL images$",
        action="rulab.evaluate(..., id_test=None)",
        run=_api(id_test=None),
    ),
    Case(
        "api-id-nan",
        "NaN pixels in the ID test set",
        InputError,
        r"^'id' contains NaN or infinite values; replace them",
        action="rulab.evaluate(..., id_test=(NaN images, labels))",
        run=_api(id_test=(torch.full((4, 1, 8, 8), float("nan")), torch.arange(4) % 2)),
    ),
    Case(
        "api-protocol-not-text",
        "protocol=3",
        ConfigError,
        r"^protocol must be a name \(`rulab list protocols`\), got 3$",
        action="rulab.evaluate(..., protocol=3)",
        run=_api(protocol=3),
    ),
    Case(
        "predict-batch-size-zero",
        "predict(model, x, batch_size=0)",
        InputError,
        r"^batch_size must be a positive integer, got 0$",
        action="predict(model, x, batch_size=0)",
        run=lambda ws: predict(_toy_net(), torch.rand(4, 1, 8, 8), batch_size=0),
    ),
]


# ------------------------------------------------------------------------------------------------ the harness
def _says_what_to_do(message: str) -> bool:
    """A clause after ';' (``...; delete it and ...``), a rule the value must follow (``must be``, ``needs``) or an
    imperative sentence (``say which dataset ...``)."""
    return bool(re.search(r"; \S|\bmust\b|\bneeds?\b|^(say|give|choose|pass|run|set|use) ", message))


def _run_cli(ws: Ws, argv: list[str]) -> tuple[int, str, BaseException | None]:
    """``rulab.cli.main(argv)``: exit status, stderr and the RulabError behind an ``error:`` line."""
    caught: list[BaseException | None] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is sys.stderr:
            caught.append(sys.exc_info()[1])
        builtins.print(*args, **kwargs)

    ws.capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_module, "print", spy, raising=False)
        code = cli_module.main(argv)
    return code, ws.capsys.readouterr().err, caught[0] if caught else None


def _run_process(argv: list[str]) -> tuple[int, str]:
    src = str(Path(rulab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "RULAB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rulab", *argv], capture_output=True, text=True, timeout=120, env=env)
    return out.returncode, out.stderr


def _one_line(text: str) -> str:
    assert "\n" not in text.strip(), f"not one line: {text!r}"
    return text.strip()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ws: Ws) -> None:
    case.setup(ws)
    if case.argv:
        argv = [ws.path(a) for a in case.argv]
        if case.process:
            code, err = _run_process(argv)
            caught = None
        else:
            code, err, caught = _run_cli(ws, argv)
        assert code == 2, (case.input, err)
        assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, (
            f"stderr is not one error line: {err!r}"
        )
        assert "Traceback" not in err
        message = err[len("error: ") : -1]
        if not case.process:
            assert isinstance(caught, case.error), (
                f"expected {case.error.__name__}, got {type(caught).__name__}: {caught}"
            )
    elif case.error is None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert case.run is not None
            case.run(ws)
        texts = [str(w.message) for w in seen if issubclass(w.category, UserWarning)]
        if case.message:
            matching = [t for t in texts if re.search(case.message, t)]
            assert matching, f"no warning matching {case.message!r} in {texts}"
            message = _one_line(matching[0])
        else:
            assert texts == [], texts
            message = ""
    else:
        assert case.run is not None
        with pytest.raises(case.error) as info:
            case.run(ws)
        message = _one_line(str(info.value))
    if case.message:
        assert re.search(case.message, message), f"{message!r} does not match {case.message!r}"
        assert _says_what_to_do(message), f"the message does not say what to do: {message!r}"
    ws.check_unchanged()
    case.kept(ws)


def test_the_table_is_a_corpus():
    """At least 30 distinct cases, every expected error a RulabError subclass, every case with an input and an action."""
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    for c in CASES:
        assert c.input and (c.argv or (c.run is not None and c.action)), c.id
        assert c.error is None or issubclass(c.error, RulabError), c.id
        assert c.error is not None or c.run is not None, c.id  # recoveries are Python calls


# Cases whose test lives elsewhere: (file, test function) pairs, checked to still exist so the references stay true.
ELSEWHERE = {
    "a run killed (SIGKILL) at random points, then resumed bit-identically": (
        "train/test_resume_kill.py",
        "test_sigkill_at_random_points_then_resume_is_bit_identical",
    ),
    "a full disk during a training checkpoint keeps the previous one": (
        "train/test_resume_kill.py",
        "test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_resume_is_exact",
    ),
    "a read-only metrics file during training": (
        "train/test_resume_kill.py",
        "test_read_only_metrics_file_is_one_clear_error",
    ),
    "four concurrent writer processes on one results database": (
        "results/test_store.py",
        "test_four_concurrent_writer_processes",
    ),
    "archive members escaping the target directory": ("data/test_fetch.py", "test_extract_refuses_escaping_members"),
    "a pickled parent checkpoint given to `rulab train`": (
        "test_safe_files.py",
        "test_cli_refuses_a_pickled_parent_checkpoint_in_one_line",
    ),
    "a corrupt extraction cache is recomputed": (
        "eval/test_extract.py",
        "test_corrupt_or_truncated_cache_is_recomputed",
    ),
}


@pytest.mark.parametrize("what", sorted(ELSEWHERE))
def test_cases_covered_elsewhere_still_exist(what: str) -> None:
    rel, name = ELSEWHERE[what]
    assert re.search(rf"^def {name}\(", (TESTS / rel).read_text(encoding="utf-8"), re.M), (
        f"{what}: {rel}::{name} is gone"
    )


# ------------------------------------------------------------------------------------------------ beyond the table
def test_an_unexpected_exception_is_reported_as_a_bug(monkeypatch, capsys):
    """Only a RulabError is the user's mistake (exit 2, one line); anything else is rulab's bug: its traceback, a
    request to report it, exit status 1 (never disguised as an `error:` line)."""

    def broken(args: Any, overrides: Any) -> int:
        raise ZeroDivisionError("a bug")

    parser = cli_module.build_parser
    monkeypatch.setattr(cli_module, "build_parser", lambda: _with_func(parser(), "list", broken))
    assert cli_module.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and not err.startswith("error:")
    assert err.rstrip().splitlines()[-1].startswith("internal error in rulab") and "please report it" in err


def _with_func(parser: Any, command: str, func: Callable[..., int]) -> Any:
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices[command].set_defaults(func=func)
    return parser


@pytest.mark.parametrize(
    ("command", "advice", "never"),
    [
        ("train", "run the same command with --resume to continue from the last checkpoint", ""),
        ("eval", "run the same command again (the network outputs computed so far are cached)", "--resume"),
        (
            "study",
            "run the same command again to continue (finished runs are kept, an interrupted one resumes)",
            "--resume",
        ),
        ("list", "interrupted", "--resume"),
    ],
)
def test_ctrl_c_says_how_to_continue_that_command(command, advice, never, monkeypatch, capsys):
    """Ctrl-C exits 130 with one line; `rulab eval` used to advise --resume, which it rejects."""

    def interrupted(args: Any, overrides: Any) -> int:
        raise KeyboardInterrupt

    parser = cli_module.build_parser
    monkeypatch.setattr(cli_module, "build_parser", lambda: _with_func(parser(), command, interrupted))
    argv = {"train": ["train"], "eval": ["eval", "run"], "study": ["study", "s"], "list": ["list"]}[command]
    assert cli_module.main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and advice in err and (not never or never not in err)


def test_the_temp_files_a_kill_leaves_are_removed_and_nothing_else(tmp_path):
    from rulab.io import atomic_write_json, remove_stale_temps

    d = tmp_path / "run"
    d.mkdir()
    ours = [d / ".env.json.k1ll3d42.tmp", d / ".metrics.jsonl.a_b_c_d_.tmp", d / ".run.lock.0123456789abcdef.tmp"]
    theirs = [d / "notes.tmp", d / ".hidden", d / ".env.json.tmp", d / "env.json"]
    for p in ours + theirs:
        p.write_text("x")
    sub = d / ".x.abcdefgh.tmp"  # a directory is never removed (training states are cleaned by save_train_state)
    sub.mkdir()
    atomic_write_json(d / "meta.json", {"ok": 1})  # an atomic write leaves nothing behind
    assert sorted(remove_stale_temps(d, older_than=3600)) == []  # all fresh: another writer may still be renaming them
    assert sorted(remove_stale_temps(d)) == sorted(ours)
    assert all(p.exists() for p in theirs) and sub.is_dir() and (d / "meta.json").exists()


def test_a_resumed_run_refuses_a_state_its_optimizer_cannot_take(tmp_path):
    """A training state whose optimizer state does not fit (here: none at all) is a CheckpointError naming the run, and
    the temp files an earlier kill left in the run directory are gone (removed under the run's lock, before loading)."""
    cfg = load_config(
        "fmnist-plain",
        overrides=[
            "eval.detectors=[]",
            "device=cpu",
            "name=r",
            f"out_dir={tmp_path}",
            "train.max_steps=1",
            "data.train_subset=64",
            "data.val_size=32",
            "train.batch_size=32",
            "train.deterministic=false",
        ],
    )
    run = tmp_path / "r"
    save_train_state(
        run,
        1,
        MODELS.create("fastcnn", num_classes=10),
        {"optimizer": {}, "extra": {}, "sums": {}, "history": []},
        record={"config": to_dict(cfg), "config_history": [{"step": 0, "config_hash": "x"}]},
    )
    left = [run / ".env.json.abcdefgh.tmp", run / "checkpoints" / ".LATEST.abcdefgh.tmp"]
    for p in left:
        p.write_text("{")
    with pytest.raises(
        CheckpointError,
        match=r"^the training state of \S+ at step 1 does not fit this run's optimizer or method \(.*\); "
        r"a resume cannot change them, so start a new run \(another --name\)$",
    ):
        rulab.api.train(cfg, resume=True, progress=False)
    assert not any(p.exists() for p in left) and not (run / "run.lock").exists()


def test_a_finished_run_resumed_says_it_was_already_trained(tmp_path, capsys):
    args = [
        "train",
        "fmnist-plain",
        "--name=r",
        f"--out={tmp_path}",
        "--device=cpu",
        "--eval.detectors=[]",
        "--train.max_steps=1",
        "--data.train_subset=64",
        "--data.val_size=32",
        "--train.batch_size=32",
        "--train.deterministic=false",
    ]
    assert cli_module.main(args) == 0
    assert cli_module.main([*args, "--resume"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert (
        out[0].startswith("trained r in ")
        and out[1] == f"r was already trained (nothing to resume) -> {tmp_path / 'r'}"
    )


def test_data_fetch_names_the_directory_the_files_are_in(tmp_path, monkeypatch, capsys):
    """With the system copy of Fashion-MNIST and an empty (or read-only) $RULAB_DATA, the path printed exists."""
    _need_fmnist()
    monkeypatch.setenv("RULAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    assert cli_module.main(["data", "fetch", "fashion_mnist"]) == 0
    where = Path(capsys.readouterr().out.strip().split(" -> ")[-1])
    assert where.is_dir() and (where / T10K_IMAGES).is_file()


def test_a_linear_first_model_is_evaluated_without_training_data():
    """An MLP (nn.Linear first) with only id_test and registered OOD sets: used to end in IndexError (an empty
    training split indexed in the input check); MSP needs no training data."""
    g = torch.Generator().manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    table = rulab.evaluate(
        mlp, id_test=(torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 2), ood=["gaussian"], detectors=["msp"]
    )
    assert {r.detector for r in table if r.kind == "ood"} == {"msp"}
    predict(mlp, torch.rand(0, 1, 8, 8))  # the input check of an empty split no longer indexes its first image


def test_a_table_of_at_least_100_cases():
    assert len(CASES) >= 100, len(CASES)
