"""Checks for chapter 13 · Evaluating generative models.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with closed forms and ``companion.metrics`` via
``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from companion import metrics
from companion.exercises import exercise, expect_close


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _number(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise AssertionError(f"{name}: return a Python float, got {type(value).__name__}")
    return float(value)


def _fd_diagonal_reference(mu1, var1, mu2, var2) -> float:
    return metrics.frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2))


@exercise("13.1", "Fréchet distance of diagonal Gaussians", reference=lambda mu1, var1, mu2, var2:
          _fd_diagonal_reference(mu1, var1, mu2, var2))
def check_frechet_diagonal(fn: Callable[..., float]) -> str:
    mu1, var1 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 4.0], dtype=torch.float64)
    mu2, var2 = torch.tensor([3.0, 1.0], dtype=torch.float64), torch.tensor([4.0, 1.0], dtype=torch.float64)
    value = _number("mu = (0, 1) vs (3, 1), var = (1, 4) vs (4, 1)", fn(mu1, var1, mu2, var2))
    expect_close("mu = (0, 1) vs (3, 1), var = (1, 4) vs (4, 1): 9 + (1 - 2)^2 + (2 - 1)^2", value, 11.0, atol=1e-8)
    same = _number("identical Gaussians", fn(mu1, var1, mu1.clone(), var1.clone()))
    expect_close("identical Gaussians", same, 0.0, atol=1e-8)
    expect_close("same means, variances 1 vs 9 in one dimension: (1 - 3)^2",
                 _number("1-D", fn(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                                   torch.zeros(1, dtype=torch.float64), torch.full((1,), 9.0, dtype=torch.float64))),
                 4.0, atol=1e-8)
    for seed, d in ((1, 8), (2, 64)):
        m1, m2 = _randn(d, seed=seed), _randn(d, seed=seed + 10)
        v1, v2 = _randn(d, seed=seed + 20).exp(), _randn(d, seed=seed + 30).exp()
        expect_close(f"random diagonal Gaussians, F = {d} (vs metrics.frechet_distance with full matrices)",
                     _number(f"F = {d}", fn(m1, v1, m2, v2)), _fd_diagonal_reference(m1, v1, m2, v2),
                     atol=1e-6, rtol=1e-8)
    return f"(0, 1; 1, 4) vs (3, 1; 4, 1) gives {value:.4f} = 11, identical gives 0, and F = 8, 64 match the full formula"


def _mmd2_reference(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """The unbiased MMD² over all rows (``metrics.kid`` with one subset holding every row, for any N and M)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    g = 1.0 / x.shape[1]
    k = lambda a, b: (g * (a @ b.T) + coef0) ** degree  # noqa: E731
    return metrics.distributions._mmd2_unbiased(k(x, x), k(y, y), k(x, y))


@exercise("13.2", "The unbiased MMD² estimator", reference=lambda x, y, degree=3, coef0=1.0:
          _mmd2_reference(x, y, degree, coef0))
def check_mmd2(fn: Callable[..., float]) -> str:
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    value = _number("3 vs 2 points in 2-D", fn(x, y, 1, 0.0))
    # linear kernel k = x.y / 2: the unbiased estimate by hand
    kxx = (x @ x.T / 2).sum() - (x @ x.T / 2).diagonal().sum()
    kyy = (y @ y.T / 2).sum() - (y @ y.T / 2).diagonal().sum()
    by_hand = float(kxx / 6 + kyy / 2 - 2 * (x @ y.T / 2).mean())
    expect_close("3 vs 2 points, linear kernel x.y/2 (degree 1, coef0 0), by hand", value, by_hand, atol=1e-10)
    for seed, (n, m, d) in enumerate([(30, 30, 4), (50, 20, 8), (2, 3, 1)]):
        a, b = _randn(n, d, seed=seed), _randn(m, d, seed=seed + 10) * 1.5 + 0.3
        expect_close(f"{n} vs {m} points in {d}-D, cubic kernel", _number("cubic", fn(a, b, 3, 1.0)),
                     _mmd2_reference(a, b), atol=1e-9, rtol=1e-9)
    a = _randn(40, 3, seed=7)
    expect_close("a set against itself shifted by 0 (same points): the diagonal must be left out, so MMD² < 0",
                 _number("same", fn(a, a.clone(), 3, 1.0)), _mmd2_reference(a, a.clone()), atol=1e-9, rtol=1e-9)
    return f"the by-hand case gives {value:.5f}; 4 cubic-kernel cases match the direct unbiased estimate"


def _precision_recall_reference(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple:
    """``metrics.precision_recall`` as a pair of 0-d float64 tensors."""
    return tuple(torch.tensor(v, dtype=torch.float64) for v in metrics.precision_recall(real, fake, k))


@exercise("13.3", "Precision and recall from k-NN radii", reference=_precision_recall_reference)
def check_precision_recall(fn: Callable[..., tuple]) -> str:
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)  # radii with k = 1: 1, 1, 1, 1
    fake = torch.tensor([[0.5], [3.9], [10.0], [11.0]], dtype=torch.float64)  # radii with k = 1: 3.4, 3.4, 1, 1
    out = fn(real, fake, 1)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"return (precision, recall), got {type(out).__name__}")
    p, r = _number("precision", out[0]), _number("recall", out[1])
    expect_close("1-D by hand, k = 1: precision (0.5 and 3.9 are within 1 of a real point)", p, 0.5, atol=1e-12)
    expect_close("1-D by hand, k = 1: recall (0, 1, 2, 3 are within 3.4 of 0.5 or of 3.9)", r, 1.0, atol=1e-12)
    g = np.random.default_rng(0)
    wide, tight = torch.from_numpy(g.normal(size=(300, 4)) * 3), torch.from_numpy(g.normal(size=(300, 4)) * 0.3)
    pt, rt = (_number("precision", v) for v in fn(wide, tight, 3))
    ref = metrics.precision_recall(wide, tight, 3)
    expect_close("a tight fake cluster inside wide real data: precision", pt, ref[0], atol=1e-12)
    expect_close("a tight fake cluster inside wide real data: recall", rt, ref[1], atol=1e-12)
    for seed, k in ((1, 3), (2, 5)):
        a, b = _randn(80, 3, seed=seed), _randn(60, 3, seed=seed + 10) + 0.5
        pr = fn(a, b, k)
        ref = metrics.precision_recall(a, b, k)
        expect_close(f"80 real vs 60 fake points in 3-D, k = {k}: precision", _number("precision", pr[0]), ref[0],
                     atol=1e-12)
        expect_close(f"80 real vs 60 fake points in 3-D, k = {k}: recall", _number("recall", pr[1]), ref[1],
                     atol=1e-12)
    return (f"1-D by hand (0.5, 1.0); tight cluster in wide data: precision {pt:.2f}, recall {rt:.2f}; "
            f"2 random cases match")
