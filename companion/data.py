"""Datasets for the course: real image data, small built-in sets and procedural toys.

Real data (MNIST, Fashion-MNIST, CIFAR-10) is read from the datasets' ORIGINAL file formats, so no
torchvision is needed:

* MNIST / Fashion-MNIST: IDX files (``train-images-idx3-ubyte.gz`` ...), gzip-compressed or not;
* CIFAR-10: the python pickle batches in ``cifar-10-batches-py/`` (or the ``cifar-10-python.tar.gz`` archive).

Where the files are looked for, in order (first folder holding every file a split needs wins):

1. the ``root=`` argument,
2. the ``$COURSE_DATA`` environment variable (e.g. ``COURSE_DATA=../shared/datasets``),
3. the user cache ``$XDG_CACHE_HOME/generatevision`` (default ``~/.cache/generatevision``),
4. a download into that cache from the canonical mirrors, md5-checked and written atomically
   (skipped when ``COURSE_OFFLINE=1``).

In each folder the files may sit directly inside it or in a per-dataset subfolder (``mnist/``,
``fashion_mnist/`` or ``fashion-mnist/``, ``cifar10/``). Missing data raises :class:`DataNotFoundError`
(a ``FileNotFoundError``) that says what is missing, where it looked and how to fix it; a truncated or
corrupted file raises :class:`CorruptDataError` (a ``ValueError``) instead of giving a short dataset.
Parsed datasets are cached in-process, so loading the same split twice is instant; treat the returned
tensors as read-only (``.clone()`` before changing them in place).

Also here: scikit-learn's 8x8 digits and sample photos, a dSprites-style shape generator and 2-D toy
distributions (eight Gaussians, two moons, swiss roll). Everything random takes a ``seed`` and is
reproducible on every machine. ``import companion.data`` stays light: scikit-learn is never imported at
module level (its bundled digits and photos are read straight from its package folder).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import math
import operator
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

__all__ = [
    "CorruptDataError",
    "DataNotFoundError",
    "cifar10",
    "data_source",
    "digits",
    "eight_gaussians",
    "fashion_mnist",
    "mnist",
    "mnist_splits",
    "sample_images",
    "shapes",
    "shapes_factor_names",
    "shapes_shape_names",
    "subset",
    "swiss_roll",
    "two_moons",
]

PathLike = str | os.PathLike

SPLITS = ("train", "test")

#: Names of the factors returned by :func:`shapes`, in a fixed order.
shapes_factor_names: tuple[str, ...] = ("shape", "scale", "rotation", "pos_x", "pos_y")
#: What the values 0, 1, 2 of the ``"shape"`` factor mean.
shapes_shape_names: tuple[str, ...] = ("square", "ellipse", "heart")

# Mirrors tried in order; a file's URL is mirror + file name.
_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

# md5 of the downloaded files (torchvision's well-known values), keyed by dataset then file name.
_MD5: dict[str, dict[str, str]] = {
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
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR_EXTRACT = (*_CIFAR_FILES["train"], *_CIFAR_FILES["test"], "batches.meta", "readme.html")


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the searched folders and could not be downloaded.

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


class CorruptDataError(ValueError):
    """A data file exists but is truncated or corrupted (the message names the file and the problem)."""


class _DownloadError(Exception):
    """Every mirror failed for one file (internal; turned into :class:`DataNotFoundError`)."""


@dataclass(frozen=True)
class _Dataset:
    key: str  # key into _MIRRORS / _MD5 and name of the cache subfolder
    title: str  # human name
    subdirs: tuple[str, ...]  # per-dataset subfolders searched inside every base folder


_MNIST = _Dataset("mnist", "MNIST", ("mnist", "MNIST/raw"))
_FASHION = _Dataset("fashion_mnist", "Fashion-MNIST", ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"))
_CIFAR10 = _Dataset("cifar10", "CIFAR-10", ("cifar10", "cifar-10", "CIFAR10"))
_BY_NAME = {
    "mnist": _MNIST,
    "fashion_mnist": _FASHION,
    "fashion-mnist": _FASHION,
    "fashionmnist": _FASHION,
    "cifar10": _CIFAR10,
    "cifar-10": _CIFAR10,
}


# --------------------------------------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("COURSE_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/generatevision`` or ``~/.cache/generatevision``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "generatevision"


def _bases(root: PathLike | None) -> list[tuple[Path, str]]:
    """The base folders in look-up order, each with where it came from."""
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root="))
    env = os.environ.get("COURSE_DATA", "").strip()
    if env:
        bases.append((Path(env).expanduser(), "$COURSE_DATA"))
    bases.append((_cache_dir(), "user cache"))
    return bases


def _folders(ds: _Dataset, root: PathLike | None) -> list[tuple[Path, str]]:
    """Every folder to search for ``ds``, in order, without duplicates."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for base, origin in _bases(root):
        for folder in (base, *(base / sub for sub in ds.subdirs)):
            key = os.path.abspath(folder)
            if key not in seen:
                seen.add(key)
                out.append((folder, origin))
    return out


def _idx_names(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_in(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem`` if it is a file."""
    for name in (stem + ".gz", stem):
        path = folder / name
        if path.is_file():
            return path
    return None


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: valid splits are {', '.join(map(repr, SPLITS))}")
    return split


def _describe_folder(folder: Path, present: Sequence[str], missing: Sequence[str]) -> str:
    if not folder.is_dir():
        return f"{folder}  (folder does not exist)"
    if present:
        return f"{folder}  (has {', '.join(present)} but lacks {', '.join(missing)})"
    return f"{folder}  (none of the files)"


def _not_found(
    ds: _Dataset,
    split: str | None,
    needed: Sequence[str],
    searched: Sequence[tuple[Path, str, str]],
    download_note: str,
) -> DataNotFoundError:
    what = f"{ds.title} {split!r} split" if split else ds.title
    lines = [f"{what} not found: missing {', '.join(needed)}.", "Folders searched, in order:"]
    lines += [f"  - {desc}   [{origin}]" for _folder, origin, desc in searched]
    lines.append(f"Download: {download_note}")
    cache = _cache_dir() / ds.key
    lines.append(
        "How to fix: set COURSE_DATA to a folder that holds these files (e.g. COURSE_DATA=../shared/datasets), "
        "or pass root=<folder> to the loader, or put the files in one of the folders above "
        f"(directly or in a '{ds.subdirs[0]}/' subfolder), or connect to the internet (and unset "
        f"COURSE_OFFLINE) so they are downloaded to {cache}."
    )
    return DataNotFoundError("\n".join(lines), missing=needed, searched=[f for f, _, _ in searched])


# --------------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------------


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` into the file ``dest`` (overwriting it). Tests monkeypatch this function."""
    request = urllib.request.Request(url, headers={"User-Agent": "generatevision-course/0.1"})
    with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(ds: _Dataset, filename: str, folder: Path) -> Path:
    """Fetch ``filename`` into ``folder`` from the first mirror that works; atomic and md5-checked.

    The bytes go to a hidden temporary file in ``folder``; only once their md5 matches is it renamed to
    ``folder/filename``. On any failure (or Ctrl-C) the temporary file is removed.
    """
    expected = _MD5.get(ds.key, {}).get(filename)
    if expected is None:
        raise _DownloadError(f"no known md5 checksum for {filename}; refusing to download it unchecked")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _DownloadError(f"cannot create the cache folder {folder}: {exc}") from exc
    errors: list[str] = []
    for mirror in _MIRRORS.get(ds.key, ()):
        url = mirror + filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp)
            got = _md5_of(tmp)
            if got != expected:
                raise _DownloadError(f"md5 mismatch (got {got}, expected {expected}); download discarded")
            os.replace(tmp, folder / filename)
            return folder / filename
        except Exception as exc:  # any failure of one mirror: try the next one
            errors.append(f"{url}: {exc}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise _DownloadError("; ".join(errors) or f"no download mirror known for {ds.title}")


# --------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX format)
# --------------------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic (whatever the file is called)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise CorruptDataError(
            f"{path}: the gzip data is truncated ({exc}); the file is incomplete - delete it and get it again"
        ) from exc
    except (OSError, zlib.error) as exc:
        raise CorruptDataError(
            f"{path}: corrupted gzip data ({exc}); delete the file and get it again"
        ) from exc


def _parse_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``ndim`` dimensions into a uint8 array."""
    data = _read_bytes(path)
    kind = "image" if ndim == 3 else "label"
    if len(data) < 4:
        raise CorruptDataError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    expected = 0x0800 | ndim
    if magic != expected:
        raise CorruptDataError(
            f"{path}: bad magic number 0x{magic:08X} (an IDX {kind} file starts with 0x{expected:08X}); "
            "this is not the right file or it is corrupted"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{path}: the IDX header is truncated ({len(data)} of {header} bytes)")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    want = math.prod(dims)
    have = len(data) - header
    if have != want:
        raise CorruptDataError(
            f"{path}: the header says {dims[0]} items of shape {tuple(dims[1:])} ({want} bytes) but the data "
            f"holds {have} bytes; the file is truncated or corrupted"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _load_idx_cached(
    images: tuple[str, int, int], labels: tuple[str, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse one split; keyed on (resolved path, mtime, size) so a changed file is parsed again."""
    img_path, lbl_path = Path(images[0]), Path(labels[0])
    img = _parse_idx(img_path, 3)
    lbl = _parse_idx(lbl_path, 1)
    if img.shape[1:] != (28, 28):
        raise CorruptDataError(f"{img_path}: images are {img.shape[1]}x{img.shape[2]}, expected 28x28")
    if img.shape[0] != lbl.shape[0]:
        raise CorruptDataError(
            f"image/label count mismatch: {img_path} holds {img.shape[0]} images but {lbl_path} holds "
            f"{lbl.shape[0]} labels"
        )
    if lbl.size and int(lbl.max()) > 9:
        raise CorruptDataError(f"{lbl_path}: label values must be 0..9, found {int(lbl.max())}")
    x = torch.from_numpy(img.astype(np.float32)).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(lbl.astype(np.int64))
    return x, y


def _stamp(path: Path) -> tuple[str, int, int]:
    resolved = path.resolve()
    st = resolved.stat()
    return str(resolved), st.st_mtime_ns, st.st_size


def _load_idx(images: Path, labels: Path) -> TensorDataset:
    x, y = _load_idx_cached(_stamp(images), _stamp(labels))
    return TensorDataset(x, y)


def _idx_split(ds: _Dataset, split: str, root: PathLike | None) -> TensorDataset:
    _check_split(split)
    stems = _idx_names(split)
    searched: list[tuple[Path, str, str]] = []
    for folder, origin in _folders(ds, root):
        found = [_find_in(folder, stem) for stem in stems]
        if all(p is not None for p in found):
            return _load_idx(found[0], found[1])  # type: ignore[arg-type]
        present = [p.name for p in found if p is not None]
        missing = [stem + ".gz" for stem, p in zip(stems, found) if p is None]
        searched.append((folder, origin, _describe_folder(folder, present, missing)))
    needed = [stem + ".gz" for stem in stems]
    if _offline():
        raise _not_found(ds, split, needed, searched, "not attempted (COURSE_OFFLINE=1)")
    cache = _cache_dir() / ds.key
    paths = []
    try:
        for stem in stems:
            paths.append(_find_in(cache, stem) or _download(ds, stem + ".gz", cache))
    except _DownloadError as exc:
        raise _not_found(ds, split, needed, searched, f"failed: {exc}") from exc
    return _load_idx(paths[0], paths[1])


def mnist(split: str, root: PathLike | None = None) -> TensorDataset:
    """MNIST handwritten digits. Introduced in chapter 01.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: a folder to look in first (the files directly in it or in ``root/mnist/``).

    Returns:
        ``TensorDataset(images, labels)``: images float32 ``[N, 1, 28, 28]`` in [0, 1], labels int64 ``[N]``.

    Raises:
        ValueError: an unknown split.
        DataNotFoundError: the files are nowhere and cannot be downloaded.
        CorruptDataError: a file is truncated or corrupted.
    """
    return _idx_split(_MNIST, split, root)


def fashion_mnist(split: str, root: PathLike | None = None) -> TensorDataset:
    """Fashion-MNIST (Zalando clothing, 10 classes), same format and shapes as :func:`mnist`.

    Args:
        split: ``"train"`` or ``"test"``.
        root: a folder to look in first (files directly in it or in ``fashion_mnist/``/``fashion-mnist/``).

    Returns:
        ``TensorDataset(images, labels)``: images float32 ``[N, 1, 28, 28]`` in [0, 1], labels int64 ``[N]``.
    """
    return _idx_split(_FASHION, split, root)


# --------------------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)
# --------------------------------------------------------------------------------------------------------

_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and numpy arrays (a CIFAR batch needs nothing else)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # whatever breaks, the file is not a valid batch
        raise CorruptDataError(
            f"{path}: not a readable CIFAR-10 batch (truncated or corrupted: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: a CIFAR-10 batch is a pickled dict, found {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise CorruptDataError(f"{path}: the batch lacks the b'data' or b'labels' entry")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDataError(
            f"{path}: b'data' must be uint8 [n, 3072], found {data.dtype} {list(data.shape)}"
        )
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise CorruptDataError(
            f"{path}: image/label count mismatch: {data.shape[0]} images but {labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptDataError(f"{path}: label values must be 0..9")
    return data, labels


@functools.lru_cache(maxsize=4)
def _load_cifar_cached(stamps: tuple[tuple[str, int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_cifar_batch(Path(s[0])) for s in stamps]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32)).div_(255.0)
    return x, torch.from_numpy(labels)


def _extract_target(archive: Path) -> Path:
    """Where ``archive`` is extracted: next to it, or into the user cache if that folder is read-only."""
    return archive.parent if os.access(archive.parent, os.W_OK) else _cache_dir() / _CIFAR10.key


def _extract_cifar(archive: Path) -> Path:
    """Extract the batch files of ``archive`` into ``_extract_target(archive)/cifar-10-batches-py``.

    Only regular files named ``cifar-10-batches-py/<known batch name>`` are written, under names this code
    chooses, so a malicious archive cannot write anywhere else. Files appear atomically (temp folder, then
    ``os.replace``). Returns the ``cifar-10-batches-py`` folder.
    """
    parent = _extract_target(archive)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=parent))
    out_dir = parent / _CIFAR_DIR
    try:
        extracted: list[str] = []
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = PurePosixPath(member.name)
                    if not member.isfile() or name.parts != (_CIFAR_DIR, name.name):
                        continue
                    if name.name not in _CIFAR_EXTRACT:
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
            raise CorruptDataError(f"{archive}: truncated or corrupted archive ({exc})") from exc
        lacking = [n for n in (*_CIFAR_FILES["train"], *_CIFAR_FILES["test"]) if n not in extracted]
        if len(lacking) == len(_CIFAR_FILES["train"]) + 1:
            raise CorruptDataError(f"{archive}: holds no {_CIFAR_DIR}/ batch files")
        out_dir.mkdir(exist_ok=True)
        for name in extracted:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _cifar_batches(folder: Path, names: Sequence[str]) -> list[Path] | None:
    for candidate in (folder / _CIFAR_DIR, folder):
        paths = [candidate / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    return None


def _load_cifar(paths: Sequence[Path]) -> TensorDataset:
    x, y = _load_cifar_cached(tuple(_stamp(p) for p in paths))
    return TensorDataset(x, y)


def cifar10(split: str, root: PathLike | None = None) -> TensorDataset:
    """CIFAR-10 colour images (10 classes, 32x32). Introduced in chapter 11.

    Reads ``cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch`` (test), found in a searched
    folder or its ``cifar10/`` subfolder; a ``cifar-10-python.tar.gz`` there is extracted first.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        root: a folder to look in first.

    Returns:
        ``TensorDataset(images, labels)``: images float32 ``[N, 3, 32, 32]`` in [0, 1], labels int64 ``[N]``.
    """
    _check_split(split)
    names = _CIFAR_FILES[split]
    searched: list[tuple[Path, str, str]] = []
    for folder, origin in _folders(_CIFAR10, root):
        paths = _cifar_batches(folder, names)
        if paths is not None:
            return _load_cifar(paths)
        archive = folder / _CIFAR_ARCHIVE
        if archive.is_file():
            target = _extract_target(archive)
            paths = _cifar_batches(target, names) or _cifar_batches(_extract_cifar(archive).parent, names)
            if paths is None:
                raise CorruptDataError(f"{archive}: the archive lacks {', '.join(names)}")
            return _load_cifar(paths)
        desc = (
            f"{folder}  (folder does not exist)" if not folder.is_dir() else f"{folder}  (none of the files)"
        )
        searched.append((folder, origin, desc))
    needed = [f"{_CIFAR_DIR}/{n}" for n in names] + [f"(or {_CIFAR_ARCHIVE})"]
    if _offline():
        raise _not_found(_CIFAR10, split, needed, searched, "not attempted (COURSE_OFFLINE=1)")
    cache = _cache_dir() / _CIFAR10.key
    try:
        archive = _download(_CIFAR10, _CIFAR_ARCHIVE, cache)
    except _DownloadError as exc:
        raise _not_found(_CIFAR10, split, needed, searched, f"failed: {exc}") from exc
    out_dir = _extract_cifar(archive)
    archive.unlink(missing_ok=True)  # we downloaded it; the extracted batches are all we need
    paths = _cifar_batches(out_dir.parent, names)
    if paths is None:
        raise CorruptDataError(f"{archive}: the archive lacks {', '.join(names)}")
    return _load_cifar(paths)


# --------------------------------------------------------------------------------------------------------
# Status line, splits and subsets
# --------------------------------------------------------------------------------------------------------


def _shown(folder: Path) -> str:
    """``folder`` as a status line shows it: under ``$COURSE_DATA`` or the home folder, not as a machine path."""
    env = os.environ.get("COURSE_DATA", "").strip()
    for base, name in ((Path(env).expanduser() if env else None, "$COURSE_DATA"), (Path.home(), "~")):
        if base is not None and folder.is_relative_to(base):
            rel = folder.relative_to(base).as_posix()
            return name if rel == "." else f"{name}/{rel}"
    return str(folder)


def data_source(name: str = "mnist", root: PathLike | None = None) -> str:
    """A short description of where dataset ``name`` would be loaded from; never raises.

    E.g. ``"MNIST from ../shared/datasets/mnist (test split only)"`` or
    ``"MNIST: download to ~/.cache/generatevision/mnist"``. Used for a notebook's status line.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        root: the ``root=`` the chapter will pass to the loader, if any.
    """
    try:
        ds = _BY_NAME.get(str(name).strip().lower())
        if ds is None:
            return f"{name}: unknown dataset (known: mnist, fashion_mnist, cifar10)"
        for folder, _origin in _folders(ds, root):
            if ds is _CIFAR10:
                have = [s for s in SPLITS if _cifar_batches(folder, _CIFAR_FILES[s]) is not None]
                if not have and (folder / _CIFAR_ARCHIVE).is_file():
                    return f"{ds.title} from {_shown(folder / _CIFAR_ARCHIVE)} (to be extracted)"
            else:
                have = [s for s in SPLITS if all(_find_in(folder, stem) for stem in _idx_names(s))]
            if have:
                only = "" if len(have) == len(SPLITS) else f" ({have[0]} split only)"
                return f"{ds.title} from {_shown(folder)}{only}"
        if _offline():
            return f"{ds.title}: not found locally and COURSE_OFFLINE=1 (set COURSE_DATA or pass root=)"
        return f"{ds.title}: download to {_shown(_cache_dir() / ds.key)}"
    except Exception as exc:  # a status line must never break a notebook
        return f"{name}: unknown source ({exc})"


def _positive_int(n: object, what: str) -> int:
    if isinstance(n, bool):
        raise TypeError(f"{what} must be an integer, got {n!r}")
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {n!r}") from None
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    return value


def subset(dataset: Dataset, n: int, seed: int = 0) -> TensorDataset:
    """A deterministic random subset of ``n`` items, kept in their original order.

    The indices come from a seeded ``torch.Generator``, so every machine gets the same subset.

    Args:
        dataset: a ``TensorDataset`` (or any map-style dataset of tensors of equal shapes).
        n: how many items; ``n >= len(dataset)`` returns the whole set.
        seed: which subset.

    Returns:
        ``TensorDataset`` whose tensors have first dimension ``min(n, len(dataset))``.

    Raises:
        ValueError: ``n <= 0``.
    """
    n = _positive_int(n, "n")
    total = len(dataset)  # type: ignore[arg-type]
    tensors = getattr(dataset, "tensors", None)
    if n >= total:
        if tensors is not None:
            return dataset if isinstance(dataset, TensorDataset) else TensorDataset(*tensors)
        idx = torch.arange(total)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(total, generator=gen)[:n].sort().values
    if tensors is not None:
        return TensorDataset(*(t[idx] for t in tensors))
    items = [dataset[int(i)] for i in idx]
    if not isinstance(items[0], tuple | list):
        items = [(item,) for item in items]
    return TensorDataset(
        *(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(len(items[0])))
    )


def mnist_splits(
    profile_name: str,
    root: PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
) -> tuple[TensorDataset, TensorDataset, str]:
    """The MNIST train/test pair a chapter should use, plus a one-line description. Introduced in chapter 02.

    With the standard training split available (found locally or downloadable) this is MNIST train/test.
    Offline with only the test split, it is MNIST-test[:8000] for training and MNIST-test[8000:] for
    evaluation, and the description says so.

    Args:
        profile_name: the run profile (``ci``/``cpu``/``gpu``); named in the description.
        root: a folder to look in first (see :func:`mnist`).
        n_train: if given, a deterministic random subset of that many training images (see :func:`subset`).
        n_test: likewise for the evaluation images.

    Returns:
        ``(train, test, description)``: two ``TensorDataset`` of images ``[N, 1, 28, 28]`` and labels ``[N]``.
    """
    test = mnist("test", root=root)
    try:
        train = mnist("train", root=root)
        train_name, test_name, note = "MNIST-train", "MNIST-test", ""
    except DataNotFoundError:
        total = len(test)
        if total < 2:
            raise CorruptDataError(f"the MNIST test split holds only {total} image(s)") from None
        cut = 8000 if total > 8000 else max(1, total * 4 // 5)
        x, y = test.tensors
        train, test = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
        train_name, test_name = f"MNIST-test[:{cut}]", f"MNIST-test[{cut}:]"
        note = " (offline: the training split is not available)"
    desc = f"trained on {train_name}, evaluated on {test_name}{note}"
    sizes = []
    if n_train is not None:
        train = subset(train, n_train, seed=0)
        sizes.append(f"{len(train)} train")
    if n_test is not None:
        test = subset(test, n_test, seed=1)
        sizes.append(f"{len(test)} test")
    if sizes:
        desc += f"; random subsets of {' and '.join(sizes)} images"
    return train, test, f"{desc} [profile {profile_name}]"


# --------------------------------------------------------------------------------------------------------
# scikit-learn's built-in data
# --------------------------------------------------------------------------------------------------------


def _sklearn_file(*parts: str) -> Path | None:
    """A data file shipped inside scikit-learn, found WITHOUT importing it (``import sklearn`` takes seconds)."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location, *parts)
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    csv = _sklearn_file("datasets", "data", "digits.csv.gz")
    if csv is not None:  # the same file load_digits() reads: 64 pixel values (0..16) then the label, per row
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:  # pragma: no cover - a scikit-learn that keeps its data elsewhere
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(np.asarray(target, dtype=np.int64))
    return x, y


def digits() -> TensorDataset:
    """scikit-learn's 8x8 handwritten digits (ship with scikit-learn, no download). Introduced in chapter 01.

    Returns:
        ``TensorDataset(images, labels)``: images float32 ``[1797, 1, 8, 8]`` in [0, 1], labels int64 ``[1797]``.
    """
    return TensorDataset(*_digits_tensors())


@functools.lru_cache(maxsize=1)
def _sample_images_cached() -> dict[str, torch.Tensor]:
    files = {name: _sklearn_file("datasets", "images", f"{name}.jpg") for name in ("china", "flower")}
    arrays: dict[str, np.ndarray] = {}
    if all(files.values()):  # the same JPEGs load_sample_images() reads, decoded with Pillow like it does
        from PIL import Image

        for name, path in files.items():
            with Image.open(path) as image:  # type: ignore[arg-type]
                arrays[name] = np.asarray(image.convert("RGB"))
    else:  # pragma: no cover - a scikit-learn that keeps its images elsewhere
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        arrays = {Path(f).stem: img for f, img in zip(bunch.filenames, bunch.images)}
    return {
        name: torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        for name, a in arrays.items()
    }


def sample_images() -> dict[str, torch.Tensor]:
    """scikit-learn's two sample photos. Introduced in chapter 01.

    Returns:
        ``{"china": image, "flower": image}``, each float32 ``[3, H, W]`` in [0, 1] (H=427, W=640).
    """
    return {k: v.clone() for k, v in _sample_images_cached().items()}


# --------------------------------------------------------------------------------------------------------
# Procedural data
# --------------------------------------------------------------------------------------------------------

_SHAPE_RADIUS = 0.18  # shape size at scale 1, as a fraction of the image width
_POS_LO, _POS_HI = 0.25, 0.75  # centres stay in this range so no shape is cut off


def _shape_mask(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-test for one shape kind, on coordinates in the shape's own frame (units of its size)."""
    if kind == 0:  # square
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if kind == 1:  # ellipse with semi-axes 1 and 0.6
        return u * u + v * v * (1 / 0.36) <= 1.0
    x, y = 1.2 * u, 0.12 - 1.2 * v  # heart: (x^2 + y^2 - 1)^3 <= x^2 y^3, y up, tip pointing down
    x2 = x * x
    r = x2 + y * y - 1
    return r * r * r <= x2 * y * y * y


def _render_shapes(
    shape: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Rasterise shapes given their factors (all ``[n]``) into float32 ``[n, 1, size, size]`` masks."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in [0, 1]
    gx, gy = coords.view(1, 1, size), coords.view(1, size, 1)
    out = torch.zeros(shape.shape[0], size, size, dtype=torch.bool)
    for kind in range(len(shapes_shape_names)):
        idx = (shape == kind).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        cx = (_POS_LO + (_POS_HI - _POS_LO) * px[idx]).view(-1, 1, 1)
        cy = (_POS_LO + (_POS_HI - _POS_LO) * py[idx]).view(-1, 1, 1)
        inv_r = (1.0 / (_SHAPE_RADIUS * scale[idx])).view(-1, 1, 1)
        cos = torch.cos(rotation[idx]).view(-1, 1, 1) * inv_r
        sin = torch.sin(rotation[idx]).view(-1, 1, 1) * inv_r
        dx, dy = gx - cx, gy - cy
        u = cos * dx + sin * dy  # rotate by -rotation and divide by the size
        v = cos * dy - sin * dx
        out[idx] = _shape_mask(kind, u, v)
    return out.unsqueeze(1).to(torch.float32)


def shapes(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """dSprites-style binary images of one white shape on black, with their generating factors.

    Introduced in chapter 14. Each image has a random shape (0 square, 1 ellipse, 2 heart), scale in
    [0.5, 1], rotation in [0, 2π) and position; the whole set is determined by ``seed``.

    Args:
        n: number of images.
        size: image side in pixels (at least 8).
        seed: random seed.

    Returns:
        ``(images, factors)``: images float32 ``[n, 1, size, size]`` with values in {0, 1}; factors maps
        :data:`shapes_factor_names` to ``[n]`` tensors: ``"shape"`` int64 in {0, 1, 2}, ``"scale"`` in
        [0.5, 1], ``"rotation"`` in [0, 2π), ``"pos_x"``/``"pos_y"`` in [0, 1] (0 = left/top edge).
    """
    n = _positive_int(n, "n")
    size = _positive_int(size, "size")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    gen = torch.Generator().manual_seed(int(seed))
    shape = torch.randint(0, 3, (n,), generator=gen)
    scale = 0.5 + 0.5 * torch.rand(n, generator=gen)
    rotation = torch.remainder(2 * math.pi * torch.rand(n, generator=gen), 2 * math.pi)
    pos_x = torch.rand(n, generator=gen)
    pos_y = torch.rand(n, generator=gen)
    chunk = max(1, (1 << 22) // (size * size))  # bound the temporary memory for large n
    images = torch.cat(
        [
            _render_shapes(
                shape[i : i + chunk],
                scale[i : i + chunk],
                rotation[i : i + chunk],
                pos_x[i : i + chunk],
                pos_y[i : i + chunk],
                size,
            )
            for i in range(0, n, chunk)
        ]
    )
    factors = {"shape": shape, "scale": scale, "rotation": rotation, "pos_x": pos_x, "pos_y": pos_y}
    return images, factors


def eight_gaussians(
    n: int, seed: int = 0, radius: float = 2.0, std: float = 0.02, return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eight Gaussian blobs evenly spaced on a circle, equally likely. Introduced in chapter 02.

    Args:
        n: number of points.
        seed: random seed.
        radius: radius of the circle of centres.
        std: standard deviation of each blob.
        return_labels: also return each point's component index.

    Returns:
        points float32 ``[n, 2]``; with ``return_labels`` also the component int64 ``[n]`` in 0..7
        (component k is centred at angle k·π/4).
    """
    n = _positive_int(n, "n")
    if radius <= 0 or std < 0:
        raise ValueError(f"need radius > 0 and std >= 0, got radius={radius}, std={std}")
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(0, 8, (n,), generator=gen)
    angle = labels.to(torch.float32) * (math.pi / 4)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    points = centres + std * torch.randn(n, 2, generator=gen)
    return (points, labels) if return_labels else points


def two_moons(
    n: int, seed: int = 0, noise: float = 0.05, return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (scikit-learn's ``make_moons`` geometry). Introduced in chapter 02.

    Args:
        n: number of points.
        seed: random seed.
        noise: standard deviation of the Gaussian noise added to every point.
        return_labels: also return which moon (0 upper, 1 lower) each point is on.

    Returns:
        points float32 ``[n, 2]`` (roughly in [-1, 2] x [-0.5, 1]); with ``return_labels`` also int64 ``[n]``.
    """
    n = _positive_int(n, "n")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(0, 2, (n,), generator=gen)
    t = math.pi * torch.rand(n, generator=gen)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    points = torch.where(labels.view(-1, 1) == 0, upper, lower) + noise * torch.randn(n, 2, generator=gen)
    return (points, labels) if return_labels else points


def swiss_roll(n: int, seed: int = 0, noise: float = 0.25) -> torch.Tensor:
    """A 2-D swiss roll (spiral), centred and scaled to roughly unit standard deviation. Introduced in chapter 02.

    Args:
        n: number of points.
        seed: random seed.
        noise: standard deviation of the Gaussian noise, in the spiral's raw units (before scaling by 1/6.8).

    Returns:
        points float32 ``[n, 2]``.
    """
    n = _positive_int(n, "n")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(int(seed))
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + noise * torch.randn(
        n, 2, generator=gen
    )
    return (points - torch.tensor([2.0, 0.2])) / 6.8
