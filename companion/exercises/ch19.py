"""Checks for chapter 19 · Fast sampling and guidance.

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


def ddim_update_reference(x_t: torch.Tensor, eps: torch.Tensor, ab_t: float, ab_prev: float, eta: float,
                          noise: torch.Tensor) -> torch.Tensor:
    """One DDIM step between the levels ab_t -> ab_prev (Song et al. 2021, eq. 12)."""
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    sigma = eta * math.sqrt(max((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev), 0.0))
    return math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps + sigma * noise


@exercise("19.1", "One DDIM step", reference=ddim_update_reference)
def check_ddim_update(fn: Callable[..., torch.Tensor]) -> str:
    ab = D.alpha_bar(D.betas(1000, "linear"))
    x_t, eps, z = _randn(3, 1, 2, 2, seed=0), _randn(3, 1, 2, 2, seed=1), _randn(3, 1, 2, 2, seed=2)
    worst = 0.0
    for t, t_prev in ((999, 899), (500, 300), (20, 10)):
        for eta in (0.0, 0.5, 1.0):
            out = fn(x_t, eps, float(ab[t]), float(ab[t_prev]), eta, z)
            lib = D.ddim_step(x_t, eps, t, t_prev, ab, eta=eta, noise=z if eta > 0 else None)
            worst = max(worst, expect_close(f"x_prev from t = {t} to {t_prev} with eta = {eta}", out, lib, atol=1e-9))
    # the last step (ab_prev = 1) returns the x0 estimate, whatever eta
    x0 = D.eps_to_x0(x_t, eps, 40, ab)
    expect_close("the step to the clean data (ab_prev = 1) returns the x0 estimate", fn(x_t, eps, float(ab[40]), 1.0,
                                                                                          1.0, z), x0, atol=1e-9)
    # eta = 1 is the DDPM posterior: mean and variance of ddpm_posterior at the x0 estimate (one step t -> t-1)
    x0 = D.eps_to_x0(x_t, eps, 300, ab)
    mean, var = D.ddpm_posterior(x0, x_t, 300, D.betas(1000, "linear"))
    expect_close("eta = 1 over one step t -> t-1 is the DDPM posterior mean + sqrt(beta tilde) noise",
                 fn(x_t, eps, float(ab[300]), float(ab[299]), 1.0, z), mean + var.sqrt() * z, atol=1e-8)
    return f"equals diffusion.ddim_step at 3 step pairs x 3 etas (max error {worst:.1e}); eta = 1 is the DDPM posterior"


def cfg_combine_reference(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale (cond - uncond)."""
    return pred_uncond + scale * (pred_cond - pred_uncond)


@exercise("19.2", "Combine the two predictions of classifier-free guidance", reference=cfg_combine_reference)
def check_cfg_combine(fn: Callable[..., torch.Tensor]) -> str:
    c, u = _randn(4, 1, 3, 3, seed=3), _randn(4, 1, 3, 3, seed=4)
    expect_close("scale 0 is the unconditional prediction", fn(c, u, 0.0), u, atol=1e-12)
    expect_close("scale 1 is the conditional prediction", fn(c, u, 1.0), c, atol=1e-12)
    expect_close("scale 3", fn(c, u, 3.0), u + 3 * (c - u), atol=1e-12)
    expect_close("scale 7.5 written as (1 + w) cond - w uncond with w = 6.5", fn(c, u, 7.5), 7.5 * c - 6.5 * u,
                 atol=1e-12)

    # the same mix as diffusion.classifier_free_guidance on a toy conditional model
    def model(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shift = 0.0 if y is None else y.double().reshape(-1, 1, 1, 1)
        return x * 0.5 + shift

    x, t, y = _randn(4, 1, 3, 3, seed=5), torch.zeros(4), torch.tensor([0, 1, 2, 3])
    guided = D.classifier_free_guidance(model, 2.5, {"y": None})
    expect_close("against classifier_free_guidance at scale 2.5", fn(model(x, t, y=y), model(x, t), 2.5),
                 guided(x, t, y=y), atol=1e-12)
    return "scale 0 is unconditional, 1 conditional, and the mix equals diffusion.classifier_free_guidance"


def flow_euler_step_reference(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = v from time t to t_next (t_next < t: towards the data)."""
    return x + (t_next - t) * v


@exercise("19.3", "One Euler step of a flow", reference=flow_euler_step_reference)
def check_flow_euler_step(fn: Callable[..., torch.Tensor]) -> str:
    x, v = _randn(3, 1, 2, 2, seed=6), _randn(3, 1, 2, 2, seed=7)
    expect_close("a step from t = 1 to 0.75", fn(x, v, 1.0, 0.75), x - 0.25 * v, atol=1e-12)
    expect_close("one step from t = 1 to 0 lands at x - v (= x0 when v = eps - x0 exactly)", fn(x, v, 1.0, 0.0),
                 x - v, atol=1e-12)
    # a whole run with the exact velocity of N(m, s^2) data equals sample_flow_euler and recovers m and s
    m, s = 0.3, 0.5
    model = D.gaussian_velocity_model(m, s)
    ts = D.flow_timesteps(50)
    z = _randn(20000, 1, seed=8)
    mine = z.clone()
    for t, t_next in zip(ts[:-1].tolist(), ts[1:].tolist(), strict=True):
        mine = fn(mine, model(mine, torch.full((mine.shape[0],), t, dtype=torch.float64)), t, t_next)
    lib = D.sample_flow_euler(model, z, ts)
    expect_close("50 steps with the exact Gaussian velocity, against sample_flow_euler", mine, lib, atol=1e-9)
    expect_close("their mean (data mean 0.3)", mine.mean(), torch.tensor(m, dtype=torch.float64), atol=0.02)
    expect_close("their std (data std 0.5)", mine.std(), torch.tensor(s, dtype=torch.float64), atol=0.02)
    return (f"one step is x + (t_next - t) v; 50 steps carry N(0, 1) to mean {mine.mean().item():.3f}, "
            f"std {mine.std().item():.3f} (data: {m}, {s})")
