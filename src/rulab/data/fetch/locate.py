"""Where the data comes from: the source chain, MD5 checks, safe downloads and extraction, and the tensor cache.

Source chain (docs/guide/data.md). Each raw file of a dataset is looked for, in this order, in
    1. the local cache ``$RULAB_DATA/<name>/`` (default ``~/.cache/rulab/<name>/``, see :func:`dataset_root`);
    2. system directories, :data:`SYSTEM_DATA_DIRS` (``$RULAB_SYSTEM_DATA``, a ``os.pathsep``-separated list,
       overrides it): Debian's ``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist/*.gz``;
    3. a download from the published URL (``urllib`` with a timeout) into the cache. Nothing is downloaded when
       ``$RULAB_OFFLINE`` is set; without internet the download fails and the chain ends in a
       :class:`~rulab.errors.DatasetMissingError` that says which sources were tried and what to do.

Checksums (docs/guide/data.md). Every file is checked against its published MD5 before it is parsed. For
``.gz`` files either the published MD5 of the ``.gz`` or the MD5 of the decompressed bytes is accepted (Debian
repacks the Fashion-MNIST ``.gz`` files, so only the decompressed bytes match). A file with a wrong MD5 raises
:class:`~rulab.errors.ChecksumError` and is never used; downloads are written to a temp file, checked, and only
then renamed into place. Files without a published checksum (the downsampled-ImageNet batches) are marked
``verified=False`` and are only read by parsers that refuse anything but plain arrays.

Tensor cache. A parsed split is stored as ``uint8``/``int64`` tensors in
``$RULAB_DATA/<name>/<key>.safetensors`` with JSON metadata: the raw files it came from (path, size, mtime, MD5),
the parameters that shaped it and a CRC of each tensor. A second load is a stat of the raw files plus a
memory-mapped read; a changed, moved or replaced raw file or a corrupt cache file makes it rebuild from the source.

Image folders (DTD, LSUN, iSUN, Tiny ImageNet, ...) have no per-file checksums; their archives do. A folder under
``$RULAB_DATA/<name>/`` is used as it is; an archive there (or downloaded) is checked and extracted by
:func:`extract_archive`, which refuses members with absolute paths or ``..`` that would escape the target.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from rulab.errors import ChecksumError, ConfigError, DataError, DatasetMissingError, RulabError
from rulab.io import atomic_path
from rulab.registry import DATASETS, OOD_SETS, Registry

from rulab.data.formats import gunzip

__all__ = [
    "ENV_DATA",
    "ENV_SYSTEM_DATA",
    "ENV_OFFLINE",
    "SYSTEM_DATA_DIRS",
    "DOWNLOAD_TIMEOUT_S",
    "SOURCES",
    "RawFile",
    "Archive",
    "Source",
    "FoundFile",
    "Prepared",
    "declare",
    "dataset_root",
    "system_data_dirs",
    "md5sum",
    "download",
    "extract_archive",
    "ensure_files",
    "ensure_folders",
    "load_prepared",
    "load_prepared_folder",
    "fetch",
    "list_data",
]

ENV_DATA = "RULAB_DATA"
"""Environment variable naming the local data cache (default ``~/.cache/rulab``)."""
ENV_SYSTEM_DATA = "RULAB_SYSTEM_DATA"
"""Environment variable that replaces :data:`SYSTEM_DATA_DIRS` (``os.pathsep``-separated; empty = none)."""
ENV_OFFLINE = "RULAB_OFFLINE"
"""When set to a non-empty value other than ``0``, nothing is downloaded."""
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets",)
"""Directories searched after the cache; each holds ``<system_subdir>/<file>`` (Debian: ``fashion-mnist/*.gz``)."""
DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout of each download, seconds."""
CACHE_FORMAT = "rulab-tensors-1"
_CHUNK = 1 << 20

SOURCES: Registry[Any] = Registry("data source")
"""Every downloadable dataset's :class:`Source`, by dataset name (``SOURCES.get("cifar10")``)."""


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class RawFile:
    """One raw file of a dataset.

    Attributes:
        key: the name parsers ask for (``"train-images"``).
        paths: accepted paths relative to the dataset directory; the first is where a download goes. A system
            directory is searched for their base names.
        md5: published MD5s of the file as stored (empty: no published value).
        content_md5: MD5s of the decompressed bytes, accepted for a ``.gz`` file or an already decompressed copy.
        urls: direct download URLs of ``paths[0]`` (mirrors, tried in order).
    """

    key: str
    paths: tuple[str, ...]
    md5: tuple[str, ...] = ()
    content_md5: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    @property
    def published(self) -> bool:
        """Whether there is a published checksum to verify against."""
        return bool(self.md5 or self.content_md5)


@dataclass(frozen=True)
class Archive:
    """An archive (``.tar.gz``, ``.tar``, ``.zip``) that provides a dataset's files or folders.

    Attributes:
        filename: its name in the dataset directory (a copy placed there by hand is used before any download).
        md5: the published MD5, or ``None`` where none is published.
        urls: download URLs, tried in order (empty: the archive must be fetched by hand).
        provides: the folders (relative to the dataset directory) it creates; empty means "everything missing".
    """

    filename: str
    md5: str | None
    urls: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where one dataset's raw data lives: its files (with checksums), archives, folders and fallbacks.

    Attributes:
        name: the dataset's registry name and the name of its directory under :func:`dataset_root`.
        title: a human name for messages ("Fashion-MNIST").
        files: the raw files of file-based datasets (IDX, pickles, ``.mat``, ``.npz``).
        archives: archives that provide ``files`` or ``folders`` when they are missing.
        folders: for image-folder datasets, directories (relative to the dataset directory) that must exist
            and hold files; ``image_folder=True`` with empty ``folders`` means "image files anywhere under it".
        image_folder: whether this is an image-folder dataset (no per-file checksums).
        system_subdirs: sub-directories of each system data directory that may hold the files.
        apt_package: a Debian package that installs the files (named in the missing-data message).
        manual: where to get the data by hand when it cannot be downloaded automatically.
    """

    name: str
    title: str
    files: tuple[RawFile, ...] = ()
    archives: tuple[Archive, ...] = ()
    folders: tuple[str, ...] = ()
    image_folder: bool = False
    system_subdirs: tuple[str, ...] = ()
    apt_package: str | None = None
    manual: str = ""

    def file(self, key: str) -> RawFile:
        """The :class:`RawFile` called ``key``."""
        for rf in self.files:
            if rf.key == key:
                return rf
        raise KeyError(f"source '{self.name}' has no file '{key}'; files: {', '.join(f.key for f in self.files)}")


def _source(source: Source | str) -> Source:
    """``source`` itself, or the registered :class:`Source` of that name (importing the dataset modules if needed)."""
    if isinstance(source, Source):
        return source
    if source not in SOURCES:
        _import_registrations()
    return SOURCES.get(source)


def declare(source: Source) -> Source:
    """Register ``source`` in :data:`SOURCES` under its name and return it."""
    SOURCES.register(source.name)(source)
    return source


@dataclass(frozen=True)
class FoundFile:
    """A raw file found by the source chain.

    Attributes:
        key: the :class:`RawFile` key.
        path: where it is.
        origin: ``"cache"``, ``"system"`` or ``"download"``.
        size: bytes on disk.
        mtime_ns: modification time (ns), part of the cache key.
        md5: once verified, the MD5 that matched the published value ("" before): of the file as stored, or of
            its decompressed bytes when ``checked == "decompressed"``.
        verified: whether the MD5 matched a published value (``False`` where none is published).
        checked: what was hashed: ``"file"``, ``"decompressed"`` or ``"unpublished"`` (no value to compare with).
        content: the decompressed bytes when verification had to decompress (saves a second pass).
    """

    key: str
    path: Path
    origin: str
    size: int
    mtime_ns: int
    md5: str = ""
    verified: bool = False
    checked: str = ""
    content: bytes | None = field(default=None, repr=False, compare=False)

    def stamp(self) -> list[Any]:
        """``[path, size, mtime_ns]``: what the tensor cache compares to decide whether the file changed."""
        return [str(self.path), self.size, self.mtime_ns]

    def data(self) -> bytes:
        """The file's payload: its bytes, gunzipped when it is a gzip file."""
        if self.content is not None:
            return self.content
        raw = self.path.read_bytes()
        return gunzip(raw, self.path) if raw[:2] == b"\x1f\x8b" else raw


class Prepared(NamedTuple):
    """A parsed split: images ``uint8 [N, C, H, W]``, labels ``int64 [N]`` and metadata (``classes``, ``source``, ``files``)."""

    x: torch.Tensor
    y: torch.Tensor
    meta: dict[str, Any]


# ----------------------------------------------------------------------------------------------- paths
def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The local data cache: ``root`` if given, else ``$RULAB_DATA``, else ``~/.cache/rulab``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_DATA)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rulab"


def system_data_dirs() -> list[Path]:
    """The system data directories searched after the cache (``$RULAB_SYSTEM_DATA`` or :data:`SYSTEM_DATA_DIRS`)."""
    env = os.environ.get(ENV_SYSTEM_DATA)
    dirs = env.split(os.pathsep) if env is not None else list(SYSTEM_DATA_DIRS)
    return [Path(d).expanduser() for d in dirs if d]


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "") not in ("", "0")


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


def _verify(source: Source, rf: RawFile, found: FoundFile) -> FoundFile:
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


def _verify_archive(source: Source, archive: Archive, path: Path) -> None:
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


def _try_download(
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


# ----------------------------------------------------------------------------------------------- file chain
def _candidates(source: Source, rf: RawFile, root: Path) -> list[FoundFile]:
    """Existing copies of ``rf`` in chain order (cache first, then system directories); stat only, no hashing."""
    out: list[FoundFile] = []
    places: list[tuple[Path, str]] = [(root / source.name / p, "cache") for p in rf.paths]
    for sysdir in system_data_dirs():
        for sub in source.system_subdirs:
            for p in rf.paths:
                places += [(sysdir / sub / q, "system") for q in dict.fromkeys((p, Path(p).name))]
    for path, origin in places:
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            out.append(FoundFile(rf.key, path, origin, st.st_size, st.st_mtime_ns))
    return out


def _locate(source: Source, keys: Sequence[str], root: Path) -> dict[str, FoundFile] | None:
    """The first copy of every key (stat only), or ``None`` if any key has no copy."""
    found = {}
    for key in keys:
        c = _candidates(source, source.file(key), root)
        if not c:
            return None
        found[key] = c[0]
    return found


def _first_valid(source: Source, rf: RawFile, root: Path, errors: list[DataError]) -> FoundFile | None:
    for cand in _candidates(source, rf, root):
        try:
            return _verify(source, rf, cand)
        except DataError as err:
            errors.append(err)
    return None


def _looked_in(source: Source, root: Path) -> str:
    places = [str(root / source.name)]
    places += [str(d / sub) for d in system_data_dirs() for sub in source.system_subdirs]
    return ", ".join(places)


def _missing(source: Source, root: Path, failures: list[str], what: str) -> DatasetMissingError:
    where = root / source.name
    if _offline():
        tried = f"downloads are off ({ENV_OFFLINE} is set)"
    elif failures:
        tried = failures[0] + (f" (and {len(failures) - 1} more download attempts failed)" if len(failures) > 1 else "")
    else:
        tried = "it cannot be downloaded automatically"
    todo = []
    if source.apt_package:
        todo.append(f"install it with `sudo apt-get install {source.apt_package}`")
    urls = [u for a in source.archives for u in a.urls] + [u for rf in source.files for u in rf.urls]
    if urls:
        more = ", …" if len(urls) > 1 else ""
        todo.append(f"run `rulab data fetch {source.name}` on a machine with internet (it downloads {urls[0]}{more})")
    if source.manual:
        todo.append(f"download it from {source.manual}")
    todo.append(f"copy {what} to {where}/")
    return DatasetMissingError(
        f"{source.title} ('{source.name}') is not available: it is not in {_looked_in(source, root)}, and {tried}; "
        f"to fix it, {', or '.join(todo)}"
    )


def ensure_files(
    source: Source | str,
    keys: Sequence[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    download_ok: bool = True,
) -> dict[str, FoundFile]:
    """Find and verify raw files through the chain, extracting or downloading what is missing.

    Order per file: the cache directory, the system directories, an archive already in the cache directory,
    a direct download of the file, a download of an archive that holds it.

    Args:
        source: a :class:`Source` or its name in :data:`SOURCES`.
        keys: which files (default: all of the source's files).
        root: the data cache (default :func:`dataset_root`).
        download_ok: allow downloads (they are also off when ``$RULAB_OFFLINE`` is set).

    Returns:
        ``{key: FoundFile}`` with verified MD5s.

    Raises:
        ChecksumError: a copy exists (or was downloaded) but is corrupt, and no source had a good one.
        DatasetMissingError: no source had the files; the message says what was tried and what to do.
    """
    src = _source(source)
    base = dataset_root(root)
    target = base / src.name
    keys = list(keys) if keys is not None else [rf.key for rf in src.files]
    errors: list[DataError] = []
    failures: list[str] = []
    found: dict[str, FoundFile] = {}

    def settle(origin: str | None = None) -> list[str]:
        for key in keys:
            if key not in found:
                got = _first_valid(src, src.file(key), base, errors)
                if got is not None:
                    found[key] = got if origin is None else replace(got, origin=origin)
        return [k for k in keys if k not in found]

    missing = settle()
    if missing:  # an archive placed in the dataset directory by hand, or left by an earlier download
        for arc in src.archives:
            path = target / arc.filename
            if path.is_file():
                try:
                    _verify_archive(src, arc, path)
                    extract_archive(path, target)
                except DataError as err:
                    errors.append(err)
        missing = settle()
    if missing and download_ok and not _offline():
        for key in missing:
            rf = src.file(key)
            if rf.urls and _try_download(
                rf.urls, target / rf.paths[0], lambda p, rf=rf: _check_download(src, rf, p), failures, errors
            ):
                found[key] = _verify(src, rf, _stat(key, target / rf.paths[0], "download"))
        missing = [k for k in keys if k not in found]
        for arc in src.archives:
            if missing and arc.urls:
                path = target / arc.filename
                if _try_download(arc.urls, path, lambda p, arc=arc: _verify_archive(src, arc, p), failures, errors):
                    extract_archive(path, target)
                    missing = settle(origin="download")
    if missing:
        if errors:
            raise errors[0]
        paths = [src.file(k).paths[0] for k in missing]
        names = ", ".join(paths) if len(paths) <= 4 else f"the {len(paths)} files {paths[0]} … {paths[-1]}"
        arcs = " or ".join(a.filename for a in src.archives)
        raise _missing(src, base, failures, names + (f" (or {arcs})" if arcs else ""))
    for err in errors:
        warnings.warn(f"{err} (a good copy from another source was used instead)", stacklevel=2)
    return found


def _stat(key: str, path: Path, origin: str) -> FoundFile:
    st = path.stat()
    return FoundFile(key, path, origin, st.st_size, st.st_mtime_ns)


def _check_download(source: Source, rf: RawFile, tmp: Path) -> None:
    _verify(source, rf, _stat(rf.key, tmp, "download"))


# ----------------------------------------------------------------------------------------------- folder chain
_SKIP_SUFFIXES = (".safetensors", ".tmp", ".tar", ".tgz", ".gz", ".zip", ".part")


def _folder_files(base: Path, sub: str) -> Iterable[Path]:
    top = base / sub if sub else base
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and not f.endswith(_SKIP_SUFFIXES):
                yield Path(dirpath) / f


def _folder_dirs(source: Source, root: Path) -> list[Path]:
    """Candidate directories holding the folders: the cache directory, then system directories."""
    dirs = [root / source.name]
    dirs += [d / sub for d in system_data_dirs() for sub in source.system_subdirs]
    return dirs


def _folders_present(source: Source, base: Path) -> bool:
    if source.folders:
        return all((base / f).is_dir() and next(iter(_folder_files(base, f)), None) is not None for f in source.folders)
    return next(iter(_folder_files(base, "")), None) is not None


def ensure_folders(
    source: Source | str, root: str | os.PathLike[str] | None = None, download_ok: bool = True
) -> tuple[Path, str]:
    """Make sure an image-folder dataset is on disk; return ``(directory, origin)``.

    The chain is: the folder(s) already in the cache directory or a system directory; an archive in the cache
    directory (checked, then extracted); a download of the archive(s) (checked, then extracted).

    Raises:
        ChecksumError: an archive exists but is corrupt.
        DatasetMissingError: the folder is absent and no archive could be had; the message names where to get it.
    """
    src = _source(source)
    base = dataset_root(root)
    for d in _folder_dirs(src, base):
        if d.is_dir() and _folders_present(src, d):
            return d, "cache" if d == base / src.name else "system"
    target = base / src.name
    errors: list[DataError] = []
    failures: list[str] = []

    def wanted(arc: Archive) -> bool:
        return not arc.provides or not all((target / f).is_dir() for f in arc.provides)

    for arc in src.archives:
        path = target / arc.filename
        if path.is_file() and wanted(arc):
            try:
                _verify_archive(src, arc, path)
                extract_archive(path, target)
            except DataError as err:
                errors.append(err)
    if _folders_present(src, target):
        return target, "cache"
    if download_ok and not _offline():
        for arc in src.archives:
            if arc.urls and wanted(arc):
                path = target / arc.filename
                if _try_download(arc.urls, path, lambda p, arc=arc: _verify_archive(src, arc, p), failures, errors):
                    extract_archive(path, target)
        if _folders_present(src, target):
            return target, "download"
    if errors:
        raise errors[0]
    what = " and ".join(a.filename for a in src.archives) or "the images"
    if src.archives:
        what += " (or the extracted folder" + ("s " + ", ".join(src.folders) if src.folders else "") + ")"
    raise _missing(src, base, failures, what)


def _folder_stamp(directory: Path, source: Source) -> dict[str, list[int]]:
    """``{folder: [n_files, total_bytes, newest_mtime_ns]}``: changes when a file is added, removed or rewritten."""
    stamp = {}
    for sub in source.folders or ("",):
        n = total = newest = 0
        for p in _folder_files(directory, sub):
            st = p.stat()
            n, total, newest = n + 1, total + st.st_size, max(newest, st.st_mtime_ns)
        stamp[sub or "."] = [n, total, newest]
    return stamp


# ----------------------------------------------------------------------------------------------- tensor cache
def _crc(t: torch.Tensor) -> str:
    return f"{zlib.crc32(t.contiguous().numpy().reshape(-1).view('uint8')):08x}"


def _read_cache(path: Path, params: str, stamp: str | None) -> Prepared | None:
    """Load a cached split if it exists, was built with ``params`` and (unless ``stamp`` is None) from ``stamp``."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata() or {}
            if md.get("format") != CACHE_FORMAT or md.get("params") != params:
                return None
            if stamp is not None and md.get("stamp") != stamp:
                return None
            x, y = fh.get_tensor("x"), fh.get_tensor("y")
        if _crc(x) != md.get("crc_x") or _crc(y) != md.get("crc_y"):
            raise ValueError("CRC mismatch")
        return Prepared(x, y, json.loads(md["meta"]))
    except Exception as err:  # safetensors raises its own error types for a truncated or garbled file
        warnings.warn(
            f"the cached tensors {path} are corrupt ({type(err).__name__}: {err}); rebuilding them from the source",
            stacklevel=3,
        )
        return None


def _write_cache(path: Path, prep: Prepared, params: str, stamp: str) -> None:
    from safetensors.torch import save_file

    x, y = prep.x.contiguous(), prep.y.contiguous()
    md = {
        "format": CACHE_FORMAT,
        "params": params,
        "stamp": stamp,
        "crc_x": _crc(x),
        "crc_y": _crc(y),
        "meta": json.dumps(prep.meta, default=str),
    }
    try:
        with atomic_path(path) as tmp:
            save_file({"x": x, "y": y}, str(tmp), metadata=md)
    except (RulabError, OSError) as err:
        warnings.warn(
            f"could not cache the parsed data at {path} ({err}); it will be parsed again next time", stacklevel=3
        )


def _source_label(source: Source, files: Iterable[FoundFile]) -> str:
    files = list(files)
    if files and all(f.origin == "system" for f in files) and source.apt_package:
        return f"debian:{source.apt_package}"
    dirs = sorted({str(f.path.parent) for f in files})
    return "; ".join(dirs)


def load_prepared(
    name: str,
    key: str,
    keys: Sequence[str],
    parse: Callable[[dict[str, FoundFile]], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    root: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Prepared:
    """Load a parsed split from the tensor cache, or build it from verified raw files and cache it.

    Args:
        name: the dataset (its :class:`Source` in :data:`SOURCES`).
        key: the cache file's name (``"train"`` → ``<root>/<name>/train.safetensors``).
        keys: the raw files the split is parsed from.
        parse: ``{key: FoundFile} -> (x uint8 [N, C, H, W], y int64 [N], meta)``; runs only on a cache miss.
        root: the data cache (default :func:`dataset_root`).
        params: anything else that shapes the result (part of the cache key).

    Returns:
        :class:`Prepared` with ``meta["source"]`` (where the raw files came from) and ``meta["files"]``
        (path, origin and MD5 of each raw file).
    """
    src = _source(name)
    base = dataset_root(root)
    cache = base / name / f"{key}.safetensors"
    params_json = json.dumps({"key": key, "keys": list(keys), **(params or {})}, sort_keys=True, default=str)
    located = _locate(src, keys, base)
    if located is not None:
        stamp = json.dumps({k: f.stamp() for k, f in located.items()}, sort_keys=True)
        hit = _read_cache(cache, params_json, stamp)
        if hit is not None:
            return hit
    elif cache.is_file():
        # the raw files are gone, but the cache was built from verified copies of them
        hit = _read_cache(cache, params_json, None)
        if hit is not None:
            hit.meta["note"] = "raw files no longer present; loaded from the tensor cache"
            return hit
    found = ensure_files(src, keys, base)
    x, y, meta = parse(found)
    meta = {
        "source": _source_label(src, found.values()),
        "files": {
            k: {"path": str(f.path), "origin": f.origin, "md5": f.md5, "checked": f.checked, "verified": f.verified}
            for k, f in found.items()
        },
        **meta,
    }
    prep = Prepared(x.contiguous(), y.to(torch.int64).contiguous(), meta)
    # stamp of the files as verified (a download or extraction may have created them after _locate)
    restat = {k: _stat(k, f.path, f.origin) for k, f in found.items()}
    _write_cache(cache, prep, params_json, json.dumps({k: f.stamp() for k, f in restat.items()}, sort_keys=True))
    return prep


def load_prepared_folder(
    name: str,
    key: str,
    parse: Callable[[Path], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    root: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Prepared:
    """Like :func:`load_prepared` for an image-folder dataset; ``parse(directory)`` decodes the images.

    The cache key is the folder listing (number of files, total bytes, newest mtime) plus ``params``. When the
    folder is gone but a cache built with the same ``params`` exists, the cache is used.
    """
    src = _source(name)
    base = dataset_root(root)
    cache = base / name / f"{key}.safetensors"
    params_json = json.dumps({"key": key, **(params or {})}, sort_keys=True, default=str)
    try:
        directory, origin = ensure_folders(src, base)
    except DatasetMissingError:
        # the images are gone, but the cache was built from them
        hit = _read_cache(cache, params_json, None)
        if hit is None:
            raise
        hit.meta["note"] = "image folder no longer present; loaded from the tensor cache"
        return hit
    stamp = json.dumps({"dir": str(directory), **_folder_stamp(directory, src)}, sort_keys=True)
    hit = _read_cache(cache, params_json, stamp)
    if hit is not None:
        return hit
    x, y, meta = parse(directory)
    meta = {"source": str(directory), "origin": origin, **meta}
    prep = Prepared(x.contiguous(), y.to(torch.int64).contiguous(), meta)
    _write_cache(cache, prep, params_json, stamp)
    return prep


# ----------------------------------------------------------------------------------------------- public API
def _import_registrations() -> None:
    """Import the modules that register datasets, OOD sets and sources (the data registries' builtin modules)."""
    DATASETS.list()
    OOD_SETS.list()


def _bundled_with(name: str) -> tuple[str, str] | None:
    """``(pip distribution, import name)`` of the package a bundled OOD set ships with (``("scikit-learn", "sklearn")``)."""
    from rulab.registry import OOD_SETS

    if name in OOD_SETS:
        return getattr(OOD_SETS.get(name), "bundled_with", None)
    return None


def fetch(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Make sure the raw data of ``name`` is present and verified, downloading it if needed (``rulab data fetch``).

    Every raw file's MD5 is checked (a full check, unlike a cached load).

    Returns:
        ``{"name", "kind": "files"|"folder"|"bundled"|"generated", "path", "origin", "files": {key: {"path",
        "origin", "md5", "verified"}}}``.

    Raises:
        ConfigError: ``name`` is neither a dataset nor an OOD set (the message lists them).
        ChecksumError, DataError, DatasetMissingError: as :func:`ensure_files` / :func:`ensure_folders`.
    """
    _import_registrations()
    from rulab.registry import DATASETS, OOD_SETS

    if name not in SOURCES:
        if name in OOD_SETS or name in DATASETS:
            pkg = _bundled_with(name)
            kind = "bundled" if pkg else "generated"
            return {
                "name": name,
                "kind": kind,
                "path": None,
                "origin": f"bundled:{pkg[0]}" if pkg else "generated",
                "files": {},
            }
        valid = sorted(set(SOURCES.list()) | set(DATASETS.list()) | set(OOD_SETS.list()))
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"there is no dataset or OOD set called '{name}'{hint}; `rulab data list` shows them: {', '.join(valid)}")
    src = _source(name)
    base = dataset_root(root)
    if src.image_folder:
        directory, origin = ensure_folders(src, base)
        return {"name": name, "kind": "folder", "path": str(directory), "origin": origin, "files": {}}
    found = ensure_files(src, None, base)
    origins = sorted({f.origin for f in found.values()})
    return {
        "name": name,
        "kind": "files",
        "path": str(base / name),
        "origin": ",".join(origins),
        "files": {
            k: {"path": str(f.path), "origin": f.origin, "md5": f.md5, "checked": f.checked, "verified": f.verified}
            for k, f in found.items()
        },
    }


def list_data(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """What every registered dataset and OOD set needs and whether it is here (stat only; nothing is hashed or fetched).

    Returns:
        One dict per name: ``name``, ``kind`` (``"dataset"``, ``"ood"`` or ``"dataset+ood"``), ``present``,
        ``origin`` (``"cache"``, ``"system"``, ``"bundled:<package>"``, ``"generated"``, ``"missing"``), ``path``,
        ``size_bytes`` and ``cached`` (the tensor-cache files already built).
    """
    _import_registrations()
    from rulab.registry import DATASETS, OOD_SETS

    base = dataset_root(root)
    rows = []
    for name in sorted(set(DATASETS.list()) | set(OOD_SETS.list())):
        kind = "+".join(k for k, reg in (("dataset", DATASETS), ("ood", OOD_SETS)) if name in reg)
        row: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "present": False,
            "origin": "missing",
            "path": None,
            "size_bytes": 0,
            "cached": [],
        }
        if name in SOURCES:
            src = SOURCES.get(name)
            cache_dir = base / name
            row["cached"] = sorted(p.name for p in cache_dir.glob("*.safetensors")) if cache_dir.is_dir() else []
            if src.image_folder:
                for d in _folder_dirs(src, base):
                    if d.is_dir() and _folders_present(src, d):
                        files = [p for sub in (src.folders or ("",)) for p in _folder_files(d, sub)]
                        row.update(present=True, origin="cache" if d == cache_dir else "system", path=str(d))
                        row["size_bytes"] = sum(p.stat().st_size for p in files)
                        break
            else:
                found = [c[0] for rf in src.files if (c := _candidates(src, rf, base))]
                if found:
                    row["present"] = len(found) == len(src.files)
                    row["origin"] = ",".join(sorted({f.origin for f in found})) + (
                        "" if row["present"] else " (incomplete)"
                    )
                    row["path"] = str(found[0].path.parent)
                    row["size_bytes"] = sum(f.size for f in found)
        else:
            pkg = _bundled_with(name)
            if pkg:
                row.update(present=importlib.util.find_spec(pkg[1]) is not None, origin=f"bundled:{pkg[0]}")
            else:
                row.update(present=True, origin="generated")
        rows.append(row)
    return rows
