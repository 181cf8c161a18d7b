"""Checks for chapter 17 · Flows, score matching and Langevin dynamics.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with ``companion.flows`` / ``companion.score``, with
``torch.linalg.slogdet`` of the autograd Jacobian and with closed forms via ``expect_close``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from companion import flows
from companion import score as S
from companion.exercises import exercise, expect_close


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def coupling_forward_reference(x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor,
                               t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = b x + (1 - b)(x exp(s) + t) and log|det dy/dx| = sum of (1 - b) s per example."""
    keep = 1 - mask
    y = mask * x + keep * (x * torch.exp(s) + t)
    return y, (keep * s).flatten(1).sum(1)


@exercise("17.1", "An affine coupling and its log-determinant", reference=coupling_forward_reference)
def check_coupling_forward(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    mask = flows.checkerboard_mask(1, 4, 0).double()
    x, s, t = _randn(3, 1, 4, 4, seed=0), 0.5 * _randn(3, 1, 4, 4, seed=1), _randn(3, 1, 4, 4, seed=2)
    out = fn(x, mask, s, t)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"return (y, log_det), got {type(out).__name__}")
    y_ref, ld_ref = coupling_forward_reference(x, mask, s, t)
    expect_close("y on a 4x4 checkerboard", out[0], y_ref, atol=1e-10)
    expect_close("log_det [B] on a 4x4 checkerboard", out[1], ld_ref, atol=1e-10)
    expect_close("the masked pixels pass through unchanged", out[0] * mask, x * mask, atol=0.0)
    # s and t as functions of the fixed half: the Jacobian is triangular, its log|det| is the sum of s
    w = _randn(16, 16, seed=3) * 0.3

    def st(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh((v * mask).reshape(-1, 16) @ w).reshape(v.shape)
        return h, 0.5 * h

    def f(v: torch.Tensor) -> torch.Tensor:
        sv, tv = st(v.reshape(1, 1, 4, 4))
        return fn(v.reshape(1, 1, 4, 4), mask, sv, tv)[0].reshape(-1)

    x1 = _randn(1, 1, 4, 4, seed=4)
    jac = torch.autograd.functional.jacobian(f, x1.reshape(-1))
    s1, t1 = st(x1)
    slog = torch.linalg.slogdet(jac)[1]
    err = expect_close("log_det against slogdet of the autograd Jacobian (s, t computed from the fixed half)",
                       fn(x1, mask, s1, t1)[1][0], slog, atol=1e-9)
    cm = flows.channel_mask(4, 2, 1).double()
    x2, s2, t2 = _randn(2, 4, 2, 2, seed=5), _randn(2, 4, 2, 2, seed=6), _randn(2, 4, 2, 2, seed=7)
    y2, ld2 = coupling_forward_reference(x2, cm, s2, t2)
    o2 = fn(x2, cm, s2, t2)
    expect_close("y with a channel mask [1, 4, 2, 2]", o2[0], y2, atol=1e-10)
    expect_close("log_det with a channel mask", o2[1], ld2, atol=1e-10)
    return f"y and log_det equal the formulas on two masks; log_det = slogdet of the Jacobian (error {err:.1e})"


def dsm_reference(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                  sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """0.5 * mean over the batch of || sigma s(x + sigma z, sigma) + z ||^2 (sum over each example's entries)."""
    return S.dsm_loss(score_fn, x, None, sigma=sigma, noise=noise)


@exercise("17.2", "The denoising score matching loss", reference=dsm_reference)
def check_dsm(fn: Callable[..., torch.Tensor]) -> str:
    means = torch.tensor([[-1.0, 0.0], [1.5, 1.0]], dtype=torch.float64)
    x = means[torch.tensor([0, 1, 1, 0, 1])] + 0.2 * _randn(5, 2, seed=10)
    sigma = torch.tensor([0.05, 0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    noise = _randn(5, 2, seed=11)

    def lin(v: torch.Tensor, sg: torch.Tensor) -> torch.Tensor:
        return -v / (1 + sg[:, None] ** 2)

    out = fn(lin, x, sigma, noise)
    expect_close("loss of the score -x / (1 + sigma^2) on 5 points, 5 levels", torch.as_tensor(out),
                 dsm_reference(lin, x, sigma, noise), atol=1e-10)
    zero = fn(lambda v, sg: torch.zeros_like(v), x, sigma, noise)
    expect_close("a zero score costs 0.5 * mean ||z||^2", torch.as_tensor(zero),
                 0.5 * noise.pow(2).sum(1).mean(), atol=1e-10)
    img = _randn(3, 1, 4, 4, seed=12).clamp(-1, 1)
    sig_img = torch.tensor([0.1, 0.4, 1.0], dtype=torch.float64)
    z_img = _randn(3, 1, 4, 4, seed=13)

    def shrink(v: torch.Tensor, sg: torch.Tensor) -> torch.Tensor:
        return -v / sg.reshape(-1, 1, 1, 1) ** 2 * 0.5

    expect_close("images [3, 1, 4, 4] (sum over each image's pixels)", torch.as_tensor(fn(shrink, img, sig_img, z_img)),
                 dsm_reference(shrink, img, sig_img, z_img), atol=1e-9)
    # the exact score of the noised data beats a perturbed one (DSM's minimiser is that score)
    big = means[torch.randint(0, 2, (4000,), generator=torch.Generator().manual_seed(14))] + 0.2 * _randn(4000, 2, seed=15)
    sg = torch.full((4000,), 0.5, dtype=torch.float64)
    zz = _randn(4000, 2, seed=16)

    def exact(v: torch.Tensor, s_: torch.Tensor) -> torch.Tensor:
        return S.mixture_score(v, means, 0.2, s_)

    best = float(fn(exact, big, sg, zz))
    worse = float(fn(lambda v, s_: 1.2 * exact(v, s_), big, sg, zz))
    if not best < worse:
        raise AssertionError(f"the exact score should cost less than 1.2 x it: your values {best:.4f} / {worse:.4f}")
    return f"loss equals dsm_loss on points and images; the exact mixture score costs {best:.3f} < {worse:.3f} (1.2 x it)"


def langevin_reference(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    """x + (step_size / 2) score + sqrt(step_size) noise."""
    return S.langevin_step(score, x, step_size, noise)


@exercise("17.3", "One Langevin step", reference=langevin_reference)
def check_langevin(fn: Callable[..., torch.Tensor]) -> str:
    x, sc, z = _randn(4, 2, seed=20), _randn(4, 2, seed=21), _randn(4, 2, seed=22)
    for a in (1e-4, 0.01, 0.5):
        expect_close(f"one step with step size {a:g}", fn(x, sc, a, z), langevin_reference(x, sc, a, z), atol=1e-10)
    expect_close("zero noise: a gradient-ascent step of size a/2", fn(x, sc, 0.2, torch.zeros_like(x)), x + 0.1 * sc,
                 atol=1e-12)
    # many steps with the score of N(m, s^2) give samples of N(m, s^2)
    m, s, a = 1.0, 0.5, 0.01
    g = torch.Generator().manual_seed(23)
    v = torch.zeros(20000, 1, dtype=torch.float64)
    for _ in range(400):
        v = fn(v, S.gaussian_score(v, m, s), a, torch.randn(v.shape, generator=g, dtype=v.dtype))
    expect_close("mean after 400 steps on the score of N(1, 0.5^2)", v.mean(), torch.tensor(m, dtype=v.dtype), atol=0.02)
    # the unadjusted chain's stationary variance is s^2 / (1 - a / (4 s^2)): slightly above s^2 for a finite step
    expect_close("std after 400 steps", v.std(), torch.tensor(s / math.sqrt(1 - a / (4 * s**2)), dtype=v.dtype),
                 atol=0.02)
    return (f"one step equals the formula at three step sizes; 20,000 chains on N(1, 0.5^2) end with mean "
            f"{v.mean().item():.3f} and std {v.std().item():.3f}")
