"""Solutions · 17 Flows, score matching and Langevin dynamics

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch


def coupling_forward(x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor,
                     t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One affine coupling, given its scale and shift: y = b x + (1 - b)(x exp(s) + t).

    The pixels where the mask b is 1 pass through; the others are scaled by exp(s) and shifted by t.
    The Jacobian is triangular with diagonal 1 (fixed pixels) and exp(s) (the others), so
    log|det dy/dx| = sum over each example's entries of (1 - b) s.

    Args:
        x: [B, C, H, W] input.
        mask: [1, C, H, W] of 0/1 (1 = kept fixed).
        s, t: [B, C, H, W] log-scale and shift (computed from the fixed half by the coupling's network).

    Returns:
        (y shaped like x, log_det [B]).
    """
    free = 1 - mask  # the half that is transformed
    y = mask * x + free * (x * torch.exp(s) + t)
    log_det = (free * s).flatten(1).sum(1)  # the diagonal of the triangular Jacobian: exp(s) where free
    return y, log_det


def denoising_score_loss(score_fn, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching weighted by sigma^2 (Vincent 2011; Song & Ermon 2019).

    x_noisy = x + sigma z; the target is the score of q(x_noisy | x), -z / sigma; weighted by sigma^2 the
    squared error is || sigma s(x_noisy, sigma) + z ||^2. Sum it over each example's entries, average over
    the batch and halve it.

    Args:
        score_fn: score_fn(x_noisy, sigma [B]) -> score shaped like x.
        x: [B, ...] clean data.
        sigma: [B] noise level of each example.
        noise: z ~ N(0, I) shaped like x.

    Returns:
        The scalar loss.
    """
    s = sigma.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)  # one level per example, broadcast over its entries
    score = score_fn(x + s * noise, sigma)
    return 0.5 * (s * score + noise).flatten(1).pow(2).sum(1).mean()


def langevin_update(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    """One step of (unadjusted) Langevin dynamics: x + (step_size / 2) score + sqrt(step_size) noise.

    Args:
        x: [N, ...] current samples.
        score: grad log p at x, shaped like x.
        step_size: a > 0.
        noise: fresh N(0, I) noise shaped like x.

    Returns:
        The next samples, shaped like x.
    """
    return x + 0.5 * step_size * score + math.sqrt(step_size) * noise


EXERCISES = {"17.1": coupling_forward, "17.2": denoising_score_loss, "17.3": langevin_update}
