"""Distributions of features (chapter 13): Fréchet distance, KID, precision/recall, FID∞, IS, two-sample test, bits/dim.

Part of :mod:`companion.metrics` (every public name here is imported there): :func:`frechet_distance` between two
Gaussians and :func:`fid_from_features` (FID, Heusel et al. 2017), the kernel distance :func:`kid` (an unbiased
MMD², Bińkowski et al. 2018), :func:`precision_recall` of the sample and data manifolds (Kynkäänniemi et al.
2019), :func:`fid_infinity` (Chong & Forsyth 2020), :func:`inception_score` (Salimans et al. 2016),
:func:`classifier_two_sample_test` (Lopez-Paz & Oquab 2017) and :func:`bits_per_dim`. Introduced in chapter 13.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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
