"""Checks for chapter 15 · Stabilising GANs.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through), on
several inputs including edge cases, and compares with closed forms, ``torch.linalg`` and ``companion.losses``
via ``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from companion import losses, stable_gan
from companion.exercises import exercise, expect_close, forbid


def _gp_with_eps(critic: Callable, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty with the interpolation weights given: ``eps [B]``."""
    shape = (-1,) + (1,) * (real.dim() - 1)
    x_hat = (eps.view(shape) * real + (1 - eps.view(shape)) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@exercise("15.1", "The gradient penalty on random interpolates", reference=_gp_with_eps)
def check_gradient_penalty(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)
    linear = lambda x: x @ w  # noqa: E731  (gradient w everywhere, |w| = 5)
    real, fake = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    eps = torch.rand(6, generator=g, dtype=torch.float64)
    expect_close("a linear critic f(x) = (3, 4) . x (gradient norm 5 everywhere: penalty (5 - 1)^2)",
                 fn(linear, real, fake, eps), torch.tensor(16.0, dtype=torch.float64), atol=1e-8)
    quad = lambda x: 0.5 * (x ** 2).flatten(1).sum(1)  # noqa: E731  (gradient x: the penalty depends on where)
    ones, zeros = torch.ones(4, 1, 2, 2, dtype=torch.float64), torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    e = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    # x_hat = e * 1, |grad| = |x_hat| = 2 e; penalty = mean((2e - 1)^2)
    expect_close("f(x) = |x|^2 / 2 between images of ones (real) and zeros (fake), eps = 0, 1/4, 1/2, 1",
                 fn(quad, ones, zeros, e), ((2 * e - 1) ** 2).mean(), atol=1e-8)
    expect_close("the same with real and fake swapped (the penalty is taken at eps real + (1 - eps) fake)",
                 fn(quad, zeros, ones, e), ((2 * (1 - e) - 1) ** 2).mean(), atol=1e-8)
    lin = torch.nn.Linear(2, 1).double()
    out = fn(lambda x: lin(x).squeeze(-1), real, fake, eps)
    if not out.requires_grad:
        raise AssertionError("the penalty must stay differentiable in the critic's weights: call autograd.grad "
                             "with create_graph=True")
    out.backward()
    expect_close("its gradient with respect to a linear critic's weight, 2 (|w| - 1) w / |w|", lin.weight.grad[0],
                 2 * (lin.weight[0].norm() - 1) * lin.weight[0].detach() / lin.weight[0].norm(), atol=1e-8)
    return "equal to (|grad| - 1)^2 on linear and quadratic critics, at the interpolates, differentiable in the weights"


_NO_SVD = ("your function called an SVD or a matrix norm, which this exercise rules out: use power iteration "
           "(u <- W v / |W v|, v <- W^T u / |W^T u|, sigma = u^T W v)")


def _sigma(weight_mat: torch.Tensor, iters: int) -> torch.Tensor:
    return torch.tensor(stable_gan.spectral_norm_estimate(weight_mat, iters), dtype=weight_mat.dtype)


@exercise("15.3", "Spectral norm by power iteration", reference=_sigma)
def check_power_iteration(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(3)
    cases = [torch.randn(20, 10, generator=g, dtype=torch.float64), torch.randn(5, 40, generator=g, dtype=torch.float64),
             torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))]
    with forbid(torch.linalg, "svd", _NO_SVD), forbid(torch.linalg, "matrix_norm", _NO_SVD), \
            forbid(torch.linalg, "svdvals", _NO_SVD), forbid(torch.linalg, "norm", _NO_SVD):
        got = [fn(w, 100) for w in cases]
    for w, out, name in zip(cases, got, ("a random 20x10 matrix", "a random 5x40 matrix", "diag(3, 2, 1)")):
        exact = torch.linalg.matrix_norm(w, ord=2)
        expect_close(f"sigma_max of {name} after 100 steps (within 1e-3 of torch.linalg.matrix_norm(ord=2))",
                     torch.as_tensor(out, dtype=torch.float64), exact, atol=1e-3, rtol=0)
    return f"within 1e-3 of the exact spectral norm on 3 matrices (diag(3, 2, 1): {float(got[2]):.4f})"


def _lsgan(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return losses.lsgan_discriminator_loss(real_scores, fake_scores), losses.lsgan_generator_loss(fake_scores)


@exercise("15.2", "The least-squares GAN losses", reference=_lsgan)
def check_lsgan_losses(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    real, fake = torch.tensor([1.0, 0.5, 2.0]), torch.tensor([0.0, -1.0, 0.5, 1.0])
    out = fn(real, fake)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"return (discriminator loss, generator loss), got {type(out).__name__}")
    d, gl = out
    expect_close("discriminator loss on scores real (1, 0.5, 2), fake (0, -1, 0.5, 1)", d,
                 torch.tensor(0.5 * (0 + 0.25 + 1) / 3 + 0.5 * (0 + 1 + 0.25 + 1) / 4), atol=1e-6)
    expect_close("generator loss on the same fakes", gl, torch.tensor(0.5 * (1 + 4 + 0.25 + 0) / 4), atol=1e-6)
    d0, g0 = fn(torch.ones(5), torch.zeros(5))
    expect_close("a perfect discriminator (real -> 1, fake -> 0): D loss 0", d0, torch.tensor(0.0), atol=1e-7)
    expect_close("... and the generator loss 1/2", g0, torch.tensor(0.5), atol=1e-7)
    return "both losses equal Mao et al.'s (a, b, c) = (0, 1, 1) on 2 hand-computed cases"
