"""Checks for chapter 18 · Denoising diffusion (DDPM).

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with ``companion.diffusion`` and with closed forms via
``expect_close``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from companion import diffusion as D
from companion.exercises import exercise, expect_close


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def forward_sample_reference(x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor,
                             noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise, one t per example."""
    return D.q_sample(x0, t, alpha_bar, noise)


@exercise("18.1", "The forward process in one jump", reference=forward_sample_reference)
def check_forward_sample(fn: Callable[..., torch.Tensor]) -> str:
    ab = D.alpha_bar(D.betas(1000, "linear"))
    x0, noise = _randn(4, 1, 3, 3, seed=0), _randn(4, 1, 3, 3, seed=1)
    t = torch.tensor([0, 10, 500, 999])
    out = fn(x0, t, ab, noise)
    expect_close("x_t for t = 0, 10, 500, 999 (one t per example)", out, D.q_sample(x0, t, ab, noise), atol=1e-9)
    a = ab[t].reshape(-1, 1, 1, 1)
    expect_close("the same by the formula sqrt(ab) x0 + sqrt(1 - ab) eps", out, a.sqrt() * x0 + (1 - a).sqrt() * noise,
                 atol=1e-9)
    ab_cos = D.alpha_bar(D.betas(50, "cosine"))
    x2, n2 = _randn(3, 2, seed=2), _randn(3, 2, seed=3)
    t2 = torch.tensor([49, 0, 25])
    expect_close("[3, 2] data on a 50-step cosine table, t = 49, 0, 25", fn(x2, t2, ab_cos, n2),
                 D.q_sample(x2, t2, ab_cos, n2), atol=1e-9)
    # statistics: many draws of one x0 at one t have mean sqrt(ab) x0 and variance 1 - ab
    xs = fn(torch.full((20000, 1), 0.8, dtype=torch.float64), torch.full((20000,), 300), ab, _randn(20000, 1, seed=4))
    expect_close("mean of 20,000 draws of x_300 from x0 = 0.8", xs.mean(), math.sqrt(ab[300]) * 0.8 * torch.ones(()),
                 atol=0.02)
    return (f"x_t equals q_sample on 3 cases; 20,000 draws at t = 300 have mean {xs.mean().item():.3f} "
            f"(expected {math.sqrt(ab[300]) * 0.8:.3f}) and variance {xs.var().item():.3f} (expected {1 - ab[300]:.3f})")


def posterior_reference(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                        betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0)."""
    return D.ddpm_posterior(x0, x_t, t, betas)


@exercise("18.2", "The forward posterior", reference=posterior_reference)
def check_posterior(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    betas = D.betas(1000, "linear")
    x0, x_t = _randn(3, 1, 2, 2, seed=5), _randn(3, 1, 2, 2, seed=6)
    t = torch.tensor([1, 400, 999])
    out = fn(x0, x_t, t, betas)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"return (mean, variance), got {type(out).__name__}")
    mean, var = D.ddpm_posterior(x0, x_t, t, betas)
    expect_close("posterior mean at t = 1, 400, 999", out[0], mean, atol=1e-9)
    expect_close("posterior variance (beta tilde) at t = 1, 400, 999", torch.as_tensor(out[1]).expand_as(mean),
                 var.expand_as(mean), atol=1e-12)
    # t = 0: the posterior is the point x0
    m0, v0 = fn(x0, x_t, torch.zeros(3, dtype=torch.long), betas)
    expect_close("mean at t = 0 (alpha_bar[-1] = 1: the point x0)", m0, x0, atol=1e-9)
    expect_close("variance at t = 0", torch.as_tensor(v0).expand_as(x0), torch.zeros_like(x0), atol=1e-12)
    cos = D.betas(20, "cosine")
    x0c, xtc, tc = _randn(2, 3, seed=7), _randn(2, 3, seed=8), torch.tensor([19, 7])
    mc, vc = D.ddpm_posterior(x0c, xtc, tc, cos)
    oc = fn(x0c, xtc, tc, cos)
    expect_close("mean on a 20-step cosine schedule", oc[0], mc, atol=1e-9)
    expect_close("variance on a 20-step cosine schedule", torch.as_tensor(oc[1]).expand_as(mc), vc.expand_as(mc),
                 atol=1e-12)
    return (f"mean and variance equal ddpm_posterior on 3 cases (t = 0 gives the point x0); beta tilde at t = 400 is "
            f"{var.flatten()[1].item():.5f} against beta {betas[400].item():.5f}")


def ancestral_step_reference(x_t: torch.Tensor, eps: torch.Tensor, t: int, alpha_bar: torch.Tensor,
                             noise: torch.Tensor) -> torch.Tensor:
    """One step of DDPM's ancestral sampler, x_t -> x_{t-1}, from a noise prediction (no clipping)."""
    ab = float(alpha_bar[t])
    ab_prev = float(alpha_bar[t - 1]) if t > 0 else 1.0
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    beta = 1 - ab / ab_prev
    mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t
    if t == 0:
        return mean
    return mean + math.sqrt((1 - ab_prev) / (1 - ab) * beta) * noise


@exercise("18.3", "One ancestral step", reference=ancestral_step_reference)
def check_ancestral_step(fn: Callable[..., torch.Tensor]) -> str:
    ab = D.alpha_bar(D.betas(1000, "linear"))
    x_t, eps, z = _randn(2, 1, 3, 3, seed=9), _randn(2, 1, 3, 3, seed=10), _randn(2, 1, 3, 3, seed=11)
    worst = 0.0
    for t in (999, 500, 1):
        x0 = D.eps_to_x0(x_t, eps, t, ab)
        mean, var = D.ddpm_posterior(x0, x_t, t, D.betas(1000, "linear"))
        worst = max(worst, expect_close(f"x_(t-1) at t = {t}", fn(x_t, eps, t, ab, z), mean + var.sqrt() * z,
                                        atol=1e-8))
    x0 = D.eps_to_x0(x_t, eps, 0, ab)
    expect_close("the last step, t = 0: the x0 estimate, no noise added", fn(x_t, eps, 0, ab, z), x0, atol=1e-8)
    # two steps, t = 1 then t = 0, with the exact Gaussian model and the same fresh noise, are sample_ddpm
    model = D.gaussian_eps_model(0.3, 0.5, ab)
    x1 = _randn(4, 2, seed=12)
    lib = D.sample_ddpm(model, x1, ab, [1, 0], generator=torch.Generator().manual_seed(0))
    z1 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(0), dtype=x1.dtype)
    x = fn(x1, model(x1, torch.full((4,), 1)), 1, ab, z1)
    x = fn(x, model(x, torch.full((4,), 0)), 0, ab, torch.zeros_like(x))
    expect_close("steps t = 1 and t = 0 with the exact Gaussian model, against sample_ddpm", x, lib, atol=1e-8)
    return f"x_(t-1) = posterior mean + sqrt(beta tilde) z at t = 999, 500, 1, and the noiseless last step (max error {worst:.1e})"
