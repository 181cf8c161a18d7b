"""How good is a model? The measurements the course reports, in one place, each checked against a reference.

Read top to bottom:

* classifiers (chapters 02-08): :func:`accuracy` (``companion.train.accuracy``, re-exported) and
  :func:`confusion_matrix`;
* information from samples (chapter 11): :func:`entropy`, :func:`mutual_information` (plug-in estimates over
  integer labels), :func:`discretize` (equal-width bins for continuous values) and the mutual information gap
  :func:`mig` (Chen et al. 2018) with its :class:`MIGResult`;
* ranking (chapter 11): :func:`auroc`, the area under the ROC curve from ranks (Mann–Whitney U);
* discrete codes (chapter 12): :func:`codebook_usage` and :func:`perplexity` of the codes a VQ-VAE chose;
* generated images (chapter 09): :func:`classifier_scores` (does a classifier see confident, varied digits?),
  :func:`nearest_distance` (is a sample a copy of a training image?) and :func:`evaluate_samples`, which
  gathers them.

* distributions of features (chapter 13, in the submodule ``metrics.distributions``): :func:`frechet_distance` between two Gaussians and
  :func:`fid_from_features` (FID, Heusel et al. 2017), the kernel distance :func:`kid` (an unbiased MMD²,
  Bińkowski et al. 2018), :func:`precision_recall` of the sample and data manifolds (Kynkäänniemi et al. 2019),
  :func:`fid_infinity` (the 1/N extrapolation of Chong & Forsyth 2020), :func:`inception_score` (Salimans et al.
  2016) from class probabilities, :func:`classifier_two_sample_test` (Lopez-Paz & Oquab 2017) and
  :func:`bits_per_dim`. They take ``[N, F]`` features (numpy or torch) of real and generated images; the course's
  feature network and its image-level wrappers live in ``companion.evaluation``.

Every function returns plain floats or CPU tensors and leaves a model's train/eval mode as it found it.
``tests/test_metrics.py`` and ``tests/test_evaluation.py`` compare each with an independent reference
(``sklearn.metrics``, closed forms, direct double loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batching import map_batches
from ..train import accuracy
from .distributions import (  # chapter 13's part: one module of its own
    bits_per_dim,
    classifier_two_sample_test,
    fid_from_features,
    fid_infinity,
    frechet_distance,
    inception_score,
    kid,
    precision_recall,
)

__all__ = [
    "MIGResult",
    "accuracy",
    "auroc",
    "bits_per_dim",
    "classifier_scores",
    "classifier_two_sample_test",
    "codebook_usage",
    "confusion_matrix",
    "discretize",
    "entropy",
    "evaluate_samples",
    "fid_from_features",
    "fid_infinity",
    "frechet_distance",
    "inception_score",
    "kid",
    "mig",
    "mutual_information",
    "nearest_distance",
    "perplexity",
    "precision_recall",
]


# ----------------------------------------------------------------------------------------------
# Classifiers
# ----------------------------------------------------------------------------------------------


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int = 10) -> Tensor:
    """``C[t, p]`` = number of examples of true class ``t`` predicted as ``p`` (int64 ``[K, K]``).

    pred, target: ``[N]`` integer labels in ``0..K-1``. The diagonal holds the correct predictions; ``C.sum(1)``
    is the class count (``sklearn.metrics.confusion_matrix(target, pred)``). Introduced in chapter 04.
    """
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred and target must both be [N], got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.long().cpu(), target.long().cpu()
    if pred.numel() and (min(pred.min(), target.min()) < 0 or max(pred.max(), target.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


# ----------------------------------------------------------------------------------------------
# Information from samples: entropy, mutual information, MIG
# ----------------------------------------------------------------------------------------------


def _entropy_of_counts(counts: Tensor) -> Tensor:
    """``H(p) = -sum_k p_k log p_k`` (nats, float64 0-d) of the histogram ``counts [K]``, with ``0 log 0 = 0``."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return -(p * p.log()).sum() + 0.0  # + 0.0: no "-0.0" when one value takes everything


def discretize(x: Tensor, bins: int = 20) -> Tensor:
    """Equal-width histogram bins per column: ``[N, D]`` (or ``[N]``) float -> int64 bin indices in ``0..bins-1``.

    Each column is cut into ``bins`` intervals of equal width between its own min and max (the last one closed),
    as ``disentanglement_lib`` does for MIG; a constant column maps to bin 0. Introduced in chapter 11.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    squeeze = x.ndim == 1
    x = x.reshape(x.shape[0], -1).double() if not squeeze else x.double().unsqueeze(1)
    lo, hi = x.min(0).values, x.max(0).values
    width = (hi - lo) / bins
    safe = torch.where(width > 0, width, torch.ones_like(width))
    idx = torch.floor((x - lo) / safe).long().clamp_(0, bins - 1)
    idx[:, width == 0] = 0
    return idx.squeeze(1) if squeeze else idx


def _codes(labels: Tensor) -> Tensor:
    """Map arbitrary integer labels to ``0..n_distinct-1``."""
    if labels.is_floating_point():
        raise ValueError(f"expected integer labels, got {labels.dtype}: discretize() continuous values first")
    return torch.unique(labels.flatten(), return_inverse=True)[1]


def entropy(labels: Tensor) -> float:
    """H(a) = -Σ p log p (nats) of the empirical distribution of integer ``labels [N]``. Introduced in chapter 11."""
    if labels.numel() == 0:
        raise ValueError("entropy of an empty tensor")
    return float(_entropy_of_counts(torch.bincount(_codes(labels))))


def mutual_information(a: Tensor, b: Tensor) -> float:
    r"""I(a; b) = Σ p(a,b) log(p(a,b) / (p(a) p(b))) in nats, from two integer label vectors ``[N]``.

    The empirical (plug-in) estimate from the contingency table, equal to ``sklearn.metrics.mutual_info_score``.
    Introduced in chapter 11.
    """
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got {list(a.shape)} and {list(b.shape)}")
    if a.numel() == 0:
        raise ValueError("mutual information of empty tensors")
    ia, ib = _codes(a), _codes(b)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    joint = torch.bincount(ia * nb + ib, minlength=na * nb).view(na, nb).double() / a.numel()  # p(a, b)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz].log() - (pa * pb)[nz].log())).sum().clamp_min(0.0))


@dataclass
class MIGResult:
    """The mutual information gap and what it was computed from (returned by :func:`mig`).

    Attributes:
        score: MIG, the mean of ``per_factor`` (0 = no factor has its own latent, 1 = perfectly axis-aligned).
        per_factor: ``[K]`` normalised gap ``(I(z_a; v_k) - I(z_b; v_k)) / H(v_k)`` between the two most
            informative latents ``a``, ``b`` for each factor ``k``.
        mi: ``[D, K]`` mutual information (nats) between each discretised latent and each factor.
        entropy: ``[K]`` factor entropies H(v_k) (nats).
        top: ``[K]`` index of the most informative latent for each factor.

    Introduced in chapter 11.
    """

    score: float
    per_factor: Tensor
    mi: Tensor
    entropy: Tensor
    top: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))


def mig(codes: Tensor, factors: Tensor, bins: int = 20) -> MIGResult:
    r"""Mutual information gap (Chen et al. 2018, eq. 7), from samples.

    .. math:: \mathrm{MIG} = \frac1K \sum_k \frac{I(z_{j^{(k)}}; v_k) - \max_{j \ne j^{(k)}} I(z_j; v_k)}{H(v_k)},
              \qquad j^{(k)} = \arg\max_j I(z_j; v_k)

    Each latent (e.g. the posterior means) is discretised into ``bins`` equal-width bins; each factor column
    with more than ``bins`` distinct values is discretised the same way, the others (categories such as the
    shape id) are used as they are. MI is the plug-in estimate of :func:`mutual_information`.

    Args:
        codes: ``[N, D]`` latent codes, ``D >= 1``.
        factors: ``[N, K]`` ground-truth factors (see ``vae_variants.shapes_factor_matrix``).
        bins: bins per latent and per continuous factor.

    Returns:
        a :class:`MIGResult`. Introduced in chapter 11.

    Raises:
        ValueError: mismatched lengths, or a constant factor (zero entropy: nothing to disentangle).
    """
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(f"codes [N, D] and factors [N, K] must share N, got {list(codes.shape)} and "
                         f"{list(factors.shape)}")
    z = discretize(codes, bins)  # [N, D]
    v = torch.stack([discretize(col, bins) if torch.unique(col).numel() > bins
                     else torch.unique(col, return_inverse=True)[1]
                     for col in factors.unbind(1)], dim=1)  # [N, K]
    d, k = z.shape[1], v.shape[1]
    h = torch.tensor([entropy(v[:, j]) for j in range(k)], dtype=torch.float64)
    if (h <= 0).any():
        raise ValueError(f"factor(s) {(h <= 0).nonzero().flatten().tolist()} are constant: MIG needs H(v) > 0")
    mi = torch.tensor([[mutual_information(z[:, i], v[:, j]) for j in range(k)] for i in range(d)],
                      dtype=torch.float64)  # [D, K]
    top2 = mi.topk(min(2, d), dim=0)  # values [2, K]
    second = top2.values[1] if d > 1 else torch.zeros(k, dtype=torch.float64)
    gap = (top2.values[0] - second) / h
    return MIGResult(score=float(gap.mean()), per_factor=gap, mi=mi, entropy=h, top=top2.indices[0])


# ----------------------------------------------------------------------------------------------
# Ranking: the area under the ROC curve
# ----------------------------------------------------------------------------------------------


def auroc(scores: Tensor, labels: Tensor) -> float:
    r"""Area under the ROC curve from the ranks of the scores (Mann–Whitney U), ties counted as one half.

    .. math:: \mathrm{AUROC} = P(s_+ > s_-) + \tfrac12 P(s_+ = s_-)
              = \frac{R_+ - n_+(n_+ + 1)/2}{n_+\, n_-}

    where :math:`R_+` is the sum of the positives' ranks among all scores (tied scores share their mean rank).

    Args:
        scores: ``[N]``, higher = more likely positive (an anomaly).
        labels: ``[N]`` in {0, 1} (or bool), 1 = positive.

    Returns:
        a float in [0, 1]: 1 = every positive outranks every negative, 0.5 = chance. Introduced in chapter 11.

    Raises:
        ValueError: mismatched shapes, labels other than 0/1, or only one class present.
    """
    scores = torch.as_tensor(scores).detach().flatten().double()
    labels = torch.as_tensor(labels).detach().flatten()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same length, got {scores.numel()} and {labels.numel()}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positive(s) and {n_neg} negative(s)")
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of the last member of each tie group
    mid = last - (counts.double() - 1) / 2  # the group's mean rank
    rank_sum = mid[inverse][pos].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ----------------------------------------------------------------------------------------------
# Discrete codes: how many of the K codes are used, and how evenly
# ----------------------------------------------------------------------------------------------


def _code_counts(indices: Tensor, num_codes: int) -> Tensor:
    """``[K]`` how often each code occurs in ``indices`` (any shape, integer)."""
    if num_codes < 1:
        raise ValueError(f"num_codes must be >= 1, got {num_codes}")
    if indices.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype} (shape {list(indices.shape)})")
    flat = indices.reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("indices is empty: usage and perplexity need at least one code index")
    if int(flat.min()) < 0 or int(flat.max()) >= num_codes:
        raise ValueError(f"indices must lie in [0, {num_codes}), got range [{int(flat.min())}, {int(flat.max())}]")
    return torch.bincount(flat, minlength=num_codes)


def codebook_usage(indices: Tensor, num_codes: int) -> float:
    """Fraction of the ``num_codes`` codes that occur at least once in ``indices`` (any shape, long).

    1.0 means every code was chosen; a codebook with dead codes scores less. Introduced in chapter 12.
    """
    counts = _code_counts(indices, num_codes)
    return float((counts > 0).float().mean())


def perplexity(indices: Tensor, num_codes: int) -> float:
    """``exp(H(p))`` of the average code usage ``p_k = (# of k in indices) / N``: the effective number of codes.

    ``exp(-sum_k p_k log p_k)`` with ``0 log 0 = 0``. It is ``K'`` when ``K'`` codes are used equally often,
    1 when one code takes everything, and never above ``num_codes``. Introduced in chapter 12.
    """
    p = _code_counts(indices, num_codes).double()
    p = p / p.sum()
    # summed over all K codes (p = 0 makes its term 0), the order of additions chapter 12's numbers were printed with
    return float((-(p * torch.log(p.clamp_min(1e-300))).sum()).exp())


# ----------------------------------------------------------------------------------------------
# Generated images: does a classifier recognise them, and are they copies of training images?
# ----------------------------------------------------------------------------------------------


def classifier_scores(classifier: nn.Module, images: Tensor, num_classes: int = 10,
                      batch_size: int = 500) -> dict[str, Any]:
    r"""How much images look like digits to a trained classifier.

    images: ``[N, C, H, W]``. Returns ``{"confidence": mean max-softmax probability, "class_entropy": entropy
    (nats) of the histogram of predicted classes (``log 10`` = 2.303 when every digit is equally common),
    "counts": [K] predicted-class counts}``. A digit-like sample is classified confidently; a diverse set of
    samples covers the classes (the two halves of the Inception Score, Salimans et al. 2016, read separately).
    Introduced in chapter 09.
    """
    probs = map_batches(classifier, lambda xb: F.softmax(classifier(xb), -1), images, batch_size=batch_size)
    counts = torch.bincount(probs.argmax(-1), minlength=num_classes)
    return {"confidence": probs.max(-1).values.mean().item(), "class_entropy": _entropy_of_counts(counts).item(),
            "counts": counts}


@torch.no_grad()
def nearest_distance(x: Tensor, reference: Tensor, batch_size: int = 500) -> Tensor:
    """Euclidean distance from each ``x [N, ...]`` to its nearest neighbour in ``reference [M, ...]``: ``[N]``.

    Pixel space, flattened; chunked over ``x`` so memory stays ``batch_size * M``. Introduced in chapter 09.
    """
    for name, t in (("x", x), ("reference", reference)):
        if not isinstance(t, Tensor):
            raise TypeError(f"nearest_distance: {name} must be a tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.shape[0] == 0:
            raise ValueError(f"nearest_distance: {name} must be [N, ...] with N >= 1, got {list(t.shape)}")
    xf, rf = x.reshape(x.shape[0], -1).float(), reference.reshape(reference.shape[0], -1).float()
    if xf.shape[1] != rf.shape[1]:
        raise ValueError(f"x and reference differ in size: {tuple(x.shape)} vs {tuple(reference.shape)}")
    return torch.cat([torch.cdist(xf[i:i + batch_size], rf).min(1).values for i in range(0, len(xf), batch_size)])


def evaluate_samples(images: Tensor, classifier: nn.Module, train_images: Tensor) -> dict[str, float]:
    """Scores of a batch of (generated or real) images ``[N, C, H, W]``: classifier confidence, class entropy
    (:func:`classifier_scores`), and the mean distance to the nearest training image as an RMSE per pixel
    (:func:`nearest_distance` ``/ sqrt(pixels)``). Introduced in chapter 09.
    """
    s = classifier_scores(classifier, images)
    d = nearest_distance(images, train_images) / math.sqrt(images[0].numel())
    return {"confidence": s["confidence"], "class_entropy": s["class_entropy"], "nn_rmse": d.mean().item()}
