"""Stored rows read back (rulab.results.rows) and the database read read-only (issue 15 §2).

* Property-based (hypothesis): whatever another tool put into a cell (text, a blob, a huge integer, NULL, NaN,
  infinities), reading never raises: good rows come back exactly, malformed ones are skipped and counted in one
  warning. Whatever is handed to ``write_results`` is stored and read back exactly, or refused with a StoreError
  before anything is written.
* ``rulab results`` and ``rulab report`` on such a database exit 0 with one ``warning:`` line.
* A valid database on a read-only file system is read (``rulab results``, ``rulab report``), and a writer there is
  told the directory is read-only, not that the file is "not a readable rulab results database": with a real
  read-only bind mount where this machine allows one (``unshare -m``, as root), and as a non-root user with
  ``chmod``; the same fallback is also checked everywhere by simulating SQLite's refusal (tests/test_bad_inputs.py,
  ``db-read-only-directory``).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rulab
from rulab.config import RunCfg
from rulab.errors import RulabWarning, StoreError
from rulab.results.rows import MalformedRow, parse_json_object, parse_value
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable, Row

PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
SRC = str(Path(rulab.__file__).resolve().parents[1])
cells = st.one_of(
    st.none(),
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.sampled_from(["1.5", "nan", "", "inf", "{}", "[]"]),
)


@contextlib.contextmanager
def _db() -> Path:
    d = Path(tempfile.mkdtemp(prefix="rulab-rows-"))
    try:
        yield d / "r.db"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@PROPS
@given(st.lists(cells, min_size=1, max_size=6))
def test_any_value_cells_are_read_or_skipped_and_counted(values):
    with _db() as path:
        with ResultStore(path) as store:
            rid = store.start_run(RunCfg(name="x"))
            store.write_results(rid, ResultTable([Row("id", f"m{i}", 0.0) for i in range(len(values))]))
        con = sqlite3.connect(path)
        for i, v in enumerate(values):
            con.execute("UPDATE results SET value = ? WHERE metric = ?", (v, f"m{i}"))
        con.commit()
        stored = dict(con.execute("SELECT metric, value FROM results").fetchall())
        con.close()
        with warnings.catch_warnings(record=True) as seen, ResultStore(path, read_only=True) as store:
            warnings.simplefilter("always")
            got = {r["metric"]: r["value"] for r in store.results()}
            report = store.last_read
    good = {m: v for m, v in stored.items() if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
    assert set(got) == set(good)
    for m, v in good.items():
        assert (math.isnan(got[m]) and v is None) or got[m] == float(v)
    assert len(report.skipped) == len(stored) - len(good)
    rulab_warnings = [w for w in seen if issubclass(w.category, RulabWarning)]
    assert len(rulab_warnings) == (1 if report.skipped else 0)
    if rulab_warnings:
        text = str(rulab_warnings[0].message)
        assert "\n" not in text and f"skipped {len(report.skipped)} malformed row(s)" in text


@PROPS
@given(
    st.floats(),
    st.integers(0, 2**63 - 1),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.booleans()), max_size=3),
)
def test_numbers_written_are_read_back_exactly(value, n, extra):
    with _db() as path, ResultStore(path) as store:
        rid = store.start_run(RunCfg(name="x"))
        store.write_results(rid, [Row("ood", "auroc", value, "set", n=n, extra=extra)])
        (rec,) = store.results()
    assert (math.isnan(rec["value"]) and math.isnan(value)) or rec["value"] == value
    assert rec["n"] == n and rec["extra"] == extra


@PROPS
@given(
    st.one_of(
        st.text(max_size=6),
        st.binary(max_size=4),
        st.lists(st.integers(), max_size=2),
        st.integers(2**63, 2**70),
        st.complex_numbers(),
    )
)
def test_anything_else_is_refused_before_the_write(bad):
    with _db() as path, ResultStore(path) as store:
        rid = store.start_run(RunCfg(name="x"))
        store.write_results(rid, [Row("id", "acc", 0.5)])
        rows = (
            [Row("id", "nll", 0.1), Row("id", "ece", bad)]
            if not isinstance(bad, int)
            else [Row("id", "ece", 0.1, n=bad)]
        )
        with pytest.raises(StoreError, match="nothing was written|fits in 64 bits") as info:
            store.write_results(rid, rows)
        assert "\n" not in str(info.value)
        assert {r["metric"] for r in store.results()} == {"acc"}


@PROPS
@given(st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=5), st.integers(), st.floats()))
def test_json_columns_parse_to_an_object_or_one_reason(text):
    try:
        value = parse_json_object(text, "extra_json")
    except MalformedRow as err:
        assert "\n" not in str(err) and str(err).startswith("extra_json ")
    else:
        assert isinstance(value, dict)


def test_deeply_nested_json_is_a_malformed_row_not_a_recursion_error():
    with pytest.raises(MalformedRow, match="nested too deeply|not valid JSON"):
        parse_json_object("[" * 100_000, "config_json")
    assert parse_value(None) != parse_value(None)  # NULL is NaN, an undefined metric


# ------------------------------------------------------------------------------------------------ the commands
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "RULAB_OFFLINE": "1"}


def _two_rows(path: Path) -> None:
    with ResultStore(path) as store:
        rid = store.start_run(RunCfg(name="plain-s0", preset="fmnist-plain"), study="s")
        store.write_results(
            rid, ResultTable([Row("id", "acc", 0.9, "fashion_mnist"), Row("id", "ece", 0.05, "fashion_mnist")])
        )
        store.finish_run(rid)


def test_results_and_report_with_malformed_rows_exit_0_with_one_warning(tmp_path, capsys):
    from rulab.cli import main

    db = tmp_path / "r.db"
    _two_rows(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE results SET value = 'high' WHERE metric = 'acc'")
    con.execute("UPDATE runs SET config_json = '{broken'")
    con.commit()
    con.close()
    assert main(["results", "--db", str(db), "--metric", "acc,ece"]) == 0
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if line] == [err.strip()] and err.startswith("warning: ")
    assert "skipped 1 malformed row(s)" in err and "value 'high' is not a number" in err
    assert "5.00" in out and "90.00" not in out  # ece shown (in %), the malformed acc left out
    pytest.importorskip("matplotlib")
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "report.html")]) == 0
    out, err = capsys.readouterr()
    assert "warning: " in err and "config_json is not valid JSON" in err and "Traceback" not in err
    assert (tmp_path / "report.html").stat().st_size > 1000


def _can_mount_read_only(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    d = tmp_path / "probe"
    d.mkdir()
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount --bind {d} {d} && mount -o remount,bind,ro {d} && ! touch {d}/x 2>/dev/null",
        ],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


READER = """
import sys
from rulab.cli import main
from rulab.errors import StoreError
from rulab.results.store import ResultStore
db, out = sys.argv[1:]
assert main(["results", "--db", db]) == 0
assert main(["report", "--db", db, "--out", out]) == 0
try:
    ResultStore(db)  # a writer
except StoreError as err:
    print("writer:", err)
"""


def test_a_database_on_a_read_only_file_system_is_read(tmp_path):
    """A real read-only bind mount (root with mount namespaces, as on this project's machines); skipped elsewhere."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs root and `unshare -m` to bind-mount a directory read-only")
    pytest.importorskip("matplotlib")
    ro = tmp_path / "ro"
    ro.mkdir()
    _two_rows(ro / "r.db")
    assert not (ro / "r.db-wal").exists()  # closed cleanly: the rows are in the main file
    script = tmp_path / "reader.py"
    script.write_text(READER)
    cmd = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && {sys.executable} {script} {ro / 'r.db'} {tmp_path / 'report.html'}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "90.00" in proc.stdout and (tmp_path / "report.html").exists()
    assert (
        "writer: cannot open the results database" in proc.stdout and "move it aside" not in proc.stdout + proc.stderr
    )
    assert sorted(p.name for p in ro.iterdir()) == ["r.db"]  # nothing was created beside it


def test_a_database_in_a_directory_without_write_permission_is_read(tmp_path):
    """``chmod`` stops a non-root user only (root ignores it); the read-only mount above covers root."""
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; see test_a_database_on_a_read_only_file_system_is_read")
    d = tmp_path / "locked"
    d.mkdir()
    _two_rows(d / "r.db")
    d.chmod(0o555)
    try:
        with ResultStore(d / "r.db", read_only=True) as store:
            assert {r["metric"] for r in store.results()} == {"acc", "ece"}
        with pytest.raises(StoreError) as info:
            ResultStore(d / "r.db").write_results("plain-s0", [Row("id", "nll", 0.1)])
        assert "move it aside" not in str(info.value)
    finally:
        d.chmod(0o755)
