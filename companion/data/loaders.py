"""Real image datasets, read from their original files, and the status line that says which were found.

* MNIST / Fashion-MNIST: IDX files (``train-images-idx3-ubyte.gz`` ...), gzip-compressed or not;
* CIFAR-10: the python pickle batches in ``cifar-10-batches-py/`` (or the ``cifar-10-python.tar.gz`` archive);
* scikit-learn's 8x8 digits and two sample photos, read from scikit-learn's package folder (no download);
* :func:`data_source`: the data a chapter will read, in a few words, for its status line.

Files are looked for in ``root=`` → ``$COURSE_DATA`` → the user cache, then downloaded into the cache
(see :mod:`companion.download`). Parsed datasets are cached in-process. Introduced in chapter 01.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..download import (
    CorruptDataError,
    DownloadError,
    Source,
    cache_dir,
    download,
    extract_tar,
    find_file,
    load_pickle,
    not_found,
    offline_reason,
    read_bytes,
    search_folders,
    stamp,
)

PathLike = str | os.PathLike

SPLITS = ("train", "test")

_MNIST = Source("mnist", "MNIST", ("mnist", "MNIST/raw"))
_FASHION = Source("fashion_mnist", "Fashion-MNIST", ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"))
_CIFAR10 = Source("cifar10", "CIFAR-10", ("cifar10", "cifar-10", "CIFAR10"))
_BY_NAME = {
    "mnist": _MNIST,
    "fashion_mnist": _FASHION,
    "fashion-mnist": _FASHION,
    "fashionmnist": _FASHION,
    "cifar10": _CIFAR10,
    "cifar-10": _CIFAR10,
}

_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR_EXTRACT = (*_CIFAR_FILES["train"], *_CIFAR_FILES["test"], "batches.meta", "readme.html")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: valid splits are {', '.join(map(repr, SPLITS))}")
    return split


# --------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX format)
# --------------------------------------------------------------------------------------------------------


def _idx_names(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _parse_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``ndim`` dimensions into a uint8 array."""
    data = read_bytes(path)
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


def _load_idx(images: Path, labels: Path) -> TensorDataset:
    x, y = _load_idx_cached(stamp(images), stamp(labels))
    return TensorDataset(x, y)


def _idx_split(ds: Source, split: str, root: PathLike | None) -> TensorDataset:
    _check_split(split)
    stems = _idx_names(split)
    searched: list[tuple[Path, str, str]] = []
    for folder, origin in search_folders(ds, root):
        found = [find_file(folder, stem) for stem in stems]
        if all(p is not None for p in found):
            return _load_idx(found[0], found[1])  # type: ignore[arg-type]
        present = [p.name for p in found if p is not None]
        missing = [stem + ".gz" for stem, p in zip(stems, found) if p is None]
        note = f"has {', '.join(present)} but lacks {', '.join(missing)}" if present else ""
        searched.append((folder, origin, note))
    what, needed = f"{ds.title} {split!r} split", [stem + ".gz" for stem in stems]
    reason = offline_reason(ds.key)
    if reason is not None:
        raise not_found(ds, what, needed, searched, f"not tried ({reason})")
    cache = cache_dir() / ds.key
    try:
        paths = [find_file(cache, stem) or download(ds, stem + ".gz", cache) for stem in stems]
    except DownloadError as exc:
        error = not_found(ds, what, needed, searched, f"failed ({exc})")
    else:
        return _load_idx(paths[0], paths[1])
    raise error  # outside the handler: the message says it all, no chained traceback


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

# What a CIFAR batch pickle may build: plain containers and numpy arrays, nothing else.
_PICKLE_ALLOWED = (
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = load_pickle(path, _PICKLE_ALLOWED)
    except Exception as exc:  # whatever breaks, the file is not a valid batch
        raise CorruptDataError(f"{path}: not a readable CIFAR-10 batch (truncated or corrupted: {exc})") from None
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
    return archive.parent if os.access(archive.parent, os.W_OK) else cache_dir() / _CIFAR10.key


def _extract_cifar(archive: Path) -> Path:
    """Extract the batch files of ``archive`` safely (see :func:`~companion.download.extract_tar`).

    Returns:
        the ``cifar-10-batches-py`` folder, next to the archive (or in the user cache if that is read-only).
    """
    parent = _extract_target(archive)
    batches = (*_CIFAR_FILES["train"], *_CIFAR_FILES["test"])
    extract_tar(archive, _CIFAR_DIR, _CIFAR_EXTRACT, parent, required=batches)
    return parent / _CIFAR_DIR


def _cifar_batches(folder: Path, names: Sequence[str]) -> list[Path] | None:
    for candidate in (folder / _CIFAR_DIR, folder):
        paths = [candidate / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    return None


def _load_cifar(paths: Sequence[Path]) -> TensorDataset:
    x, y = _load_cifar_cached(tuple(stamp(p) for p in paths))
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
    for folder, origin in search_folders(_CIFAR10, root):
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
        searched.append((folder, origin, ""))
    what = f"{_CIFAR10.title} {split!r} split"
    needed = [f"{_CIFAR_DIR}/{n}" for n in names]
    reason = offline_reason(_CIFAR10.key)
    if reason is not None:
        raise not_found(_CIFAR10, what, needed, searched, f"not tried ({reason})", instead=_CIFAR_ARCHIVE)
    try:
        archive = download(_CIFAR10, _CIFAR_ARCHIVE, cache_dir() / _CIFAR10.key)
    except DownloadError as exc:
        error = not_found(_CIFAR10, what, needed, searched, f"failed ({exc})", instead=_CIFAR_ARCHIVE)
    else:
        out_dir = _extract_cifar(archive)
        archive.unlink(missing_ok=True)  # we downloaded it; the extracted batches are all we need
        paths = _cifar_batches(out_dir.parent, names)
        if paths is None:
            raise CorruptDataError(f"{archive}: the archive lacks {', '.join(names)}")
        return _load_cifar(paths)
    raise error


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
# The status line
# --------------------------------------------------------------------------------------------------------


def _where(ds: Source, split: str, folder: Path) -> bool:
    if ds is _CIFAR10:
        return _cifar_batches(folder, _CIFAR_FILES[split]) is not None
    return all(find_file(folder, stem) for stem in _idx_names(split))


def data_source(name: str = "mnist", root: PathLike | None = None) -> str:
    """The data a chapter will read, in a few words and without machine paths; never raises. Introduced in chapter 01.

    Names the splits found and where (``root=``, ``COURSE_DATA`` or the user cache), e.g.
    ``"MNIST train+test splits (COURSE_DATA)"``, ``"MNIST test split (offline, COURSE_DATA)"`` or
    ``"MNIST: to be downloaded into the user cache"``. Used for a chapter's status line.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        root: the ``root=`` the chapter will pass to the loader, if any.
    """
    try:
        ds = _BY_NAME.get(str(name).strip().lower())
        if ds is None:
            return f"{name}: unknown dataset (known: mnist, fashion_mnist, cifar10)"
        folders = search_folders(ds, root)
        found = {}
        for split in SPLITS:
            found[split] = next((origin for folder, origin in folders if _where(ds, split, folder)), None)
        have = [s for s in SPLITS if found[s] is not None]
        if len(have) == len(SPLITS) and len(set(found.values())) == 1:
            return f"{ds.title} train+test splits ({found['train']})"
        if len(have) == len(SPLITS):
            return f"{ds.title} train split ({found['train']}), test split ({found['test']})"
        if ds is _CIFAR10:
            archive = next((o for f, o in folders if (f / _CIFAR_ARCHIVE).is_file()), None)
            if archive is not None:
                return f"{ds.title} archive ({archive}), to be extracted"
        offline = offline_reason(ds.key) is not None
        if have:
            split = have[0]
            if offline:
                return f"{ds.title} {split} split (offline, {found[split]})"
            return f"{ds.title} {split} split ({found[split]}); the other split to be downloaded"
        if offline:
            return f"{ds.title}: not found (offline; set COURSE_DATA)"
        return f"{ds.title}: to be downloaded into the user cache"
    except Exception as exc:  # a status line must never break a notebook
        return f"{name}: unknown source ({type(exc).__name__}: {exc})"
