"""Reading stored rows back: every cell a results database returns is parsed here, and a malformed row is skipped,
counted and reported instead of ending the read in a traceback.

rulab itself never writes a malformed row (values are floats or NULL, JSON columns are JSON objects), but the
database is an open SQLite file that other tools, hand edits and older versions may have touched. A reader
(:meth:`rulab.results.store.ResultStore.results`, ``runs``, ``curves``) passes each raw row through
:func:`parse_result`, :func:`parse_run` or :func:`parse_curve` and collects the problems in a :class:`ReadReport`:

* a **result** or **curve point** whose ``value`` is not a number (text, a blob; SQLite stores whatever it is
  given), whose ``n`` is not an integer, or whose ``extra_json`` is not a JSON object is **skipped**: a table
  built from it would be wrong or fail later;
* a **run** whose ``config_json`` or ``dataset_checksums`` is not a JSON object is **kept** with that field read as
  empty (``{}``): its results are still its results, only the stored config is lost.

The report names the database, how many rows of each kind and the first such row (its rowid or run id), and is
given to the user as one :class:`rulab.errors.RulabWarning` line (``warning: ...`` on the command line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MalformedRow", "ReadReport", "parse_value", "parse_json_object", "parse_result", "parse_run", "parse_curve"]


class MalformedRow(ValueError):
    """A stored row that cannot be read; the message says which cell and why."""


def parse_value(v: Any, column: str = "value") -> float:
    """A stored metric value: a real number, ``NULL`` (→ NaN, an undefined metric) or SQLite's ±inf.

    Raises:
        MalformedRow: text, a blob or anything else.
    """
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
        raise MalformedRow(f"{column} {shown} is not a number")
    try:
        return float(v)
    except OverflowError:  # an INTEGER cell beyond float range cannot come from SQLite (64-bit), kept for safety
        raise MalformedRow(f"{column} {v} is out of range") from None


def parse_json_object(text: Any, column: str) -> dict[str, Any]:
    """A JSON-object column (``extra_json``, ``config_json``, ``dataset_checksums``); ``NULL``/``''`` → ``{}``.

    Raises:
        MalformedRow: not text, not JSON, or JSON that is not an object.
    """
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise MalformedRow(f"{column} is a {type(text).__name__}, not JSON text")
    try:
        value = json.loads(text)
    except ValueError:  # json.JSONDecodeError
        raise MalformedRow(f"{column} is not valid JSON") from None
    except RecursionError:
        raise MalformedRow(f"{column} is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise MalformedRow(f"{column} is a JSON {type(value).__name__}, not an object")
    return value


def _count(v: Any, column: str = "n") -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise MalformedRow(f"{column} {v!r} is not an integer" if len(repr(v)) <= 40 else f"{column} is not an integer")
    return v


def parse_result(raw: dict[str, Any]) -> dict[str, Any]:
    """A joined result record (``r.*`` and the run columns) with ``value`` a float and ``extra`` a dict (the raw
    ``extra_json`` removed); the text key columns are read as text.

    Raises:
        MalformedRow: a bad ``value``, ``n`` or ``extra_json``, or a key column that is not text.
    """
    r = dict(raw)
    r["value"] = parse_value(r.get("value"))
    r["n"] = _count(r.get("n"))
    r["extra"] = parse_json_object(r.pop("extra_json", None), "extra_json")
    # the interval columns (schema 2; a schema-1 file is read with NULL intervals)
    r["ci_low"] = parse_value(r.get("ci_low"), "ci_low")
    r["ci_high"] = parse_value(r.get("ci_high"), "ci_high")
    r["ci_method"] = r.get("ci_method") or ""
    for col in ("kind", "metric", "dataset", "shift", "severity", "detector", "ci_method"):
        v = r.get(col)
        if col in r and not isinstance(v, str):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                r[col] = str(v)  # a number in a TEXT column: what SQLite's type affinity would have stored as text
            else:
                raise MalformedRow(f"{col} is {type(v).__name__}, not text")
    return r


def parse_curve(raw: dict[str, Any]) -> dict[str, Any]:
    """A curve point with ``value`` a float and ``epoch`` an int.

    Raises:
        MalformedRow: a bad ``value`` or ``epoch``.
    """
    r = dict(raw)
    r["value"] = parse_value(r.get("value"))
    r["epoch"] = _count(r.get("epoch"), "epoch")
    return r


def parse_run(raw: dict[str, Any], report: ReadReport | None = None) -> dict[str, Any]:
    """A run row with ``config`` (the parsed ``config_json``) and ``dataset_checksums`` parsed; a field that is not
    a JSON object is read as ``{}`` and noted in ``report`` (the run is kept)."""
    r = dict(raw)
    for src, dst in (("config_json", "config"), ("dataset_checksums", "dataset_checksums")):
        try:
            r[dst] = parse_json_object(r.get(src), src)
        except MalformedRow as err:
            r[dst] = {}
            if report is not None:
                report.emptied.append(f"run '{r.get('run_id')}': {err}")
    return r


@dataclass
class ReadReport:
    """What one read skipped (``skipped``: rows left out) or emptied (``emptied``: run fields read as ``{}``)."""

    where: str
    skipped: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.skipped or self.emptied)

    def message(self) -> str:
        """One sentence for the user, or ``""`` when nothing was wrong."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} malformed row(s) (first: {self.skipped[0]})")
        if self.emptied:
            parts.append(
                f"read {len(self.emptied)} run field(s) that are not JSON objects as empty (first: {self.emptied[0]})"
            )
        if not parts:
            return ""
        return (
            f"{self.where}: "
            + " and ".join(parts)
            + "; rulab never writes such rows, so repair or delete them (or re-run the evaluation)"
        )
