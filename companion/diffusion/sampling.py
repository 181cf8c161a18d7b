"""Samplers: small pure functions, one signature, over a model callable (the k-diffusion style).

**The model.** A sampler calls ``model(x, t, **cond)``:

* noise-prediction samplers (:func:`sample_ddpm`, :func:`sample_ddim`, :func:`sample_euler`,
  :func:`sample_heun`, :func:`sample_dpmpp_2m`): ``x`` is ``[B, ...]`` on the variance-preserving path
  ``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps``, ``t`` an int64 tensor ``[B]`` of training
  timesteps in ``0 .. T-1``, and the model returns its noise prediction ``eps``, shaped like ``x``.
  A model that predicts ``x0`` or ``v`` instead is turned into one with :func:`to_eps_model`.
* flow samplers (:func:`sample_flow_euler`, :func:`sample_flow_heun`, :func:`sample_flow_midpoint`): ``x``
  is on the straight path ``x_t = (1 - t) x0 + t eps``, ``t`` a float tensor ``[B]`` in ``[0, 1]`` (1 is
  noise), and the model returns the velocity ``v = dx_t / dt = eps - x0``.

**The schedule.** Noise-prediction samplers take ``alpha_bar`` (the ``[T]`` training table) and
``timesteps``, the decreasing training timesteps to visit (:func:`~companion.diffusion.spaced_timesteps`;
default: all ``T``); after the last one the sampler steps to the clean data (``t = -1``,
``alpha_bar = 1``), so ``S`` timesteps make ``S`` steps. Flow samplers take ``timesteps``, a decreasing grid
of times from 1 to 0 with both ends (:func:`flow_timesteps`); ``S + 1`` times make ``S`` steps.

**The call.** ``sampler(model, x, [alpha_bar,] timesteps, *, cond=None, callback=None, generator=None)``
with ``x`` the starting noise ``N(0, I)`` (drawn by the caller, so one seed reproduces a run), ``cond`` the
keyword arguments passed to every model call (``{"y": labels}``), ``callback`` a function called once per
step, before the update, with a dict ``{"i", "t", "x", "x0_pred"}`` (step index, current time, current
sample, the model's current estimate of the clean data; for plots), and ``generator`` the
``torch.Generator`` for the fresh noise of ancestral samplers (on ``x``'s device; deterministic samplers
ignore it). Every sampler
returns the final ``x0``, runs without gradients and holds no state between calls.

Euler, Heun and DPM-Solver++(2M) step in the variance-exploding form ``x / sqrt(alpha_bar) = x0 + sigma eps``,
``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` (Karras et al. 2022), where the probability-flow ODE
reads ``d(x / sqrt(alpha_bar)) / d sigma = eps``. In that form DDIM with ``eta = 0`` *is* the Euler method,
so :func:`sample_euler` and :func:`sample_ddim` agree to rounding; the tests check this.

Introduced in chapter 18 (DDPM) and chapter 19 (the rest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._checks import _positive_int, _shape
from .schedules import _check_table, _posterior, _timesteps_tensor, ddim_step, v_to_eps, x0_to_eps

__all__ = [
    "PREDICTIONS",
    "flow_timesteps",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_flow_euler",
    "sample_flow_heun",
    "sample_flow_midpoint",
    "sample_heun",
    "to_eps_model",
]

Model = Callable[..., Tensor]
Callback = Callable[[dict[str, Any]], None]

#: what a model may predict, for :func:`to_eps_model`
PREDICTIONS = ("eps", "x0", "v")


# ----------------------------------------------------------------------------------------------
# Helpers shared by the samplers
# ----------------------------------------------------------------------------------------------


def _check_start(fn: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: x must be the starting noise, a torch.Tensor [B, ...], got {type(x).__name__}")
    if x.ndim < 1 or not x.is_floating_point():
        raise ValueError(f"{fn}: x must be a floating-point tensor [B, ...], got shape {_shape(x)} and {x.dtype}")
    return x


def _levels(fn: str, alpha_bar: Tensor, timesteps: Tensor | list[int] | None) -> list[tuple[int, int, float, float]]:
    """``(t, t_prev, alpha_bar[t], alpha_bar[t_prev])`` for each step, as Python numbers (float64); ``t_prev = -1`` last."""
    alpha_bar = _check_table(fn, alpha_bar, "alpha_bar")
    T = alpha_bar.shape[0]
    if timesteps is None:
        timesteps = torch.arange(T - 1, -1, -1)
    ts = _timesteps_tensor(fn, torch.as_tensor(timesteps), "timesteps", T)
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError(f"{fn}: timesteps must be a non-empty 1-D list of timesteps, got shape {_shape(ts)}")
    if ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"{fn}: timesteps must be strictly decreasing (from noise to data), got {ts.tolist()}")
    ab = [float(v) for v in alpha_bar.double()]
    t_list = ts.tolist()
    prev = t_list[1:] + [-1]
    return [(t, tp, ab[t], 1.0 if tp < 0 else ab[tp]) for t, tp in zip(t_list, prev, strict=True)]


def _call(fn: str, model: Model, x: Tensor, t: int | float, cond: dict[str, Any] | None, integer: bool) -> Tensor:
    """``model(x, t, **cond)`` with ``t`` broadcast to a ``[B]`` tensor; checks the output's shape."""
    dtype = torch.long if integer else x.dtype
    tt = torch.full((x.shape[0],), t, dtype=dtype, device=x.device)
    out = model(x, tt, **(cond or {}))
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = _shape(out) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{fn}: the model must return a tensor shaped like x {_shape(x)}, got {got}")
    return out


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _sigma(ab: float) -> float:
    """``sqrt((1 - ab) / ab)``, the variance-exploding noise level; 0 for the clean data."""
    return math.sqrt((1 - ab) / ab)


# ----------------------------------------------------------------------------------------------
# Noise-prediction samplers
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_ddpm(model: Model, x: Tensor, alpha_bar: Tensor, timesteps: Tensor | list[int] | None = None, *,
                variance: str = "posterior", cond: dict[str, Any] | None = None, callback: Callback | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2): sample ``x_prev ~ N(mean(x_t, x0_pred), var)`` step by step.

    The mean is the forward posterior's (eq. 7) at the model's ``x0`` estimate; the variance is ``beta_tilde``
    (``variance="posterior"``, the lower bound) or ``beta`` (``"beta"``, the upper bound; section 3.2). On a
    spaced subset of timesteps ``beta = 1 - alpha_bar[t] / alpha_bar[t_prev]`` (Nichol & Dhariwal 2021).
    The last step returns the mean (no noise).

    Args:
        model: ``model(x, t, **cond) -> eps``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        alpha_bar: ``[T]`` training table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        variance: ``"posterior"`` or ``"beta"``.
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: for the fresh noise.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Raises:
        ValueError: an unknown ``variance``, bad timesteps, or a model output shaped unlike ``x``.

    Introduced in chapter 18.
    """
    fn = "sample_ddpm"
    if variance not in ("posterior", "beta"):
        raise ValueError(f"{fn}: variance must be 'posterior' or 'beta', got {variance!r}")
    x = _check_start(fn, x)
    for i, (t, t_prev, ab, ab_prev) in enumerate(_levels(fn, alpha_bar, timesteps)):
        eps = _call(fn, model, x, t, cond, integer=True)
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x0})
        # the forward posterior q(x_prev | x_t, x0) at the x0 estimate (eq. 7), between the visited levels
        mean, var = _posterior(x0, x, torch.tensor(ab, dtype=torch.float64), torch.tensor(ab_prev, dtype=torch.float64))
        if variance == "beta":
            var = 1 - ab / ab_prev  # beta of the (respaced) step
        x = mean if t_prev < 0 else mean + math.sqrt(float(var)) * _noise(x, generator)
    return x


@torch.no_grad()
def sample_ddim(model: Model, x: Tensor, alpha_bar: Tensor, timesteps: Tensor | list[int] | None = None, *,
                eta: float = 0.0, cond: dict[str, Any] | None = None, callback: Callback | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): :func:`~companion.diffusion.ddim_step` over the timesteps.

    ``eta = 0`` is deterministic (the same noise always gives the same image); ``eta = 1`` adds the DDPM
    posterior's noise and matches :func:`sample_ddpm`.

    Args:
        model: ``model(x, t, **cond) -> eps``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        alpha_bar: ``[T]`` training table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        eta: ``>= 0``, the fresh noise per step.
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: for the fresh noise (``eta > 0``).

    Returns:
        The sample ``x0``, shaped like ``x``.

    Raises:
        ValueError: ``eta < 0``, bad timesteps, or a model output shaped unlike ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_ddim"
    if eta < 0:
        raise ValueError(f"{fn}: eta must be >= 0, got {eta}")
    x = _check_start(fn, x)
    for i, (t, t_prev, ab, _) in enumerate(_levels(fn, alpha_bar, timesteps)):
        eps = _call(fn, model, x, t, cond, integer=True)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)})
        last = t_prev < 0  # the step to the clean data adds no noise, whatever eta
        noise = None if eta == 0 or last else _noise(x, generator)
        x = ddim_step(x, eps, t, t_prev, alpha_bar, eta=0.0 if last else eta, noise=noise)
    return x


@torch.no_grad()
def sample_euler(model: Model, x: Tensor, alpha_bar: Tensor, timesteps: Tensor | list[int] | None = None, *,
                 cond: dict[str, Any] | None = None, callback: Callback | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 without its second stage).

    In the variance-exploding form ``y = x / sqrt(alpha_bar)`` the ODE is ``dy / d sigma = eps``, so one step is
    ``y_next = y + (sigma_next - sigma) eps``; this equals DDIM with ``eta = 0``.

    Args:
        model: ``model(x, t, **cond) -> eps``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        alpha_bar: ``[T]`` training table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_euler"
    x = _check_start(fn, x)
    for i, (t, _, ab, ab_prev) in enumerate(_levels(fn, alpha_bar, timesteps)):
        sigma, sigma_next = _sigma(ab), _sigma(ab_prev)
        y = x / math.sqrt(ab)
        eps = _call(fn, model, x, t, cond, integer=True)  # = dy / d sigma
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": y - sigma * eps})
        y = y + (sigma_next - sigma) * eps
        x = y * math.sqrt(ab_prev)
    return x


@torch.no_grad()
def sample_heun(model: Model, x: Tensor, alpha_bar: Tensor, timesteps: Tensor | list[int] | None = None, *,
                cond: dict[str, Any] | None = None, callback: Callback | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1, no churn).

    An Euler step to ``sigma_next``, a second slope there, and the step redone with the average slope; the
    last step (to ``sigma = 0``) stays Euler. Two model calls per step but the last.

    The average of two slopes is accurate only while a step is small next to ``sigma``'s own scale. The
    cosine schedule's last timestep has ``sigma`` near ``2e4`` and its next trailing timestep, for 25 steps,
    about 16: one step across three orders of magnitude, which Heun overshoots badly (Euler, DDIM and
    DPM-Solver++ do not, the last by integrating that part exactly). Karras et al. start at ``sigma = 80``
    and space the steps ``rho = 7`` apart in ``sigma^(1/rho)`` for this reason. On such a schedule use many
    more steps (on Gaussian data the tests need about 200 with the cosine schedule, 25 with the linear one)
    or DPM-Solver++. Starting at a smaller timestep instead (the "leading" spacing does) repairs the spread
    but shifts the mean: ``x`` there is not yet pure noise.

    Args:
        model: ``model(x, t, **cond) -> eps``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        alpha_bar: ``[T]`` training table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_heun"
    x = _check_start(fn, x)
    for i, (t, t_prev, ab, ab_prev) in enumerate(_levels(fn, alpha_bar, timesteps)):
        sigma, sigma_next = _sigma(ab), _sigma(ab_prev)
        y = x / math.sqrt(ab)
        d = _call(fn, model, x, t, cond, integer=True)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": y - sigma * d})
        y_next = y + (sigma_next - sigma) * d  # 1. Euler predictor
        if t_prev >= 0:  # 2. slope at the predicted point, 3. average the two slopes
            d_next = _call(fn, model, y_next * math.sqrt(ab_prev), t_prev, cond, integer=True)
            y_next = y + (sigma_next - sigma) * (d + d_next) / 2
        x = y_next * math.sqrt(ab_prev)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Model, x: Tensor, alpha_bar: Tensor, timesteps: Tensor | list[int] | None = None, *,
                    cond: dict[str, Any] | None = None, callback: Callback | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver on the x0 predictions.

    With ``lambda = -log sigma`` and step ``h = lambda_next - lambda``, one step is
    ``y_next = (sigma_next / sigma) y + (1 - e^{-h}) D``: an exact integration of the linear part, with ``D``
    the x0 prediction extrapolated from this step's and the previous one's,
    ``D = (1 + 1 / (2r)) x0 - (1 / (2r)) x0_prev``, ``r = h_prev / h``. The first step uses ``D = x0``
    (first order) and the last one (to ``sigma = 0``) returns ``x0``. One model call per step.

    Args:
        model: ``model(x, t, **cond) -> eps``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        alpha_bar: ``[T]`` training table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_dpmpp_2m"
    x = _check_start(fn, x)
    x0_prev, h_prev = None, None
    for i, (t, t_prev, ab, ab_prev) in enumerate(_levels(fn, alpha_bar, timesteps)):
        sigma, sigma_next = _sigma(ab), _sigma(ab_prev)
        eps = _call(fn, model, x, t, cond, integer=True)
        y = x / math.sqrt(ab)
        x0 = y - sigma * eps
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x0})
        if t_prev < 0:
            x = x0  # sigma_next = 0: the solution is the current x0 estimate
            break
        h = math.log(sigma / sigma_next)
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        y = (sigma_next / sigma) * y - math.expm1(-h) * d
        x = y * math.sqrt(ab_prev)
        x0_prev, h_prev = x0, h
    return x


# ----------------------------------------------------------------------------------------------
# Flow matching: a velocity model on the straight path x_t = (1 - t) x0 + t eps
# ----------------------------------------------------------------------------------------------


def flow_timesteps(steps: int, shift: float = 1.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """A decreasing time grid from 1 (noise) to 0 (data) with ``steps`` intervals, for the flow samplers.

    Evenly spaced for ``shift = 1``; ``shift > 1`` spends more steps at high noise with
    ``t' = shift t / (1 + (shift - 1) t)`` (the resolution-dependent shift of Esser et al. 2024).

    Args:
        steps: the number of steps, ``>= 1``.
        shift: ``> 0``.
        dtype: the dtype of the grid.

    Returns:
        ``[steps + 1]`` tensor from 1.0 down to 0.0.

    Raises:
        ValueError: ``steps < 1`` or ``shift <= 0``.

    Introduced in chapter 19.
    """
    steps = _positive_int(steps, "flow_timesteps: steps")
    if not shift > 0:
        raise ValueError(f"flow_timesteps: shift must be > 0, got {shift}")
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).to(dtype)


def _grid(fn: str, timesteps: object) -> list[float]:
    if not isinstance(timesteps, (Tensor, list, tuple)):
        raise TypeError(f"{fn}: timesteps must be a decreasing grid of times from 1 to 0 (flow_timesteps), "
                        f"got {type(timesteps).__name__}")
    ts = torch.as_tensor(timesteps, dtype=torch.float64)
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"{fn}: timesteps must be a 1-D grid with at least 2 times, got shape {_shape(ts)}")
    if float(ts.min()) < 0 or float(ts.max()) > 1 or not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"{fn}: timesteps must decrease strictly within [0, 1] (1 is noise, 0 is data), "
                         f"got {[round(v, 4) for v in ts.tolist()]}")
    return ts.tolist()


@torch.no_grad()
def sample_flow_euler(model: Model, x: Tensor, timesteps: Tensor | list[float], *,
                      cond: dict[str, Any] | None = None, callback: Callback | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """Euler's method on ``dx/dt = v(x, t)`` from ``t = 1`` to 0 (Lipman et al. 2023; Liu et al. 2023).

    ``x_next = x + (t_next - t) v``; the x0 estimate shown to the callback is ``x - t v``.

    Args:
        model: ``model(x, t, **cond) -> v`` with ``v = eps - x0``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        timesteps: decreasing times from 1 to 0, ``[S + 1]`` (:func:`flow_timesteps`).
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_flow_euler"
    x = _check_start(fn, x)
    ts = _grid(fn, timesteps)
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        v = _call(fn, model, x, t, cond, integer=False)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x - t * v})
        x = x + (t_next - t) * v
    return x


@torch.no_grad()
def sample_flow_heun(model: Model, x: Tensor, timesteps: Tensor | list[float], *,
                     cond: dict[str, Any] | None = None, callback: Callback | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """Heun's method on ``dx/dt = v(x, t)``: an Euler predictor, then the average of the two slopes.

    Two model calls per step (also the last: the velocity is defined at ``t = 0``).

    Args:
        model: ``model(x, t, **cond) -> v`` with ``v = eps - x0``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        timesteps: decreasing times from 1 to 0, ``[S + 1]`` (:func:`flow_timesteps`).
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_flow_heun"
    x = _check_start(fn, x)
    ts = _grid(fn, timesteps)
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        v = _call(fn, model, x, t, cond, integer=False)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x - t * v})
        x_pred = x + (t_next - t) * v
        v_next = _call(fn, model, x_pred, t_next, cond, integer=False)
        x = x + (t_next - t) * (v + v_next) / 2
    return x


@torch.no_grad()
def sample_flow_midpoint(model: Model, x: Tensor, timesteps: Tensor | list[float], *,
                         cond: dict[str, Any] | None = None, callback: Callback | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
    """The midpoint method on ``dx/dt = v(x, t)``: half an Euler step, then the full step with the slope there.

    Two model calls per step.

    Args:
        model: ``model(x, t, **cond) -> v`` with ``v = eps - x0``.
        x: ``[B, ...]`` starting noise ``N(0, I)``.
        timesteps: decreasing times from 1 to 0, ``[S + 1]`` (:func:`flow_timesteps`).
        cond: keyword arguments for the model.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.
        generator: unused (deterministic); kept for the common signature.

    Returns:
        The sample ``x0``, shaped like ``x``.

    Introduced in chapter 19.
    """
    fn = "sample_flow_midpoint"
    x = _check_start(fn, x)
    ts = _grid(fn, timesteps)
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        v = _call(fn, model, x, t, cond, integer=False)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x - t * v})
        dt = t_next - t
        v_mid = _call(fn, model, x + (dt / 2) * v, t + dt / 2, cond, integer=False)
        x = x + dt * v_mid
    return x


# ----------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------


def to_eps_model(model: Model, alpha_bar: Tensor, prediction: str) -> Model:
    """Wrap a model that predicts ``x0`` or ``v`` so that it returns ``eps``, for the noise-prediction samplers.

    ``prediction="x0"``: ``eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)``; ``prediction="v"``:
    ``eps = sqrt(1 - ab) x_t + sqrt(ab) v`` (Salimans & Ho 2022); ``"eps"`` returns ``model`` itself.

    Args:
        model: ``model(x, t, **cond)`` returning the ``prediction``.
        alpha_bar: ``[T]`` the table the model was trained with.
        prediction: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
        ``eps_model(x, t, **cond) -> eps``.

    Raises:
        ValueError: an unknown ``prediction``.

    Introduced in chapter 18.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"to_eps_model: prediction must be one of {', '.join(map(repr, PREDICTIONS))}, "
                         f"got {prediction!r}")
    alpha_bar = _check_table("to_eps_model", alpha_bar, "alpha_bar")
    if prediction == "eps":
        return model
    convert = x0_to_eps if prediction == "x0" else v_to_eps

    def eps_model(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return convert(x, model(x, t, **cond), t, alpha_bar)

    return eps_model
