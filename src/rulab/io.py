"""Safe file writes: every file rulab writes goes through a temp file in the same directory and ``os.replace``.

A reader therefore sees either the old file or the new one, never half of one, and a killed process leaves no
partial file under the final name. A full disk or a read-only directory raises :class:`rulab.errors.RulabError`
with a sentence that says which path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from rulab.errors import RulabError

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "atomic_path",
    "ensure_writable_dir",
    "explain_os_error",
    "remove_stale_temps",
]

_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8,}\.tmp$")
"""The names :func:`atomic_path` gives its temporary files: ``.<final name>.<random>.tmp``."""


def explain_os_error(err: OSError, path: Path) -> RulabError:
    """Turn an ``OSError`` met while writing ``path`` into a one-sentence :class:`RulabError`."""
    if err.errno == errno.ENOSPC:
        return RulabError(
            f"no space left on the device while writing {path}; free some disk space or choose another output directory"
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RulabError(f"cannot write {path} (read-only or no permission); choose a writable output directory")
    return RulabError(f"cannot write {path}: {err.strerror or err}; check the path and try again")


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) if needed and check that files can be created in it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".rulab-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise explain_os_error(err, p) from None
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    Use it for writers that insist on a filename (``safetensors.torch.save_file``, ``matplotlib.savefig``).
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        os.close(fd)
        mask = os.umask(0)  # mkstemp creates 0600; give the final file the usual umask-based mode
        os.umask(mask)
        os.chmod(tmp_name, 0o666 & ~mask)
    except OSError as err:
        raise explain_os_error(err, final) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise explain_os_error(err, final) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[Any]], None], mode: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            writer(fh)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return _atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_temps(directory: str | os.PathLike[str], older_than: float = 0.0) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` that a killed process left in ``directory`` (not below it).

    A process killed between creating its temp file and renaming it (SIGKILL, a power cut) leaves
    ``.<name>.<random>.tmp``; nothing else ever removes it. Call this where no other process can be writing
    (``older_than=0``, e.g. while holding the run directory's lock) or with an age in seconds beyond which no write
    is still in progress. Other files are never touched.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    d = Path(directory)
    try:
        entries = list(d.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not _TEMP_NAME.match(p.name):
            continue
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= older_than:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed
