"""Solutions · 20 Latent diffusion

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import torch
import torch.nn.functional as F


def latent_scale(z: torch.Tensor) -> float:
    """The scale factor that gives a set of latents unit variance: 1 / std over every element of z [N, ...].

    One number for the whole set (not one per channel), as Stable Diffusion's 0.18215.

    Args:
        z: [N, C, h, w] latents (encoder means) of training images.

    Returns:
        A Python float s with std(s * z) = 1.
    """
    return 1.0 / float(z.double().std())  # std over all elements (unbiased, as torch.std)


def adaln_zero_update(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, gate: torch.Tensor,
                      f) -> torch.Tensor:
    """One adaLN-Zero residual update of a DiT block: x + gate * f(LN(x) * (1 + scale) + shift).

    LN normalises each token over its D features (no learned affine, eps 1e-6); shift, scale and gate are one
    vector per example and apply to every token of that example.

    Args:
        x: [B, N, D] tokens.
        shift, scale, gate: [B, D] modulation (regressed from the time and label embedding).
        f: the sublayer (attention or MLP), [B, N, D] -> [B, N, D].

    Returns:
        [B, N, D].
    """
    h = F.layer_norm(x, x.shape[-1:], eps=1e-6)  # per token, no affine
    h = h * (1 + scale[:, None, :]) + shift[:, None, :]  # one modulation per example, broadcast over tokens
    return x + gate[:, None, :] * f(h)


def rope_2d(x: torch.Tensor, h: int, w: int, base: float = 100.0) -> torch.Tensor:
    """Axial 2-D rotary positions for tokens on an h x w grid (row-major): [..., h*w, d] -> same shape.

    Pairs (x[2i], x[2i+1]) are rotated by an angle: for the first d/4 pairs the angle is row * omega_i, for the
    last d/4 pairs column * omega_i, with omega_i = base^(-2i / (d/2)) for i = 0 .. d/4 - 1.
    (a, b) -> (a cos t - b sin t, a sin t + b cos t).

    Args:
        x: [..., h*w, d], d divisible by 4.
        h, w: the grid.
        base: the frequency base.

    Returns:
        A tensor shaped like x.
    """
    d = x.shape[-1]
    omega = base ** (-torch.arange(0, d // 2, 2, dtype=torch.float64) / (d // 2))  # [d/4]
    rows = torch.arange(h).repeat_interleave(w).double()  # token n sits at row n // w
    cols = torch.arange(w).repeat(h).double()  # and column n % w
    angles = torch.cat([rows[:, None] * omega, cols[:, None] * omega], dim=1).to(x.dtype)  # [h*w, d/2]
    a, b = x[..., 0::2], x[..., 1::2]  # the pairs
    cos, sin = angles.cos(), angles.sin()
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(x.shape)


EXERCISES = {"20.1": latent_scale, "20.2": adaln_zero_update, "20.3": rope_2d}
