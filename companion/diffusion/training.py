"""Training losses over a model callable: the denoising loss of DDPM and the flow-matching loss.

Both draw one time per example and one noise tensor, build the noisy input and regress the model's output on
the target, a mean squared error over every element. Pass ``t`` and ``noise`` to fix them (tests, plots of
the loss per timestep); otherwise they are drawn from ``generator``. The model follows the samplers'
convention, ``model(x_t, t, **cond)``, so what is trained here is what ``companion.diffusion.sampling``
samples from.

Introduced in chapter 18 (denoising) and chapter 19 (flow matching).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._checks import _shape
from .schedules import _check_like, _check_table, _check_x, _timesteps_tensor, q_sample, v_target

__all__ = ["diffusion_loss", "flow_matching_loss"]

TARGETS = ("eps", "x0", "v")


def _mse(fn: str, out: object, target: Tensor) -> Tensor:
    if not isinstance(out, Tensor) or out.shape != target.shape:
        got = _shape(out) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{fn}: the model must return a tensor shaped like x0 {_shape(target)}, got {got}")
    return (out - target).square().mean()


def diffusion_loss(model: Callable[..., Tensor], x0: Tensor, alpha_bar: Tensor, *, prediction: str = "eps",
                   cond: dict[str, Any] | None = None, t: Tensor | None = None, noise: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """DDPM's simple loss ``E_{t, eps} || target - model(x_t, t) ||^2`` (Ho et al. 2020, eq. 14, Algorithm 1).

    ``t`` uniform on ``0 .. T-1``, ``eps ~ N(0, I)``, ``x_t = q_sample(x0, t, alpha_bar, eps)``; the target is
    ``eps`` (``prediction="eps"``), ``x0`` or ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022).

    Args:
        model: ``model(x_t, t, **cond)`` returning its prediction, shaped like ``x0``.
        x0: ``[B, ...]`` clean data.
        alpha_bar: ``[T]`` table.
        prediction: ``"eps"``, ``"x0"`` or ``"v"``.
        cond: keyword arguments for the model (``{"y": labels}``).
        t: ``[B]`` integer timesteps to use instead of random ones.
        noise: the ``eps`` to use, shaped like ``x0``.
        generator: for the random ``t`` and ``noise``.

    Returns:
        The scalar loss (a mean over every element), differentiable in the model's parameters.

    Raises:
        ValueError: an unknown ``prediction``, timesteps out of range, or shapes that do not match.

    Introduced in chapter 18.
    """
    fn = "diffusion_loss"
    if prediction not in TARGETS:
        raise ValueError(f"{fn}: prediction must be one of {', '.join(map(repr, TARGETS))}, got {prediction!r}")
    x0 = _check_x(fn, x0, "x0")
    T = _check_table(fn, alpha_bar, "alpha_bar").shape[0]
    if t is None:
        t = torch.randint(0, T, (x0.shape[0],), generator=generator, device=generator.device if generator else "cpu")
    t = _timesteps_tensor(fn, t, "t", T).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    noise = _check_like(fn, x0, "x0", noise, "noise")
    x_t = q_sample(x0, t, alpha_bar, noise)
    target = {"eps": noise, "x0": x0}.get(prediction)
    if target is None:
        target = v_target(x0, noise, t, alpha_bar)
    return _mse(fn, model(x_t, t, **(cond or {})), target)


def flow_matching_loss(model: Callable[..., Tensor], x0: Tensor, *, cond: dict[str, Any] | None = None,
                       t: Tensor | None = None, noise: Tensor | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
    """The conditional flow-matching loss ``E_{t, eps} || (eps - x0) - model(x_t, t) ||^2`` on the straight path.

    ``x_t = (1 - t) x0 + t eps`` with ``t ~ U(0, 1)``: the velocity of each straight line from data to noise
    is ``eps - x0``, and its regression on ``x_t`` is the velocity field the flow samplers integrate
    (Lipman et al. 2023, the optimal-transport path with sigma_min = 0; Liu et al. 2023, rectified flow).

    Args:
        model: ``model(x_t, t, **cond) -> v``, with ``t`` a float tensor ``[B]``.
        x0: ``[B, ...]`` clean data.
        cond: keyword arguments for the model.
        t: ``[B]`` times in ``[0, 1]`` to use instead of random ones.
        noise: the ``eps`` to use, shaped like ``x0``.
        generator: for the random ``t`` and ``noise``.

    Returns:
        The scalar loss, differentiable in the model's parameters.

    Raises:
        ValueError: times outside ``[0, 1]`` or shapes that do not match.

    Introduced in chapter 19.
    """
    fn = "flow_matching_loss"
    x0 = _check_x(fn, x0, "x0")
    if t is None:
        t = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device)
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if t.shape != (x0.shape[0],) or float(t.min()) < 0 or float(t.max()) > 1:
        raise ValueError(f"{fn}: t must be one time in [0, 1] per example, [B] with B = {x0.shape[0]}, "
                         f"got shape {_shape(t)}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    noise = _check_like(fn, x0, "x0", noise, "noise")
    tt = t.reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = (1 - tt) * x0 + tt * noise
    return _mse(fn, model(x_t, t, **(cond or {})), noise - x0)
