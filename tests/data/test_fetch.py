"""The source chain: cache → system dirs → download, MD5 checks, safe extraction and the tensor cache."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rulab.data import fetch as F
from rulab.data.fetch import (
    SOURCES,
    Archive,
    RawFile,
    Source,
    dataset_root,
    download,
    ensure_files,
    ensure_folders,
    extract_archive,
    load_prepared,
    system_data_dirs,
)
from rulab.errors import ChecksumError, ConfigError, DataError, DatasetMissingError

GOOD = b"the published content\n" * 10
BAD = b"a corrupted copy\n" * 10


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def env(env, monkeypatch):
    """The shared data directories (tests/data/conftest.py) with downloads on: these tests download file:// URLs."""
    monkeypatch.delenv("RULAB_OFFLINE", raising=False)
    return env


def use(monkeypatch, src: Source) -> Source:
    monkeypatch.setitem(SOURCES._entries, src.name, src)
    return src


def toy(monkeypatch, **kw) -> Source:
    rf = RawFile("blob", ("blob.bin",), md5=(md5(GOOD),), urls=kw.pop("urls", ()))
    return use(
        monkeypatch,
        Source(name="toy", title="Toy", files=(rf,), system_subdirs=("toy-sys",), apt_package="toy-pkg", **kw),
    )


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------------- roots
def test_dataset_root_and_system_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("RULAB_DATA", raising=False)
    assert dataset_root() == Path.home() / ".cache" / "rulab"
    monkeypatch.setenv("RULAB_DATA", str(tmp_path / "d"))
    assert dataset_root() == tmp_path / "d"
    assert dataset_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("RULAB_SYSTEM_DATA", raising=False)
    assert system_data_dirs() == [Path(d) for d in F.SYSTEM_DATA_DIRS] == [Path("/usr/share/datasets")]
    monkeypatch.setenv("RULAB_SYSTEM_DATA", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert system_data_dirs() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.setenv("RULAB_SYSTEM_DATA", "")
    assert system_data_dirs() == []


# ----------------------------------------------------------------------------------------------- chain and checksums
def test_chain_prefers_cache_over_system(env, monkeypatch):
    cache, system = env
    toy(monkeypatch)
    put(system / "toy-sys" / "blob.bin", GOOD)
    found = ensure_files("toy")["blob"]
    assert found.origin == "system" and found.verified and found.md5 == md5(GOOD) and found.checked == "file"
    put(cache / "toy" / "blob.bin", GOOD)
    found = ensure_files("toy")["blob"]
    assert found.origin == "cache" and found.path == cache / "toy" / "blob.bin"


def test_wrong_md5_raises_and_file_is_not_used(env, monkeypatch):
    cache, _ = env
    toy(monkeypatch)
    bad = put(cache / "toy" / "blob.bin", BAD)
    calls = []
    with pytest.raises(
        ChecksumError, match=rf"{bad}.*MD5 {md5(BAD)}.*published.*{md5(GOOD)}.*not used.*rulab data fetch toy"
    ):
        load_prepared("toy", "all", ["blob"], lambda found: calls.append(1))
    assert calls == []  # never parsed
    assert not (cache / "toy" / "all.safetensors").exists()


def test_corrupt_cache_copy_is_skipped_for_a_good_system_copy(env, monkeypatch):
    cache, system = env
    toy(monkeypatch)
    put(cache / "toy" / "blob.bin", BAD)
    put(system / "toy-sys" / "blob.bin", GOOD)
    with pytest.warns(UserWarning, match="MD5"):
        found = ensure_files("toy")["blob"]
    assert found.origin == "system" and found.data() == GOOD


def test_gz_accepts_published_or_decompressed_md5(env, monkeypatch):
    _, system = env
    raw = b"IDX payload " * 50
    published = gzip.compress(raw, mtime=0)
    repacked = gzip.compress(raw, compresslevel=1, mtime=1234567)  # what Debian's repacking does to the bytes
    assert md5(published) != md5(repacked)
    rf = RawFile("f", ("f.gz", "f"), md5=(md5(published),), content_md5=(md5(raw),))
    use(monkeypatch, Source(name="gzt", title="Gz", files=(rf,), system_subdirs=("gzt",)))
    path = put(system / "gzt" / "f.gz", published)
    found = ensure_files("gzt")["f"]
    assert (found.checked, found.md5, found.data()) == ("file", md5(published), raw)
    path.write_bytes(repacked)
    found = ensure_files("gzt")["f"]
    assert (found.checked, found.md5, found.data()) == ("decompressed", md5(raw), raw)
    path.unlink()
    put(system / "gzt" / "f", raw)  # an already decompressed copy
    assert ensure_files("gzt")["f"].data() == raw
    (system / "gzt" / "f").unlink()
    path.write_bytes(gzip.compress(raw + b"tampered"))
    with pytest.raises(ChecksumError, match="f.gz"):
        ensure_files("gzt")
    path.write_bytes(repacked[: len(repacked) // 2])
    with pytest.raises(DataError, match="truncated gzip"):
        ensure_files("gzt")


def test_missing_everywhere_names_the_apt_package_and_fetch_command(env, monkeypatch):
    cache, system = env
    monkeypatch.setenv("RULAB_OFFLINE", "1")
    with pytest.raises(DatasetMissingError) as info:
        ensure_files("fashion_mnist")
    msg = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "rulab data fetch fashion_mnist" in msg
    assert str(cache / "fashion_mnist") in msg and str(system / "fashion-mnist") in msg
    assert "downloads are off" in msg and "\n" not in msg


# ----------------------------------------------------------------------------------------------- downloads
def test_download_from_file_url_is_verified_and_renamed(env, monkeypatch, tmp_path):
    cache, _ = env
    served = put(tmp_path / "server" / "blob.bin", GOOD)
    toy(monkeypatch, urls=(served.as_uri(),))
    found = ensure_files("toy")["blob"]
    assert found.origin == "download" and found.verified
    assert (cache / "toy" / "blob.bin").read_bytes() == GOOD
    assert ensure_files("toy")["blob"].origin == "cache"  # the second time it is local


def test_download_with_wrong_checksum_leaves_nothing(env, monkeypatch, tmp_path):
    cache, _ = env
    served = put(tmp_path / "server" / "blob.bin", BAD)
    toy(monkeypatch, urls=(served.as_uri(),))
    with pytest.raises(ChecksumError, match="downloaded from file://"):
        ensure_files("toy")
    leftovers = list((cache / "toy").iterdir()) if (cache / "toy").exists() else []
    assert leftovers == []  # neither the file nor a temp file


def test_download_tries_mirrors_and_reports_failures(env, monkeypatch, tmp_path):
    served = put(tmp_path / "server" / "blob.bin", GOOD)
    dead = (tmp_path / "nowhere" / "blob.bin").as_uri()
    toy(monkeypatch, urls=(dead, served.as_uri()))
    assert ensure_files("toy")["blob"].origin == "download"
    toy(monkeypatch, urls=(dead,))
    (env[0] / "toy" / "blob.bin").unlink()
    with pytest.raises(DatasetMissingError, match=rf"the download from {dead} failed.*copy blob.bin to"):
        ensure_files("toy")


def test_download_function_checks_before_rename(tmp_path):
    src = put(tmp_path / "a.bin", GOOD)
    dest = put(tmp_path / "out" / "a.bin", b"old")

    def reject(p: Path) -> None:
        raise ChecksumError("nope")

    with pytest.raises(ChecksumError):
        download(src.as_uri(), dest, check=reject)
    assert dest.read_bytes() == b"old" and sorted(p.name for p in dest.parent.iterdir()) == ["a.bin"]
    download(src.as_uri(), dest)
    assert dest.read_bytes() == GOOD


# ----------------------------------------------------------------------------------------------- tensor cache
def _parse_counter(calls: list[int]):
    def parse(found):
        calls.append(1)
        data = np.frombuffer(found["blob"].data(), dtype=np.uint8)[:12].copy()
        return torch.from_numpy(data).view(3, 1, 2, 2), torch.arange(3), {"classes": ["a", "b", "c"]}

    return parse


def test_tensor_cache_hit_invalidation_and_corruption(env, monkeypatch):
    cache, _ = env
    toy(monkeypatch)
    raw = put(cache / "toy" / "blob.bin", GOOD)
    calls: list[int] = []
    first = load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    second = load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert calls == [1]
    assert torch.equal(first.x, second.x) and first.x.dtype == torch.uint8 and second.y.tolist() == [0, 1, 2]
    assert second.meta["classes"] == ["a", "b", "c"] and second.meta["files"]["blob"]["md5"] == md5(GOOD)
    expected = torch.tensor(list(GOOD[:12]), dtype=torch.uint8).view(3, 1, 2, 2)
    assert torch.equal(second.x, expected)

    # a changed source (new content, new published MD5) invalidates the cache
    new = GOOD.upper()
    use(monkeypatch, dataclasses.replace(SOURCES.get("toy"), files=(RawFile("blob", ("blob.bin",), md5=(md5(new),)),)))
    raw.write_bytes(new)
    os.utime(raw, ns=(1, 1))
    third = load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert len(calls) == 2 and torch.equal(third.x, torch.tensor(list(new[:12]), dtype=torch.uint8).view(3, 1, 2, 2))

    # a corrupt cache file is rebuilt from the source, not trusted
    cfile = cache / "toy" / "all.safetensors"
    blob = bytearray(cfile.read_bytes())
    blob[-1] ^= 0xFF  # flip a bit of the label tensor
    cfile.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="corrupt"):
        fourth = load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert len(calls) == 3 and torch.equal(fourth.y, third.y)
    cfile.write_bytes(cfile.read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert len(calls) == 4

    # the cache records the parameters that shaped it: others rebuild it
    load_prepared("toy", "all", ["blob"], _parse_counter(calls), params={"size": 5})
    assert len(calls) == 5
    load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert len(calls) == 6

    # raw files gone: the cache built from verified copies still serves
    raw.unlink()
    fifth = load_prepared("toy", "all", ["blob"], _parse_counter(calls))
    assert len(calls) == 6 and torch.equal(fifth.x, third.x) and "no longer present" in fifth.meta["note"]


# ----------------------------------------------------------------------------------------------- archives
def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize(
    "members,links",
    [
        ({"ok.txt": b"1", "../evil": b"x"}, None),
        ({"ok.txt": b"1", "sub/../../evil": b"x"}, None),
        ({"/tmp/rulab_abs_evil": b"x"}, None),
        ({"ok.txt": b"1"}, {"link": "../../evil"}),
        ({"ok.txt": b"1"}, {"link": "/etc/passwd"}),
    ],
)
def test_extract_refuses_escaping_members(tmp_path, members, links):
    archive = _tar(tmp_path / "a.tar.gz", members, links)
    dest = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match="unsafe"):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []  # nothing at all was extracted
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/rulab_abs_evil").exists()


def test_extract_refuses_zip_escape(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good/a.txt", b"1")
        zf.writestr("../evil", b"x")
    dest = tmp_path / "out"
    with pytest.raises(DataError, match="outside"):
        extract_archive(archive, dest)
    assert not (tmp_path / "evil").exists() and list(dest.iterdir()) == []


def test_extract_tar_and_zip_and_merge(tmp_path):
    dest = tmp_path / "out"
    put(dest / "root" / "keep.txt", b"kept")
    names = extract_archive(_tar(tmp_path / "a.tar.gz", {"root/x/a.bin": b"A", "root/b.bin": b"B"}), dest)
    assert names == ["root"]
    assert (dest / "root" / "x" / "a.bin").read_bytes() == b"A" and (dest / "root" / "keep.txt").read_bytes() == b"kept"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("root/z.bin", b"Z")
    extract_archive(tmp_path / "b.zip", dest)
    assert (dest / "root" / "z.bin").read_bytes() == b"Z" and (dest / "root" / "b.bin").read_bytes() == b"B"
    assert [p.name for p in dest.iterdir()] == ["root"]  # no temp directory left behind
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes((tmp_path / "a.tar.gz").read_bytes()[:30])
    with pytest.raises(DataError, match="cut.tar.gz"):
        extract_archive(cut, tmp_path / "out2")


def test_archive_in_cache_provides_files(env, monkeypatch, tmp_path):
    cache, _ = env
    archive = _tar(tmp_path / "arc.tar.gz", {"batches/a.bin": GOOD})
    rf = RawFile("a", ("batches/a.bin",), md5=(md5(GOOD),))
    src = use(
        monkeypatch,
        Source(name="arc", title="Arc", files=(rf,), archives=(Archive("arc.tar.gz", md5(archive.read_bytes())),)),
    )
    put(cache / "arc" / "arc.tar.gz", archive.read_bytes())
    assert ensure_files("arc")["a"].path == cache / "arc" / "batches" / "a.bin"
    (cache / "arc" / "batches" / "a.bin").unlink()
    use(monkeypatch, dataclasses.replace(src, archives=(Archive("arc.tar.gz", "0" * 32),)))
    with pytest.raises(ChecksumError, match="arc.tar.gz"):
        ensure_files("arc")


def test_folder_source_downloads_archive(env, monkeypatch, tmp_path):
    cache, _ = env
    archive = _tar(tmp_path / "server" / "imgs.tar.gz", {"imgs/c/1.png": b"not really", "imgs/c/2.png": b"x"})
    arc = Archive("imgs.tar.gz", md5(archive.read_bytes()), (archive.as_uri(),))
    use(monkeypatch, Source(name="fold", title="Fold", archives=(arc,), folders=("imgs",), image_folder=True))
    directory, origin = ensure_folders("fold")
    assert (directory, origin) == (cache / "fold", "download")
    assert (cache / "fold" / "imgs" / "c" / "2.png").read_bytes() == b"x"
    assert ensure_folders("fold")[1] == "cache"


def test_folder_source_missing_and_unsafe(env, monkeypatch, tmp_path):
    dead = (tmp_path / "nowhere" / "imgs.tar.gz").as_uri()
    use(
        monkeypatch,
        Source(name="fold", title="Fold", archives=(Archive("imgs.tar.gz", None, (dead,)),), image_folder=True),
    )
    with pytest.raises(
        DatasetMissingError, match=rf"download from {dead} failed.*rulab data fetch fold.*copy imgs.tar.gz"
    ):
        ensure_folders("fold")
    evil = _tar(tmp_path / "server" / "imgs.tar.gz", {"../evil.png": b"x"})
    use(
        monkeypatch,
        Source(
            name="fold", title="Fold", archives=(Archive("imgs.tar.gz", None, (evil.as_uri(),)),), image_folder=True
        ),
    )
    with pytest.raises(DataError, match="unsafe"):
        ensure_folders("fold")
    assert not (env[0] / "evil.png").exists()


# ----------------------------------------------------------------------------------------------- fetch / list_data
def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_fetch_and_list_data(env, monkeypatch):
    _, system = env
    files = {
        "train-images": _idx(np.zeros((4, 28, 28), np.uint8)),
        "train-labels": _idx(np.array([0, 1, 2, 3], np.uint8)),
        "t10k-images": _idx(np.zeros((2, 28, 28), np.uint8)),
        "t10k-labels": _idx(np.array([5, 6], np.uint8)),
    }
    src = SOURCES.get("fashion_mnist")
    rfs = []
    for rf in src.files:
        put(system / "fashion-mnist" / rf.paths[0], gzip.compress(files[rf.key], mtime=1))
        rfs.append(dataclasses.replace(rf, md5=("0" * 32,), content_md5=(md5(files[rf.key]),)))
    use(monkeypatch, dataclasses.replace(src, files=tuple(rfs)))
    out = F.fetch("fashion_mnist")
    assert out["kind"] == "files" and out["origin"] == "system"
    assert {k: v["checked"] for k, v in out["files"].items()} == dict.fromkeys(files, "decompressed")
    assert F.fetch("digits")["origin"] == "bundled:scikit-learn"
    with pytest.raises(ConfigError, match="did you mean 'fashion_mnist'"):
        F.fetch("fashoin_mnist")
    rows = {r["name"]: r for r in F.list_data()}
    fm = rows["fashion_mnist"]
    assert (
        fm["present"]
        and fm["origin"] == "system"
        and fm["size_bytes"] == sum((system / "fashion-mnist" / rf.paths[0]).stat().st_size for rf in src.files)
    )
    assert rows["cifar10"]["present"] is False and rows["cifar10"]["origin"] == "missing"
    assert rows["cifar10"]["kind"] == "dataset+ood" and rows["dtd"]["kind"] == "ood"
    assert rows["digits"]["origin"] == "bundled:scikit-learn" and rows["digits"]["present"]
    assert rows["textures"]["origin"] == "bundled:scikit-image"
