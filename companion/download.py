"""Finding and fetching data files: where to look, mirrors, checksums, atomic downloads, safe extraction.

Floor 1: nothing here knows what an image is. :mod:`companion.data` describes each dataset (its files and
subfolder names) and asks this module to find the files or fetch them.

Where files are looked for, in order (the first folder holding every file a split needs wins):

1. the ``root=`` argument of a loader,
2. the ``$COURSE_DATA`` environment variable (e.g. ``COURSE_DATA=../shared/datasets``),
3. the user cache ``$XDG_CACHE_HOME/generatevision`` (default ``~/.cache/generatevision``),
4. a download into that cache from the canonical mirrors, checksum-verified (md5 or sha256) and written
   atomically; not tried when offline (``COURSE_OFFLINE=1``, or no mirror reachable: see :func:`offline`).

In each folder the files may sit directly inside it or in a per-dataset subfolder (``mnist/`` ...). Missing
data raises :class:`DataNotFoundError`, whose short message says what is missing, where to put it and how to
set ``COURSE_DATA``; a truncated or corrupted file raises :class:`CorruptDataError`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "CHECKSUMS",
    "MIRRORS",
    "CorruptDataError",
    "DataNotFoundError",
    "DownloadError",
    "Source",
    "cache_dir",
    "download",
    "extract_tar",
    "file_hash",
    "find_file",
    "load_pickle",
    "not_found",
    "offline",
    "offline_reason",
    "read_bytes",
    "search_bases",
    "search_folders",
    "stamp",
]

PathLike = str | os.PathLike

#: Mirrors tried in order, per dataset key; a file's URL is mirror + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

#: Checksums of the downloadable files (md5: 32 hex digits, sha256: 64), per dataset key then file name.
#: These are torchvision's well-known md5 values.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}

_DOWNLOAD_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 2.0  # how long "is a mirror reachable?" may take
_PROBE_TTL_S = 60.0  # how long its answer is trusted
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the searched folders and could not be downloaded.

    The message is complete on its own (what is missing, where to put it, how to set ``COURSE_DATA``), so in
    Jupyter/IPython it is shown without a traceback.

    Attributes:
        missing: the file names that were needed.
        searched: the folders that were searched, in order.
    """

    def __init__(self, message: str, missing: Sequence[str] = (), searched: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.searched = tuple(searched)

    def __str__(self) -> str:
        return str(self.args[0])

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the message (the frames would only hide it)."""
        return [f"{type(self).__name__}: {self}"]


class CorruptDataError(ValueError):
    """A data file exists but is truncated or corrupted (the message names the file and the problem)."""


class DownloadError(Exception):
    """Every mirror failed for one file (the message lists each URL and why)."""


# --------------------------------------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One dataset's place on disk and online.

    Attributes:
        key: key into :data:`MIRRORS` / :data:`CHECKSUMS` and the name of its user-cache subfolder.
        title: the human name (``"MNIST"``).
        subdirs: per-dataset subfolders searched inside every base folder (the first is the suggested one).
    """

    key: str
    title: str
    subdirs: tuple[str, ...]


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/generatevision`` or ``~/.cache/generatevision``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "generatevision"


def search_bases(root: PathLike | None) -> list[tuple[Path, str]]:
    """The base folders in look-up order, each with where it came from (``root``, ``COURSE_DATA``, ``user cache``)."""
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root"))
    env = os.environ.get("COURSE_DATA", "").strip()
    if env:
        bases.append((Path(env).expanduser(), "COURSE_DATA"))
    bases.append((cache_dir(), "user cache"))
    return bases


def search_folders(source: Source, root: PathLike | None) -> list[tuple[Path, str]]:
    """Every folder to search for ``source`` (each base, then its subfolders), in order, without duplicates."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for base, origin in search_bases(root):
        for folder in (base, *(base / sub for sub in source.subdirs)):
            key = os.path.abspath(folder)
            if key not in seen:
                seen.add(key)
                out.append((folder, origin))
    return out


def find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem``, whichever is a file (the compressed one first)."""
    for name in (stem + ".gz", stem):
        path = folder / name
        if path.is_file():
            return path
    return None


def stamp(path: Path) -> tuple[str, int, int]:
    """``(resolved path, mtime_ns, size)``: a cache key that changes when the file does."""
    resolved = path.resolve()
    st = resolved.stat()
    return str(resolved), st.st_mtime_ns, st.st_size


_SHOWN_AS = {"root": "root={}", "COURSE_DATA": "COURSE_DATA={}", "user cache": "user cache {}"}


def _bases_of(searched: Sequence[tuple[Path, str, str]]) -> list[str]:
    """The base folders among ``searched`` (the first folder seen per origin), as ``COURSE_DATA=/x`` etc."""
    out: list[str] = []
    origins: set[str] = set()
    for folder, origin, _note in searched:
        if origin not in origins:
            origins.add(origin)
            out.append(_SHOWN_AS.get(origin, origin + " {}").format(folder))
    return out


def not_found(
    source: Source,
    what: str,
    needed: Sequence[str],
    searched: Sequence[tuple[Path, str, str]],
    download_note: str,
    instead: str = "",
) -> DataNotFoundError:
    """The error for files found nowhere: a short message that says where to put them.

    Args:
        source: the dataset.
        what: what was asked for, e.g. ``"MNIST 'test' split"``.
        needed: the file names that are missing.
        searched: ``(folder, origin, note)`` per searched folder; a non-empty note (``"has X but lacks Y"``)
            is quoted in the message.
        download_note: what became of the download, e.g. ``"not tried (offline: COURSE_OFFLINE=1)"``.
        instead: a file that would do instead (an archive holding them), if any.
    """
    bases = _bases_of(searched)
    partial = [f"{folder} {note}" for folder, _origin, note in searched if note]
    sub = source.subdirs[0]
    files = ", ".join(needed) + (f" (or {instead})" if instead else "")
    verb = "is" if len(needed) == 1 and not instead else "are"
    lines = [
        f"{what} not found: {files} {verb} in none of the searched folders; download {download_note}.",
        f"Fix: put them in <dir>/{sub}/ and set COURSE_DATA=<dir> before starting Jupyter (or run "
        f"os.environ['COURSE_DATA'] = '<dir>' before loading), or pass root=<dir>; connected to the internet "
        f"(COURSE_OFFLINE unset) they are downloaded into the user cache.",
        f"Searched (each also with {', '.join(s + '/' for s in source.subdirs)}): {'; '.join(bases)}.",
    ]
    if partial:
        lines.append("Incomplete: " + "; ".join(partial) + ".")
    return DataNotFoundError("\n".join(lines), missing=needed, searched=[f for f, _, _ in searched])


# --------------------------------------------------------------------------------------------------------
# Offline detection
# --------------------------------------------------------------------------------------------------------

_reachable: dict[tuple[str, int], tuple[float, bool]] = {}


def _probe(host: str, port: int, timeout: float) -> bool:
    """Can a TCP connection to ``host:port`` be opened within ``timeout`` seconds? Tests monkeypatch this."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _reachable_within(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Is the host of ``url`` reachable? Bounded by ``timeout`` even when name resolution hangs; memoised."""
    parts = urllib.parse.urlsplit(url)
    key = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    cached = _reachable.get(key)
    if cached is not None and time.monotonic() - cached[0] < _PROBE_TTL_S:
        return cached[1]
    answer = [False]

    def run() -> None:
        answer[0] = _probe(key[0], key[1], timeout)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)  # getaddrinfo ignores socket timeouts: do not wait for it
    _reachable[key] = (time.monotonic(), answer[0])
    return answer[0]


def offline_reason(key: str | None = None) -> str | None:
    """Why downloads of dataset ``key`` would not be tried (``"offline: ..."``), or ``None`` when they would.

    ``COURSE_OFFLINE=1`` (or true/yes/on) means offline, ``COURSE_OFFLINE=0`` (or false/no/off) means try the
    network regardless. Unset, the first mirror of ``key`` is probed (at most ~2 s, remembered for a minute);
    behind an HTTP proxy (``*_proxy`` variables) the network is assumed to work.
    """
    flag = os.environ.get("COURSE_OFFLINE", "").strip().lower()
    if flag in _TRUE:
        return "offline: COURSE_OFFLINE=1"
    if flag in _FALSE or key is None or urllib.request.getproxies():
        return None
    mirrors = MIRRORS.get(key, ())
    if mirrors and not _reachable_within(mirrors[0]):
        return f"offline: {urllib.parse.urlsplit(mirrors[0]).hostname} unreachable"
    return None


def offline(key: str | None = None) -> bool:
    """True when dataset ``key`` would not be downloaded (see :func:`offline_reason`)."""
    return offline_reason(key) is not None


# --------------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------------


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` into the file ``dest`` (overwriting it). Tests monkeypatch this function."""
    request = urllib.request.Request(url, headers={"User-Agent": "generatevision-course/0.1"})
    with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def file_hash(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of the file's bytes (``algorithm``: ``"md5"`` or ``"sha256"``), read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hash(path: Path, expected: str) -> None:
    algorithm = "sha256" if len(expected) == 64 else "md5"
    got = file_hash(path, algorithm)
    if got != expected.lower():
        raise DownloadError(f"{algorithm} mismatch (got {got}, expected {expected}); download discarded")


def download(source: Source, filename: str, folder: Path) -> Path:
    """Fetch ``filename`` into ``folder`` from the first mirror that works; atomic and checksum-verified.

    The bytes go to a hidden temporary file in ``folder``; only once their checksum matches is it renamed to
    ``folder/filename``. On any failure (or Ctrl-C) the temporary file is removed.

    Raises:
        DownloadError: no known checksum, the folder cannot be created, or every mirror failed.
    """
    expected = CHECKSUMS.get(source.key, {}).get(filename)
    if expected is None:
        raise DownloadError(f"no known checksum for {filename}; refusing to download it unchecked")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the cache folder {folder}: {exc}") from None
    errors: list[str] = []
    for mirror in MIRRORS.get(source.key, ()):
        url = mirror + filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp)
            _check_hash(tmp, expected)
            os.replace(tmp, folder / filename)
            return folder / filename
        except Exception as exc:  # any failure of one mirror: try the next one
            errors.append(f"{url}: {exc}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise DownloadError("; ".join(errors) or f"no download mirror known for {source.title}")


# --------------------------------------------------------------------------------------------------------
# Reading and extracting
# --------------------------------------------------------------------------------------------------------


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic (whatever the file is called).

    Raises:
        CorruptDataError: truncated or corrupted gzip data.
    """
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise CorruptDataError(
            f"{path}: the gzip data is truncated ({exc}); the file is incomplete - delete it and get it again"
        ) from None
    except (OSError, zlib.error) as exc:
        raise CorruptDataError(f"{path}: corrupted gzip data ({exc}); delete the file and get it again") from None


def extract_tar(
    archive: Path, folder_name: str, names: Sequence[str], parent: Path, required: Sequence[str] = ()
) -> list[str]:
    """Extract the regular files ``folder_name/<name>`` (``name`` in ``names``) of a ``.tar.gz`` safely.

    Only those members are written, under names this code chooses, into ``parent/folder_name/``, so a
    malicious archive cannot write anywhere else. Files appear atomically (temporary folder, then
    ``os.replace``), and none appears unless the whole archive reads cleanly.

    Args:
        archive: the ``.tar.gz`` file.
        folder_name: the one folder inside the archive whose files are wanted.
        names: the file names wanted from it.
        parent: where ``folder_name/`` is created.
        required: if given, at least one of these must be in the archive.

    Returns:
        the names extracted (a subset of ``names``).

    Raises:
        CorruptDataError: a truncated or corrupted archive or member, or none of ``required`` in it.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=parent))
    try:
        extracted: list[str] = []
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = PurePosixPath(member.name)
                    if not member.isfile() or name.parts != (folder_name, name.name) or name.name not in names:
                        continue
                    src = tar.extractfile(member)
                    if src is None:  # pragma: no cover - isfile() members always have data
                        continue
                    with src, open(tmp / name.name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    if (tmp / name.name).stat().st_size != member.size:
                        raise CorruptDataError(f"{archive}: {member.name} is truncated in the archive")
                    extracted.append(name.name)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise CorruptDataError(f"{archive}: truncated or corrupted archive ({exc})") from None
        if required and not set(required) & set(extracted):
            raise CorruptDataError(f"{archive}: holds no {folder_name}/ files such as {required[0]}")
        if extracted:
            (parent / folder_name).mkdir(exist_ok=True)
        for name in extracted:
            os.replace(tmp / name, parent / folder_name / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return extracted


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only the ``(module, name)`` pairs it is given (``numpy.core`` ≡ ``numpy._core``)."""

    def __init__(self, file, allowed: Sequence[tuple[str, str]], what: str) -> None:
        super().__init__(file, encoding="bytes")
        self.allowed = {(m.replace("numpy._core.", "numpy.core."), n) for m, n in allowed}
        self.what = what

    def find_class(self, module: str, name: str):
        if (module.replace("numpy._core.", "numpy.core."), name) not in self.allowed:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in {self.what}")
        if module.startswith("numpy.core."):  # NumPy 2 renamed it; the old name warns
            try:
                return super().find_class("numpy._core." + module.removeprefix("numpy.core."), name)
            except ImportError:  # NumPy 1
                pass
        return super().find_class(module, name)


def load_pickle(path: Path, allowed: Sequence[tuple[str, str]]) -> object:
    """Unpickle ``path`` (Python 2 byte strings kept as ``bytes``), refusing any object not in ``allowed``.

    A pickle can run arbitrary code when loaded; this one can only build plain containers and the listed
    classes/functions, e.g. ``("numpy", "ndarray")``.

    Raises:
        pickle.UnpicklingError: the file asks for anything else.
    """
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, allowed, path.name).load()
