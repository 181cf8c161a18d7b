"""Checks for chapter 14 · Generative adversarial networks.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with closed forms, a brute-force search and ``companion.gan``
via ``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from companion import gan, toys
from companion.exercises import exercise, expect_close, forbid


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@exercise("14.1", "The optimal discriminator", reference=gan.optimal_discriminator)
def check_optimal_discriminator(fn: Callable[..., torch.Tensor]) -> str:
    p, q = _rand(7, seed=0), _rand(7, seed=1)
    p, q = p / p.sum(), q / q.sum()
    out = fn(p, q)
    expect_close("D*(x) on 7 points of two discrete distributions", out, p / (p + q), atol=1e-9)
    # brute force: on each point, no value on a fine grid scores better than D*
    grid = torch.linspace(1e-4, 1 - 1e-4, 20001, dtype=torch.float64)
    best = grid[(p[:, None] * grid.log() + q[:, None] * (1 - grid).log()).argmax(dim=1)]
    expect_close("D*(x) against a grid search of p log D + q log(1 - D)", out, best, atol=1e-4)
    dens_p, dens_q = torch.tensor([3.0, 0.0, 0.5, 2.0]), torch.tensor([1.0, 2.0, 0.0, 2.0])  # densities, not sums 1
    expect_close("densities 3 vs 1, 0 vs 2, 0.5 vs 0, 2 vs 2", fn(dens_p, dens_q), torch.tensor([0.75, 0.0, 1.0, 0.5]),
                 atol=1e-6)
    expect_close("both densities 0 (D is free there: return 1/2)", fn(torch.zeros(3), torch.zeros(3)),
                 torch.full((3,), 0.5), atol=0.0)
    a, b = _rand(2, 5, seed=2), _rand(2, 5, seed=3)
    expect_close("a [2, 5] batch", fn(a, b), a / (a + b), atol=1e-9)
    return "D* = p_data / (p_data + p_g) on 5 inputs, equal to a grid search, 1/2 where both densities vanish"


_NO_AUTOGRAD = ("your function called autograd, which this exercise rules out: derive d/dl of log(1 - sigmoid(l)) "
                "and of -log sigmoid(l) by hand (use sigmoid'(l) = sigmoid(l) (1 - sigmoid(l)))")


@exercise("14.2", "Gradients of the two generator losses", reference=gan.logit_gradients)
def check_logit_gradients(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    logits = torch.tensor([-6.0, -2.0, 0.0, 1.5, 4.0], dtype=torch.float64)
    with forbid(torch.autograd, "grad", _NO_AUTOGRAD), forbid(torch.Tensor, "backward", _NO_AUTOGRAD):
        out = fn(logits.clone())
        far = fn(torch.tensor([-30.0, 30.0]))
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"return (minimax gradient, non-saturating gradient), got {type(out).__name__}")
    lg = logits.clone().requires_grad_(True)
    (mm,) = torch.autograd.grad(torch.log1p(-torch.sigmoid(lg)).sum(), lg)
    (ns,) = torch.autograd.grad((-torch.log(torch.sigmoid(lg))).sum(), lg)
    expect_close("d/dl log(1 - sigmoid(l)) (minimax) at l = -6, -2, 0, 1.5, 4", out[0], mm, atol=1e-9)
    expect_close("d/dl -log sigmoid(l) (non-saturating) at l = -6, -2, 0, 1.5, 4", out[1], ns, atol=1e-9)
    expect_close("minimax gradient at l = -30 and 30 (no NaN: use the closed form)", far[0],
                 -torch.sigmoid(torch.tensor([-30.0, 30.0])), atol=1e-6)
    expect_close("non-saturating gradient at l = -30 and 30", far[1],
                 torch.sigmoid(torch.tensor([-30.0, 30.0])) - 1, atol=1e-6)
    return (f"both gradients equal autograd's on 5 logits and stay finite at |l| = 30; at l = -6: minimax "
            f"{out[0][0].item():.4f}, non-saturating {out[1][0].item():.4f}")


@exercise("14.3", "Counting the modes a generator covers", reference=gan.modes_covered)
def check_modes_covered(fn: Callable[..., int]) -> str:
    ring, std = toys.ring_centres(), 0.02
    on = torch.cat([ring[k].expand(n, 2) for k, n in ((0, 40), (2, 25), (7, 19))])  # 19 < 20 on mode 7
    stray = torch.zeros(30, 2)  # the ring's centre: far from every mode
    samples = torch.cat([on, stray])
    got = fn(samples, ring, std, 20)
    expect_close("40, 25 and 19 samples on modes 0, 2, 7 plus 30 at the centre, min_count 20", got, 2)
    expect_close("the same with min_count 10", fn(samples, ring, std, 10), 3)
    edge = torch.cat([ring[1] + torch.tensor([2.9 * std, 0.0]), ring[4] + torch.tensor([0.0, 3.1 * std])])
    expect_close("20 samples at 2.9 std from mode 1 and 20 at 3.1 std from mode 4",
                 fn(edge.reshape(2, 1, 2).expand(2, 20, 2).reshape(40, 2), ring, std, 20), 1)
    grid = toys.grid_centres()  # wide blobs: a point can be within 3 std of two modes, but counts for its nearest
    wide = torch.tensor([[0.9, 0.0]]).expand(25, 2)  # nearest mode (0, 0), also within 3 std of (2, 0)
    expect_close("25 points at (0.9, 0) on the grid with std 0.8 (count each for its nearest mode only)",
                 fn(wide.clone(), grid, 0.8, 20), 1)
    full = toys.grid_gaussians(2500, seed=0)
    expect_close("2,500 samples of the 25-Gaussian grid itself", fn(full, grid, 0.05, 20), 25)
    return f"{got} modes covered in the first case, and right on 4 more (thresholds, 3-std edge, nearest mode only)"
