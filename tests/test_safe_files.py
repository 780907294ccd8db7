"""Safe files: nothing rulab reads can run code.

* weights are safetensors only; a pickle (or a ``torch.save`` zip) where a checkpoint is expected is refused;
* the source tree never unpickles, ``eval``s or loads YAML unsafely: a static scan of ``src/rulab`` (AST, not
  grep, so comments and strings do not count) with one allow-listed exception, the array-only unpickler of
  CIFAR/ImageNet32 batches in ``rulab/data/formats.py``, which must refuse every other global;
* configs go through ``yaml.safe_load``: a ``!!python/object`` tag is a ConfigError and runs nothing.

Archive extraction outside the target directory is covered by tests/data/test_fetch.py.
"""

from __future__ import annotations

import ast
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import rulab
from rulab.checkpoint import load_model, read_meta, save_model
from rulab.cli import main
from rulab.data.formats import _SafeUnpickler, safe_unpickle
from rulab.errors import CheckpointError, ConfigError, DataError
from rulab.presets import load_config

SRC = Path(rulab.__file__).resolve().parent
# (file relative to src/rulab, module attribute) pairs allowed to touch the pickle module
PICKLE_ALLOWED = {("data/formats.py", "Unpickler"), ("data/formats.py", "UnpicklingError")}
UNSAFE_YAML = {
    "load",
    "load_all",
    "unsafe_load",
    "unsafe_load_all",
    "full_load",
    "full_load_all",
    "Loader",
    "UnsafeLoader",
    "FullLoader",
    "add_constructor",
}
UNSAFE_MODULES = {"marshal", "shelve", "dill", "joblib", "cloudpickle", "_pickle", "cPickle"}


def _sources() -> list[tuple[str, ast.Module]]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30  # the scan really sees the package
    return [(p.relative_to(SRC).as_posix(), ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for p in files]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _findings(sources: list[tuple[str, ast.Module]]) -> list[str]:
    bad = []
    for rel, tree in sources:
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in UNSAFE_MODULES or (top == "pickle" and rel != "data/formats.py"):
                        bad.append(f"{where} imports {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                mod = (node.module or "").split(".")[0]
                names = {a.name for a in node.names}
                if mod in UNSAFE_MODULES or mod == "pickle" or (mod == "yaml" and names & UNSAFE_YAML):
                    bad.append(f"{where} imports {names} from {node.module}")
                if mod == "torch" and "load" in names:
                    bad.append(f"{where} imports torch.load by name (call torch.load(..., weights_only=True))")
            elif isinstance(node, ast.Attribute):
                name = _dotted(node)
                if name.startswith("pickle.") and (rel, node.attr) not in PICKLE_ALLOWED:
                    bad.append(f"{where} uses {name}")
                if name.startswith("yaml.") and node.attr in UNSAFE_YAML:
                    bad.append(f"{where} uses {name}")
            elif isinstance(node, ast.Call):
                func = _dotted(node.func)
                kw = {k.arg: k.value for k in node.keywords}
                if func in ("eval", "exec", "compile", "__import__"):
                    bad.append(f"{where} calls builtin {func}()")
                if func == "torch.load" or func.endswith(".torch.load"):
                    w = kw.get("weights_only")
                    if not (isinstance(w, ast.Constant) and w.value is True):
                        bad.append(f"{where} calls torch.load without weights_only=True")
                if func.split(".")[-1] == "load" and func.split(".")[0] in ("np", "numpy"):
                    a = kw.get("allow_pickle")
                    if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                        bad.append(f"{where} calls {func} with allow_pickle")
    return bad


def test_source_tree_has_no_unsafe_loading():
    assert _findings(_sources()) == []


def test_the_scan_catches_each_unsafe_pattern():
    """The scanner itself: each forbidden construct in a fake file is reported, the safe forms are not."""
    unsafe = {
        "torch.load(f)": "weights_only",
        "torch.load(f, weights_only=False)": "weights_only",
        "import pickle\npickle.loads(b)": "pickle",
        "from pickle import loads": "pickle",
        "yaml.load(text, Loader=yaml.Loader)": "yaml.load",
        "yaml.unsafe_load(text)": "yaml.unsafe_load",
        "eval('1+1')": "eval",
        "exec('x=1')": "exec",
        "import marshal": "marshal",
        "np.load(f, allow_pickle=True)": "allow_pickle",
    }
    for code, what in unsafe.items():
        found = _findings([("models/fake.py", ast.parse(code))])
        assert len(found) >= 1 and what in " ".join(found), code
    safe = "torch.load(f, weights_only=True)\nyaml.safe_load(t)\nmodel.eval()\ntorch.compile(m)\nnp.load(f, allow_pickle=False)\nnp.load(f)"
    assert _findings([("models/fake.py", ast.parse(safe))]) == []


class _Payload:
    """A pickle that creates a file when unpickled by an unrestricted loader."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_array_unpickler_refuses_every_other_global(tmp_path):
    allowed = _SafeUnpickler._ALLOWED
    assert {m.split(".")[0] for m, _ in allowed} <= {"numpy", "_codecs", "builtins"}
    assert {n for m, n in allowed if m == "builtins"} == {"bytearray"}
    marker = tmp_path / "pwned"
    for payload in (_Payload(marker), {"data": _Payload(marker)}):
        blob = pickle.dumps(payload, protocol=2)
        with pytest.raises(DataError, match="not a plain data pickle"):
            safe_unpickle(blob, "evil_batch")
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker))).close()  # the payload is live: the plain loader runs it
    assert marker.exists()
    unpickler = _SafeUnpickler(io.BytesIO(b""))
    for name in (
        "os.system",
        "builtins.eval",
        "builtins.getattr",
        "subprocess.Popen",
        "torch._utils._rebuild_tensor_v2",
    ):
        module, attr = name.rsplit(".", 1)
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            unpickler.find_class(module, attr)
    # what it is for: CIFAR-style dicts of arrays (Python-2 pickles have bytes keys)
    batch = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [3, 5]}
    back = safe_unpickle(pickle.dumps(batch, protocol=2))
    assert np.array_equal(back[b"data"], batch[b"data"]) and back[b"labels"] == [3, 5]


def test_yaml_python_tags_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for tag in (
        f"!!python/object/apply:os.system ['touch {marker}']",
        "!!python/name:os.system",
        f"!!python/object/new:pathlib.Path ['{marker}']",
    ):
        cfg = tmp_path / "run.yaml"
        cfg.write_text(f"preset: fmnist-plain\nname: {tag}\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(path=cfg)
    # an override value is parsed with safe_load too: a tag stays text (or is refused), never runs
    try:
        c = load_config(
            "fmnist-plain", overrides=[f"name=!!python/object/apply:os.system ['touch {marker}']", "eval.detectors=[]"]
        )
        assert isinstance(c.name, str)
    except ConfigError:
        pass
    assert not marker.exists()


def _pickles(tmp_path: Path) -> dict[str, Path]:
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"fc.weight": torch.zeros(2, 2), "hook": _Payload(marker)}))
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"fc.weight": torch.zeros(2, 2)}, zipped)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(raw.read_bytes())
    return {"raw": raw, "zipped": zipped, "run": run}


def test_a_pickle_where_safetensors_is_expected_is_refused(tmp_path):
    for _what, path in _pickles(tmp_path).items():
        for fn in (read_meta, load_model):
            with pytest.raises(CheckpointError, match="not a safetensors file"):
                fn(path)
    assert not (tmp_path / "pwned").exists()
    good = save_model(
        tmp_path / "good" / "model.safetensors", torch.nn.Linear(2, 2), {"model": "x", "model_kwargs": {}}
    )
    assert read_meta(good)["model"] == "x"


def test_cli_refuses_a_pickled_parent_checkpoint_in_one_line(tmp_path, capsys):
    evil = _pickles(tmp_path)["raw"]
    code = main(
        [
            "train",
            "fmnist-plain",
            "--device=cpu",
            f"--train.init_from={evil}",
            "--data.train_subset=64",
            "--data.val_size=10",
            "--train.max_steps=1",
            "--eval.detectors=[]",
            f"--out={tmp_path / 'runs'}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "not a safetensors file" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_no_weights_are_written_in_pickle_formats():
    """Writers: ``torch.save`` / ``pickle.dump`` never appear in the package (weights go through safetensors)."""
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                assert _dotted(node.func) not in ("torch.save", "pickle.dump", "pickle.dumps"), f"{rel}:{node.lineno}"
