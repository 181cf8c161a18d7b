"""Judging generated digits: the course's frozen feature network and the image-level sample metrics built on it.

Read top to bottom:

* the protocol every later chapter reports with: :data:`EVAL_N` images against the held-out reference
  MNIST-test[8000:10000:2] (:data:`REFERENCE`), and the real-data floor measured with MNIST-test[8001:10000:2]
  (:data:`FLOOR`);
* the feature network: :class:`FeatureNet` (a small CNN classifier whose 64-dimensional penultimate layer is the
  feature space), :func:`feature_extractor` (the shipped checkpoint ``mnist_features``, trained on
  MNIST-test[:8000] only, so both reference sets are held out), :func:`extract_features` and
  :func:`class_probabilities`;
* image-level metrics: :func:`fld` (the Fréchet distance in those features, "FLD", the course's FID) and
  :func:`sample_metrics` (FLD, KID, precision/recall and the Inception-Score analogue in one call);
* controlled failures for the chapter's experiment: :func:`corrupt` (noise, blur, occlusion).

The feature-level maths (Fréchet distance, KID, precision/recall, ...) lives in :mod:`companion.metrics`.
Images are ``[N, 1, 28, 28]`` float in [0, 1]. Introduced in chapter 13.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import metrics
from ._checks import _check_images
from .batching import map_batches
from .checkpoints import load_weights
from .images import blur

__all__ = [
    "EVAL_N",
    "FEATURES_CHECKPOINT",
    "FLOOR",
    "FeatureNet",
    "REFERENCE",
    "check_images",
    "class_probabilities",
    "corrupt",
    "extract_features",
    "feature_extractor",
    "fld",
    "sample_metrics",
]

#: How many generated images a chapter scores (against as many held-out real ones).
EVAL_N = 1000
#: The reference images: the even indices of MNIST-test[8000:10000], 1,000 images never seen by the feature network
#: or by any shipped model. (Interleaved, not a contiguous block: MNIST's test images come in runs by writer, and
#: the blocks [8000:9000] and [9000:10000] differ measurably.)
REFERENCE = slice(8000, 10000, 2)
#: The second held-out set: the odd indices of MNIST-test[8000:10000]; FLD(FLOOR, REFERENCE) is the real-data floor.
FLOOR = slice(8001, 10000, 2)
#: The shipped checkpoint of the feature network.
FEATURES_CHECKPOINT = "mnist_features"


class FeatureNet(nn.Module):
    """A small CNN classifier for 28x28 digits whose penultimate layer is a ``feature_dim`` feature space.

    Three blocks of (3x3 conv, ReLU, 2x2 max pool) with ``widths`` channels take 28 -> 14 -> 7 -> 3; a linear layer
    maps the ``widths[-1] * 3 * 3`` values to ``feature_dim`` features (ReLU), and a last linear layer to
    ``num_classes`` logits. ``features(x)`` returns the features times the buffer ``scale`` (1 / their root mean
    square on the training images, set by the recipe), ``forward(x)`` the logits. Introduced in chapter 13.
    """

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), feature_dim: int = 64,
                 num_classes: int = 10) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1 or feature_dim < 1 or num_classes < 2:
            raise ValueError(f"FeatureNet needs three positive widths, feature_dim >= 1 and num_classes >= 2, got "
                             f"{widths}, {feature_dim}, {num_classes}")
        self.widths, self.feature_dim, self.num_classes = tuple(widths), feature_dim, num_classes
        chans = (1, *widths)
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(3))
        self.fc = nn.Linear(widths[-1] * 3 * 3, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        # one number that puts the features on a unit scale (set after training: 1 / their RMS on the training
        # images), so that distances, FLD and KID's kernel have the same size whatever the network learned
        self.register_buffer("scale", torch.ones(()))

    def features(self, x: Tensor) -> Tensor:
        """``[B, 1, 28, 28] -> [B, feature_dim]``: the penultimate (post-ReLU) activations times ``scale``."""
        return self._hidden(x) * self.scale

    def _hidden(self, x: Tensor) -> Tensor:
        _check_images("FeatureNet.features", x, channels=1, size=(28, 28))
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)  # 28 -> 14 -> 7 -> 3
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, 28, 28] -> [B, num_classes]`` logits (``scale`` does not change them)."""
        return self.head(self._hidden(x))


def feature_extractor() -> FeatureNet:
    """The shipped, frozen feature network (checkpoint ``mnist_features``, hash-verified), in eval mode.

    Trained on MNIST-test[:8000] only (see its card: ``companion.hub.card("mnist_features")``), so
    :data:`REFERENCE` and :data:`FLOOR` are held out for it. Its parameters do not require gradients.
    Introduced in chapter 13.
    """
    model = FeatureNet()
    model.load_state_dict(load_weights(FEATURES_CHECKPOINT))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_images(images: Any, name: str = "images", fn: str = "evaluation") -> Tensor:
    """``images`` must be a float tensor ``[N, 1, 28, 28]`` with N >= 2, finite, in [0, 1]; returns it.

    The errors say what is wrong: a uint8 batch (divide by 255), ``[N, 28, 28]`` (add the channel), images in
    [-1, 1] (map them back with ``(x + 1) / 2``), a single image. Introduced in chapter 13.
    """
    if isinstance(images, Tensor) and images.ndim == 3 and tuple(images.shape[1:]) == (28, 28):
        raise ValueError(f"{fn}: {name} must be [N, 1, 28, 28], got {list(images.shape)}: add the channel with "
                         f"{name}.unsqueeze(1)")
    x = _check_images(fn, images, channels=1, size=(28, 28), name=name)
    if x.shape[0] < 2:
        raise ValueError(f"{fn}: {name} needs at least 2 images to estimate a distribution, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or infinity")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        hint = " (images in [-1, 1]? map them with (x + 1) / 2)" if lo >= -1 - 1e-3 and hi <= 1 + 1e-3 else ""
        raise ValueError(f"{fn}: {name} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
    return x


@torch.no_grad()
def extract_features(images: Tensor, model: nn.Module | None = None, batch_size: int = 500) -> Tensor:
    """``[N, 1, 28, 28]`` images -> ``[N, F]`` features of ``model`` (default: :func:`feature_extractor`), float64 CPU."""
    x = check_images(images, fn="extract_features")
    model = feature_extractor() if model is None else model
    return map_batches(model, model.features, x, batch_size=batch_size).double()


@torch.no_grad()
def class_probabilities(images: Tensor, model: nn.Module | None = None, batch_size: int = 500) -> Tensor:
    """``[N, 1, 28, 28]`` images -> ``[N, K]`` softmax probabilities of the feature network's classifier head."""
    x = check_images(images, fn="class_probabilities")
    model = feature_extractor() if model is None else model
    return map_batches(model, lambda xb: F.softmax(model(xb), -1), x, batch_size=batch_size).double()


def fld(images_a: Tensor, images_b: Tensor, model: nn.Module | None = None) -> float:
    """FLD: the Fréchet distance between Gaussians fitted to the course features of two image sets.

    The course's FID: :func:`companion.metrics.fid_from_features` on :func:`extract_features` of each set. Like
    FID it is biased upwards at small N; compare values at equal N (the course uses :data:`EVAL_N`), next to
    the real-data floor. Raises ``ValueError``/``TypeError`` for a wrong shape, dtype or range, or fewer than 2
    images. Introduced in chapter 13.
    """
    check_images(images_a, "images_a", "fld")
    check_images(images_b, "images_b", "fld")
    model = feature_extractor() if model is None else model
    return metrics.fid_from_features(extract_features(images_a, model), extract_features(images_b, model))


def sample_metrics(images: Tensor, reference: Tensor, model: nn.Module | None = None, k: int = 3,
                   kid_subsets: int = 50, kid_subset_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Every feature metric of the chapter for ``images`` against ``reference`` (both ``[N, 1, 28, 28]``).

    Returns ``{"fld", "kid", "kid_std", "precision", "recall", "is"}``: FLD, KID (unbiased MMD², subsets of up to
    ``kid_subset_size``), k-NN precision and recall, and the Inception-Score analogue of the feature network's classifier.
    Introduced in chapter 13.
    """
    model = feature_extractor() if model is None else model
    fa, fb = extract_features(images, model), extract_features(reference, model)
    kid_mean, kid_std = metrics.kid(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    precision, recall = metrics.precision_recall(fb, fa, k=k)
    return {"fld": metrics.fid_from_features(fa, fb), "kid": kid_mean, "kid_std": kid_std, "precision": precision,
            "recall": recall, "is": metrics.inception_score(class_probabilities(images, model))[0]}


def corrupt(images: Tensor, kind: str, level: float, seed: int = 0) -> Tensor:
    """A controlled failure applied to real images ``[N, 1, 28, 28]`` in [0, 1]; returns new images in [0, 1].

    * ``"noise"``: add Gaussian noise of standard deviation ``level``, then clip to [0, 1];
    * ``"blur"``: Gaussian blur with ``sigma = level`` pixels (reflect padding);
    * ``"occlude"``: a black ``level x level`` square at a random position in each image.

    ``level = 0`` returns a copy. Introduced in chapter 13.
    """
    x = check_images(images, fn="corrupt").clone()
    if level < 0:
        raise ValueError(f"corrupt: level must be >= 0, got {level}")
    if kind not in ("noise", "blur", "occlude"):
        raise ValueError(f"corrupt: kind must be 'noise', 'blur' or 'occlude', got {kind!r}")
    if level == 0:
        return x
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return (x + level * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)
    if kind == "blur":
        return blur(x, float(level)).clamp(0, 1)
    s = int(round(level))
    if not 1 <= s <= 28:
        raise ValueError(f"corrupt: an occluding square needs 1 <= level <= 28, got {level}")
    top = torch.randint(0, 28 - s + 1, (len(x),), generator=g)
    left = torch.randint(0, 28 - s + 1, (len(x),), generator=g)
    rows, cols = torch.arange(28), torch.arange(28)
    inside = ((rows[None, :, None] >= top[:, None, None]) & (rows[None, :, None] < top[:, None, None] + s)
              & (cols[None, None, :] >= left[:, None, None]) & (cols[None, None, :] < left[:, None, None] + s))
    return x.masked_fill(inside[:, None], 0.0)
