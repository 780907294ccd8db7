"""One writer per run directory: the owner lock ``<run_dir>/run.lock``.

Two processes writing one run directory (two ``rulab train`` with the same ``--name`` and ``--out``) would
interleave ``metrics.jsonl`` and delete each other's checkpoints. The process that trains a run therefore holds
:class:`RunLock` on its directory for as long as it writes there; a second process refuses with one line that names
the holder.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local file systems and NFSv3+) and holds JSON:
``pid``, ``host``, ``token`` (random, tells two holders apart), ``started`` (Unix time), ``pid_start`` (the
process's start time from ``/proc`` where there is one, so a recycled PID is not mistaken for the holder) and
``command``. The holder refreshes the file's modification time every :data:`HEARTBEAT_S` seconds from a background
thread (the heartbeat).

A lock is **stale**, and is taken over with a warning, when

* its holder ran on this host and that process no longer exists (killed, crashed, the machine rebooted), or
* its holder ran on another host (a shared file system) and its heartbeat is older than :data:`STALE_AFTER_S`.

A live holder on this host is never taken over, however old its heartbeat (a process stopped with Ctrl-Z still
owns its run). Taking over is itself guarded (``run.lock.takeover``, created with ``O_EXCL``), so of two processes
that find the same stale lock exactly one takes it. Under ``torchrun`` only rank 0 holds the lock
(:func:`rulab.train.loop.fit`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulab.errors import RulabError, RulabWarning
from rulab.io import explain_os_error

__all__ = ["RunLock", "RunLockedError", "Holder", "LOCK_NAME", "HEARTBEAT_S", "STALE_AFTER_S", "pid_alive"]

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0
"""Seconds between two heartbeats of the holder."""
STALE_AFTER_S = 120.0
"""A lock of another host whose heartbeat is older than this is stale (four missed heartbeats)."""
_CREATE_GRACE_S = 10.0  # a lock file still empty after this long was left by a process killed while creating it


class RunLockedError(RulabError):
    """Another live process holds the run directory's lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in the lock file."""

    pid: int
    host: str
    token: str
    started: float
    pid_start: str = ""
    command: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"process {self.pid} on host {self.host} (started {when})"


def _pid_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or ``""``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = text.rsplit(")", 1)[-1].split()  # the command name (field 2) may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else ""


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to another user
        return True
    return True


def _read(path: Path) -> tuple[Holder | None, float]:
    """The holder in the lock file (``None`` if unreadable or malformed) and the file's modification time
    (``-1`` if the file is gone)."""
    try:
        mtime = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
        holder = Holder(
            int(data["pid"]),
            str(data["host"]),
            str(data["token"]),
            float(data["started"]),
            str(data.get("pid_start", "")),
            str(data.get("command", "")),
        )
    except FileNotFoundError:
        return None, -1.0
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return None, path.stat().st_mtime
        except OSError:
            return None, -1.0
    return holder, mtime


class RunLock:
    """The owner lock of one directory (see the module docstring).

    Args:
        directory: the run directory (must exist).
        what: how messages call the directory.
        heartbeat: seconds between heartbeats.
        stale_after: heartbeat age after which another host's lock is stale.

    Example:
        >>> with RunLock(run_dir):
        ...     train_and_write(run_dir)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        what: str = "run directory",
        heartbeat: float = HEARTBEAT_S,
        stale_after: float = STALE_AFTER_S,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.token = os.urandom(8).hex()
        self.taken_over: str = ""  # why the previous holder's lock was stale, when this lock replaced it
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------- state
    def _mine(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": self.token,
            "started": time.time(),
            "pid_start": _pid_start(os.getpid()),
            "command": " ".join(sys.argv)[:300],
        }

    def stale_reason(self, holder: Holder | None, mtime: float) -> str:
        """Why the lock of ``holder`` (file modified at ``mtime``) is stale, or ``""`` when it is live."""
        age = time.time() - mtime
        if holder is None:
            return f"the lock file is unreadable and {age:.0f} s old" if age > _CREATE_GRACE_S else ""
        if holder.host == socket.gethostname():
            if not pid_alive(holder.pid):
                return f"{holder.describe()} no longer exists"
            if holder.pid_start and _pid_start(holder.pid) not in ("", holder.pid_start):
                return f"{holder.describe()} no longer exists (its process id now belongs to another process)"
            return ""
        if age > self.stale_after:
            return f"{holder.describe()} has not refreshed it for {age:.0f} s"
        return ""

    # ---------------------------------------------------------------------------------------- acquire/release
    def acquire(self) -> RunLock:
        """Take the lock, taking over a stale one (:attr:`taken_over` then says why it was stale).

        Raises:
            RunLockedError: another live process holds it (the message names it).
            RulabError: the lock file cannot be written (read-only directory, full disk).
        """
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, mtime = _read(self.path)
                if mtime < 0:
                    continue  # released meanwhile: try again
                if holder is not None and holder.token == self.token:
                    self._held = True
                    return self
                reason = self.stale_reason(holder, mtime)
                if not reason:
                    if holder is None:  # being created this very moment: look again shortly
                        time.sleep(0.1)
                        continue
                    raise RunLockedError(
                        f"the {self.what} {self.directory} is in use by {holder.describe()}; wait for it to finish, "
                        f"or stop it, or choose another --name or --out"
                    ) from None
                if self._take_over(holder, reason):
                    break
                time.sleep(0.05)
                continue
            except OSError as err:
                raise explain_os_error(err, self.path) from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self._mine(), fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as err:
                with contextlib.suppress(OSError):
                    self.path.unlink()
                raise explain_os_error(err, self.path) from None
            break
        else:
            raise RunLockedError(
                f"could not take the lock of the {self.what} {self.directory} (other processes keep taking it); try again"
            )
        self._held = True
        self._start_heartbeat()
        return self

    def _take_over(self, stale: Holder | None, reason: str) -> bool:
        """Replace the stale lock of ``stale`` by this one; ``False`` if another process got there first."""
        guard = self.path.with_name(LOCK_NAME + ".takeover")
        try:
            gfd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - guard.stat().st_mtime > _CREATE_GRACE_S:  # left by a process killed while taking over
                    guard.unlink()
            return False
        except OSError as err:
            raise explain_os_error(err, guard) from None
        try:
            current, _ = _read(self.path)
            if (current.token if current else None) != (stale.token if stale else None):
                return False  # it changed hands meanwhile
            tmp = self.path.with_name(f".{LOCK_NAME}.{self.token}.tmp")
            try:
                tmp.write_text(json.dumps(self._mine()), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as err:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise explain_os_error(err, self.path) from None
            self.taken_over = reason
            warnings.warn(
                f"took over the stale lock of {self.directory}: {reason}; this process owns it now",
                RulabWarning,
                stacklevel=4,
            )
            return True
        finally:
            os.close(gfd)
            with contextlib.suppress(OSError):
                guard.unlink()

    def check(self) -> None:
        """Raise :class:`RunLockedError` if this process no longer holds the lock (it was taken over as stale, e.g.
        after this process was stopped for longer than the heartbeat allows on a shared file system)."""
        if not self._held:
            return
        holder, _ = _read(self.path)
        if holder is None or holder.token != self.token:
            who = holder.describe() if holder else "nobody (the lock file is gone)"
            raise RunLockedError(
                f"the lock of the {self.what} {self.directory} is now held by {who}; this process stops writing there, "
                "so check which run's files are complete before resuming"
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if this process still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._held:
            holder, _ = _read(self.path)
            if holder is not None and holder.token == self.token:
                with contextlib.suppress(OSError):
                    self.path.unlink()
        self._held = False

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                holder, _ = _read(self.path)
                if holder is None or holder.token != self.token:
                    return  # lost: check() reports it to the writer
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._thread = threading.Thread(target=beat, name=f"rulab-lock-{self.directory.name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
