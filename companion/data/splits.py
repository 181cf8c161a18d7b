"""Subsets and the one train/held-out split the chapters use.

:func:`subset` draws a seeded random subset; :func:`split_indices` reads a spec such as ``"mnist-test[8000:10000]"``;
:func:`mnist_splits` decides, from the data available, what a chapter trains on and what it holds out, and
records in :class:`Splits` exactly which images each part holds. Introduced in chapter 02.
"""

from __future__ import annotations

import re

import torch
from torch.utils.data import Dataset, TensorDataset

from .._checks import _positive_int
from ..download import CorruptDataError, DataNotFoundError
from .loaders import PathLike, mnist

# --------------------------------------------------------------------------------------------------------
# Subsets and the train/held-out split
# --------------------------------------------------------------------------------------------------------


def _subset_indices(total: int, n: int, seed: int) -> torch.Tensor:
    """``n`` of ``range(total)`` drawn with a seeded ``torch.Generator``, in increasing order."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=gen)[:n].sort().values


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
        idx = _subset_indices(total, n, seed)
    if tensors is not None:
        return TensorDataset(*(t[idx] for t in tensors))
    items = [dataset[int(i)] for i in idx]
    if not isinstance(items[0], tuple | list):
        items = [(item,) for item in items]
    return TensorDataset(
        *(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(len(items[0])))
    )


_SPEC = re.compile(
    r"(?P<source>[a-z0-9_]+-(?:train|test))\[(?P<start>\d+):(?P<stop>\d+)\]"
    r"(?:\.subset\((?P<n>\d+), seed=(?P<seed>-?\d+)\))?"
)


def split_indices(spec: str) -> tuple[str, torch.Tensor]:
    """The exact images a split spec names, as indices into the original split. Introduced in chapter 02.

    A spec (see :attr:`Splits.info`) is ``"<dataset>-<split>[start:stop]"``, optionally followed by
    ``".subset(n, seed=s)"`` for the :func:`subset` of ``n`` images drawn from that range with seed ``s``.

    Args:
        spec: e.g. ``"mnist-test[8000:10000]"`` or ``"mnist-train[0:60000].subset(2000, seed=0)"``.

    Returns:
        ``(source, indices)``: the original split (``"mnist-test"``) and int64 indices ``[N]`` into it, in
        increasing order.

    Raises:
        ValueError: ``spec`` is not in that form.
    """
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(f"not a split spec: {spec!r} (expected e.g. 'mnist-test[0:8000]')")
    start, stop = int(match["start"]), int(match["stop"])
    indices = torch.arange(start, max(start, stop))
    if match["n"] is not None and int(match["n"]) < len(indices):
        indices = indices[_subset_indices(len(indices), int(match["n"]), int(match["seed"]))]
    return match["source"], indices


class Splits(tuple):
    """What :func:`mnist_splits` returns: the 3-tuple ``(train, heldout, description)``, plus :attr:`info`.

    It unpacks like a plain tuple (``train, test, desc = data.mnist_splits(...)``); the extra attribute says
    exactly which images each part holds, in a form a checkpoint card can store and :func:`split_indices`
    can check: ``info == {"train": "mnist-test[0:8000]", "heldout": "mnist-test[8000:10000]"}`` offline,
    ``{"train": "mnist-train[0:60000]", "heldout": "mnist-test[0:10000]"}`` with the training split, each
    spec ending in ``".subset(n, seed=s)"`` when a random subset was taken.
    """

    info: dict[str, str]

    def __new__(cls, train: TensorDataset, heldout: TensorDataset, description: str, info: dict[str, str]):
        self = super().__new__(cls, (train, heldout, description))
        self.info = dict(info)
        return self

    @property
    def train(self) -> TensorDataset:
        """The images to train on."""
        return self[0]

    @property
    def heldout(self) -> TensorDataset:
        """The images to evaluate on: never among :attr:`train`."""
        return self[1]

    @property
    def description(self) -> str:
        """One line for a chapter to print, e.g. ``"trained on MNIST-test[:8000], evaluated on ..."``."""
        return self[2]


def _subset_with_spec(ds: TensorDataset, spec: str, n: int, seed: int) -> tuple[TensorDataset, str]:
    """:func:`subset` of ``ds``, and ``spec`` extended to say so (unchanged when the whole set is kept)."""
    picked = subset(ds, n, seed=seed)
    return picked, spec + (f".subset({len(picked)}, seed={seed})" if len(picked) < len(ds) else "")


def mnist_splits(
    profile: object,
    root: PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Splits:
    """The MNIST train/held-out pair a chapter should use, decided by the data available. Introduced in chapter 02.

    With the 60,000-image training split available (found locally or downloadable) it trains on
    MNIST-train and holds out MNIST-test. With only the test split (offline), it trains on
    MNIST-test[:8000] and holds out MNIST-test[8000:]; the description says so.

    Args:
        profile: the run profile, a name (``ci``/``cpu``/``gpu``) or a :class:`companion.profile.Profile`;
            named in the description.
        root: a folder to look in first (see :func:`mnist`).
        n_train: if given, a deterministic random subset of that many training images (:func:`subset`, seed 0).
        n_test: likewise for the held-out images (seed 1).

    Returns:
        :class:`Splits`, which unpacks as ``(train, heldout, description)``: two ``TensorDataset`` of images
        ``[N, 1, 28, 28]`` and labels ``[N]``, and one line of text; its ``.info`` names the exact images,
        e.g. ``{"train": "mnist-test[0:8000]", "heldout": "mnist-test[8000:10000]"}``.

    Raises:
        DataNotFoundError: not even the MNIST test split is available.
    """
    profile_name = getattr(profile, "name", profile)
    test = mnist("test", root=root)
    total = len(test)
    try:
        train = mnist("train", root=root)
    except DataNotFoundError:
        train = None
    if train is not None:
        train_name, test_name, note = "MNIST-train", "MNIST-test", ""
        info = {"train": f"mnist-train[0:{len(train)}]", "heldout": f"mnist-test[0:{total}]"}
    else:
        if total < 2:
            raise CorruptDataError(f"the MNIST test split holds only {total} image(s)")
        cut = 8000 if total > 8000 else max(1, total * 4 // 5)
        x, y = test.tensors
        train, test = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
        train_name, test_name = f"MNIST-test[:{cut}]", f"MNIST-test[{cut}:]"
        note = " (offline: the training split is not available)"
        info = {"train": f"mnist-test[0:{cut}]", "heldout": f"mnist-test[{cut}:{total}]"}
    desc = f"trained on {train_name}, evaluated on {test_name}{note}"
    sizes = []
    if n_train is not None:
        train, info["train"] = _subset_with_spec(train, info["train"], n_train, seed=0)
        sizes.append(f"{len(train)} train")
    if n_test is not None:
        test, info["heldout"] = _subset_with_spec(test, info["heldout"], n_test, seed=1)
        sizes.append(f"{len(test)} test")
    if sizes:
        desc += f"; random subsets of {' and '.join(sizes)} images"
    return Splits(train, test, f"{desc} [profile {profile_name}]", info)
