"""The bottom validation layer: names, paths, numbers and devices, checked where they enter rulab.

Every function here takes a value a user gave (a run name, an output directory, a number from a config file or the
command line, a device string) and either returns it, checked, or raises a :class:`~rulab.errors.RulabError`
subclass with one sentence that names the value and says what to give instead. Configs
(:func:`rulab.config.validate_values`), the command line and the file layout of a run
(:func:`rulab.train.loop.run_dir_of`, :func:`rulab.checkpoint.load_train_state`) call them, so each rule is written
once. Tensors and models are checked where an evaluation starts (:mod:`rulab.eval.inputs`), stored database rows
where they are read (:mod:`rulab.results.rows`).

The rules:

* a **name** that becomes a directory or file name (a run name) is non-empty text of at most
  :data:`MAX_NAME_LENGTH` characters (and 200 UTF-8 bytes, within every file system's 255-byte limit once rulab's
  suffixes are added), printable (no NUL, newline or other control character), without a path separator, not
  ``.`` or ``..`` and not starting with ``.`` (rulab's own temporary files start with a dot);
* a **run directory** is ``<out_dir>/<name>`` with a checked name, so it always lies directly inside ``out_dir``
  (:func:`run_path`); a name read back from a file (a checkpoint's ``LATEST``) must match its fixed pattern
  (:func:`child_path`);
* a **number** in a config is finite (no NaN or infinity); an integer fits in a signed 64-bit integer (what SQLite
  stores); a seed lies in ``[0, 2**63 - 1]``;
* a **device** is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (N a GPU index) or ``mps``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

from rulab.errors import ConfigError

__all__ = [
    "MAX_NAME_LENGTH",
    "INT64_MIN",
    "INT64_MAX",
    "brief",
    "quoted",
    "check_name",
    "check_text",
    "run_path",
    "child_path",
    "check_number",
    "check_int",
    "check_seed",
    "parse_seeds",
    "check_device",
]

MAX_NAME_LENGTH = 100
"""Characters a run name may have (the run id adds ``-<12-character hash>``, file names stay far below 255 bytes)."""
_MAX_NAME_BYTES = 200
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,4}|mps)$")


def brief(value: Any, limit: int = 60) -> str:
    """A short one-line description of ``value`` for an error message: its ``repr`` cut to ``limit`` characters, or
    the type and shape of an array (a tensor's ``repr`` alone can fill a screen)."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (str, bytes)):
        try:
            return f"a {type(value).__name__} of shape {tuple(shape)}"
        except TypeError:
            pass
    text = repr(value)
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted(text: Any, limit: int = 60) -> str:
    """``'text'`` for printable text of at most ``limit`` characters, else :func:`brief` (escapes, cut): user text
    shown inside a one-line message stays on one line."""
    if isinstance(text, str) and text.isprintable() and len(text) <= limit:
        return f"'{text}'"
    return brief(text, limit)


def check_text(key: str, value: str) -> str:
    """``value`` if it is printable text (no NUL byte, newline or other control character); else a ConfigError."""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be text, got {brief(value)}")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise ConfigError(f"{key} holds the control character {bad!r} ({brief(value)}); use printable characters only")
    return value


def check_name(name: Any, what: str = "run name") -> str:
    """A name that becomes one directory or file name (see the module docstring for the rules).

    Raises:
        ConfigError: naming the rule ``name`` breaks and what a valid name looks like.
    """
    hint = "use letters, digits, '-', '_' and '.', e.g. fmnist-plain-s0"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"the {what} is empty; {hint}")
    check_text(f"the {what}", name)
    if len(name) > MAX_NAME_LENGTH or len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ConfigError(
            f"the {what} {brief(name, 40)} has {len(name)} characters, more than the limit of {MAX_NAME_LENGTH}; choose a shorter one"
        )
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in name for s in seps):
        raise ConfigError(
            f"the {what} '{name}' contains a path separator, so it would point outside the output directory; {hint} (choose the directory with --out)"
        )
    if name in (".", ".."):
        raise ConfigError(f"the {what} '{name}' names a directory, not a run; {hint}")
    if name.startswith("."):
        raise ConfigError(f"the {what} '{name}' starts with '.', which marks rulab's temporary files; {hint}")
    if name != name.strip():
        raise ConfigError(f"the {what} '{name}' starts or ends with a space; {hint}")
    return name


def run_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """``<out_dir>/<name>``, the directory of a run, with ``name`` checked (:func:`check_name`).

    The checked name is one path component, so the result lies directly inside ``out_dir`` (a run directory the
    user made a symbolic link is followed; that is their choice, not an escape).

    Raises:
        ConfigError: a bad name or an ``out_dir`` that is not printable text.
    """
    out = check_text("the output directory (out_dir)", os.fspath(out_dir))
    path = Path(out) / check_name(name)
    if path.parent != Path(out):  # cannot happen for a checked name; kept as the invariant the layout relies on
        raise ConfigError(f"the run directory {path} does not lie inside {out}; choose another name")
    return path


def child_path(root: Path, name: str, pattern: str, what: str) -> Path:
    """``root / name`` for a ``name`` read from a file, which must match ``pattern`` (a regular expression).

    A pointer file such as a checkpoint's ``LATEST`` holds a name written by rulab; one that does not match (a path
    like ``../../other/checkpoints/step-00000012``) is refused instead of being followed.

    Raises:
        ConfigError: ``name`` does not match ``pattern``; the caller turns it into its own error type.
    """
    if not re.fullmatch(pattern, name):
        raise ConfigError(f"{what} names {brief(name)}, which is not an entry of {root}")
    return root / name


def check_number(key: str, value: Any) -> float:
    """``value`` as a finite float (ints accepted); NaN, infinity, bools and text are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {brief(value)}")
    try:
        f = float(value)
    except OverflowError:
        raise ConfigError(f"{key} is too large to be a number ({brief(value)}); give a value below 1e308") from None
    if not math.isfinite(f):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    return f


def check_int(key: str, value: Any, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """``value`` as an int in ``[lo, hi]`` (default: the signed 64-bit range); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{key} must be an integer, got {brief(value)}")
    value = int(value)  # a NumPy integer too
    if not lo <= value <= hi:
        if hi == INT64_MAX and value >= lo:
            raise ConfigError(f"{key} must fit in a signed 64-bit integer (at most 2**63 - 1), got {brief(value, 40)}")
        bound = f">= {lo}" if hi == INT64_MAX else f"in [{lo}, {hi}]"
        raise ConfigError(f"{key} must be an integer {bound}, got {brief(value, 40)}")
    return value


def check_seed(key: str, value: Any) -> int:
    """A seed: an integer in ``[0, 2**63 - 1]`` (every generator and the results database take it)."""
    return check_int(key, value, 0, INT64_MAX)


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Comma-separated seeds (``"0,1,2"``) as a non-empty list of checked seeds; an empty text is an error, not
    "the default seeds"."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ConfigError(
            f"{flag} is empty; give comma-separated seeds such as 0,1,2, or leave the flag out for the study's own"
        )
    out = []
    for p in parts:
        if not p:
            raise ConfigError(f"{flag} {brief(text)} has an empty entry; give comma-separated seeds such as 0,1,2")
        if not re.fullmatch(r"[+-]?\d+", p):
            raise ConfigError(f"{flag} must be comma-separated integers such as 0,1,2, got {brief(text)}")
        out.append(check_seed(f"{flag} entry", int(p)))
    if len(set(out)) != len(out):
        raise ConfigError(f"{flag} lists a seed twice ({brief(text)}); give each seed once")
    return out


def check_device(key: str, value: Any) -> str:
    """A device string: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise ConfigError(
            f"{key} must be auto, cpu, cuda, cuda:N (a GPU index such as cuda:1) or mps, got {brief(value)}"
        )
    return value
