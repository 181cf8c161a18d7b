"""Solutions · 19 Fast sampling and guidance

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch


def ddim_update(x_t: torch.Tensor, eps: torch.Tensor, ab_t: float, ab_prev: float, eta: float,
                noise: torch.Tensor) -> torch.Tensor:
    """One DDIM step from the level ab_t = alpha_bar[t] to the earlier level ab_prev (1.0 for the clean data).

    x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)
    sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)
    x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise

    Args:
        x_t: [B, ...] the current sample.
        eps: the noise prediction at (x_t, t), shaped like x_t.
        ab_t, ab_prev: the two levels, Python floats with ab_prev > ab_t.
        eta: >= 0, the fresh noise (0: deterministic DDIM, 1: the DDPM posterior).
        noise: N(0, I) shaped like x_t (multiplied by sigma, so unused at eta = 0).

    Returns:
        x_prev, shaped like x_t.
    """
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)  # 1. predicted clean image
    sigma = eta * math.sqrt(max((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev), 0.0))  # 2. eq. 16
    direction = math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps  # 3. the part of x_t's noise that is kept
    return math.sqrt(ab_prev) * x0 + direction + sigma * noise


def cfg_combine(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: mix a conditional and an unconditional prediction.

    guided = uncond + scale * (cond - uncond): scale 0 is unconditional, 1 conditional, > 1 pushes further
    along the direction the condition adds. The same line works for eps, x0, v or a flow velocity.

    Args:
        pred_cond: the model's prediction with the condition, [B, ...].
        pred_uncond: its prediction without it, shaped like pred_cond.
        scale: the guidance scale.

    Returns:
        The guided prediction, shaped like pred_cond.
    """
    return pred_uncond + scale * (pred_cond - pred_uncond)


def flow_euler_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of the flow ODE dx/dt = v(x, t) from time t to t_next.

    On the straight path x_t = (1 - t) x0 + t eps (t = 1 noise, t = 0 data) the model predicts v = eps - x0;
    sampling walks from t = 1 down to 0, so t_next < t and the step is x + (t_next - t) v.

    Args:
        x: [B, ...] the sample at time t.
        v: the velocity at (x, t), shaped like x.
        t, t_next: the current and the next time, floats in [0, 1].

    Returns:
        The sample at t_next, shaped like x.
    """
    return x + (t_next - t) * v


EXERCISES = {"19.1": ddim_update, "19.2": cfg_combine, "19.3": flow_euler_step}
