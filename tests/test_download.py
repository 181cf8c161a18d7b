"""Tests for companion.download: look-up folders, offline detection, verified atomic downloads, safe reads.

No test touches the network: ``download._fetch`` is faked, and the reachability probe is either faked or
aimed at a socket on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

from companion import download
from companion.download import CorruptDataError, DataNotFoundError, DownloadError, Source

SOURCE = Source("mnist", "MNIST", ("mnist", "MNIST/raw"))
FILE = "t10k-labels-idx1-ubyte.gz"
PAYLOAD = gzip.compress(b"some bytes" * 1000, mtime=0)
ORIGINAL_FETCH = download._fetch  # captured before the fixture replaces it


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No COURSE_DATA or COURSE_OFFLINE, a private cache, a forgotten probe, and a _fetch that must not run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("COURSE_DATA", raising=False)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setattr(download, "_reachable", {})

    def no_network(url: str, dest: Path) -> None:
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(download, "_fetch", no_network)
    return tmp_path / "xdg" / "generatevision"


# ---------------------------------------------------------------------------------------------------------
# Where to look
# ---------------------------------------------------------------------------------------------------------


def test_cache_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_dir() == tmp_path / ".cache" / "generatevision"


def test_search_order_root_course_data_cache(tmp_path: Path, isolated: Path, monkeypatch) -> None:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "env"))
    folders = download.search_folders(SOURCE, tmp_path / "root")
    assert folders[:3] == [
        (tmp_path / "root", "root"),
        (tmp_path / "root" / "mnist", "root"),
        (tmp_path / "root" / "MNIST/raw", "root"),
    ]
    assert [origin for _, origin in folders] == ["root"] * 3 + ["COURSE_DATA"] * 3 + ["user cache"] * 3
    assert folders[-2] == (isolated / "mnist", "user cache")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "root"))  # the same folder twice is searched once
    assert len(download.search_folders(SOURCE, tmp_path / "root")) == 6


def test_find_file_prefers_gzip(tmp_path: Path) -> None:
    assert download.find_file(tmp_path, "x") is None
    (tmp_path / "x").write_bytes(b"")
    assert download.find_file(tmp_path, "x") == tmp_path / "x"
    (tmp_path / "x.gz").write_bytes(b"")
    assert download.find_file(tmp_path, "x") == tmp_path / "x.gz"


def test_not_found_message_is_short_and_complete(tmp_path: Path) -> None:
    searched = [(tmp_path, "COURSE_DATA", ""), (tmp_path / "mnist", "COURSE_DATA", "has a.gz but lacks b.gz")]
    err = download.not_found(SOURCE, "MNIST 'test' split", ["a.gz", "b.gz"], searched, "not tried (offline: X)")
    lines = str(err).splitlines()
    assert lines[0] == (
        "MNIST 'test' split not found: a.gz, b.gz are in none of the searched folders; download not tried "
        "(offline: X)."
    )
    assert "COURSE_DATA=<dir>" in lines[1] and "<dir>/mnist/" in lines[1]
    assert lines[2] == f"Searched (each also with mnist/, MNIST/raw/): COURSE_DATA={tmp_path}."
    assert lines[3] == f"Incomplete: {tmp_path / 'mnist'} has a.gz but lacks b.gz."
    assert err.missing == ("a.gz", "b.gz") and err.searched == (tmp_path, tmp_path / "mnist")
    assert isinstance(err, FileNotFoundError)
    assert err._render_traceback_() == [f"DataNotFoundError: {err}"]


def test_jupyter_shows_the_message_without_frames() -> None:
    """IPython renders an exception's ``_render_traceback_`` instead of its frames (as a kernel does)."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    shown: list[list[str]] = []
    original = shell._showtraceback
    shell._showtraceback = lambda etype, evalue, stb: shown.append(stb)
    try:
        shell.run_cell(
            "from companion.download import DataNotFoundError\n"
            "def load():\n"
            "    try:\n"
            "        raise OSError('inner')\n"
            "    except OSError:\n"
            "        pass\n"
            "    raise DataNotFoundError('MNIST not found.\\nFix: set COURSE_DATA.')\n"
            "load()\n"
        )
    finally:
        shell._showtraceback = original
    assert shown == [["DataNotFoundError: MNIST not found.\nFix: set COURSE_DATA."]]


# ---------------------------------------------------------------------------------------------------------
# Offline detection
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("1", "offline: COURSE_OFFLINE=1"), ("yes", "offline: COURSE_OFFLINE=1"),
                                                 ("0", None), ("off", None)])
def test_course_offline_decides_without_probing(monkeypatch, value: str, expected) -> None:
    monkeypatch.setenv("COURSE_OFFLINE", value)
    monkeypatch.setattr(download, "_probe", lambda *a: pytest.fail("probed the network"))
    assert download.offline_reason("mnist") == expected
    assert download.offline("mnist") is (expected is not None)


def test_unset_course_offline_probes_the_first_mirror_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    calls: list[tuple[str, int]] = []

    def probe(host: str, port: int, timeout: float) -> bool:
        calls.append((host, port))
        return False

    monkeypatch.setattr(download, "_probe", probe)
    assert download.offline_reason("mnist") == "offline: ossci-datasets.s3.amazonaws.com unreachable"
    assert download.offline("mnist")
    assert calls == [("ossci-datasets.s3.amazonaws.com", 443)]  # remembered
    assert download.offline_reason(None) is None  # nothing to probe for


def test_a_proxy_means_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setattr(download, "_probe", lambda *a: pytest.fail("probed the network"))
    assert download.offline_reason("mnist") is None


def test_probe_on_a_local_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert download._probe("127.0.0.1", port, 1.0)
    assert not download._probe("127.0.0.1", port, 1.0)  # closed now: refused


# ---------------------------------------------------------------------------------------------------------
# Downloads (fake _fetch)
# ---------------------------------------------------------------------------------------------------------


def fake_fetch(calls: list[str], payload: bytes = PAYLOAD, fail_on: str | None = None):
    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        if fail_on and url.startswith(fail_on):
            raise OSError("mirror down")
        Path(dest).write_bytes(payload)

    return fetch


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_download_verified_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    calls: list[str] = []
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {FILE: hashlib.new(algorithm, PAYLOAD).hexdigest()})
    monkeypatch.setattr(download, "_fetch", fake_fetch(calls))
    path = download.download(SOURCE, FILE, tmp_path / "cache")
    assert path == tmp_path / "cache" / FILE and path.read_bytes() == PAYLOAD
    assert calls == [download.MIRRORS["mnist"][0] + FILE]
    assert all_files(tmp_path / "cache") == [FILE]  # no temporary file left


def test_download_falls_back_to_second_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = download.MIRRORS["mnist"][:2]
    calls: list[str] = []
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {FILE: hashlib.md5(PAYLOAD).hexdigest()})
    monkeypatch.setattr(download, "_fetch", fake_fetch(calls, fail_on=first))
    assert download.download(SOURCE, FILE, tmp_path).read_bytes() == PAYLOAD
    assert calls == [first + FILE, second + FILE]


def test_download_checksum_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(download, "_fetch", fake_fetch(calls))  # the real md5 table: these bytes mismatch
    with pytest.raises(DownloadError, match="md5 mismatch") as info:
        download.download(SOURCE, FILE, tmp_path / "cache")
    assert FILE in str(info.value)
    assert len(calls) == len(download.MIRRORS["mnist"])  # every mirror tried
    assert all_files(tmp_path / "cache") == []


def test_download_refuses_files_without_a_checksum(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no known checksum"):
        download.download(SOURCE, "unknown.bin", tmp_path)


@pytest.mark.parametrize("error", [OSError("connection reset"), KeyboardInterrupt()])
def test_download_failing_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def fetch(url: str, dest: Path) -> None:
        Path(dest).write_bytes(b"\x1f\x8b partial bytes")
        raise error

    monkeypatch.setattr(download, "_fetch", fetch)
    with pytest.raises(DownloadError if isinstance(error, Exception) else KeyboardInterrupt):
        download.download(SOURCE, FILE, tmp_path / "cache")
    assert all_files(tmp_path / "cache") == []


def test_real_fetch_with_a_local_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    dest = tmp_path / "dest.bin"
    ORIGINAL_FETCH(src.as_uri(), dest)  # the urllib code path, on a file:// URL (no network)
    assert dest.read_bytes() == src.read_bytes()
    assert download.file_hash(dest, "sha256") == hashlib.sha256(src.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Reading and extracting
# ---------------------------------------------------------------------------------------------------------


def test_read_bytes_gunzips_and_names_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"plain")
    assert download.read_bytes(path) == b"plain"
    path.write_bytes(PAYLOAD)
    assert download.read_bytes(path) == b"some bytes" * 1000
    path.write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    with pytest.raises(CorruptDataError, match=r"f\.bin: the gzip data is truncated") as info:
        download.read_bytes(path)
    assert info.value.__context__ is None or info.value.__suppress_context__


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_extract_tar_writes_only_the_named_files(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes({
        "pack/one": b"1", "pack/two": b"2", "pack/other": b"x", "../evil": b"x", "pack/../../evil2": b"x",
    }))
    out = tmp_path / "out"
    assert sorted(download.extract_tar(archive, "pack", ["one", "two", "three"], out)) == ["one", "two"]
    assert all_files(out) == ["pack", "pack/one", "pack/two"]
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil2").exists()
    with pytest.raises(CorruptDataError, match="holds no pack/ files"):
        download.extract_tar(archive, "pack", ["one"], tmp_path / "out2", required=["three"])
    assert all_files(tmp_path / "out2") == []
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(CorruptDataError, match="truncated or corrupted archive"):
        download.extract_tar(archive, "pack", ["one"], tmp_path / "out3")
    assert all_files(tmp_path / "out3") == []


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/generatevision-pwned",))


def test_load_pickle_builds_only_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.arange(6, dtype=np.uint8), b"labels": [1, 2]}, protocol=2))
    allowed = [("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")]
    obj = download.load_pickle(path, allowed)
    assert obj[b"labels"] == [1, 2] and obj[b"data"].tolist() == list(range(6))
    path.write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="unexpected object .*system in batch"):
        download.load_pickle(path, allowed)
    assert not Path("/tmp/generatevision-pwned").exists()


def test_errors_are_the_usual_kinds() -> None:
    assert issubclass(DataNotFoundError, FileNotFoundError) and issubclass(CorruptDataError, ValueError)
