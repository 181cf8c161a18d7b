"""Exercise checks for chapter 06 · Training craft: optimisers, schedules and augmentation.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including edge cases,
and compares with ``torch.optim`` (whole trajectories, not only one step), ``companion.optim`` and
``companion.augment`` through :func:`expect_close`.

The first two exercises ask for an optimiser update as a *pure function* of tensors. Their references,
:func:`sgd_momentum_step` and :func:`adam_step` below, run exactly one step of the chapter's from-scratch
optimisers (``companion.optim.SGD`` / ``companion.optim.Adam``) with the given state, so the functional form
and the ``torch.optim.Optimizer`` form cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .. import augment, optim
from . import exercise, expect_close

# ----------------------------------------------------------------------------- functional references


def sgd_momentum_step(param: Tensor, grad: Tensor, velocity: Tensor, lr: float, momentum: float,
                      nesterov: bool = False) -> tuple[Tensor, Tensor]:
    """One SGD-with-momentum update as a pure function, in PyTorch's formulation (no dampening, no decay).

    ``v' = momentum * v + g``; then ``param' = param - lr * v'`` (heavy ball) or, with ``nesterov``,
    ``param' = param - lr * (g + momentum * v')``. Start from ``velocity = 0``.

    Returns ``(new_param, new_velocity)``; the inputs are not modified. Runs one step of
    ``companion.optim.SGD`` with its momentum buffer set to ``velocity``. Introduced in chapter 06.
    """
    theta = param.detach().clone()
    theta.grad = grad.detach().clone()
    opt = optim.SGD([theta], lr=lr, momentum=momentum, nesterov=nesterov)
    if momentum != 0:
        opt.state[theta]["momentum_buffer"] = velocity.detach().clone()
    opt.step()
    new_v = opt.state[theta]["momentum_buffer"] if momentum != 0 else grad.detach().clone()
    return theta.detach(), new_v.detach().clone()


def adam_step(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: int, lr: float = 1e-3, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8) -> tuple[Tensor, Tensor, Tensor]:
    """One Adam update (Kingma & Ba 2015, Algorithm 1) as a pure function; ``t`` is this step's number, 1, 2, ...

    Returns ``(new_param, new_m, new_v)``; the inputs are not modified. Runs one step of
    ``companion.optim.Adam`` with its state set to ``(m, v, t - 1)``. Introduced in chapter 06.
    """
    if int(t) != t or t < 1:
        raise ValueError(f"t is the 1-based step number, got {t}")
    theta = param.detach().clone()
    theta.grad = grad.detach().clone()
    opt = optim.Adam([theta], lr=lr, betas=(beta1, beta2), eps=eps)
    opt.state[theta].update(step=int(t) - 1, exp_avg=m.detach().clone(), exp_avg_sq=v.detach().clone())
    opt.step()
    state = opt.state[theta]
    return theta.detach(), state["exp_avg"].detach().clone(), state["exp_avg_sq"].detach().clone()


# ----------------------------------------------------------------------------- helpers


def _quadratic_grad(theta: Tensor, h: Tensor) -> Tensor:
    """Gradient of f(theta) = 1/2 theta^T H theta + sin(theta).sum() (non-quadratic, so all terms matter)."""
    return h @ theta + torch.cos(theta)


def _as_tuple(out: object, n: int, name: str) -> tuple:
    if not isinstance(out, tuple) or len(out) != n:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise AssertionError(f"{name}: your function returned {got} / expected a tuple of {n} tensors")
    return out


# ----------------------------------------------------------------------------- 06.1


@exercise("06.1", "one SGD-with-momentum step", reference=sgd_momentum_step)
def check_sgd_momentum_step(fn: Callable[..., tuple[Tensor, Tensor]]) -> str:
    g = torch.Generator().manual_seed(61)
    p, gr, v = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(3))
    for mu, nesterov in ((0.9, False), (0.9, True), (0.0, False), (0.5, True)):
        yours = _as_tuple(fn(p.clone(), gr.clone(), v.clone(), 0.1, mu, nesterov), 2, "sgd_momentum_step")
        expected = sgd_momentum_step(p, gr, v, 0.1, mu, nesterov)
        what = f"(momentum={mu}, nesterov={nesterov})"
        expect_close(f"new parameters {what}", yours[0], expected[0], atol=1e-12, rtol=1e-10)
        expect_close(f"new velocity {what}", yours[1], expected[1], atol=1e-12, rtol=1e-10)
    # a zero gradient with zero velocity must not move the parameters
    zero = torch.zeros(3, dtype=torch.float64)
    expect_close("a step with zero gradient and zero velocity", fn(p[:3].clone(), zero, zero.clone(), 0.5, 0.9)[0],
                 p[:3])
    # 40 steps on a curved 2-D loss, iterated, against torch.optim.SGD
    h = torch.tensor([[3.0, 0.5], [0.5, 0.2]], dtype=torch.float64)
    worst = 0.0
    for nesterov in (False, True):
        theta = torch.tensor([1.5, -2.0], dtype=torch.float64, requires_grad=True)
        ref = torch.optim.SGD([theta], lr=0.05, momentum=0.9, nesterov=nesterov)
        mine, vel = theta.detach().clone(), torch.zeros(2, dtype=torch.float64)
        for _ in range(40):
            theta.grad = _quadratic_grad(theta.detach(), h)
            ref.step()
            mine, vel = fn(mine, _quadratic_grad(mine, h), vel, 0.05, 0.9, nesterov)
        worst = max(worst, expect_close(f"parameters after 40 steps vs torch.optim.SGD (nesterov={nesterov})",
                                        mine, theta.detach(), atol=1e-10, rtol=1e-8))
    return f"matches companion.optim.SGD on 5 cases and torch.optim.SGD over 40 steps, heavy ball and Nesterov " \
           f"(max error {worst:.1e})"


# ----------------------------------------------------------------------------- 06.2


@exercise("06.2", "one Adam step with bias correction", reference=adam_step)
def check_adam_step(fn: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> str:
    g = torch.Generator().manual_seed(62)
    p, gr = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    m, v = 0.1 * torch.randn(6, generator=g, dtype=torch.float64), 0.01 * torch.rand(6, generator=g, dtype=torch.float64)
    zeros = torch.zeros(6, dtype=torch.float64)
    cases = [("the first step (t = 1, m = v = 0)", (p, gr, zeros, zeros, 1)),
             ("step t = 7 from a non-zero state", (p, gr, m, v, 7)),
             ("a late step t = 5000 (bias corrections ~ 1)", (p, gr, m, v, 5000))]
    for name, (pp, gg, mm, vv, t) in cases:
        yours = _as_tuple(fn(pp.clone(), gg.clone(), mm.clone(), vv.clone(), t, 0.01), 3, "adam_step")
        expected = adam_step(pp, gg, mm, vv, t, 0.01)
        for label, a, b in zip(("parameters", "m", "v"), yours, expected):
            expect_close(f"new {label} at {name}", a, b, atol=1e-12, rtol=1e-10)
    # the first step moves every coordinate by ~lr, whatever the gradient's scale (the point of the corrections)
    step1 = fn(zeros.clone(), 1e-3 * torch.arange(1.0, 7.0, dtype=torch.float64), zeros.clone(), zeros.clone(), 1,
               0.01)[0]
    expect_close("first step of Adam with tiny gradients: every |step| = lr", step1.abs(),
                 torch.full((6,), 0.01, dtype=torch.float64), atol=1e-6, rtol=1e-3)
    # 60 steps, iterated, against torch.optim.Adam with non-default betas
    h = torch.tensor([[3.0, 0.5], [0.5, 0.2]], dtype=torch.float64)
    theta = torch.tensor([1.5, -2.0], dtype=torch.float64, requires_grad=True)
    ref = torch.optim.Adam([theta], lr=0.05, betas=(0.8, 0.99), eps=1e-8)
    mine, mm, vv = theta.detach().clone(), torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for t in range(1, 61):
        theta.grad = _quadratic_grad(theta.detach(), h)
        ref.step()
        mine, mm, vv = fn(mine, _quadratic_grad(mine, h), mm, vv, t, 0.05, 0.8, 0.99, 1e-8)
    err = expect_close("parameters after 60 steps vs torch.optim.Adam", mine, theta.detach(), atol=1e-10, rtol=1e-8)
    return f"matches companion.optim.Adam at t = 1, 7, 5000 and torch.optim.Adam over 60 steps (max error {err:.1e})"


# ----------------------------------------------------------------------------- 06.3


@exercise("06.3", "the warm-up + cosine learning rate", reference=optim.warmup_cosine)
def check_warmup_cosine(fn: Callable[..., float]) -> str:
    cases = [
        (0, 100, 10, 1.0, 0.0), (9, 100, 10, 1.0, 0.0), (10, 100, 10, 1.0, 0.0), (55, 100, 10, 1.0, 0.0),
        (99, 100, 10, 1.0, 0.0), (100, 100, 10, 1.0, 0.0), (250, 100, 10, 1.0, 0.0),
        (0, 50, 0, 3e-4, 1e-5), (25, 50, 0, 3e-4, 1e-5), (49, 50, 0, 3e-4, 1e-5),
        (3, 20, 5, 0.1, 0.01), (12, 20, 5, 0.1, 0.01), (7, 7, 7, 0.5, 0.0),
    ]
    for step, total, warm, base, low in cases:
        yours = fn(step, total, warm, base, low)
        if isinstance(yours, Tensor) and yours.numel() == 1:
            yours = yours.item()
        expect_close(f"lr at step {step} of {total} (warm-up {warm}, base {base}, min {low})", yours,
                     float(optim.warmup_cosine(step, total, warm, base, low)), atol=1e-12, rtol=1e-9)
    mid = fn(55, 100, 10, 1.0)
    expect_close("default min_lr = 0: halfway through the decay, lr = base / 2", mid, 0.5, atol=1e-9, rtol=0)
    return f"13 steps match incl. warm-up, the peak, the floor and after the end; halfway through the decay " \
           f"lr = {float(mid):.3f} x base"


# ----------------------------------------------------------------------------- 06.4


@exercise("06.4", "the affine matrix of an augmentation", reference=augment.affine_matrix)
def check_affine_matrix(fn: Callable[..., Tensor]) -> str:
    cases = [(0.0, (0.0, 0.0), 1.0, 0.0), (90.0, (0.0, 0.0), 1.0, 0.0), (30.0, (2.0, -1.0), 1.5, 0.0),
             (0.0, (0.0, 0.0), 1.0, 25.0), (-17.0, (0.5, 3.0), 0.8, -12.0)]
    for angle, translate, scale, shear in cases:
        yours = fn(angle, translate, scale, shear)
        expected = augment.affine_matrix(angle, translate, scale, shear)
        if isinstance(yours, Tensor):
            yours = yours.to(expected.dtype)
        expect_close(f"affine_matrix(angle={angle}, translate={translate}, scale={scale}, shear={shear})", yours,
                     expected, atol=1e-6, rtol=1e-5)
    # the matrix moves real pixels: +90 degrees must equal torch.rot90, a shift must equal a whole-pixel shift
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(64))
    rotated = augment.warp_affine(x, fn(90.0, (0.0, 0.0), 1.0, 0.0).float())
    expect_close("warp_affine(x, your matrix for +90 degrees) vs torch.rot90(x, 1, dims=(-2, -1))", rotated,
                 torch.rot90(x, 1, dims=(-2, -1)), atol=2e-6, rtol=0)
    moved = augment.warp_affine(x, fn(0.0, (2.0, -1.0), 1.0, 0.0).float())
    expect_close("warp_affine(x, your matrix for a (2, -1) pixel shift) vs augment.shift(x, 2, -1)", moved,
                 augment.shift(x, 2, -1), atol=2e-6, rtol=0)
    det = float(torch.linalg.det(fn(-17.0, (0.5, 3.0), 0.8, -12.0)[:, :2].double()))
    expect_close("det(A) = scale^2 (rotation and shear preserve area)", det, 0.64, atol=1e-6, rtol=1e-5)
    return f"5 matrices match; +90 degrees equals torch.rot90 and a translation equals a pixel shift; " \
           f"det A = {det:.2f} = 0.8^2"
