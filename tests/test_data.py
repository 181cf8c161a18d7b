"""Tests for companion.data: the loaders, the train/held-out split and the status line.

Loader tests write small files in the datasets' real formats (IDX, gzip, CIFAR pickle batches, tar.gz) into
``tmp_path``. No test touches the network: every test runs with ``COURSE_OFFLINE=1`` and a
``download._fetch`` that fails loudly, unless it sets ``COURSE_OFFLINE=0`` and installs its own fake.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from companion import data, download, profile
from companion.data import CorruptDataError, DataNotFoundError

REAL_DATA = (
    Path(os.environ["COURSE_DATA"]).expanduser()
    if os.environ.get("COURSE_DATA")
    else Path(__file__).resolve().parents[2] / "shared" / "datasets"
)
HAVE_REAL_MNIST = (REAL_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file() or (
    REAL_DATA / "t10k-images-idx3-ubyte.gz"
).is_file()


# ---------------------------------------------------------------------------------------------------------
# Writers for the real formats
# ---------------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding ``array``."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    payload = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def idx_paths(folder: Path, split: str, compress: bool = True) -> tuple[Path, Path]:
    prefix = "train" if split == "train" else "t10k"
    ext = ".gz" if compress else ""
    return folder / f"{prefix}-images-idx3-ubyte{ext}", folder / f"{prefix}-labels-idx1-ubyte{ext}"


def write_mnist(
    folder: Path, split: str = "test", n: int = 12, seed: int = 0, compress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Write an MNIST-format split of ``n`` random images into ``folder``; return (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    img_path, lbl_path = idx_paths(folder, split, compress)
    write_idx(img_path, images, compress)
    write_idx(lbl_path, labels, compress)
    return images, labels


def cifar_batch_bytes(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {
        b"batch_label": b"testing batch",
        b"labels": labels,
        b"data": pixels,
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=2), pixels, np.array(labels)


def write_cifar(folder: Path, n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the six CIFAR-10 batches (``n`` images each) into ``folder``; return the arrays by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        payload, pixels, labels = cifar_batch_bytes(n, seed=i)
        (folder / name).write_bytes(payload)
        out[name] = (pixels, labels)
    return out


def cifar_archive_bytes(n: int = 4, extra: dict[str, bytes] | None = None) -> bytes:
    """A cifar-10-python.tar.gz with the six batches (plus ``extra`` members, e.g. malicious paths)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": []})}
        for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
            members[f"cifar-10-batches-py/{name}"] = cifar_batch_bytes(n, seed=i)[0]
        members.update(extra or {})
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, no COURSE_DATA, a private cache folder, and a _fetch that fails the test if called."""
    cache_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.delenv("COURSE_DATA", raising=False)

    def no_network(url: str, dest: Path) -> None:
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(download, "_fetch", no_network)
    return cache_home / "generatevision"


@pytest.fixture
def cache(isolated: Path) -> Path:
    return isolated


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_OFFLINE", "0")  # try the (faked) network without probing it


def fake_fetch(payloads: dict[str, bytes], calls: list[str]):
    """A _fetch that serves ``payloads`` by file name, like a mirror would."""

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        Path(dest).write_bytes(payloads[url.rsplit("/", 1)[-1]])

    return fetch


# ---------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST parsing
# ---------------------------------------------------------------------------------------------------------


def test_mnist_shapes_dtypes_values(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path / "d", "test", n=12)
    ds = data.mnist("test", root=tmp_path / "d")
    x, y = ds.tensors
    assert isinstance(ds, TensorDataset) and len(ds) == 12
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (12,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.tolist() == labels.tolist()


def test_mnist_train_split_and_uncompressed_files_in_subfolder(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path / "mnist", "train", n=7, compress=False)
    x, y = data.mnist("train", root=tmp_path).tensors
    assert x.shape == (7, 1, 28, 28)
    assert y.tolist() == labels.tolist()


@pytest.mark.parametrize("subdir", ["fashion_mnist", "fashion-mnist", "."])
def test_fashion_mnist_folders(tmp_path: Path, subdir: str) -> None:
    _, labels = write_mnist(tmp_path / subdir, "test", n=5, seed=3)
    x, y = data.fashion_mnist("test", root=tmp_path).tensors
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.tolist() == labels.tolist()


@pytest.mark.parametrize("loader", [data.mnist, data.fashion_mnist, data.cifar10])
@pytest.mark.parametrize("split", ["val", "Train", ""])
def test_bad_split_lists_valid_ones(loader, split: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train'.*'test'"):
        loader(split, root=tmp_path)


def test_parsed_split_is_cached_in_process(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=5)
    first = data.mnist("test", root=tmp_path)
    second = data.mnist("test", root=str(tmp_path))
    assert second.tensors[0] is first.tensors[0]
    write_mnist(tmp_path, "test", n=6)  # a changed file is parsed again
    assert len(data.mnist("test", root=tmp_path)) == 6


# ---------------------------------------------------------------------------------------------------------
# Look-up order and missing data
# ---------------------------------------------------------------------------------------------------------


def test_root_beats_course_data_beats_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "root", n=3)
    write_mnist(tmp_path / "env" / "mnist", n=4)
    write_mnist(cache / "mnist", n=5)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "env"))
    assert len(data.mnist("test", root=tmp_path / "root")) == 3
    assert len(data.mnist("test")) == 4
    assert len(data.mnist("test", root=tmp_path / "empty")) == 4  # a root without the files falls through
    monkeypatch.delenv("COURSE_DATA")
    assert len(data.mnist("test")) == 5


def test_split_needs_both_files_in_one_folder(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=3)
    idx_paths(tmp_path, "test")[1].unlink()
    with pytest.raises(DataNotFoundError, match="lacks t10k-labels-idx1-ubyte.gz"):
        data.mnist("test", root=tmp_path)


def test_missing_offline_is_short_and_says_where_to_put_the_files(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as info:
        data.mnist("train", root=tmp_path / "root")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    lines = msg.splitlines()
    assert len(lines) <= 4 and lines[0].startswith("MNIST 'train' split not found")
    assert "train-images-idx3-ubyte.gz" in lines[0] and "train-labels-idx1-ubyte.gz" in lines[0]
    assert "not tried (offline: COURSE_OFFLINE=1)" in lines[0]
    assert "<dir>/mnist/" in msg and "COURSE_DATA=<dir>" in msg and "root=<dir>" in msg
    assert "internet" in msg and "COURSE_OFFLINE" in msg
    assert f"root={tmp_path / 'root'}" in msg and f"COURSE_DATA={tmp_path / 'env'}" in msg
    assert f"user cache {cache}" in msg and "mnist/, MNIST/raw/" in msg
    assert tmp_path / "env" / "mnist" in err.searched and cache / "mnist" in err.searched
    assert "train-images-idx3-ubyte.gz" in err.missing
    assert err.__context__ is None and err.__cause__ is None  # nothing chained onto the message
    assert err._render_traceback_() == [f"DataNotFoundError: {msg}"]  # what Jupyter shows: no frames
    assert not cache.exists()  # offline: nothing created, nothing fetched


def test_missing_cifar_offline(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz") as info:
        data.cifar10("test", root=tmp_path)
    msg = str(info.value)
    assert "cifar-10-batches-py/test_batch (or cifar-10-python.tar.gz) are in none" in msg
    assert f"root={tmp_path}" in msg and "cifar10/" in msg


# ---------------------------------------------------------------------------------------------------------
# Corrupted files
# ---------------------------------------------------------------------------------------------------------


def test_truncated_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=20)
    img = idx_paths(tmp_path, "test")[0]
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        data.mnist("test", root=tmp_path)


def test_garbled_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=20)
    img = idx_paths(tmp_path, "test")[0]
    raw = bytearray(img.read_bytes())
    raw[20:60] = bytes(40)
    img.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte.gz"):
        data.mnist("test", root=tmp_path)


def test_wrong_magic(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path, "test", n=4)
    img, lbl = idx_paths(tmp_path, "test")
    write_idx(img, labels)  # a label file where the images belong
    with pytest.raises(CorruptDataError, match=r"t10k-images.*bad magic number 0x00000801"):
        data.mnist("test", root=tmp_path)


def test_header_count_disagrees_with_data(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=4, compress=False)
    img = idx_paths(tmp_path, "test", compress=False)[0]
    img.write_bytes(img.read_bytes()[:-100])  # truncated uncompressed file
    with pytest.raises(CorruptDataError, match=r"header says 4 items.*3036 bytes"):
        data.mnist("test", root=tmp_path)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=4)
    write_idx(idx_paths(tmp_path, "test")[1], np.zeros(3, dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="4 images but .* 3 labels"):
        data.mnist("test", root=tmp_path)


def test_bad_image_size_and_label_values(tmp_path: Path) -> None:
    img, lbl = idx_paths(tmp_path, "test")
    write_idx(img, np.zeros((2, 20, 20)))
    write_idx(lbl, np.zeros(2))
    with pytest.raises(CorruptDataError, match="expected 28x28"):
        data.mnist("test", root=tmp_path)
    write_idx(img, np.zeros((2, 28, 28)))
    write_idx(lbl, np.array([1, 200]))
    with pytest.raises(CorruptDataError, match="0..9"):
        data.mnist("test", root=tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Downloads (fake _fetch, no network)
# ---------------------------------------------------------------------------------------------------------


def mnist_payloads(n: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for prefix in ("train", "t10k"):
        out[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(
            idx_bytes(rng.integers(0, 256, size=(n, 28, 28))), mtime=0
        )
        out[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(rng.integers(0, 10, size=n)), mtime=0)
    return out


@pytest.mark.usefixtures("online")
def test_download_verified_and_atomic(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads = mnist_payloads()
    calls: list[str] = []
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {name: md5(b) for name, b in payloads.items()})
    monkeypatch.setattr(download, "_fetch", fake_fetch(payloads, calls))
    x, y = data.mnist("test").tensors
    assert x.shape == (6, 1, 28, 28) and y.dtype == torch.int64
    assert calls == [
        download.MIRRORS["mnist"][0] + n for n in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    ]
    assert all_files(cache) == ["mnist", "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"]
    data.mnist("test")  # now found in the cache: no second download
    assert len(calls) == 2
    assert data.data_source("mnist") == "MNIST test split (user cache); the other split to be downloaded"


@pytest.mark.usefixtures("online")
def test_failed_download_is_one_short_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(url: str, dest: Path) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr(download, "_fetch", fetch)
    with pytest.raises(DataNotFoundError, match=r"download failed \(.*no route to host") as info:
        data.mnist("test")
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert all_files(cache) == ["mnist"]  # no partial files


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------------------


def test_cifar10_batches(tmp_path: Path) -> None:
    arrays = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", n=4)
    x, y = data.cifar10("test", root=tmp_path).tensors
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    pixels, labels = arrays["test_batch"]
    torch.testing.assert_close(x, torch.from_numpy(pixels).float().view(4, 3, 32, 32) / 255)
    assert y.tolist() == labels.tolist()
    xt, yt = data.cifar10("train", root=tmp_path).tensors
    assert xt.shape == (20, 3, 32, 32)
    assert yt.tolist() == sum((arrays[f"data_batch_{k}"][1].tolist() for k in range(1, 6)), [])


def test_cifar10_archive_is_extracted_safely(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    evil = {"../evil.txt": b"x", "/tmp/evil-abs.txt": b"x", "cifar-10-batches-py/../../evil2.txt": b"x"}
    (root / "cifar-10-python.tar.gz").write_bytes(cifar_archive_bytes(n=3, extra=evil))
    x, y = data.cifar10("train", root=root).tensors
    assert x.shape == (15, 3, 32, 32)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil2.txt").exists()
    assert not Path("/tmp/evil-abs.txt").exists()
    names = all_files(root)
    assert "cifar-10-batches-py/test_batch" in names and not any(".cifar-extract" in n for n in names)
    assert len(data.cifar10("test", root=root)) == 3
    assert data.data_source("cifar10", root=root) == "CIFAR-10 train+test splits (root)"


def test_cifar10_truncated_archive(tmp_path: Path) -> None:
    archive = cifar_archive_bytes(n=50)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive[: len(archive) // 2])
    assert data.data_source("cifar10", root=tmp_path) == "CIFAR-10 archive (root), to be extracted"
    with pytest.raises(CorruptDataError, match="cifar-10-python.tar.gz"):
        data.cifar10("test", root=tmp_path)
    assert all_files(tmp_path) == ["cifar-10-python.tar.gz"]


def test_cifar10_corrupt_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n=4)
    test_batch = folder / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:-500])
    with pytest.raises(CorruptDataError, match="test_batch.*truncated"):
        data.cifar10("test", root=tmp_path)
    payload, pixels, labels = cifar_batch_bytes(4, seed=0)
    test_batch.write_bytes(pickle.dumps({b"data": pixels, b"labels": labels[:3].tolist()}))
    with pytest.raises(CorruptDataError, match="4 images but 3 labels"):
        data.cifar10("test", root=tmp_path)
    test_batch.write_bytes(pickle.dumps({b"data": pixels[:, :100], b"labels": labels.tolist()}))
    with pytest.raises(CorruptDataError, match=r"uint8 \[n, 3072\]"):
        data.cifar10("test", root=tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/generatevision-pwned",))


def test_cifar10_refuses_arbitrary_pickled_objects(tmp_path: Path) -> None:
    write_cifar(tmp_path, n=2)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    with pytest.raises(CorruptDataError, match="unexpected object"):
        data.cifar10("test", root=tmp_path)
    assert not Path("/tmp/generatevision-pwned").exists()


@pytest.mark.usefixtures("online")
def test_cifar10_download(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = cifar_archive_bytes(n=2)
    calls: list[str] = []
    monkeypatch.setitem(download.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": md5(archive)})
    monkeypatch.setattr(download, "_fetch", fake_fetch({"cifar-10-python.tar.gz": archive}, calls))
    assert data.data_source("cifar10") == "CIFAR-10: to be downloaded into the user cache"
    assert len(data.cifar10("test")) == 2
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert "cifar10/cifar-10-batches-py/data_batch_5" in all_files(cache)
    assert len(data.cifar10("train")) == 10 and len(calls) == 1


# ---------------------------------------------------------------------------------------------------------
# data_source, mnist_splits, subset
# ---------------------------------------------------------------------------------------------------------


def test_data_source_names_splits_and_origin_without_paths(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path / "mnist", "test", n=2)
    assert data.data_source("mnist", root=tmp_path) == "MNIST test split (offline, root)"
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.data_source() == "MNIST test split (offline, COURSE_DATA)"
    write_mnist(cache / "mnist", "train", n=2)
    assert data.data_source() == "MNIST train split (user cache), test split (COURSE_DATA)"
    write_mnist(tmp_path / "mnist", "train", n=2)
    assert data.data_source() == "MNIST train+test splits (COURSE_DATA)"
    assert str(tmp_path) not in data.data_source()
    assert data.data_source("fashion_mnist") == "Fashion-MNIST: not found (offline; set COURSE_DATA)"
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    assert data.data_source("fashion-mnist") == "Fashion-MNIST: to be downloaded into the user cache"
    assert "unknown dataset" in data.data_source("imagenet")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(data.loaders, "search_folders", broken)
    assert "boom" in data.data_source("mnist")  # never raises


def write_numbered_mnist(folder: Path, split: str, n: int) -> None:
    """An MNIST-format split whose image ``i`` carries ``i`` in its first two pixels and the split in the third."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    index = np.arange(n)
    images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = index // 256, index % 256, 1 if split == "train" else 2
    img_path, lbl_path = idx_paths(folder, split)
    write_idx(img_path, images)
    write_idx(lbl_path, index % 10)


def numbers(ds: TensorDataset) -> tuple[set[str], list[int]]:
    """Which split(s) and which image numbers ``ds`` holds (see :func:`write_numbered_mnist`)."""
    pixels = (ds.tensors[0][:, 0, 0, :3] * 255).round().long()
    splits = {"mnist-train" if int(v) == 1 else "mnist-test" for v in pixels[:, 2]}
    return splits, (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


@pytest.mark.parametrize("have_train", [True, False], ids=["train+test", "test only"])
@pytest.mark.parametrize("sizes", [{}, {"n_train": 500, "n_test": 300}], ids=["full", "subsets"])
def test_mnist_splits_info_names_exactly_the_images(tmp_path: Path, have_train: bool, sizes: dict) -> None:
    write_numbered_mnist(tmp_path, "test", 10_000)
    if have_train:
        write_numbered_mnist(tmp_path, "train", 9_000)  # a small stand-in for the 60,000 images
    splits = data.mnist_splits("ci", root=tmp_path, **sizes)
    train, heldout, desc = splits  # still unpacks like the 3-tuple it always was
    assert (splits.train, splits.heldout, splits.description) == (train, heldout, desc)
    info = splits.info
    if have_train:
        assert info["train"].startswith("mnist-train[0:9000]") and info["heldout"].startswith("mnist-test[0:10000]")
    else:
        assert info["train"].startswith("mnist-test[0:8000]")
        assert info["heldout"].startswith("mnist-test[8000:10000]")
    if sizes:
        assert info["train"].endswith(".subset(500, seed=0)") and info["heldout"].endswith(".subset(300, seed=1)")
    else:
        assert "subset" not in info["train"] + info["heldout"]
    seen = {}
    for part, ds in (("train", train), ("heldout", heldout)):
        source, indices = data.split_indices(info[part])
        assert numbers(ds) == ({source}, indices.tolist())  # the spec names exactly these images
        seen[part] = (source, set(indices.tolist()))
    if seen["train"][0] == seen["heldout"][0]:
        assert not seen["train"][1] & seen["heldout"][1]  # held-out images were never trained on
    assert json.loads(json.dumps(info)) == info  # ready for a checkpoint card


def test_mnist_splits_descriptions(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", n=30, seed=1)
    write_mnist(tmp_path, "test", n=10, seed=2)
    train, test, desc = data.mnist_splits("ci", root=tmp_path)
    assert (len(train), len(test)) == (30, 10)
    assert desc == "trained on MNIST-train, evaluated on MNIST-test [profile ci]"
    train, test, desc = data.mnist_splits(profile.get_profile("cpu"), root=tmp_path, n_train=8, n_test=4)
    assert (len(train), len(test)) == (8, 4) and "8 train" in desc and desc.endswith("[profile cpu]")
    again = data.mnist_splits("ci", root=tmp_path, n_train=8, n_test=4)
    assert torch.equal(again.train.tensors[1], train.tensors[1])


def test_mnist_splits_offline_fallback(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", n=10_010, compress=False)
    train, test, desc = data.mnist_splits("ci", root=tmp_path)
    assert (len(train), len(test)) == (8000, 2010)
    assert desc == (
        "trained on MNIST-test[:8000], evaluated on MNIST-test[8000:] "
        "(offline: the training split is not available) [profile ci]"
    )
    full = data.mnist("test", root=tmp_path)
    assert torch.equal(train.tensors[1], full.tensors[1][:8000])


@pytest.mark.usefixtures("online")
def test_mnist_splits_fallback_when_download_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path, "test", n=50)

    def fetch(url: str, dest: Path) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr(download, "_fetch", fetch)
    splits = data.mnist_splits("cpu", root=tmp_path, n_train=10)
    assert (len(splits.train), len(splits.heldout)) == (10, 10)
    assert "MNIST-test[:40]" in splits.description and "not available" in splits.description
    assert splits.info == {"train": "mnist-test[0:40].subset(10, seed=0)", "heldout": "mnist-test[40:50]"}


def test_mnist_splits_without_any_data(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        data.mnist_splits("ci", root=tmp_path)


def test_split_indices() -> None:
    source, idx = data.split_indices("mnist-test[8000:10000]")
    assert source == "mnist-test" and idx.tolist() == list(range(8000, 10000))
    source, idx = data.split_indices("mnist-train[0:60000].subset(2000, seed=0)")
    assert source == "mnist-train" and len(idx) == 2000 and idx.tolist() == sorted(set(idx.tolist()))
    assert torch.equal(idx, data.subset(TensorDataset(torch.arange(60000)), 2000, seed=0).tensors[0])
    for bad in ("mnist-test", "mnist-val[0:3]", "mnist-test[0:8000].subset(2)", "../x[0:1]"):
        with pytest.raises(ValueError, match="not a split spec"):
            data.split_indices(bad)


def test_subset() -> None:
    ds = TensorDataset(torch.arange(100).float().view(100, 1), torch.arange(100))
    a, b = data.subset(ds, 10), data.subset(ds, 10)
    assert len(a) == 10 and torch.equal(a.tensors[1], b.tensors[1])
    assert torch.equal(a.tensors[0][:, 0].long(), a.tensors[1])  # rows stay aligned
    assert a.tensors[1].tolist() == sorted(a.tensors[1].tolist())  # original order kept
    assert len(set(a.tensors[1].tolist())) == 10
    assert not torch.equal(data.subset(ds, 10, seed=1).tensors[1], a.tensors[1])
    assert data.subset(ds, 100) is ds and data.subset(ds, 1000) is ds
    for bad in (0, -3):
        with pytest.raises(ValueError):
            data.subset(ds, bad)
    with pytest.raises(TypeError):
        data.subset(ds, 2.5)  # type: ignore[arg-type]


def test_subset_of_a_generic_dataset() -> None:
    class Squares(Dataset):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, i: int):
            return torch.tensor([float(i)]), i * i

    sub = data.subset(Squares(), 5, seed=3)
    x, y = sub.tensors
    assert x.shape == (5, 1) and torch.equal(x[:, 0].long() ** 2, y)


# ---------------------------------------------------------------------------------------------------------
# scikit-learn data
# ---------------------------------------------------------------------------------------------------------


def test_digits() -> None:
    x, y = data.digits().tensors
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1 and set(y.tolist()) == set(range(10))


def test_sample_images() -> None:
    images = data.sample_images()
    assert set(images) == {"china", "flower"}
    for image in images.values():
        assert image.dtype == torch.float32 and image.shape == (3, 427, 640)
        assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
    images["china"].zero_()  # callers get their own copies
    assert data.sample_images()["china"].max() > 0


def test_sklearn_is_imported_lazily() -> None:
    files = sorted(Path(data.__file__).parent.glob("*.py"))
    assert len(files) > 1, files
    trees = [ast.parse(f.read_text()) for f in files]
    top_level = [n for tree in trees for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
    assert not any(name.startswith(("sklearn", "torchvision", "requests")) for name in names)


# ---------------------------------------------------------------------------------------------------------
# The real offline data (only where it exists)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_REAL_MNIST, reason=f"no offline MNIST in {REAL_DATA}")
def test_real_mnist_test_split() -> None:
    ds = data.mnist("test", root=REAL_DATA)
    x, y = ds.tensors
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert 0 <= x.min() and x.max() == 1
    assert data.data_source("mnist", root=REAL_DATA).startswith("MNIST test split")
