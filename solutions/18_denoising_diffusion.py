"""Solutions · 18 Denoising diffusion (DDPM)

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch


def forward_sample(x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Jump from clean data x0 [B, ...] straight to step t [B] of the forward process.

    x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise, with one timestep per example.

    Args:
        x0: [B, ...] clean data.
        t: [B] integer timesteps in 0 .. T-1.
        alpha_bar: [T] table of cumulative products of (1 - beta).
        noise: eps ~ N(0, I), shaped like x0.

    Returns:
        x_t, shaped like x0.
    """
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)  # one coefficient per example
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, betas: torch.Tensor) -> tuple:
    """Mean and variance of the forward posterior q(x_{t-1} | x_t, x0).

    mean = sqrt(ab[t-1]) beta_t / (1 - ab[t]) x0 + sqrt(alpha_t) (1 - ab[t-1]) / (1 - ab[t]) x_t
    variance = (1 - ab[t-1]) / (1 - ab[t]) beta_t, with ab[-1] = 1 (so t = 0 gives mean x0, variance 0).

    Args:
        x0, x_t: [B, ...] tensors of the same shape.
        t: [B] integer timesteps in 0 .. T-1.
        betas: [T] noise schedule.

    Returns:
        (mean shaped like x_t, variance broadcastable over it, e.g. [B, 1, ..., 1]).
    """
    ab = torch.cumprod(1 - betas, dim=0)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])  # alpha_bar[t-1], 1 before the first step
    shape = (-1, *([1] * (x_t.ndim - 1)))
    a, a_prev, b = ab[t].reshape(shape), ab_prev[t].reshape(shape), betas[t].reshape(shape)
    mean = a_prev.sqrt() * b / (1 - a) * x0 + (1 - b).sqrt() * (1 - a_prev) / (1 - a) * x_t
    return mean.to(x_t.dtype), ((1 - a_prev) / (1 - a) * b).to(x_t.dtype)


def ancestral_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, alpha_bar: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """One step x_t -> x_{t-1} of DDPM's ancestral sampler, from the network's noise prediction eps.

    Estimate x0 from (x_t, eps), take the mean and variance of q(x_{t-1} | x_t, x0) at that estimate, and
    return mean + sqrt(variance) * noise; at t = 0 return the mean (the last step adds no noise). No clipping.

    Args:
        x_t: [B, ...] the current sample.
        eps: the noise prediction, shaped like x_t.
        t: the current timestep, an int in 0 .. T-1.
        alpha_bar: [T] table.
        noise: fresh N(0, I) noise, shaped like x_t.

    Returns:
        x_{t-1}, shaped like x_t.
    """
    ab = float(alpha_bar[t])
    ab_prev = float(alpha_bar[t - 1]) if t > 0 else 1.0
    beta = 1 - ab / ab_prev
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t
    if t == 0:
        return mean
    return mean + math.sqrt((1 - ab_prev) / (1 - ab) * beta) * noise


EXERCISES = {"18.1": forward_sample, "18.2": posterior, "18.3": ancestral_step}
