"""Solutions · 16 Conditional and style-based GANs

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch
import torch.nn.functional as F


def projection_logit(phi: torch.Tensor, psi_weight: torch.Tensor, psi_bias: torch.Tensor,
                     embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The projection discriminator's logit psi(phi) + <V[y], phi> for each example.

    Args:
        phi: [B, F] features of the images.
        psi_weight: [F] and psi_bias: scalar, the unconditional linear head psi(phi) = phi . w + b.
        embedding: [K, F], one row V_k per class.
        labels: [B] int64 classes.

    Returns:
        [B] logits.
    """
    psi = phi @ psi_weight + psi_bias  # [B]: the unconditional term
    return psi + (embedding[labels] * phi).sum(dim=1)  # plus the inner product with the row of each label


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor, demodulate: bool,
                   padding: int) -> torch.Tensor:
    """StyleGAN2's modulated convolution with one kernel per example.

    w'_{b,o,i,k} = style[b, i] * weight[o, i, k]; with demodulate, divide each (b, o) kernel by
    sqrt(sum_{i,k} w'^2 + 1e-8). Then convolve example b with its own kernel.

    Args:
        x: [B, C_in, H, W]; weight: [C_out, C_in, k, k]; style: [B, C_in]; padding: zero padding.

    Returns:
        [B, C_out, H', W'].
    """
    w = weight[None] * style[:, None, :, None, None]  # [B, C_out, C_in, k, k]
    if demodulate:
        w = w / torch.sqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    return torch.cat([F.conv2d(x[b:b + 1], w[b], padding=padding) for b in range(x.shape[0])])


def truncate_w(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick in W: move each code towards the average code by the factor psi.

    Args:
        w: [B, D] intermediate latents; w_avg: [D] their running mean; psi: the truncation factor.

    Returns:
        [B, D].
    """
    return w_avg + psi * (w - w_avg)


def ada_update(p: float, r_t: float, target: float, batch: int, interval: int, speed: int) -> float:
    """One step of ADA's controller: raise p when the discriminator overfits (r_t > target), lower it otherwise.

    The step is batch * interval / speed (speed = images for p to move from 0 to 1); the result is clamped to
    [0, 1) (p = 1 would make every image the discriminator sees augmented, and the augmentations would leak).

    Returns:
        the new probability p (a float).
    """
    if r_t == target:
        return p
    step = batch * interval / speed
    return min(max(p + math.copysign(step, r_t - target), 0.0), 1.0 - 1e-6)


EXERCISES = {"16.1": projection_logit, "16.2": modulated_conv, "16.3": truncate_w, "16.4": ada_update}
