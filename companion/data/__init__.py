"""Real image datasets, read from their original files, and the one train/held-out split the chapters use.

* MNIST / Fashion-MNIST: IDX files (``train-images-idx3-ubyte.gz`` ...), gzip-compressed or not;
* CIFAR-10: the python pickle batches in ``cifar-10-batches-py/`` (or the ``cifar-10-python.tar.gz`` archive);
* scikit-learn's 8x8 digits and two sample photos, read from scikit-learn's package folder (no download).

No torchvision is needed. Files are looked for in ``root=`` → ``$COURSE_DATA`` → the user cache, then
downloaded into the cache (checksum-verified, atomic) unless offline: see :mod:`companion.download`, which
also defines :class:`DataNotFoundError` and :class:`CorruptDataError`. Parsed datasets are cached
in-process, so loading the same split twice is instant; treat the returned tensors as read-only
(``.clone()`` before changing them in place).

:func:`mnist_splits` decides, from the data available, what a chapter trains on and what it holds out, and
records exactly which images each part holds. Procedural and toy data (shapes, 2-D distributions) live in
:mod:`companion.toys`. ``import companion.data`` stays light: scikit-learn is never imported at module level.

Two submodules, read in this order; every name is imported here (``data.mnist``, ``data.mnist_splits``):
``data.loaders`` (the file readers and :func:`data_source`, the status line) and ``data.splits``
(:func:`subset`, :func:`split_indices`, :class:`Splits`, :func:`mnist_splits`). Introduced in chapter 01.
"""

from ..download import CorruptDataError, DataNotFoundError
from .loaders import cifar10, data_source, digits, fashion_mnist, mnist, sample_images
from .splits import Splits, mnist_splits, split_indices, subset

__all__ = [
    "CorruptDataError",
    "DataNotFoundError",
    "Splits",
    "cifar10",
    "data_source",
    "digits",
    "fashion_mnist",
    "mnist",
    "mnist_splits",
    "sample_images",
    "split_indices",
    "subset",
]
