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

* distributions of features (chapter 13): :func:`frechet_distance` between two Gaussians and
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
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batching import map_batches
from .train import accuracy

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


# ----------------------------------------------------------------------------------------------
# Distributions of features: Fréchet distance, KID, precision/recall, IS, two-sample test, bits/dim
# ----------------------------------------------------------------------------------------------

try:  # scipy comes with scikit-learn; without it the trace term uses an eigen-decomposition
    from scipy import linalg as _scipy_linalg
except ImportError:  # pragma: no cover - scikit-learn brings scipy
    _scipy_linalg = None


def _as_float64(x: Any, name: str, ndim: int) -> np.ndarray:
    """``x`` (numpy, torch or a nested list) as a float64 numpy array with ``ndim`` dimensions, finite."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {list(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    r"""``tr sqrt(S1 S2)`` from two symmetric eigen-decompositions, without complex numbers.

    ``S1 S2`` is similar to the symmetric PSD matrix ``M = S1^{1/2} S2 S1^{1/2}`` (conjugate by ``S1^{1/2}``), so
    the two have the same eigenvalues and ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(M))``; round-off negatives clip to 0.
    """
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """``tr sqrt(S1 S2)`` with ``scipy.linalg.sqrtm`` (the FID reference code's route), else eigen-decompositions."""
    if _scipy_linalg is None:
        return _trace_sqrt_product_eigh(sigma1, sigma2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns about singular matrices; we check the result instead
        covmean = _scipy_linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: move both covariances off the boundary
        offset = np.eye(sigma1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = _scipy_linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        scale = max(1.0, float(np.abs(np.diagonal(covmean).real).max()))
        if imag > 1e-3 * scale:
            raise ValueError(f"frechet_distance: sqrt(sigma1 @ sigma2) has an imaginary part of {imag:.3g} on its "
                             "diagonal, more than round-off: are both covariances symmetric positive semi-definite "
                             "(np.cov of features, not a hand-made matrix)?")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    r"""The Fréchet (2-Wasserstein) distance² between :math:`\mathcal N(\mu_1, \Sigma_1)` and :math:`\mathcal N(\mu_2, \Sigma_2)`.

    .. math:: d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big)

    (Dowson & Landau 1982; FID, Heusel et al. 2017, computes it between Inception features.) Computed in float64;
    ``(Σ1 Σ2)^{1/2}`` with ``scipy.linalg.sqrtm`` when scipy is installed (as the reference FID code does), else
    through symmetric eigen-decompositions. When the product is singular and sqrtm fails, ``eps * I`` is added to
    both covariances; an imaginary part that is round-off is dropped, a larger one raises.

    Args:
        mu1, mu2: ``[F]`` means (numpy or torch). sigma1, sigma2: ``[F, F]`` covariances.
        eps: the diagonal offset used only when the first square root is not finite.

    Returns:
        a float >= 0 (tiny negative round-off is clipped to 0). Introduced in chapter 13.
    """
    m1, m2 = _as_float64(mu1, "mu1", 1), _as_float64(mu2, "mu2", 1)
    s1, s2 = _as_float64(sigma1, "sigma1", 2), _as_float64(sigma2, "sigma2", 2)
    f = m1.shape[0]
    if m2.shape != (f,) or s1.shape != (f, f) or s2.shape != (f, f):
        raise ValueError(f"frechet_distance: mu1 [F], sigma1 [F, F], mu2 [F], sigma2 [F, F] must share F, got "
                         f"{list(m1.shape)}, {list(s1.shape)}, {list(m2.shape)}, {list(s2.shape)}")
    diff = m1 - m2
    d2 = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2, eps)
    return max(float(d2), 0.0)


def _features(x: Any, name: str, min_rows: int = 2) -> np.ndarray:
    a = _as_float64(x, name, 2)
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (samples), got {a.shape[0]}")
    return a


def _gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(0), np.atleast_2d(np.cov(feats, rowvar=False))


def fid_from_features(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features ``[N, F]`` and ``[M, F]``.

    Means and unbiased covariances (``np.cov``, ``N - 1``) in float64, then :func:`frechet_distance`. The estimate
    is biased upwards at finite ``N`` (about ``1/N``; see :func:`fid_infinity`): compare numbers only at equal
    sample sizes. Introduced in chapter 13.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature size, got {a.shape[1]} and {b.shape[1]}")
    return frechet_distance(*_gaussian_stats(a), *_gaussian_stats(b))


def _poly_kernel(x: Tensor, y: Tensor, degree: int, gamma: float, coef0: float) -> Tensor:
    return (gamma * (x @ y.T) + coef0) ** degree


def _mmd2_unbiased(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> float:
    """The unbiased MMD² from the three kernel matrices (diagonals of ``kxx``, ``kyy`` left out)."""
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(feats_a: Any, feats_b: Any, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    r"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² with a polynomial kernel.

    .. math:: k(x, y) = (\gamma\, x^\top y + c_0)^d, \qquad
              \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j)
              - \frac{2}{m^2}\sum_{i, j} k(x_i, y_j)

    with :math:`\gamma = 1/F` by default, :math:`c_0 = 1`, :math:`d = 3`. Each of ``subsets`` draws takes
    ``min(subset_size, N, M)`` rows of each set without replacement. The estimator is unbiased: its mean over
    draws is zero in expectation when both sets come from one distribution (so it can be slightly negative).

    Returns:
        ``(mean, std)`` over the subsets (std 0.0 for one subset). Introduced in chapter 13.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature size, got {a.shape[1]} and {b.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    g = 1.0 / a.shape[1] if gamma is None else float(gamma)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    m = min(subset_size, len(a), len(b))
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = ta[torch.randperm(len(a), generator=gen)[:m]]
        y = tb[torch.randperm(len(b), generator=gen)[:m]]
        values.append(_mmd2_unbiased(_poly_kernel(x, x, degree, g, coef0), _poly_kernel(y, y, degree, g, coef0),
                                     _poly_kernel(x, y, degree, g, coef0)))
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _kth_neighbour_radii(x: Tensor, k: int, batch_size: int) -> Tensor:
    """Distance from each row of ``x`` to its ``k``-th nearest other row: ``[N]``."""
    out = []
    for i in range(0, len(x), batch_size):
        d = torch.cdist(x[i:i + batch_size], x)  # [b, N]; the point itself is at distance 0, index 0 below
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _inside_any_ball(points: Tensor, centres: Tensor, radii: Tensor, batch_size: int) -> Tensor:
    """For each point, whether it lies in at least one ball ``||p - c_j|| <= r_j``: ``[N]`` bool."""
    out = []
    for i in range(0, len(points), batch_size):
        d = torch.cdist(points[i:i + batch_size], centres)  # [b, M]
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real_feats: Any, fake_feats: Any, k: int = 3, batch_size: int = 1000) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-nearest-neighbour manifolds.

    The manifold of a set :math:`\Phi` is the union of balls around its points, each with the radius to that
    point's ``k``-th nearest neighbour in the set: :math:`f(\phi, \Phi) = 1` if
    :math:`\|\phi - \phi'\| \le \mathrm{NN}_k(\phi', \Phi)` for some :math:`\phi' \in \Phi`.

    * precision = the fraction of fake points inside the real manifold (are the samples realistic?);
    * recall = the fraction of real points inside the fake manifold (is the data covered?).

    Euclidean distances in float64. Returns ``(precision, recall)``, each in [0, 1]. Introduced in chapter 13.
    """
    r, f = _features(real_feats, "real_feats", k + 1), _features(fake_feats, "fake_feats", k + 1)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real_feats and fake_feats must have the same feature size, got {r.shape[1]} and {f.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    tr, tf = torch.from_numpy(r), torch.from_numpy(f)
    real_radii = _kth_neighbour_radii(tr, k, batch_size)
    fake_radii = _kth_neighbour_radii(tf, k, batch_size)
    precision = _inside_any_ball(tf, tr, real_radii, batch_size).double().mean().item()
    recall = _inside_any_ball(tr, tf, fake_radii, batch_size).double().mean().item()
    return precision, recall


def fid_infinity(ns: Any, values: Any) -> tuple[float, float]:
    r"""Extrapolate a biased estimate to infinitely many samples (Chong & Forsyth 2020).

    Fits :math:`\mathrm{FID}_N = \mathrm{FID}_\infty + b / N` by least squares on the pairs ``(N, value)``
    and returns ``(FID_inf, b)``: the intercept at :math:`1/N = 0` and the slope. Needs at least two distinct N.
    Introduced in chapter 13.
    """
    n = _as_float64(ns, "ns", 1)
    v = _as_float64(values, "values", 1)
    if n.shape != v.shape or len(np.unique(n)) < 2 or (n <= 0).any():
        raise ValueError(f"need matching ns and values with at least two distinct positive N, got {n.tolist()}")
    design = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, v, rcond=None)
    return float(intercept), float(slope)


def inception_score(probs: Any, splits: int = 1) -> tuple[float, float]:
    r"""The Inception Score (Salimans et al. 2016) from class probabilities ``[N, K]`` of a classifier.

    .. math:: \mathrm{IS} = \exp\big(\mathbb{E}_x\, \mathrm{KL}(p(y \mid x)\,\|\,p(y))\big)
              = \exp\big(H(p(y)) - \mathbb{E}_x H(p(y \mid x))\big), \qquad p(y) = \mathbb{E}_x\, p(y \mid x)

    between 1 (every image gets the same prediction) and ``K`` (each image confidently one class, all classes
    equally common). ``splits`` > 1 computes it on that many equal chunks, as the original code does. Returns
    ``(mean, std)`` over the splits (std 0.0 for one). Introduced in chapter 13.
    """
    p = _as_float64(probs, "probs", 2)
    if (p < -1e-6).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("probs must be probabilities: non-negative rows that sum to 1 (apply softmax to logits)")
    if splits < 1 or len(p) < splits:
        raise ValueError(f"need 1 <= splits <= N, got splits={splits} for N={len(p)}")
    p = np.clip(p, 1e-12, 1.0)
    scores = []
    for chunk in np.array_split(p, splits):
        marginal = chunk.mean(0, keepdims=True)
        scores.append(math.exp(float((chunk * (np.log(chunk) - np.log(marginal))).sum(1).mean())))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0


def classifier_two_sample_test(feats_a: Any, feats_b: Any, train_fraction: float = 0.5, weight_decay: float = 1e-3,
                               steps: int = 200, seed: int = 0) -> dict[str, float]:
    r"""Classifier two-sample test (Lopez-Paz & Oquab 2017) with a logistic regression on features.

    The larger set is subsampled to the size of the smaller (so that chance is exactly 1/2), both are shuffled
    and split; a logistic regression (standardised features, L2 penalty, L-BFGS) learns
    to tell ``a`` (label 0) from ``b`` (label 1) on the training part, and its accuracy is measured on the rest.
    Under the null hypothesis (one distribution) the held-out accuracy is Binomial(n, 1/2) / n, so the one-sided
    p-value uses the normal approximation :math:`z = (\mathrm{acc} - 1/2)\,/\,(1/(2\sqrt{n}))`.

    Returns:
        ``{"accuracy", "p_value", "n_test"}``: accuracy near 0.5 = indistinguishable, 1.0 = always told apart.
        Introduced in chapter 13.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature size, got {a.shape[1]} and {b.shape[1]}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = min(len(a), len(b))  # equal classes, so that chance is exactly 1/2
    a = a[torch.randperm(len(a), generator=gen)[:n].numpy()]
    b = b[torch.randperm(len(b), generator=gen)[:n].numpy()]
    x = torch.from_numpy(np.concatenate([a, b]))
    y = torch.cat([torch.zeros(n), torch.ones(n)]).double()
    perm = torch.randperm(len(x), generator=gen)
    x, y = x[perm], y[perm]
    n_train = int(round(train_fraction * len(x)))
    if n_train < 2 or len(x) - n_train < 1:
        raise ValueError(f"too few samples ({len(x)}) to split into a training and a test part")
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xtr @ w + bias, ytr) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = ((xte @ w + bias > 0).double() == yte).double().mean().item()
    n = len(xte)
    z = (acc - 0.5) * 2 * math.sqrt(n)
    return {"accuracy": acc, "p_value": 0.5 * math.erfc(z / math.sqrt(2)), "n_test": n}


def bits_per_dim(nll_nats: Any, dims: int) -> float:
    r"""A negative log-likelihood in nats per example (a float or ``[N]``) as bits per dimension.

    :math:`\text{bits/dim} = \overline{\mathrm{NLL}} / (D \ln 2)` with ``D = dims`` (784 for an MNIST digit). The
    number is only comparable between models of the *same* data: binarised and 8-bit images are different
    distributions. Introduced in chapter 13.
    """
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    v = _as_float64(np.atleast_1d(np.asarray(nll_nats.detach().cpu() if isinstance(nll_nats, Tensor) else nll_nats,
                                             dtype=np.float64)), "nll_nats", 1)
    return float(v.mean()) / (dims * math.log(2))
