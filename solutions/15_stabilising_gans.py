"""Solutions · 15 Stabilising GANs

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import torch


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty E[(|grad_x critic(x_hat)| - 1)^2] at x_hat = eps * real + (1 - eps) * fake.

    Args:
        critic: a function [B, ...] -> [B] (scores).
        real, fake: [B, ...] batches of the same shape.
        eps: [B] interpolation weights in [0, 1], one per example.

    Returns:
        a scalar tensor, differentiable in the critic's weights.
    """
    e = eps.view(-1, *([1] * (real.dim() - 1)))  # [B, 1, ...] broadcasts over each example
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    # create_graph=True: the penalty is part of the critic's loss, so its gradient is differentiated again
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).pow(2).sum(1).sqrt() - 1).pow(2).mean()


def lsgan_losses(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple:
    """The least-squares GAN losses with targets a = 0 (fake), b = 1 (real), c = 1 (what G wants).

    discriminator: 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]
    generator:     1/2 E[(D(G(z)) - 1)^2]
    The scores are raw outputs (no sigmoid); the two batches may differ in size.

    Returns:
        (discriminator loss, generator loss), two scalar tensors.
    """
    d_loss = 0.5 * (real_scores - 1).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()
    g_loss = 0.5 * (fake_scores - 1).pow(2).mean()
    return d_loss, g_loss


def largest_singular_value(weight_mat: torch.Tensor, iters: int) -> torch.Tensor:
    """The spectral norm (largest singular value) of weight_mat [m, n] by power iteration, without an SVD.

    Start from a random unit vector v [n]; repeat iters times: u = W v / |W v|, v = W^T u / |W^T u|;
    return sigma = u^T W v.

    Args:
        weight_mat: [m, n]; iters: the number of power-iteration steps.

    Returns:
        a scalar tensor.
    """
    v = torch.randn(weight_mat.shape[1], generator=torch.Generator().manual_seed(0), dtype=weight_mat.dtype)
    v = v / v.pow(2).sum().sqrt()
    for _ in range(iters):
        u = weight_mat @ v
        u = u / u.pow(2).sum().sqrt()
        v = weight_mat.T @ u
        v = v / v.pow(2).sum().sqrt()
    return u @ weight_mat @ v


EXERCISES = {"15.1": gradient_penalty, "15.2": lsgan_losses, "15.3": largest_singular_value}
