"""Getting raw bytes safely: MD5 checks against the published values, downloads through a temp file, and safe
archive extraction (the "Checksums" and "Image folders" parts of :mod:`rulab.data.fetch`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rulab.data.fetch.sources import Archive, FoundFile, RawFile, Source
from rulab.data.formats import gunzip
from rulab.errors import ChecksumError, DataError
from rulab.io import atomic_path

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "md5sum",
    "verify_file",
    "verify_archive",
    "download",
    "try_download",
    "extract_archive",
]

DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout of each download, seconds."""
_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike[str]) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- verification
def _fetch_hint(source: Source) -> str:
    return f"delete it and run `rulab data fetch {source.name}`"


def verify_file(source: Source, rf: RawFile, found: FoundFile) -> FoundFile:
    """Check ``found`` against the published MD5s of ``rf``; return it with ``md5``/``verified`` filled in."""
    path = found.path
    with open(path, "rb") as fh:
        is_gz = fh.read(2) == b"\x1f\x8b"
    if is_gz and rf.content_md5 and not rf.md5:
        digest = ""
    else:
        digest = md5sum(path)
    if not rf.published:
        return replace(found, md5=digest, verified=False, checked="unpublished")
    if digest and digest in rf.md5:
        return replace(found, md5=digest, verified=True, checked="file")
    if rf.content_md5:
        if is_gz:
            content = gunzip(path.read_bytes(), path, todo=_fetch_hint(source))
            inner = hashlib.md5(content).hexdigest()
            if inner in rf.content_md5:
                return replace(found, md5=inner, verified=True, checked="decompressed", content=content)
            digest = digest or inner
        elif digest in rf.content_md5:
            return replace(found, md5=digest, verified=True, checked="file")
    expected = " or ".join(rf.md5 + rf.content_md5)
    raise ChecksumError(
        f"{path} has MD5 {digest} but the published value for {source.title} {rf.paths[0]} is {expected}, "
        f"so the file is truncated or corrupt and was not used; {_fetch_hint(source)}"
    )


def verify_archive(source: Source, archive: Archive, path: Path) -> None:
    """Raise :class:`ChecksumError` unless the archive at ``path`` has ``archive``'s published MD5 (if any)."""
    if archive.md5 is None:
        return
    digest = md5sum(path)
    if digest != archive.md5:
        raise ChecksumError(
            f"{path} has MD5 {digest} but the published value for {archive.filename} is {archive.md5}, "
            f"so the archive is truncated or corrupt and was not used; {_fetch_hint(source)}"
        )


# ----------------------------------------------------------------------------------------------- download
def download(
    url: str,
    dest: str | os.PathLike[str],
    check: Callable[[Path], None] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` through a temp file; ``check(tmp)`` runs before the rename.

    Args:
        url: any URL ``urllib`` opens (``https://``, ``http://``, ``file://``).
        dest: the final path; it is only replaced once ``check`` has passed.
        check: raises (e.g. :class:`ChecksumError`) to reject the file; the temp file is then deleted.
        timeout: socket timeout in seconds.

    Returns:
        ``dest`` as a :class:`Path`.

    Raises:
        urllib.error.URLError, OSError, TimeoutError: the download failed (the caller records it).
    """
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "rulab (https://github.com/rulab/rulab)"})
    try:
        with atomic_path(dest) as tmp:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
                    total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
                    bar = tqdm(
                        total=int(total) if total else None,
                        unit="B",
                        unit_scale=True,
                        desc=dest.name,
                        disable=None,
                        leave=False,
                    )
                    with bar:
                        for chunk in iter(lambda: resp.read(_CHUNK), b""):
                            out.write(chunk)
                            bar.update(len(chunk))
            except (OSError, ValueError) as err:
                # URLError, timeouts and resets are OSErrors: keep them apart from the write errors of rulab.io
                raise _DownloadFailed(err) from err
            if check is not None:
                check(tmp)
    except _DownloadFailed as failed:
        raise failed.error from None
    return dest


class _DownloadFailed(Exception):
    """Carries a network error through :func:`rulab.io.atomic_path` (which would turn an OSError into a write error)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def try_download(
    urls: Iterable[str], dest: Path, check: Callable[[Path], None], failures: list[str], errors: list[DataError]
) -> bool:
    """Try each URL in turn; True on the first verified download.

    Network failures are appended to ``failures`` and checksum failures to ``errors``; neither leaves a file.
    """
    for url in urls:
        try:
            download(url, dest, check)
            return True
        except ChecksumError:
            errors.append(
                ChecksumError(
                    f"the file downloaded from {url} does not have the published MD5 of {dest.name}, so it was discarded; "
                    f"try again later, or download it on another machine and copy it to {dest}"
                )
            )
            failures.append(f"the download from {url} had the wrong checksum")
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
            failures.append(f"the download from {url} failed ({getattr(err, 'reason', None) or err})")
    return False


# ----------------------------------------------------------------------------------------------- archives
def _is_within(base: Path, target: Path) -> bool:
    return target == base or base in target.parents


def _check_member(name: str, dest: Path, archive: Path) -> None:
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or os.path.isabs(name):
        raise DataError(
            f"{archive} contains the member '{name}' with an absolute path; the archive is unsafe, so nothing was extracted"
        )
    if not _is_within(dest, (dest / name).resolve()):
        raise DataError(
            f"{archive} contains the member '{name}' that would be written outside {dest}; the archive is unsafe, so nothing was extracted"
        )


def _merge_move(src: Path, dst: Path) -> None:
    if dst.is_dir() and src.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
    else:
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(src, dst)


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Extract a tar (any compression) or zip archive into ``dest`` safely.

    Every member is checked before anything is written: an absolute path, a ``..`` that leaves ``dest``, a link
    pointing outside ``dest`` or a device file raises :class:`DataError` and nothing is extracted. The archive is
    extracted into a temp directory inside ``dest`` and moved into place only when complete, so an interrupted
    or corrupt archive leaves no partial folder behind.

    Returns:
        The top-level names it created in ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(info.filename, root, archive)
                zf.extractall(tmp)
        else:
            try:
                tf = tarfile.open(archive)
            except (tarfile.TarError, OSError) as err:
                raise DataError(
                    f"{archive} is not a readable tar or zip archive ({err}); delete it and download it again"
                ) from None
            with tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, root, archive)
                    if m.issym() or m.islnk():
                        base = (root / m.name).parent if m.issym() else root
                        if os.path.isabs(m.linkname) or not _is_within(root, (base / m.linkname).resolve()):
                            raise DataError(
                                f"{archive} contains the link '{m.name}' -> '{m.linkname}' pointing outside {dest}; "
                                "the archive is unsafe, so nothing was extracted"
                            )
                    elif not (m.isfile() or m.isdir()):
                        raise DataError(
                            f"{archive} contains the special file '{m.name}'; the archive is unsafe, so nothing was extracted"
                        )
                kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(tmp, members=members, **kwargs)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive} is truncated or corrupt ({err}); delete it and download it again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = sorted(p.name for p in tmp.iterdir())
    for name in names:
        _merge_move(tmp / name, dest / name)
    shutil.rmtree(tmp, ignore_errors=True)
    return names
